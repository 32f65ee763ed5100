"""``junit.xml`` in the shape gotestsum writes: one ``<testcase>`` per test and per
sub-test, ``<failure>`` for FAIL, ``<error>`` for ERROR, ``<skipped>`` for SKIP/MANUAL.

Owns: the XML. Kept small (kubernetes#111510): full logs live in ``evidence/``.
Must not write files.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from kaic.model import Outcome
from kaic.report.gotest import PACKAGE, elapsed, parse_time
from kaic.runner.record import ResultEntry, RunRecord


def _case(suite: ET.Element, name: str, outcome: Outcome, reason: str, seconds: float) -> None:
    case = ET.SubElement(suite, "testcase", classname=PACKAGE, name=name, time=f"{seconds:.3f}")
    if outcome is Outcome.FAIL:
        ET.SubElement(case, "failure", message="Failed", type="").text = reason
    elif outcome is Outcome.ERROR:
        ET.SubElement(case, "error", message="Could not decide", type="").text = reason
    elif outcome in (Outcome.SKIP, Outcome.MANUAL):
        ET.SubElement(case, "skipped", message=f"{outcome.value}: {reason}")


Case = tuple[str, Outcome, str, float]

EXTENDED_SUITE = f"{PACKAGE}/extended"
"""The testsuite of kaic's extended profile, apart from the checklist's requirements."""


def _cases(entries: list[ResultEntry]) -> list[Case]:
    cases: list[Case] = []
    for e in entries:
        r = e.result
        cases.append((r.test_name, r.outcome, r.reason, r.duration_s))
        cases.extend(
            (f"{r.test_name}/{s.name}", s.outcome, s.reason, s.duration_s) for s in r.subresults
        )
    return cases


def _counts(cases: list[Case]) -> dict[str, str]:
    return {
        "tests": str(len(cases)),
        "failures": str(sum(1 for c in cases if c[1] is Outcome.FAIL)),
        "errors": str(sum(1 for c in cases if c[1] is Outcome.ERROR)),
        "skipped": str(sum(1 for c in cases if c[1] in (Outcome.SKIP, Outcome.MANUAL))),
    }


def render_junit(record: RunRecord) -> str:
    """One testsuite for the checklist's requirements and, when the run has any, one
    more (``kaic/extended``) for the extended profile."""
    official = _cases([e for e in record.results if not e.is_extended])
    extended = _cases([e for e in record.results if e.is_extended])
    total = f"{elapsed(record):.3f}"
    both = _counts(official + extended)
    root = ET.Element(
        "testsuites",
        tests=both["tests"],
        failures=both["failures"],
        errors=both["errors"],
        time=total,
    )
    stamp = parse_time(record.started_at).strftime("%Y-%m-%dT%H:%M:%SZ")
    suites = [(PACKAGE, official)] + ([(EXTENDED_SUITE, extended)] if extended else [])
    for name, cases in suites:
        attrs = {
            **_counts(cases),
            "time": total if name == PACKAGE else f"{sum(c[3] for c in cases):.3f}",
            "name": name,
            "timestamp": stamp,
        }
        suite = ET.SubElement(root, "testsuite", attrs)
        props = ET.SubElement(suite, "properties")
        for key, value in (
            ("kaic.run_id", record.run_id),
            ("kaic.catalog_version", record.catalog_version),
            ("kaic.server_version", str(record.cluster.get("server_version", ""))),
            ("kaic.interrupted", str(record.interrupted).lower()),
            *([("kaic.profile", "extended")] if name == EXTENDED_SUITE else []),
        ):
            ET.SubElement(props, "property", name=key, value=value)
        for case in cases:
            _case(suite, *case)
    ET.indent(root, space="\t")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
