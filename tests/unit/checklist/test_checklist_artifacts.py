"""Evidence paths and the three test artifact formats, as the official validator reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from checklist_helpers import e2e_log, junit_xml, results_json

from kaic.checklist.artifacts import (
    ArtifactError,
    EvidencePathError,
    TestOutcome,
    artifact_kind,
    parse_artifact,
    parse_e2e_log,
    parse_go_test_json,
    parse_junit,
    resolve_evidence,
)

TESTS = {
    "TestGangScheduling/PositiveGangScheduling": "PASS",
    "TestGangScheduling/NegativeGangScheduling": "SKIP",
    "TestSecureAcceleratorAccess/PositiveAccessTest": "SKIP",
    "TestSecureAcceleratorAccess/NegativeIsolationTest": "SKIP",
    "TestBroken/Sub": "FAIL",
    "TestBroken/Other": "PASS",
}


@pytest.mark.parametrize(
    "parse",
    [
        lambda: parse_junit(junit_xml(TESTS)),
        lambda: parse_e2e_log(e2e_log(TESTS)),
        lambda: parse_go_test_json(results_json(TESTS)),
    ],
)
def test_subtests_aggregate_any_fail_all_skip_else_pass(parse: object) -> None:
    rep = parse()  # type: ignore[operator]
    assert rep.outcome_for("TestGangScheduling") is TestOutcome.PASS
    assert rep.outcome_for("TestSecureAcceleratorAccess") is TestOutcome.SKIP
    assert rep.outcome_for("TestBroken") is TestOutcome.FAIL
    assert rep.outcome_for("TestMissing") is TestOutcome.UNKNOWN
    assert rep.failures == ["TestBroken/Sub"]


def test_a_failure_is_never_downgraded_by_a_later_pass() -> None:
    rep = parse_e2e_log("--- FAIL: TestA (1s)\n--- PASS: TestA (1s)\n")
    assert rep.outcome_for("TestA") is TestOutcome.FAIL


def test_a_package_failure_without_test_failure_is_a_failure() -> None:
    rep = parse_go_test_json('{"Action":"fail","Package":"ai"}\n')
    assert rep.failures == ["package ai"]


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parse_junit, "<testsuites></testsuites>", "no <testcase> elements found"),
        (parse_junit, "not xml", "parsing JUnit XML"),
        (
            parse_junit,
            '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
            "DTDs and entities are not allowed",
        ),
        (parse_go_test_json, "{broken\n", "parsing go test JSON at line 1"),
        (parse_go_test_json, "[1]\n", "not an object"),
        (parse_go_test_json, '{"Action":"run","Test":"TestA"}\n', "no test events found"),
        (parse_e2e_log, "I0101 ginkgo output\n", "no '--- PASS/FAIL/SKIP:' result lines found"),
    ],
)
def test_unparseable_artifacts(parse: object, text: str, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        parse(text)  # type: ignore[operator]


def test_only_canonical_names_are_artifacts() -> None:
    assert artifact_kind(Path("x/JUnit.xml")) == "junit"
    assert artifact_kind(Path("results.json")) == "gotest-json"
    assert artifact_kind(Path("e2e.log")) == "e2e-log"
    assert artifact_kind(Path("e2e-results.log")) is None
    assert artifact_kind(Path("junit_01.xml")) is None


def test_an_oversized_artifact_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kaic.checklist.artifacts as a

    monkeypatch.setattr(a, "MAX_ARTIFACT_BYTES", 10)
    (tmp_path / "e2e.log").write_text("--- PASS: TestA (1s)\n")
    with pytest.raises(ArtifactError, match="the limit is 10"):
        parse_artifact(tmp_path / "e2e.log", "e2e-log")


@pytest.mark.parametrize(
    ("link", "path", "fragment"),
    [
        ("junit.xml", "junit.xml", ""),
        ("file://junit.xml#TestGangScheduling", "junit.xml", "TestGangScheduling"),
        ("file:///results/e2e.log", "results/e2e.log", ""),
        ("file://v1.37/acme/junit.xml#T", "junit.xml", "T"),
        ("./docs/../evidence.md", "evidence.md", ""),
    ],
)
def test_evidence_links_resolve_inside_the_product_dir(
    tmp_path: Path, link: str, path: str, fragment: str
) -> None:
    pdir = tmp_path / "v1.37" / "acme"
    pdir.mkdir(parents=True)
    ref = resolve_evidence(pdir, link)
    assert ref.path == pdir.resolve() / path and ref.fragment == fragment


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("", "empty file path"),
        ("file://#TestA", "empty file path"),
        ("..", "escapes the product directory"),
        ("a/../../b", "escapes the product directory"),
        ("v1.36/acme/junit.xml", "references a different product directory"),
        ("v1.37/other/junit.xml", "references a different product directory"),
    ],
)
def test_evidence_links_that_leave_the_product_dir_are_refused(
    tmp_path: Path, link: str, message: str
) -> None:
    pdir = tmp_path / "v1.37" / "acme"
    pdir.mkdir(parents=True)
    with pytest.raises(EvidencePathError, match=message):
        resolve_evidence(pdir, link)
