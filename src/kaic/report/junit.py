"""``junit.xml`` in the shape gotestsum writes: one ``<testcase>`` per test and per
sub-test, ``<failure>`` for FAIL, ``<error>`` for ERROR, ``<skipped>`` for SKIP/MANUAL.

Owns: the XML. Kept small (kubernetes#111510): full logs live in ``evidence/``.
Must not write files.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from kaic.model import Outcome
from kaic.report.gotest import PACKAGE, elapsed, parse_time
from kaic.runner.record import RunRecord


def _case(suite: ET.Element, name: str, outcome: Outcome, reason: str, seconds: float) -> None:
    case = ET.SubElement(suite, "testcase", classname=PACKAGE, name=name, time=f"{seconds:.3f}")
    if outcome is Outcome.FAIL:
        ET.SubElement(case, "failure", message="Failed", type="").text = reason
    elif outcome is Outcome.ERROR:
        ET.SubElement(case, "error", message="Could not decide", type="").text = reason
    elif outcome in (Outcome.SKIP, Outcome.MANUAL):
        ET.SubElement(case, "skipped", message=f"{outcome.value}: {reason}")


def render_junit(record: RunRecord) -> str:
    cases: list[tuple[str, Outcome, str, float]] = []
    for e in record.results:
        r = e.result
        cases.append((r.test_name, r.outcome, r.reason, r.duration_s))
        cases.extend(
            (f"{r.test_name}/{s.name}", s.outcome, s.reason, s.duration_s) for s in r.subresults
        )
    failures = sum(1 for c in cases if c[1] is Outcome.FAIL)
    errors = sum(1 for c in cases if c[1] is Outcome.ERROR)
    skipped = sum(1 for c in cases if c[1] in (Outcome.SKIP, Outcome.MANUAL))
    total = f"{elapsed(record):.3f}"
    root = ET.Element(
        "testsuites", tests=str(len(cases)), failures=str(failures), errors=str(errors), time=total
    )
    stamp = parse_time(record.started_at).strftime("%Y-%m-%dT%H:%M:%SZ")
    suite = ET.SubElement(
        root,
        "testsuite",
        tests=str(len(cases)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=total,
        name=PACKAGE,
        timestamp=stamp,
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("kaic.run_id", record.run_id),
        ("kaic.catalog_version", record.catalog_version),
        ("kaic.server_version", str(record.cluster.get("server_version", ""))),
        ("kaic.interrupted", str(record.interrupted).lower()),
    ):
        ET.SubElement(props, "property", name=key, value=value)
    for case in cases:
        _case(suite, *case)
    ET.indent(root, space="\t")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
