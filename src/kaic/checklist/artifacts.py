"""Local evidence references and the test artifacts they may point at.

Owns: resolving an evidence link (bare relative path or ``file://`` URL, optional
``#Fragment``) to a file inside the product directory, and parsing the three canonical
test artifacts (``junit.xml``, ``results.json`` from ``go test -json``, ``e2e.log`` from
``go test -v``) into per-test outcomes with subtest aggregation, with the same meaning as
the official validator. Must not decide findings' wording or severity.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath

MAX_ARTIFACT_BYTES = 64 << 20
CANONICAL = {"junit.xml": "junit", "results.json": "gotest-json", "e2e.log": "e2e-log"}
_PRODUCT_PREFIX = re.compile(r"^v\d+\.\d+/[^/]+/", re.ASCII)
_E2E_LINE = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+)", re.ASCII)  # RE2: ASCII classes


class EvidencePathError(ValueError):
    """An evidence path that escapes the product dir or names another product."""


@dataclass(frozen=True)
class EvidenceRef:
    path: Path
    fragment: str


def resolve_evidence(
    product_dir: Path, link: str, literal: bool = False, clean: Path | None = None
) -> EvidenceRef:
    """Resolve a local evidence link to a path inside ``product_dir``.

    A leading ``file://`` and a ``#Fragment`` are split off; a repo-root style
    ``vX.Y/<dir>/`` prefix naming this product's own directory is stripped; any other
    ``vX.Y/<dir>/`` prefix, and any path leaving the product dir, is an error.
    ``literal`` resolves as the official validator did before hybrid verification (revision
    b2c8969): the link is a file name as written, ``file://`` and ``#`` included.
    ``clean`` is ``product_dir`` already resolved (a caller resolving many links passes it).
    """
    fragment = ""
    if literal:
        raw = link.lstrip("/")
    else:
        raw = link.strip()
        raw = raw.removeprefix("file://")
        if "#" in raw:
            raw, fragment = raw.split("#", 1)
        raw = raw.strip().lstrip("/")
    if not raw:
        raise EvidencePathError("empty file path")
    if clean is None:
        clean = product_dir.resolve() if product_dir.exists() else product_dir.absolute()
    own = f"{product_dir.absolute().parent.name}/{product_dir.absolute().name}/"
    if literal:
        pass
    elif raw.startswith(own):
        raw = raw[len(own) :]
    elif _PRODUCT_PREFIX.match(raw):
        raise EvidencePathError(
            f"path {link!r} references a different product directory;"
            f" evidence must live in {product_dir}"
        )
    parts: list[str] = []
    for part in PurePosixPath(raw.replace("\\", "/")).parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise EvidencePathError(
                    f"path {link!r} escapes the product directory {product_dir}"
                )
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        raise EvidencePathError(f"path {link!r} escapes the product directory {product_dir}")
    if "\x00" in raw:
        raise EvidencePathError(f"path {link!r} contains a NUL character")
    full = clean.joinpath(*parts)
    # A symlink inside the product dir must not lead outside it either.
    try:
        real = os.path.realpath(full)
        inside = real == str(clean) or real.startswith(str(clean).rstrip(os.sep) + os.sep)
        if not inside and exists(full):
            raise EvidencePathError(
                f"path {link!r} escapes the product directory {product_dir} (symlink)"
            )
    except (OSError, RuntimeError, ValueError) as e:
        raise EvidencePathError(f"path {link!r} cannot be resolved: {e}") from e
    return EvidenceRef(full, fragment)


def exists(path: Path) -> bool:
    """``path.exists()`` that says False for names the OS refuses (too long, NUL)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def artifact_kind(path: Path) -> str | None:
    """The artifact kind of a canonical basename (case-insensitive), else None."""
    return CANONICAL.get(path.name.lower())


class TestOutcome(StrEnum):
    __test__ = False
    PASS = "passed"
    FAIL = "failed"
    SKIP = "skipped"
    UNKNOWN = "not found"


