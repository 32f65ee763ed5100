"""The official validator's artifact rules (cncf/k8s-ai-conformance scripts/validate.go,
hybrid verification for v1.37+), re-stated in Python to read kaic's bundles the way the
validator will: canonical file names, JUnit ``<failure>``/``<error>`` = fail and
``<skipped>`` = skip, ``go test -json`` actions (every line must parse), ``e2e.log``
lines matching ``^\\s*--- (PASS|FAIL|SKIP): (\\S+)``, and sub-test aggregation
(any fail → fail, all skip → skip, else pass) when a name has no exact match."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

PASS, FAIL, SKIP, UNKNOWN = "passed", "failed", "skipped", "not found"
_E2E = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+)")


@dataclass
class ArtifactReport:
    tests: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def record(self, name: str, outcome: str) -> None:
        if self.tests.get(name) == FAIL:
            return
        self.tests[name] = outcome
        if outcome == FAIL:
            self.failures.append(name)

    def outcome_for(self, name: str) -> str:
        if name in self.tests:
            return self.tests[name]
        subs = [o for n, o in self.tests.items() if n.startswith(name + "/")]
        if not subs:
            return UNKNOWN
        if FAIL in subs:
            return FAIL
        if all(o == SKIP for o in subs):
            return SKIP
        return PASS


def parse_junit(path: Path) -> ArtifactReport:
    report = ArtifactReport()
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            report.record(case.get("name", ""), FAIL)
        elif case.find("skipped") is not None:
            report.record(case.get("name", ""), SKIP)
        else:
            report.record(case.get("name", ""), PASS)
    if not report.tests:
        raise ValueError("parsing JUnit XML: no <testcase> elements found")
    return report


def parse_go_test_json(path: Path) -> ArtifactReport:
    report = ArtifactReport()
    package_failures = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        ev = json.loads(line)  # the validator rejects the whole file on a bad line
        outcome = {"pass": PASS, "fail": FAIL, "skip": SKIP}.get(ev.get("Action", ""))
        if outcome is None:
            continue
        if not ev.get("Test"):
            if outcome == FAIL:
                package_failures.append(ev.get("Package", ""))
            continue
        report.record(ev["Test"], outcome)
    if not report.failures:
        report.failures += [f"package {p}" for p in package_failures]
    if not report.tests and not report.failures:
        raise ValueError("parsing go test JSON: no test events found")
    return report


def parse_e2e_log(path: Path) -> ArtifactReport:
    report = ArtifactReport()
    for line in path.read_text().splitlines():
        m = _E2E.match(line)
        if m:
            report.record(m.group(2), {"PASS": PASS, "FAIL": FAIL, "SKIP": SKIP}[m.group(1)])
    if not report.tests:
        raise ValueError("parsing e2e log: no '--- PASS/FAIL/SKIP:' result lines found")
    return report


PARSERS = {"junit.xml": parse_junit, "results.json": parse_go_test_json, "e2e.log": parse_e2e_log}
