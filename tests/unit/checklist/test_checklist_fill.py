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

META = {
    "platformName": "Acme AI",
    "platformVersion": "2.1.0",
    "vendorName": "Acme Corp",
    "websiteUrl": "https://acme.example",
    "repoUrl": "https://github.com/acme/ai",
    "documentationUrl": "https://docs.acme.example",
    "description": "Acme AI.",
    "productLogoUrl": "https://acme.example/logo.svg",
    "contactEmailAddress": "ai@acme.example",
    "k8sConformanceUrl": "https://github.com/cncf/k8s-conformance/tree/master/v1.37/acme",
}


def _product(root: Path, version: str = "1.37", meta: dict[str, str] | None = None) -> Path:
    p = root / f"v{version}" / "acme" / "PRODUCT.yaml"
    p.parent.mkdir(parents=True)
    p.write_text(render_template(version, META if meta is None else meta))
    return p


def _doc(p: Path) -> Any:
    return yamlio.load_file(p).doc


RESULTS = [
    {"requirement_id": "gang_scheduling", "test_name": "TestGangScheduling", "outcome": "PASS"},
    {
        "requirement_id": "secure_accelerator_access",
        "test_name": "TestSecureAcceleratorAccess",
        "outcome": "PASS",
    },
    {
        "requirement_id": "cluster_autoscaling",
        "test_name": "TestAcceleratorClusterAutoscaling",
        "outcome": "SKIP",
        "not_applicable": True,
        "reason": "no autoscaled accelerator node pool: the platform has fixed pools",
    },
    {
        "requirement_id": "accelerator_metrics",
        "test_name": "TestAcceleratorPerformanceMetrics",
        "outcome": "ERROR",
        "reason": "metrics endpoint timed out",
    },
    {
        "requirement_id": "ai_inference",
        "test_name": "TestAIInference",
        "outcome": "MANUAL",
        "reason": "needs documentation",
    },
    {
        "requirement_id": "workload_sandboxing",
        "test_name": "TestWorkloadSandboxing",
        "outcome": "SKIP",
        "reason": "--skip",
    },
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
        "N/A",
        "no autoscaled accelerator node pool: the platform has fixed pools",
        [],
    )


def test_fail_becomes_not_implemented_with_the_reason(tmp_path: Path) -> None:
    p = _product(tmp_path)
    fill_checklist(
        p,
        write_bundle(
            tmp_path / "run",
            [
                {
                    "requirement_id": "robust_controller",
                    "test_name": "TestRobustCRDControllerOperation",
                    "outcome": "FAIL",
                    "reason": "webhook did not reject an invalid TrainJob",
                }
            ],
        ),
    )
    rc = requirement(_doc(p), "robust_controller")
    assert rc["status"] == "Not Implemented"
    assert rc["notes"] == (
        "TestRobustCRDControllerOperation failed: webhook did not reject an invalid TrainJob"
    )


def test_error_manual_and_plain_skips_are_left_for_a_person(tmp_path: Path) -> None:
    p = _product(tmp_path)
    res = fill_checklist(p, write_bundle(tmp_path / "run", RESULTS))
    doc = _doc(p)
    for rid in ("accelerator_metrics", "ai_inference", "workload_sandboxing"):
        r = requirement(doc, rid)
        assert (r["status"], list(r["evidence"]), r["notes"]) == ("", [], "")
    left = {c.requirement_id: c.detail for c in res.changes if c.action == "left"}
    assert left == {
        "accelerator_metrics": "ERROR: metrics endpoint timed out",
        "ai_inference": "MANUAL: needs documentation",
        "workload_sandboxing": "SKIP: --skip",
    }


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
        "https://docs.acme.example/k",
        "file://junit.xml#TestGangScheduling",
        "file://e2e.log",
    ]
    assert (
        "kept your notes"
        in {c.requirement_id: c.detail for c in res.changes}["cluster_autoscaling"]
    )


def test_a_single_string_evidence_is_kept_when_the_list_is_made(tmp_path: Path) -> None:
    p = _product(tmp_path)
    edit(
        p,
        lambda d: requirement(d, "gang_scheduling").__setitem__(
            "evidence", DQ("https://docs.acme.example/kueue")
        ),
    )
    fill_checklist(p, write_bundle(tmp_path / "run", RESULTS))
    assert list(requirement(_doc(p), "gang_scheduling")["evidence"]) == [
        "https://docs.acme.example/kueue",
        "file://junit.xml#TestGangScheduling",
        "file://e2e.log",
    ]


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
        "file://results/junit.xml#TestGangScheduling",
        "file://results/e2e.log",
    ]