@dataclass
class ArtifactReport:
    """Outcomes per test name (subtests as ``TestX/Sub``) and the failures."""

    tests: dict[str, TestOutcome] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def record(self, name: str, outcome: TestOutcome) -> None:
        # NOTE: a later result overrides an earlier one, but a failure is never downgraded.
        if self.tests.get(name) is TestOutcome.FAIL:
            return
        self.tests[name] = outcome
        if outcome is TestOutcome.FAIL:
            self.failures.append(name)

    def outcome_for(self, name: str) -> TestOutcome:
        """The test's outcome; without an exact entry its subtests are aggregated."""
        if name in self.tests:
            return self.tests[name]
        prefix = name + "/"
        subs = [o for n, o in self.tests.items() if n.startswith(prefix)]
        if not subs:
            return TestOutcome.UNKNOWN
        if TestOutcome.FAIL in subs:
            return TestOutcome.FAIL
        if all(o is TestOutcome.SKIP for o in subs):
            return TestOutcome.SKIP
        return TestOutcome.PASS


class ArtifactError(ValueError):
    """A test artifact that cannot be parsed."""


def parse_artifact(path: Path, kind: str) -> ArtifactReport:
    try:
        size = path.stat().st_size
        if size > MAX_ARTIFACT_BYTES:
            raise ArtifactError(f"file is {size} bytes; the limit is {MAX_ARTIFACT_BYTES}")
        data = path.read_bytes()
    except OSError as e:
        raise ArtifactError(f"cannot read: {e.strerror or e}") from e
    text = data.decode("utf-8", errors="replace")
    if kind == "junit":
        return parse_junit(text)
    if kind == "gotest-json":
        return parse_go_test_json(text)
    return parse_e2e_log(text)


def parse_junit(text: str) -> ArtifactReport:
    # NOTE: DTDs are refused outright, so entity expansion (billion laughs) cannot happen.
    if re.search(r"<!DOCTYPE|<!ENTITY", text, re.IGNORECASE):
        raise ArtifactError("parsing JUnit XML: DTDs and entities are not allowed")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ArtifactError(f"parsing JUnit XML: {e}") from e
    report = ArtifactReport()
    for tc in root.iter("testcase"):
        name = tc.get("name", "")
        if tc.find("failure") is not None or tc.find("error") is not None:
            report.record(name, TestOutcome.FAIL)
        elif tc.find("skipped") is not None:
            report.record(name, TestOutcome.SKIP)
        else:
            report.record(name, TestOutcome.PASS)
    if not report.tests:
        raise ArtifactError("parsing JUnit XML: no <testcase> elements found")
    return report


def parse_go_test_json(text: str) -> ArtifactReport:
    report = ArtifactReport()
    package_failures: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            ev = json.loads(line)
        except ValueError as e:
            raise ArtifactError(f"parsing go test JSON at line {n}: {e}") from e
        if not isinstance(ev, dict):
            raise ArtifactError(f"parsing go test JSON at line {n}: not an object")
        outcome = {
            "pass": TestOutcome.PASS,
            "fail": TestOutcome.FAIL,
            "skip": TestOutcome.SKIP,
        }.get(str(ev.get("Action", "")))
        if outcome is None:
            continue
        test = ev.get("Test") or ""
        if not test:
            if outcome is TestOutcome.FAIL:
                package_failures.append(str(ev.get("Package", "")))
            continue
        report.record(str(test), outcome)
    if not report.failures:
        report.failures.extend(f"package {p}" for p in package_failures)
    if not report.tests and not report.failures:
        raise ArtifactError("parsing go test JSON: no test events found")
    return report


def parse_e2e_log(text: str) -> ArtifactReport:
    report = ArtifactReport()
    table = {"PASS": TestOutcome.PASS, "FAIL": TestOutcome.FAIL, "SKIP": TestOutcome.SKIP}
    for line in text.splitlines():
        m = _E2E_LINE.match(line)
        if m:
            report.record(m.group(2), table[m.group(1)])
    if not report.tests:
        raise ArtifactError("parsing e2e log: no '--- PASS/FAIL/SKIP:' result lines found")
    return report
