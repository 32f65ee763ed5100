"""``fill``: answers from a run bundle, round-trip edits, never overwriting a person."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from checklist_helpers import edit, requirement, validate, write_bundle
from ruamel.yaml.scalarstring import DoubleQuotedScalarString as DQ

from kaic.checklist import yamlio
from kaic.checklist.fill import fill_checklist, read_bundle
from kaic.checklist.findings import Severity
from kaic.checklist.template import render_template
from kaic.errors import InputError, UsageError

META = {"platformName": "Acme AI", "platformVersion": "2.1.0", "vendorName": "Acme Corp",
        "websiteUrl": "https://acme.example", "repoUrl": "https://github.com/acme/ai",
        "documentationUrl": "https://docs.acme.example", "description": "Acme AI.",
        "productLogoUrl": "https://acme.example/logo.svg",
        "contactEmailAddress": "ai@acme.example",
        "k8sConformanceUrl": "https://github.com/cncf/k8s-conformance/tree/master/v1.37/acme"}


def _product(root: Path, version: str = "1.37", meta: dict[str, str] | None = None) -> Path:
    p = root / f"v{version}" / "acme" / "PRODUCT.yaml"
    p.parent.mkdir(parents=True)
    p.write_text(render_template(version, META if meta is None else meta))
    return p


def _doc(p: Path) -> Any:
    return yamlio.load_file(p).doc


RESULTS = [
    {"requirement_id": "gang_scheduling", "test_name": "TestGangScheduling", "outcome": "PASS"},
    {"requirement_id": "secure_accelerator_access", "test_name": "TestSecureAcceleratorAccess",
     "outcome": "PASS"},
    {"requirement_id": "cluster_autoscaling", "test_name": "TestAcceleratorClusterAutoscaling",
     "outcome": "SKIP", "not_applicable": True,
     "reason": "no autoscaled accelerator node pool: the platform has fixed pools"},
    {"requirement_id": "accelerator_metrics", "test_name": "TestAcceleratorPerformanceMetrics",
     "outcome": "ERROR", "reason": "metrics endpoint timed out"},
    {"requirement_id": "ai_inference", "test_name": "TestAIInference", "outcome": "MANUAL",
     "reason": "needs documentation"},
    {"requirement_id": "workload_sandboxing", "test_name": "TestWorkloadSandboxing",
     "outcome": "SKIP", "reason": "--skip"},
]


def test_pass_becomes_implemented_with_the_test_artifacts_as_evidence(tmp_path: Path) -> None:
    p = _product(tmp_path)
    bundle = write_bundle(tmp_path / "run", RESULTS)
    res = fill_checklist(p, bundle)
    doc = _doc(p)
    gang = requirement(doc, "gang_scheduling")
    assert gang["status"] == "Implemented"
    assert list(gang["evidence"]) == ["file://junit.xml#TestGangScheduling", "file://e2e.log"]
    assert gang["notes"] == ""
    for name in ("junit.xml", "e2e.log", "results.json"):
        assert (p.parent / name).read_bytes() == (bundle / name).read_bytes()
    assert res.written and res.backup is not None


def test_not_applicable_skip_becomes_na_with_the_reason(tmp_path: Path) -> None:
    p = _product(tmp_path)
    fill_checklist(p, write_bundle(tmp_path / "run", RESULTS))
    ca = requirement(_doc(p), "cluster_autoscaling")
    assert (ca["status"], ca["notes"], list(ca["evidence"])) == (
        "N/A", "no autoscaled accelerator node pool: the platform has fixed pools", [])


def test_fail_becomes_not_implemented_with_the_reason(tmp_path: Path) -> None:
    p = _product(tmp_path)
    fill_checklist(p, write_bundle(tmp_path / "run", [
        {"requirement_id": "robust_controller", "test_name": "TestRobustCRDControllerOperation",
         "outcome": "FAIL", "reason": "webhook did not reject an invalid TrainJob"}]))
    rc = requirement(_doc(p), "robust_controller")
    assert rc["status"] == "Not Implemented"
    assert rc["notes"] == ("TestRobustCRDControllerOperation failed: webhook did not reject an"
                           " invalid TrainJob")


def test_error_manual_and_plain_skips_are_left_for_a_person(tmp_path: Path) -> None:
    p = _product(tmp_path)
    res = fill_checklist(p, write_bundle(tmp_path / "run", RESULTS))
    doc = _doc(p)
    for rid in ("accelerator_metrics", "ai_inference", "workload_sandboxing"):
        r = requirement(doc, rid)
        assert (r["status"], list(r["evidence"]), r["notes"]) == ("", [], "")
    left = {c.requirement_id: c.detail for c in res.changes if c.action == "left"}
    assert left == {"accelerator_metrics": "ERROR: metrics endpoint timed out",
                    "ai_inference": "MANUAL: needs documentation",
                    "workload_sandboxing": "SKIP: --skip"}


def test_a_persons_answer_is_kept_without_force_and_replaced_with_it(tmp_path: Path) -> None:
    p = _product(tmp_path)

    def person(d: Any) -> None:
        r = requirement(d, "gang_scheduling")
        r["status"] = DQ("Partially Implemented")
        r["notes"] = DQ("Volcano only")
    edit(p, person)
    bundle = write_bundle(tmp_path / "run", RESULTS)
    res = fill_checklist(p, bundle)
    assert requirement(_doc(p), "gang_scheduling")["status"] == "Partially Implemented"
    assert [c.requirement_id for c in res.conflicts] == ["gang_scheduling"]
    fill_checklist(p, bundle, force=True)
    assert requirement(_doc(p), "gang_scheduling")["status"] == "Implemented"


def test_a_persons_notes_and_evidence_are_kept(tmp_path: Path) -> None:
    p = _product(tmp_path)

    def person(d: Any) -> None:
        requirement(d, "cluster_autoscaling")["notes"] = DQ("Bare metal; nodes are fixed.")
        requirement(d, "gang_scheduling")["evidence"].append(DQ("https://docs.acme.example/k"))
    edit(p, person)
    res = fill_checklist(p, write_bundle(tmp_path / "run", RESULTS))
    doc = _doc(p)
    assert requirement(doc, "cluster_autoscaling")["notes"] == "Bare metal; nodes are fixed."
    assert list(requirement(doc, "gang_scheduling")["evidence"]) == [
        "https://docs.acme.example/k", "file://junit.xml#TestGangScheduling", "file://e2e.log"]
    assert "kept your notes" in {c.requirement_id: c.detail for c in res.changes}[
        "cluster_autoscaling"]


def test_a_single_string_evidence_is_kept_when_the_list_is_made(tmp_path: Path) -> None:
    p = _product(tmp_path)
    edit(p, lambda d: requirement(d, "gang_scheduling").__setitem__(
        "evidence", DQ("https://docs.acme.example/kueue")))
    fill_checklist(p, write_bundle(tmp_path / "run", RESULTS))
    assert list(requirement(_doc(p), "gang_scheduling")["evidence"]) == [
        "https://docs.acme.example/kueue", "file://junit.xml#TestGangScheduling",
        "file://e2e.log"]


def test_the_backup_holds_the_original_bytes(tmp_path: Path) -> None:
    p = _product(tmp_path)
    before = p.read_bytes()
    res = fill_checklist(p, write_bundle(tmp_path / "run", RESULTS))
    assert res.backup == p.with_name("PRODUCT.yaml.bak")
    assert res.backup.read_bytes() == before
    assert p.read_bytes() != before


def test_a_second_fill_changes_nothing_and_makes_no_backup(tmp_path: Path) -> None:
    p = _product(tmp_path)
    bundle = write_bundle(tmp_path / "run", RESULTS)
    fill_checklist(p, bundle)
    after = p.read_bytes()
    res = fill_checklist(p, bundle)
    assert not res.written and res.backup is None
    assert p.read_bytes() == after
    assert not p.with_name("PRODUCT.yaml.bak.1").exists()


def test_a_bundle_inside_the_product_dir_is_referenced_in_place(tmp_path: Path) -> None:
    p = _product(tmp_path)
    bundle = write_bundle(p.parent / "results", RESULTS)
    res = fill_checklist(p, bundle)
    assert res.copied == []
    assert list(requirement(_doc(p), "gang_scheduling")["evidence"]) == [
        "file://results/junit.xml#TestGangScheduling", "file://results/e2e.log"]


def test_a_different_artifact_in_the_product_dir_is_not_overwritten_without_force(
        tmp_path: Path) -> None:
    p = _product(tmp_path)
    (p.parent / "junit.xml").write_text("<testsuites/>")
    bundle = write_bundle(tmp_path / "run", RESULTS)
    before = p.read_bytes()
    with pytest.raises(UsageError, match=r"junit\.xml exists and differs"):
        fill_checklist(p, bundle)
    assert p.read_bytes() == before
    res = fill_checklist(p, bundle, force=True)
    assert (p.parent / "junit.xml").read_bytes() == (bundle / "junit.xml").read_bytes()
    assert any("replaced" in w for w in res.warnings)


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    p = _product(tmp_path)
    before = p.read_bytes()
    res = fill_checklist(p, write_bundle(tmp_path / "run", RESULTS), dry_run=True)
    assert p.read_bytes() == before and not res.written
    assert not (p.parent / "junit.xml").exists()
    assert any(c.action == "set" for c in res.changes)


def test_failing_tests_in_the_run_are_warned_about(tmp_path: Path) -> None:
    p = _product(tmp_path)
    res = fill_checklist(p, write_bundle(tmp_path / "run", [*RESULTS, {
        "requirement_id": "robust_controller", "test_name": "TestRobustCRDControllerOperation",
        "outcome": "FAIL", "reason": "x"}]))
    assert any("rejects test artifacts that contain failures" in w for w in res.warnings)


def test_a_filled_checklist_validates(tmp_path: Path) -> None:
    p = _product(tmp_path)
    ids = ["ai_inference", "gang_scheduling", "pod_autoscaling", "accelerator_metrics",
           "ai_service_metrics", "secure_accelerator_access", "robust_controller"]
    names = {"gang_scheduling": "TestGangScheduling",
             "secure_accelerator_access": "TestSecureAcceleratorAccess"}
    results = [{"requirement_id": rid, "test_name": names.get(rid, f"Test_{rid}"),
                "outcome": "PASS"} for rid in ids]
    results.append(RESULTS[2])  # cluster_autoscaling N/A
    fill_checklist(p, write_bundle(tmp_path / "run", results))
    findings = validate(p)
    assert [f for f in findings if f.severity is Severity.ERROR] == []
    assert {f.rule for f in findings if f.severity is Severity.WARNING} == {
        "status.conditional-must-na"}


@pytest.mark.parametrize(("content", "message"), [
    (None, "is not a kaic run bundle (no run.json)"),
    ("{not json", "is not valid JSON"),
    (json.dumps({"schema": "other"}), "schema must be 'kaic.io/run/v1'"),
    (json.dumps({"schema": "kaic.io/run/v1", "results": {}}), "'results' must be a list"),
    (json.dumps({"schema": "kaic.io/run/v1", "results": [{"requirement_id": "x",
                                                          "outcome": "MAYBE"}]}),
     "has outcome 'MAYBE'"),
])
def test_a_broken_bundle_is_an_input_error(tmp_path: Path, content: str | None,
                                           message: str) -> None:
    bundle = tmp_path / "run"
    bundle.mkdir()
    if content is not None:
        (bundle / "run.json").write_text(content)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_bundle(bundle)


def test_an_unreadable_checklist_is_an_input_error(tmp_path: Path) -> None:
    p = tmp_path / "v1.37" / "acme" / "PRODUCT.yaml"
    p.parent.mkdir(parents=True)
    p.write_text("metadata: [unclosed\n")
    with pytest.raises(InputError, match="cannot fill: YAML syntax error"):
        fill_checklist(p, write_bundle(tmp_path / "run", RESULTS))


def test_requirements_missing_from_the_checklist_version_are_reported(tmp_path: Path) -> None:
    p = _product(tmp_path, "1.36")
    res = fill_checklist(p, write_bundle(tmp_path / "run", RESULTS))
    assert {c.requirement_id: c.action for c in res.changes}["workload_sandboxing"] == "absent"
    assert any("catalog v1.37 but the checklist is v1.36" in w for w in res.warnings)


def test_fill_keeps_a_two_space_sequence_indent(tmp_path: Path) -> None:
    p = _product(tmp_path)
    text = p.read_text().replace("\n    - id", "\n  - id").replace("\n      ", "\n    ")
    p.write_text(text)
    fill_checklist(p, write_bundle(tmp_path / "run", RESULTS))
    out = p.read_text()
    assert "\n  - id: gang_scheduling\n" in out
    assert '    evidence:\n    - "file://junit.xml#TestGangScheduling"\n' in out
    changed = [a for a, b in zip(text.splitlines(), out.splitlines(), strict=False) if a != b]
    assert changed[0] == '    status: ""'
    assert read_bundle(tmp_path / "run").run_id == "20261128-101500-ab12cd"