def test_a_different_artifact_in_the_product_dir_is_not_overwritten_without_force(
    tmp_path: Path,
) -> None:
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
    res = fill_checklist(
        p,
        write_bundle(
            tmp_path / "run",
            [
                *RESULTS,
                {
                    "requirement_id": "robust_controller",
                    "test_name": "TestRobustCRDControllerOperation",
                    "outcome": "FAIL",
                    "reason": "x",
                },
            ],
        ),
    )
    assert any("rejects test artifacts that contain failures" in w for w in res.warnings)


def test_a_filled_checklist_validates(tmp_path: Path) -> None:
    p = _product(tmp_path)
    ids = [
        "ai_inference",
        "gang_scheduling",
        "pod_autoscaling",
        "accelerator_metrics",
        "ai_service_metrics",
        "secure_accelerator_access",
        "robust_controller",
    ]
    names = {
        "gang_scheduling": "TestGangScheduling",
        "secure_accelerator_access": "TestSecureAcceleratorAccess",
    }
    results = [
        {"requirement_id": rid, "test_name": names.get(rid, f"Test_{rid}"), "outcome": "PASS"}
        for rid in ids
    ]
    results.append(RESULTS[2])  # cluster_autoscaling N/A
    fill_checklist(p, write_bundle(tmp_path / "run", results))
    findings = validate(p)
    assert [f for f in findings if f.severity is Severity.ERROR] == []
    assert {f.rule for f in findings if f.severity is Severity.WARNING} == {
        "status.conditional-must-na"
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is not a kaic run bundle (no run.json)"),
        ("{not json", "is not valid JSON"),
        (json.dumps({"schema": "other"}), "schema must be 'kaic.io/run/v1'"),
        (json.dumps({"schema": "kaic.io/run/v1", "results": {}}), "'results' must be a list"),
        (
            json.dumps(
                {
                    "schema": "kaic.io/run/v1",
                    "results": [{"requirement_id": "x", "outcome": "MAYBE"}],
                }
            ),
            "has outcome 'MAYBE'",
        ),
    ],
)
def test_a_broken_bundle_is_an_input_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
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


# --- data safety (issue 16, D4–D8) -----------------------------------------------------------

PASS_GANG = [
    {"requirement_id": "gang_scheduling", "test_name": "TestGangScheduling", "outcome": "PASS"}
]


def test_fill_never_writes_an_artifact_through_a_link_out_of_the_product_folder(
    tmp_path: Path,
) -> None:
    p = _product(tmp_path)
    outside = tmp_path / "outside.xml"
    outside.write_text("precious")
    (p.parent / "junit.xml").symlink_to(outside)
    bundle = write_bundle(tmp_path / "run", PASS_GANG)
    before = p.read_bytes()
    for force in (False, True):
        with pytest.raises(UsageError, match="symbolic link"):
            fill_checklist(p, bundle, force=force)
    assert outside.read_text() == "precious" and p.read_bytes() == before


def test_fill_keeps_evidence_a_person_wrote(tmp_path: Path) -> None:
    p = _product(tmp_path)
    mine = "file://junit.xml#TestGangScheduling/PositiveGangScheduling"

    def person(d: Any) -> None:
        requirement(d, "gang_scheduling")["evidence"].append(DQ(mine))
        requirement(d, "cluster_autoscaling")["evidence"].append(DQ("file://e2e.log"))

    edit(p, person)
    res = fill_checklist(p, write_bundle(tmp_path / "run", RESULTS))
    doc = _doc(p)
    assert list(requirement(doc, "gang_scheduling")["evidence"]) == [
        mine,
        "file://junit.xml#TestGangScheduling",
        "file://e2e.log",
    ]
    assert list(requirement(doc, "cluster_autoscaling")["evidence"]) == ["file://e2e.log"]
    detail = {c.requirement_id: c.detail for c in res.changes}["gang_scheduling"]
    assert detail == (
        "Implemented: status '' -> 'Implemented'; evidence "
        "+file://junit.xml#TestGangScheduling; evidence +file://e2e.log"
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o664])
def test_fill_keeps_the_mode_of_the_file(tmp_path: Path, mode: int) -> None:
    p = _product(tmp_path)
    p.chmod(mode)
    fill_checklist(p, write_bundle(tmp_path / "run", PASS_GANG))
    assert p.stat().st_mode & 0o777 == mode
    assert p.with_name("PRODUCT.yaml.bak").stat().st_mode & 0o777 == mode


def test_fill_refuses_a_read_only_file(tmp_path: Path) -> None:
    p = _product(tmp_path)
    p.chmod(0o444)
    with pytest.raises(InputError, match="read-only"):
        fill_checklist(p, write_bundle(tmp_path / "run", PASS_GANG))


