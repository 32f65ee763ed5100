"""Builders for checklist tests: valid PRODUCT.yaml files and run bundles (docs/bundle.md)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ruamel.yaml.scalarstring import DoubleQuotedScalarString as DQ

from kaic import catalog as cat
from kaic.checklist import yamlio
from kaic.checklist.findings import Finding
from kaic.checklist.template import render_template
from kaic.checklist.validate import OFFICIAL_AUTO_TESTED, ValidateOptions, validate_paths

META = {
    "platformName": "Acme AI Platform",
    "platformVersion": "2.1.0",
    "vendorName": "Acme Corp",
    "websiteUrl": "https://acme.example",
    "repoUrl": "https://github.com/acme/ai-platform",
    "documentationUrl": "https://docs.acme.example/ai",
    "productLogoUrl": "https://acme.example/logo.svg",
    "description": "Acme's Kubernetes platform for AI workloads.",
    "contactEmailAddress": "conformance@acme.example",
    "k8sConformanceUrl": "https://github.com/cncf/k8s-conformance/tree/master/v1.37/acme",
}


def junit_xml(tests: dict[str, str]) -> str:
    """JUnit XML with one testcase per name; outcome PASS, FAIL or SKIP."""
    cases = []
    for name, outcome in tests.items():
        body = {
            "FAIL": '<failure message="boom">boom</failure>',
            "SKIP": '<skipped message="n/a"/>',
        }.get(outcome, "")
        cases.append(f'    <testcase classname="ai" name="{name}" time="1.0">{body}</testcase>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n'
        f'  <testsuite name="ai" tests="{len(tests)}">\n'
        + "\n".join(cases)
        + "\n  </testsuite>\n</testsuites>\n"
    )


def e2e_log(tests: dict[str, str]) -> str:
    lines = []
    for name, outcome in tests.items():
        indent = "    " * name.count("/")
        lines += [f"=== RUN   {name}", f"{indent}--- {outcome}: {name} (1.00s)"]
    return "\n".join(lines) + "\nok\n"


def results_json(tests: dict[str, str]) -> str:
    action = {"PASS": "pass", "FAIL": "fail", "SKIP": "skip"}
    return "".join(
        json.dumps({"Action": action[o], "Package": "ai", "Test": n}) + "\n"
        for n, o in tests.items()
    )


_CACHE: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}


def write_valid(root: Path, version: str = "1.37", product: str = "acme") -> Path:
    """A valid, filled PRODUCT.yaml at root/vX.Y/product/ (valid offline, no warnings)."""
    pdir = root / f"v{version}" / product
    pdir.mkdir(parents=True)
    if (version, product) not in _CACHE:
        _CACHE[version, product] = _build_valid(version, product)
    text, files = _CACHE[version, product]
    for name, content in files.items():
        (pdir / name).write_text(content)
    path = pdir / "PRODUCT.yaml"
    path.write_text(text)
    return path


def _build_valid(version: str, product: str) -> tuple[str, dict[str, str]]:
    files: dict[str, str] = {}
    meta = dict(META)
    meta["k8sConformanceUrl"] = meta["k8sConformanceUrl"].replace("acme", product)
    doc = yamlio.load_text(render_template(version, meta), "t").doc
    c = cat.load(version)
    tests: dict[str, str] = {}
    for items in doc["spec"].values():
        for item in items:
            if c.get(item["id"]).level.value != "MUST":
                continue
            rid = item["id"]
            files[f"{rid}.md"] = f"# {rid}\nevidence\n"
            item["status"] = DQ("Implemented")
            item["evidence"].append(DQ(f"{rid}.md"))
            if rid in OFFICIAL_AUTO_TESTED:
                tests[OFFICIAL_AUTO_TESTED[rid]] = "PASS"
                # before v1.37 the plain name, which every official revision accepts
                item["evidence"].append(
                    DQ(
                        f"file://junit.xml#{OFFICIAL_AUTO_TESTED[rid]}"
                        if version >= "1.37"
                        else "junit.xml"
                    )
                )
            item["evidence"].fa.set_block_style()
    files["junit.xml"] = junit_xml(tests)
    return yamlio.dump(doc), files


def edit(path: Path, fn: Callable[[Any], None]) -> Path:
    """Round-trip edit ``path`` with ``fn(doc)``."""
    doc = yamlio.load_file(path).doc
    fn(doc)
    path.write_text(yamlio.dump(doc))
    return path


def requirement(doc: Any, rid: str) -> Any:
    for items in doc["spec"].values():
        for item in items:
            if item["id"] == rid:
                return item
    raise KeyError(rid)


def validate(path: Path, **opts: Any) -> list[Finding]:
    opts.setdefault("offline", True)
    return validate_paths([path], ValidateOptions(**opts)).files[0].findings


def of_rule(findings: Iterable[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def line_of(path: Path, needle: str, nth: int = 1) -> tuple[int, int]:
    """(line, column) of the nth occurrence of ``needle``, 1-based."""
    seen = 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            seen += 1
            if seen == nth:
                return n, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in {path}")


def write_bundle(
    bundle: Path,
    results: list[dict[str, Any]],
    catalog_version: str = "1.37",
    artifacts: bool = True,
) -> Path:
    """A run bundle in the documented format (docs/bundle.md)."""
    bundle.mkdir(parents=True, exist_ok=True)
    full = []
    for r in results:
        entry = {
            "requirement_id": r["requirement_id"],
            "test_name": r.get("test_name", ""),
            "level": r.get("level", "MUST"),
            "outcome": r["outcome"],
            "reason": r.get("reason", ""),
            "not_applicable": r.get("not_applicable", False),
            "duration_s": 1.0,
            "subresults": [],
            "evidence": [],
        }
        full.append(entry)
    run = {
        "schema": "kaic.io/run/v1",
        "run_id": "20261128-101500-ab12cd",
        "kaic_version": "0.1.0",
        "started_at": "2026-11-28T10:15:00Z",
        "finished_at": "2026-11-28T10:19:12Z",
        "interrupted": False,
        "cluster": {
            "server_version": "v1.37.0",
            "context": "kaic-lab",
            "server": "https://127.0.0.1:6443",
        },
        "catalog_version": catalog_version,
        "options": {"level": "all", "focus": None, "skip": None, "parallel": 2},
        "results": full,
    }
    (bundle / "run.json").write_text(json.dumps(run, indent=2))
    if artifacts:
        tests = {
            r["test_name"]: r["outcome"]
            for r in full
            if r["test_name"] and r["outcome"] in ("PASS", "FAIL", "SKIP")
        }
        (bundle / "junit.xml").write_text(junit_xml(tests))
        (bundle / "e2e.log").write_text(e2e_log(tests))
        (bundle / "results.json").write_text(results_json(tests))
    return bundle
