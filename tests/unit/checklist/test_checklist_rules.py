"""Every validator rule: a passing and a failing case, asserting message and location."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from checklist_helpers import (
    edit,
    junit_xml,
    line_of,
    of_rule,
    requirement,
    validate,
    write_valid,
)
from ruamel.yaml.scalarstring import DoubleQuotedScalarString as DQ

from kaic.checklist.findings import RULES, Finding, Severity
from kaic.checklist.validate import Revision, ValidateOptions, validate_paths


@pytest.fixture
def valid(tmp_path: Path) -> Path:
    return write_valid(tmp_path, "1.37")


def expect(
    findings: list[Finding],
    rule: str,
    message: str,
    at: tuple[int, int] | None,
    severity: Severity = Severity.ERROR,
) -> Finding:
    """Exactly one finding of ``rule`` with this message (substring) and location."""
    hits = [f for f in of_rule(findings, rule) if message in f.message]
    assert len(hits) == 1, f"{rule}: {message!r} not found once in " + "\n".join(
        f"{f.line}:{f.column} {f.rule} {f.message}" for f in findings
    )
    f = hits[0]
    assert f.severity is severity
    if at is not None:
        assert (f.line, f.column) == at, f"{rule} at {(f.line, f.column)}, expected {at}"
    assert f.hint, f"{rule} has no hint"
    return f


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity is Severity.ERROR]


# --- the passing case for every rule ------------------------------------------------------


@pytest.mark.parametrize("version", ["1.33", "1.34", "1.35", "1.36", "1.37"])
def test_a_filled_checklist_of_every_version_has_no_error_or_warning(
    tmp_path: Path, version: str
) -> None:
    findings = validate(write_valid(tmp_path, version))
    assert [f for f in findings if f.severity is not Severity.NOT_CHECKED] == []
    # offline: the URLs and the vendor are reported as not checked, never passed silently
    assert {f.rule for f in findings} == {"url.not-checked", "metadata.vendor-member"}


def test_every_rule_has_a_failing_case_in_this_module() -> None:
    source = Path(__file__).read_text()
    for other in ("test_checklist_input_safety.py", "test_checklist_urls.py"):
        source += (Path(__file__).parent / other).read_text()
    missing = [r for r in RULES if f'"{r}"' not in source]
    assert missing == []


# --- input --------------------------------------------------------------------------------


def test_a_missing_file_is_unreadable_with_exit_code_2(tmp_path: Path) -> None:
    report = validate_paths(
        [tmp_path / "v1.37" / "x" / "PRODUCT.yaml"], ValidateOptions(offline=True)
    )
    expect(report.files[0].findings, "input.unreadable", "cannot read file: No such file", (1, 1))
    assert report.exit_code() == 2


def test_a_non_mapping_root_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "v1.37" / "x" / "PRODUCT.yaml"
    p.parent.mkdir(parents=True)
    p.write_text("- just\n- a list\n")
    expect(validate(p), "schema.root", "the document is a list, not a mapping", (1, 1))


# --- version ------------------------------------------------------------------------------


def test_a_file_outside_a_version_folder_is_reported_and_still_checked(
    tmp_path: Path, valid: Path
) -> None:
    other = tmp_path / "elsewhere" / "PRODUCT.yaml"
    other.parent.mkdir()
    other.write_text(valid.read_text())
    findings = validate(other)
    expect(findings, "version.folder", "Could not determine version from path", (1, 1))
    assert of_rule(findings, "spec.missing-requirement") == []  # checked against v1.37


def test_a_folder_version_without_template_is_reported(tmp_path: Path, valid: Path) -> None:
    other = tmp_path / "v1.30" / "acme" / "PRODUCT.yaml"
    other.parent.mkdir(parents=True)
    other.write_text(valid.read_text())
    findings = validate(other)
    expect(findings, "version.template", "Schema not found at docs/AIConformance-1.30.yaml", (1, 1))
    expect(findings, "version.mismatch", "disagrees", None) if of_rule(
        findings, "version.mismatch"
    ) else None


def test_kubernetes_version_disagreeing_with_the_folder_is_an_error(valid: Path) -> None:
    edit(valid, lambda d: d["metadata"].__setitem__("kubernetesVersion", "v1.36"))
    f = expect(
        validate(valid),
        "version.mismatch",
        "kubernetesVersion 'v1.36' disagrees with the folder v1.37",
        line_of(valid, "v1.36"),
    )
    assert "upgrade" in f.hint


def test_a_patch_kubernetes_version_is_a_warning(valid: Path) -> None:
    edit(valid, lambda d: d["metadata"].__setitem__("kubernetesVersion", "v1.37.3"))
    findings = validate(valid)
    expect(
        findings,
        "version.patch",
        "kubernetesVersion 'v1.37.3' has a patch version",
        line_of(valid, "v1.37.3"),
        Severity.WARNING,
    )
    assert errors(findings) == []


def test_garbage_kubernetes_version_is_an_error(valid: Path) -> None:
    edit(valid, lambda d: d["metadata"].__setitem__("kubernetesVersion", "latest"))
    expect(
        validate(valid),
        "version.mismatch",
        "kubernetesVersion 'latest' is not a version",
        line_of(valid, "latest"),
    )


# --- metadata -----------------------------------------------------------------------------


def test_missing_metadata_section(valid: Path) -> None:
    edit(valid, lambda d: d.__setitem__("metadata", None))
    expect(
        validate(valid),
        "metadata.missing-section",
        "Missing 'metadata' section",
        line_of(valid, "metadata:"),
    )


def test_missing_metadata_field_is_reported_at_the_metadata_key(valid: Path) -> None:
    edit(valid, lambda d: d["metadata"].pop("websiteUrl"))
    expect(
        validate(valid),
        "metadata.missing",
        "Missing metadata field: websiteUrl (or website_url)",
        line_of(valid, "metadata:"),
    )


def test_snake_case_metadata_keys_are_accepted(valid: Path) -> None:
    def snake(d: Any) -> None:
        d["metadata"]["website_url"] = d["metadata"].pop("websiteUrl")
        d["metadata"]["k8s_conformance_url"] = d["metadata"].pop("k8sConformanceUrl")

    edit(valid, snake)
    findings = validate(valid)
    assert of_rule(findings, "metadata.missing") == []
    assert of_rule(findings, "metadata.unknown-key") == []


def test_missing_repo_url_is_fine_because_it_is_optional(valid: Path) -> None:
    edit(valid, lambda d: d["metadata"].pop("repoUrl"))
    assert errors(validate(valid)) == []


def test_missing_k8s_conformance_url_hints_that_templates_lack_it(valid: Path) -> None:
    edit(valid, lambda d: d["metadata"].pop("k8sConformanceUrl"))
    f = expect(
        validate(valid),
        "metadata.missing",
        "Missing metadata field: k8sConformanceUrl",
        line_of(valid, "metadata:"),
    )
    assert "templates lack it" in f.hint


def test_non_string_metadata(valid: Path) -> None:
    edit(valid, lambda d: d["metadata"].__setitem__("platformVersion", 2.1))
    expect(
        validate(valid),
        "metadata.not-string",
        "Metadata field platformVersion is not a string",
        line_of(valid, "2.1"),
    )


def test_empty_metadata(valid: Path) -> None:
    edit(valid, lambda d: d["metadata"].__setitem__("description", DQ("")))
    line, col = line_of(valid, 'description: ""')
    expect(
        validate(valid),
        "metadata.empty",
        "Metadata field description is empty",
        (line, col + len("description: ")),
    )


def test_placeholder_metadata(valid: Path) -> None:
    edit(valid, lambda d: d["metadata"].__setitem__("vendorName", DQ("[Vendor Name]")))
    line, col = line_of(valid, '"[Vendor Name]"')
    expect(
        validate(valid),
        "metadata.placeholder",
        "Metadata field vendorName has placeholder value: [Vendor Name]",
        (line, col),
    )


def test_unknown_metadata_key_gets_a_did_you_mean(valid: Path) -> None:
    edit(valid, lambda d: d["metadata"].__setitem__("vendorname", "x"))
    f = expect(
        validate(valid),
        "metadata.unknown-key",
        "unknown metadata key 'vendorname'",
        line_of(valid, "vendorname:"),
        Severity.WARNING,
    )
    assert f.hint == "did you mean 'vendorName'?"


def test_logo_must_be_svg_eps_or_ai(valid: Path) -> None:
    edit(
        valid,
        lambda d: d["metadata"].__setitem__("productLogoUrl", DQ("https://acme.example/logo.png")),
    )
    expect(
        validate(valid),
        "metadata.logo-format",
        "productLogoUrl must link to an SVG, EPS, or AI file: https://acme.example/logo.png",
        line_of(valid, '"https://acme.example/logo.png"'),
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/cncf/k8s-conformance/tree/master/v1.35/acme",
        "https://github.com/cncf/k8s-conformance/tree/main/v1.37/acme/",
    ],
)
def test_k8s_conformance_url_pattern_accepts_master_and_main(valid: Path, url: str) -> None:
    edit(valid, lambda d: d["metadata"].__setitem__("k8sConformanceUrl", DQ(url)))
    assert of_rule(validate(valid), "metadata.k8s-conformance-url") == []


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/cncf/k8s-conformance/pull/123",
        "http://github.com/cncf/k8s-conformance/tree/master/v1.35/acme",
        "https://github.com/cncf/k8s-conformance/tree/master/v1.35/acme/extra",
    ],
)
def test_k8s_conformance_url_pattern_rejects_other_links(valid: Path, url: str) -> None:
    edit(valid, lambda d: d["metadata"].__setitem__("k8sConformanceUrl", DQ(url)))
    expect(
        validate(valid),
        "metadata.k8s-conformance-url",
        f"Invalid k8sConformanceUrl format: {url}. Expected format: https://github.com/cncf/"
        "k8s-conformance/tree/master/v{version}/{product}",
        line_of(valid, f'"{url}"'),
    )


def test_k8s_conformance_url_of_another_product_is_a_warning(valid: Path) -> None:
    url = "https://github.com/cncf/k8s-conformance/tree/master/v1.37/other"
    edit(valid, lambda d: d["metadata"].__setitem__("k8sConformanceUrl", DQ(url)))
    expect(
        validate(valid),
        "metadata.k8s-conformance-product",
        "k8sConformanceUrl names product 'other', but this checklist is in 'acme'",
        line_of(valid, f'"{url}"'),
        Severity.WARNING,
    )


def test_vendor_member_is_not_checked_without_members(valid: Path) -> None:
    expect(
        validate(valid),
        "metadata.vendor-member",
        "vendorName 'Acme Corp' was not checked against the CNCF members",
        line_of(valid, '"Acme Corp"'),
        Severity.NOT_CHECKED,
    )


def test_vendor_member_passes_for_an_exact_member(valid: Path) -> None:
    findings = validate(valid, members=frozenset({"Acme Corp", "Other"}))
    assert of_rule(findings, "metadata.vendor-member") == []


def test_vendor_member_fails_with_the_official_message_and_a_did_you_mean(valid: Path) -> None:
    f = expect(
        validate(valid, members=frozenset({"Acme Corporation", "Other"})),
        "metadata.vendor-member",
        "vendorName 'Acme Corp' does not match any CNCF member in the CNCF Landscape. "
        "The vendorName must exactly match the organization name listed at "
        "https://landscape.cncf.io/members",
        line_of(valid, '"Acme Corp"'),
    )
    assert f.hint == "did you mean 'Acme Corporation'?"


# --- spec structure -----------------------------------------------------------------------


def test_missing_spec_section(valid: Path) -> None:
    edit(valid, lambda d: d.__setitem__("spec", None))
    expect(
        validate(valid), "spec.missing-section", "Missing 'spec' section", line_of(valid, "spec:")
    )


def test_missing_category(valid: Path) -> None:
    edit(valid, lambda d: d["spec"].pop("operator"))
    expect(
        validate(valid),
        "spec.missing-category",
        "Missing spec category: operator",
        line_of(valid, "spec:"),
    )


def test_unknown_category(valid: Path) -> None:
    edit(valid, lambda d: d["spec"].__setitem__("storage", []))
    expect(
        validate(valid),
        "spec.unknown-category",
        "unknown spec category 'storage'",
        line_of(valid, "storage:"),
    )


def test_a_category_that_is_not_a_list(valid: Path) -> None:
    edit(valid, lambda d: d["spec"].__setitem__("operator", "robust_controller"))
    expect(
        validate(valid),
        "spec.category-type",
        "category 'operator' must be a list of requirements, found a string",
        line_of(valid, "robust_controller"),
    )


def test_missing_requirement(valid: Path) -> None:
    edit(valid, lambda d: d["spec"]["operator"].pop(0))
    line = line_of(valid, "operator:")
    expect(
        validate(valid),
        "spec.missing-requirement",
        "Missing requirement 'robust_controller' in category 'operator'",
        line,
    )


def test_unknown_id_gets_a_did_you_mean(valid: Path) -> None:
    edit(valid, lambda d: requirement(d, "gang_scheduling").__setitem__("id", "gang_schedulng"))
    findings = validate(valid)
    f = expect(
        findings,
        "spec.unknown-id",
        "unknown requirement id 'gang_schedulng'",
        line_of(valid, "gang_schedulng"),
    )
    assert f.hint == "did you mean 'gang_scheduling'?"
    expect(findings, "spec.missing-requirement", "Missing requirement 'gang_scheduling'", None)


def test_duplicate_id(valid: Path) -> None:
    def dup(d: Any) -> None:
        d["spec"]["operator"].append(d["spec"]["operator"][0].copy())

    edit(valid, dup)
    line, col = line_of(valid, "id: robust_controller", 2)
    expect(
        validate(valid),
        "spec.duplicate-id",
        "requirement 'robust_controller' appears more than once (first at line",
        (line, col + len("id: ")),
    )


def test_id_under_the_wrong_category(valid: Path) -> None:
    def move(d: Any) -> None:
        d["spec"]["security"].append(d["spec"]["operator"].pop(0))

    edit(valid, move)
    findings = validate(valid)
    expect(
        findings,
        "spec.wrong-category",
        "requirement 'robust_controller' is under 'security' but belongs to 'operator'",
        line_of(valid, "robust_controller"),
    )
    f = expect(
        findings, "spec.missing-requirement", "Missing requirement 'robust_controller'", None
    )
    assert f.hint == "it is under 'security'; move it"


def test_changed_description(valid: Path) -> None:
    edit(
        valid,
        lambda d: requirement(d, "ai_inference").__setitem__(
            "description", DQ("Support the Gateway API.")
        ),
    )
    expect(
        validate(valid),
        "spec.description-changed",
        "description of 'ai_inference' differs from the v1.37 template",
        line_of(valid, '"Support the Gateway API."'),
    )


def test_changed_level(valid: Path) -> None:
    edit(valid, lambda d: requirement(d, "gpu_sharing").__setitem__("level", "MUST"))
    expect(
        validate(valid),
        "spec.level-changed",
        "level of 'gpu_sharing' is 'MUST' but the v1.37 template says SHOULD",
        None,
    )


def test_evidence_as_a_string_is_a_type_error(valid: Path) -> None:
    edit(
        valid,
        lambda d: requirement(d, "gang_scheduling").__setitem__(
            "evidence", DQ("https://docs.acme.example/gang")
        ),
    )
    expect(
        validate(valid),
        "spec.field-type",
        "evidence of 'gang_scheduling' must be a list, found a string",
        line_of(valid, '"https://docs.acme.example/gang"'),
    )


def test_status_as_a_mapping_is_a_type_error(valid: Path) -> None:
    edit(
        valid,
        lambda d: requirement(d, "gang_scheduling").__setitem__("status", {"value": "Implemented"}),
    )
    expect(
        validate(valid),
        "spec.field-type",
        "status of 'gang_scheduling' must be a string, found a mapping",
        None,
    )


# --- answers ------------------------------------------------------------------------------


def test_an_unanswered_should_is_skipped(valid: Path) -> None:
    assert of_rule(validate(valid), "status.invalid") == []  # the SHOULDs are all ""


def test_an_invalid_status_lists_the_canonical_ones(valid: Path) -> None:
    edit(valid, lambda d: requirement(d, "gpu_sharing").__setitem__("status", DQ("Maybe")))
    expect(
        validate(valid),
        "status.invalid",
        "Invalid status 'Maybe' for 'gpu_sharing'. Must "
        "be one of [Implemented Not Implemented Partially Implemented N/A]",
        line_of(valid, '"Maybe"'),
    )


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("Not Applicable", "N/A"),
        ("NA", "N/A"),
        ("implemented", "Implemented"),
        ("Partial", "Partially Implemented"),
        ("Not implemented", "Not Implemented"),
    ],
)
def test_a_non_canonical_status_gets_a_did_you_mean(valid: Path, written: str, meant: str) -> None:
    def answer(d: Any) -> None:
        r = requirement(d, "gpu_sharing")
        r["status"] = DQ(written)
        r["notes"] = DQ("no such hardware")

    edit(valid, answer)
    f = expect(
        validate(valid),
        "status.non-canonical",
        f"Invalid status '{written}' for 'gpu_sharing'",
        line_of(valid, f'"{written}"'),
    )
    assert f.hint == f"did you mean '{meant}'?"


def test_a_must_not_implemented_is_an_error(valid: Path) -> None:
    edit(
        valid,
        lambda d: requirement(d, "gang_scheduling").__setitem__(
            "status", DQ("Partially Implemented")
        ),
    )
    expect(
        validate(valid),
        "status.must-implemented",
        "Requirement 'gang_scheduling' is MUST "
        "level but status is 'Partially Implemented'. It must be 'Implemented'.",
        line_of(valid, '"Partially Implemented"'),
    )


def _conditional_na(
    d: Any,
    notes: str = "On-premises bare metal: fixed node pools, no cluster autoscaler is offered.",
) -> None:
    r = requirement(d, "cluster_autoscaling")
    r["status"] = DQ("N/A")
    r["notes"] = DQ(notes)
    r["evidence"].clear()


def test_a_conditional_must_may_be_na_with_a_justification_as_a_warning(valid: Path) -> None:
    edit(valid, _conditional_na)
    findings = validate(valid)
    expect(
        findings,
        "status.conditional-must-na",
        "Requirement 'cluster_autoscaling' is MUST "
        "level and marked N/A; review the justification in notes",
        line_of(valid, '"N/A"'),
        Severity.WARNING,
    )
    assert errors(findings) == []


def test_revision_b2c8969_rejects_a_conditional_must_answered_na(valid: Path) -> None:
    edit(valid, _conditional_na)
    expect(
        validate(valid, revision=Revision.B2C8969),
        "status.must-implemented",
        "Requirement 'cluster_autoscaling' is MUST level but status is 'N/A'. It must be "
        "'Implemented'.",
        line_of(valid, '"N/A"'),
    )


def test_strict_is_the_newest_rule_and_accepts_cluster_autoscaling_na(valid: Path) -> None:
    edit(valid, _conditional_na)
    findings = validate(valid, strict=True)
    assert errors(findings) == []
    assert "b2c8969 rejects it" in of_rule(findings, "status.conditional-must-na")[0].hint


def test_a_non_conditional_must_may_not_be_na(valid: Path) -> None:
    def na(d: Any) -> None:
        r = requirement(d, "robust_controller")
        r["status"], r["notes"] = DQ("N/A"), DQ("no operators")

    edit(valid, na)
    findings = validate(valid)
    expect(
        findings,
        "status.must-implemented",
        "Requirement 'robust_controller' is MUST level "
        "but status is 'N/A'. It must be 'Implemented'.",
        None,
    )
    assert of_rule(findings, "status.conditional-must-na") == []


def test_pod_autoscaling_is_not_a_conditional_must_in_the_newest_revision(valid: Path) -> None:
    def na(d: Any) -> None:
        r = requirement(d, "pod_autoscaling")
        r["status"], r["notes"] = DQ("N/A"), DQ("no HPA on this platform")

    edit(valid, na)
    findings = validate(valid)
    expect(
        findings,
        "status.must-implemented",
        "Requirement 'pod_autoscaling' is MUST level "
        "but status is 'N/A'. It must be 'Implemented'.",
        line_of(valid, '"N/A"'),
    )
    assert of_rule(findings, "status.conditional-must-na") == []


def test_cluster_autoscaling_not_implemented_mentions_na(valid: Path) -> None:
    edit(
        valid,
        lambda d: requirement(d, "cluster_autoscaling").__setitem__(
            "status", DQ("Not Implemented")
        ),
    )
    for strict in (False, True):
        expect(
            validate(valid, strict=strict),
            "status.must-implemented",
            "Requirement "
            "'cluster_autoscaling' is MUST level but status is 'Not Implemented'. It must "
            "be 'Implemented', or 'N/A' with a justification in notes.",
            line_of(valid, '"Not Implemented"'),
        )


def test_a_conditional_must_na_without_notes_is_an_error(valid: Path) -> None:
    edit(valid, lambda d: _conditional_na(d, ""))
    findings = validate(valid)
    expect(
        findings,
        "notes.required",
        "Notes required for 'cluster_autoscaling' when status is N/A",
        None,
    )


def test_na_needs_notes(valid: Path) -> None:
    edit(valid, lambda d: _conditional_na(d, "   "))
    expect(
        validate(valid),
        "notes.required",
        "Notes required for 'cluster_autoscaling' when status is N/A",
        line_of(valid, '"   "'),
    )


def test_na_on_a_should_with_notes_is_valid(valid: Path) -> None:
    def na(d: Any) -> None:
        r = requirement(d, "virtualized_accelerator")
        r["status"], r["notes"] = DQ("N/A"), DQ("Bare-metal GPUs only; no hypervisor layer.")

    edit(valid, na)
    assert errors(validate(valid)) == []


def test_a_must_implemented_without_evidence_is_an_error(valid: Path) -> None:
    edit(valid, lambda d: requirement(d, "ai_inference")["evidence"].clear())
    expect(
        validate(valid),
        "evidence.empty-must",
        "'ai_inference' is a MUST answered Implemented but has no evidence",
        None,
    )


def test_missing_local_evidence_file(valid: Path) -> None:
    (valid.parent / "ai_inference.md").unlink()
    line, col = line_of(valid, '"ai_inference.md"')
    expect(
        validate(valid),
        "evidence.file-missing",
        "Invalid evidence file for 'ai_inference':"
        f" ai_inference.md (not found at {valid.parent.resolve() / 'ai_inference.md'})",
        (line, col),
    )


def test_repo_root_style_evidence_of_the_own_product_is_accepted(valid: Path) -> None:
    edit(
        valid,
        lambda d: requirement(d, "ai_inference")["evidence"].__setitem__(
            0, DQ("file://v1.37/acme/ai_inference.md")
        ),
    )
    assert errors(validate(valid)) == []


@pytest.mark.parametrize(
    ("link", "why"),
    [
        ("../other/ai_inference.md", "escapes the product directory"),
        ("file://../../v1.36/acme/x.md", "escapes the product directory"),
        ("v1.36/acme/ai_inference.md", "references a different product directory"),
        ("file://v1.37/other/junit.xml#TestGangScheduling", "references a different product"),
    ],
)
def test_evidence_outside_the_product_dir_is_rejected(valid: Path, link: str, why: str) -> None:
    edit(valid, lambda d: requirement(d, "ai_inference")["evidence"].append(DQ(link)))
    expect(
        validate(valid),
        "evidence.path-escape",
        f"Invalid evidence file for 'ai_inference': {link} (path {link!r} {why}",
        line_of(valid, f'"{link}"'),
    )


def test_symlinked_evidence_leading_outside_is_rejected(tmp_path: Path, valid: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    (valid.parent / "link.md").symlink_to(secret)
    edit(valid, lambda d: requirement(d, "ai_inference")["evidence"].append(DQ("link.md")))
    expect(validate(valid), "evidence.path-escape", "(symlink)", line_of(valid, '"link.md"'))


def test_evidence_urls_are_not_checked_offline(valid: Path) -> None:
    edit(
        valid,
        lambda d: requirement(d, "ai_inference")["evidence"].append(
            DQ("https://docs.acme.example/gateway")
        ),
    )
    expect(
        validate(valid),
        "url.not-checked",
        "not checked: https://docs.acme.example/gateway (--offline)",
        line_of(valid, '"https://docs.acme.example/gateway"'),
        Severity.NOT_CHECKED,
    )


# --- test artifacts -----------------------------------------------------------------------


def _with_junit(
    valid: Path, tests: dict[str, str], link: str, rid: str = "gang_scheduling"
) -> None:
    base = {"TestSecureAcceleratorAccess": "PASS", "TestAcceleratorClusterAutoscaling": "PASS"}
    (valid.parent / "junit.xml").write_text(junit_xml({**base, **tests}))

    def point(d: Any) -> None:
        ev = requirement(d, rid)["evidence"]
        ev.clear()
        ev.append(DQ(link))

    edit(valid, point)


def test_a_passing_referenced_test_is_accepted(valid: Path) -> None:
    _with_junit(valid, {"TestGangScheduling": "PASS"}, "file://junit.xml#TestGangScheduling")
    assert errors(validate(valid)) == []


def test_an_artifact_that_is_not_junit_is_invalid(valid: Path) -> None:
    (valid.parent / "junit.xml").write_text("this is a ginkgo log, not XML")
    expect(
        validate(valid),
        "artifact.invalid",
        "Invalid test artifact for 'gang_scheduling': file://junit.xml (parsing JUnit XML:",
        line_of(valid, '"file://junit.xml#TestGangScheduling"'),
    )


def test_an_artifact_with_failing_tests_is_rejected(valid: Path) -> None:
    _with_junit(
        valid,
        {"TestGangScheduling": "PASS", "TestOther": "FAIL"},
        "file://junit.xml#TestGangScheduling",
    )
    expect(
        validate(valid),
        "artifact.failing-tests",
        "Test artifact file://junit.xml contains failing tests: TestOther",
        None,
    )


def test_a_referenced_test_that_is_not_in_the_artifact(valid: Path) -> None:
    _with_junit(valid, {"TestSomethingElse": "PASS"}, "file://junit.xml#TestGangScheduling")
    expect(
        validate(valid),
        "artifact.test-not-found",
        "Test 'TestGangScheduling' referenced "
        "by 'gang_scheduling' was not found in file://junit.xml",
        line_of(valid, '"file://junit.xml#TestGangScheduling"'),
    )


def test_a_referenced_test_that_failed_through_a_subtest(valid: Path) -> None:
    _with_junit(
        valid,
        {
            "TestGangScheduling/PositiveGangScheduling": "PASS",
            "TestGangScheduling/NegativeGangScheduling": "FAIL",
        },
        "file://junit.xml#TestGangScheduling",
    )
    expect(
        validate(valid),
        "artifact.test-failed",
        "Test 'TestGangScheduling' referenced by 'gang_scheduling' failed in file://junit.xml",
        None,
    )


def test_a_skipped_test_on_implemented_is_rejected(valid: Path) -> None:
    (valid.parent / "e2e.log").write_text(
        "=== RUN   TestAcceleratorClusterAutoscaling\n"
        "--- SKIP: TestAcceleratorClusterAutoscaling (0.00s)\nok\n"
    )
    edit(valid, lambda d: requirement(d, "cluster_autoscaling")["evidence"].append(DQ("e2e.log")))
    expect(
        validate(valid),
        "artifact.test-skipped",
        "Requirement 'cluster_autoscaling' is "
        "Implemented but test 'TestAcceleratorClusterAutoscaling' was skipped in e2e.log",
        line_of(valid, '"e2e.log"'),
    )


def test_a_skipped_test_on_na_is_accepted(valid: Path) -> None:
    (valid.parent / "e2e.log").write_text(
        "--- SKIP: TestAcceleratorClusterAutoscaling (0.00s)\nok\n"
    )

    def na(d: Any) -> None:
        _conditional_na(d)
        requirement(d, "cluster_autoscaling")["evidence"].append(DQ("file://e2e.log"))

    edit(valid, na)
    assert errors(validate(valid)) == []


def test_implemented_auto_tested_without_artifacts_gets_a_warning_on_1_37(valid: Path) -> None:
    edit(valid, lambda d: requirement(d, "gang_scheduling")["evidence"].__delitem__(1))
    expect(
        validate(valid),
        "artifact.recommended",
        "Requirement 'gang_scheduling' is covered "
        "by automated test 'TestGangScheduling'; including test artifacts (e2e.log, "
        "junit.xml, or results.json) as evidence is recommended for v1.37+ submissions",
        None,
        Severity.WARNING,
    )


def test_no_artifact_warning_before_1_37(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.36")
    edit(p, lambda d: requirement(d, "gang_scheduling")["evidence"].__delitem__(1))
    assert of_rule(validate(p), "artifact.recommended") == []


def test_findings_are_all_collected_and_sorted_by_position(valid: Path) -> None:
    def many(d: Any) -> None:
        d["metadata"]["vendorName"] = DQ("[Vendor Name]")
        requirement(d, "ai_inference")["status"] = DQ("Not Applicable")
        d["spec"].pop("operator")

    edit(valid, many)
    findings = errors(validate(valid))
    assert {
        "metadata.placeholder",
        "status.non-canonical",
        "status.must-implemented",
        "spec.missing-category",
    } <= {f.rule for f in findings}
    positions = [(f.line, f.column) for f in validate(valid)]
    assert positions == sorted(positions)


def test_docs_list_every_rule() -> None:
    docs = (Path(__file__).parents[3] / "docs" / "checklist.md").read_text()
    assert [r for r in RULES if f"| `{r}` |" not in docs] == []


def test_rule_table_entries_name_the_official_counterpart_or_none() -> None:
    for r in RULES.values():
        assert r.checks and r.official
        assert re.fullmatch(r"[a-z0-9]+(\.[a-z0-9-]+)+", r.id)


# --- agreement with the official validator's revisions (issue 16, B1–B9) -------------------


def test_an_empty_string_is_no_evidence_for_an_implemented_must(valid: Path) -> None:
    edit(valid, lambda d: requirement(d, "robust_controller").__setitem__("evidence", [""]))
    expect(
        validate(valid),
        "evidence.empty-must",
        "'robust_controller' is a MUST answered Implemented but has no evidence",
        None,
    )


@pytest.mark.parametrize(
    "raw", ["2026-01-01", "1e3", "0o17", "017", "0x1F", "1_000", ".5", "true", "2026-1-2 10:00:00"]
)
def test_metadata_is_typed_as_yaml_v3_types_it(valid: Path, raw: str) -> None:
    text = valid.read_text()
    valid.write_text(re.sub(r"platformVersion: .*", f"platformVersion: {raw}", text, count=1))
    expect(
        validate(valid),
        "metadata.not-string",
        "Metadata field platformVersion is not a string",
        None,
    )


@pytest.mark.parametrize("raw", ["2.1.0", "v2", "1e309", "yes", "2026-13-01", "1.2.3-rc1"])
def test_metadata_yaml_v3_reads_as_a_string_passes(valid: Path, raw: str) -> None:
    text = valid.read_text()
    valid.write_text(re.sub(r"platformVersion: .*", f"platformVersion: {raw}", text, count=1))
    assert of_rule(validate(valid), "metadata.not-string") == []


def test_a_plain_scalar_status_is_read_as_its_text(valid: Path) -> None:
    text = valid.read_text()
    valid.write_text(text.replace('status: "Implemented"', "status: 1e3", 1))
    expect(validate(valid), "status.invalid", "Invalid status '1e3'", None)


def _pre_hybrid(tmp_path: Path, version: str = "1.35") -> Path:
    return write_valid(tmp_path, version)


def test_a_ginkgo_e2e_log_before_v1_37_only_has_to_exist_in_revision_b2c8969(
    tmp_path: Path,
) -> None:
    p = _pre_hybrid(tmp_path, "1.34")
    (p.parent / "e2e.log").write_text("Ran 11 of 7000 Specs\nSUCCESS! -- 11 Passed | 0 Failed\n")
    edit(p, lambda d: requirement(d, "robust_controller")["evidence"].append(DQ("e2e.log")))
    assert errors(validate(p, revision=Revision.B2C8969)) == []
    # the newest revision parses canonical artifact names in every version folder
    found = expect(
        validate(p),
        "artifact.invalid",
        "Invalid test artifact for 'robust_controller': e2e.log",
        None,
    )
    assert "revision b2c8969 only checks that the file exists" in found.hint


@pytest.mark.parametrize(
    "link", ["gateway.md#weighted-routing", "file://gateway.md", "v1.36/acme/gateway.md"]
)
def test_hybrid_style_evidence_before_v1_37_is_decided_per_revision(
    tmp_path: Path, link: str
) -> None:
    p = _pre_hybrid(tmp_path, "1.36")
    (p.parent / "gateway.md").write_text("# gateway\n")
    edit(p, lambda d: requirement(d, "ai_inference")["evidence"].append(DQ(link)))
    old = validate(p, revision=Revision.B2C8969)
    expect(
        old,
        "evidence.file-missing",
        f"Invalid evidence file for 'ai_inference': {link} (not found at ",
        None,
    )
    new = validate(p)
    assert errors(new) == []
    expect(
        new,
        "evidence.revision-differs",
        f"evidence '{link}' of 'ai_inference'",
        None,
        Severity.WARNING,
    )


def test_a_logo_url_with_a_query_is_judged_by_its_path(valid: Path) -> None:
    text = valid.read_text()
    valid.write_text(
        text.replace(
            "https://acme.example/logo.svg",
            "https://github.com/acme/brand/blob/main/logo.svg?raw=true",
        )
    )
    assert of_rule(validate(valid), "metadata.logo-format") == []
    valid.write_text(
        text.replace("https://acme.example/logo.svg", "https://acme.example/logo.png?x=.svg")
    )
    expect(validate(valid), "metadata.logo-format", "productLogoUrl must link", None)


def test_a_block_description_with_its_trailing_newline_is_the_template_text(valid: Path) -> None:
    def block(d: Any) -> None:
        from ruamel.yaml.scalarstring import LiteralScalarString

        r = requirement(d, "gang_scheduling")
        r["description"] = LiteralScalarString(str(r["description"]) + "\n")

    edit(valid, block)
    assert "description: |" in valid.read_text()
    assert of_rule(validate(valid), "spec.description-changed") == []

    def two(d: Any) -> None:
        from ruamel.yaml.scalarstring import LiteralScalarString

        r = requirement(d, "gang_scheduling")
        r["description"] = LiteralScalarString(str(r["description"]) + "\n\n")

    edit(valid, two)
    expect(validate(valid), "spec.description-changed", "gang_scheduling", None)


def test_a_missing_evidence_file_is_shown_relative_as_the_official_validator_prints_it(
    valid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = valid.parent.parent.parent
    monkeypatch.chdir(root)
    rel = valid.relative_to(root)
    edit(valid, lambda d: requirement(d, "robust_controller")["evidence"].append(DQ("missing.md")))
    findings = validate_paths([rel], ValidateOptions(offline=True)).files[0].findings
    expect(
        findings,
        "evidence.file-missing",
        "Invalid evidence file for 'robust_controller': "
        "missing.md (not found at v1.37/acme/missing.md)",
        None,
    )


def test_blank_na_notes_are_notes_required_in_the_newest_and_notes_blank_in_b2c8969(
    valid: Path,
) -> None:
    edit(valid, lambda d: _conditional_na(d, "   "))
    expect(validate(valid), "notes.required", "Notes required for 'cluster_autoscaling'", None)
    old = validate(valid, revision=Revision.B2C8969)
    expect(old, "notes.blank", "Notes of 'cluster_autoscaling' are blank", None)
    assert of_rule(old, "notes.required") == []