def test_new_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    p = _product(tmp_path)
    old = os.umask(0o027)
    try:
        fill_checklist(p, write_bundle(tmp_path / "run", PASS_GANG))
    finally:
        os.umask(old)
    assert (p.parent / "junit.xml").stat().st_mode & 0o777 == 0o640


def _only_answer_lines_changed(before: str, after: str) -> None:
    import difflib

    for line in difflib.ndiff(before.splitlines(keepends=True), after.splitlines(keepends=True)):
        if line.startswith("- "):
            assert line[2:].strip().startswith(("status:", "evidence:")), line
        elif line.startswith("+ "):
            assert line[2:].strip().startswith(("status:", "evidence:", '- "file://')), line


def test_fill_on_crlf_with_a_bom_changes_only_the_answered_lines(tmp_path: Path) -> None:
    p = _product(tmp_path)
    text = (
        p.read_text()
        .replace('platformName: "Acme AI"', "platformName: Acme\n    AI Platform")
        .replace('platformVersion: "2.1.0"', "platformVersion: 1e309")
        .replace('repoUrl: "https://github.com/acme/ai"', "repoUrl: null")
    )
    raw = ("\ufeff" + text.replace("\n", "\r\n")).encode()
    p.write_bytes(raw)
    fill_checklist(p, write_bundle(tmp_path / "run", PASS_GANG))
    out = p.read_bytes()
    assert out.startswith("\ufeff".encode())
    assert b"\n" not in out.replace(b"\r\n", b"")
    decoded = out.decode()[1:].replace("\r\n", "\n")
    assert "platformName: Acme\n    AI Platform" in decoded
    assert "platformVersion: 1e309" in decoded and "repoUrl: null" in decoded
    _only_answer_lines_changed(text, decoded)


def test_fill_keeps_a_flow_style_document_as_it_is_apart_from_the_answers(tmp_path: Path) -> None:
    import yaml as pyyaml

    p = _product(tmp_path)
    data = pyyaml.safe_load(p.read_text())
    text = pyyaml.safe_dump(data, default_flow_style=True, width=100_000, sort_keys=False)
    assert text.count("\n") == 1
    p.write_text(text)
    fill_checklist(p, write_bundle(tmp_path / "run", PASS_GANG))
    out = p.read_text()
    assert out.count("\n") == 1
    gang = requirement(_doc(p), "gang_scheduling")
    assert gang["status"] == "Implemented"
    assert list(gang["evidence"]) == ["file://junit.xml#TestGangScheduling", "file://e2e.log"]
    assert (
        out.replace('"Implemented"', "''", 1).replace(
            '["file://junit.xml#TestGangScheduling", "file://e2e.log"]', "[]", 1
        )
        == text
    )


def test_fill_edits_the_target_of_a_link_inside_the_product_folder(tmp_path: Path) -> None:
    p = _product(tmp_path)
    real = p.parent / "PRODUCT.real.yaml"
    p.rename(real)
    p.symlink_to(real.name)
    fill_checklist(p, write_bundle(tmp_path / "run", PASS_GANG))
    assert p.is_symlink()
    assert requirement(_doc(real), "gang_scheduling")["status"] == "Implemented"


def test_fill_refuses_a_link_to_a_file_outside_the_product_folder(tmp_path: Path) -> None:
    p = _product(tmp_path)
    outside = tmp_path / "elsewhere.yaml"
    p.rename(outside)
    p.symlink_to(outside)
    before = outside.read_bytes()
    with pytest.raises(UsageError, match="outside the product folder"):
        fill_checklist(p, write_bundle(tmp_path / "run", PASS_GANG))
    assert outside.read_bytes() == before


def test_advanced_inference_ingress_outcomes_fill_its_should_row(tmp_path: Path) -> None:
    reason = (
        "PoolAcceptedByGateway: HTTPRoute ns/kaic-aii-route: ResolvedRefs False (InvalidKind)"
        " from controller traefik.io/gateway-controller"
    )
    for outcome, status in (("PASS", "Implemented"), ("FAIL", "Not Implemented")):
        p = _product(tmp_path / outcome)
        row = {
            "requirement_id": "advanced_inference_ingress",
            "test_name": "TestAdvancedInferenceIngress",
            "outcome": outcome,
            **({"reason": reason} if outcome == "FAIL" else {}),
        }
        fill_checklist(p, write_bundle(tmp_path / outcome / "run", [row]))
        aii = requirement(_doc(p), "advanced_inference_ingress")
        assert aii["status"] == status
        if outcome == "FAIL":
            assert aii["notes"] == f"TestAdvancedInferenceIngress failed: {reason}"
