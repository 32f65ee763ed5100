"""``init``, ``status`` and ``upgrade``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from checklist_helpers import edit, requirement, validate, write_valid
from ruamel.yaml.scalarstring import DoubleQuotedScalarString as DQ

from kaic import catalog as cat
from kaic.checklist import yamlio
from kaic.checklist.findings import Severity
from kaic.checklist.lifecycle import add_one_year, certification_status, upgrade_checklist
from kaic.checklist.template import init_checklist, render_template
from kaic.errors import InputError, UnknownVersionError, UsageError


@pytest.mark.parametrize("version", cat.versions())
def test_init_without_values_writes_the_official_template_but_an_empty_repo_url(
    tmp_path: Path, version: str
) -> None:
    # the shipped templates equal the official ones byte for byte (tests/unit/test_catalog.py)
    target = init_checklist(tmp_path / f"v{version}" / "acme", version, {})
    template = cat.template_text(version)
    assert target.read_text() == template.replace('repoUrl: "[Repository URL]"', 'repoUrl: ""')
    assert 'repoUrl: "[Repository URL]"' in template


def test_init_changes_only_the_given_metadata_lines(tmp_path: Path) -> None:
    target = init_checklist(
        tmp_path / "v1.36" / "acme",
        "1.36",
        {
            "vendorName": "Acme Corp",
            "k8sConformanceUrl": "https://github.com/cncf/k8s-conformance/tree/master/v1.36/acme",
        },
    )
    before = cat.template_text("1.36").splitlines()
    after = target.read_text().splitlines()
    assert len(after) == len(before) + 1
    changed = [(a, b) for a, b in zip(before, after, strict=False) if a != b]
    assert changed[0] == ('  vendorName: "[Vendor Name]"', '  vendorName: "Acme Corp"')
    i = after.index('  contactEmailAddress: "[Contact Email Address]"')
    assert after[i + 1] == (
        '  k8sConformanceUrl: "https://github.com/cncf/k8s-conformance/tree/master/v1.36/acme"'
    )
    assert after[i + 2] == ""


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    d = tmp_path / "v1.37" / "acme"
    init_checklist(d, "1.37", {})
    (d / "PRODUCT.yaml").write_text("mine\n")
    with pytest.raises(UsageError, match="exists; pass --force"):
        init_checklist(d, "1.37", {})
    assert (d / "PRODUCT.yaml").read_text() == "mine\n"
    init_checklist(d, "1.37", {}, force=True)
    assert (d / "PRODUCT.yaml").read_text() != "mine\n"
    assert (d / "PRODUCT.yaml.bak").read_text() == "mine\n"


def test_init_refuses_a_folder_of_another_version(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"under v1\.36 but --version is 1\.37"):
        init_checklist(tmp_path / "v1.36" / "acme", "1.37", {})


def test_init_refuses_an_unknown_version_and_multi_line_values(tmp_path: Path) -> None:
    with pytest.raises(UnknownVersionError):
        init_checklist(tmp_path / "v1.20" / "acme", "1.20", {})
    with pytest.raises(UsageError, match="one line"):
        render_template("1.37", {"description": "two\nlines"})


def test_add_one_year_handles_the_leap_day() -> None:
    assert add_one_year(dt.date(2028, 2, 29)) == dt.date(2029, 2, 28)
    assert add_one_year(dt.date(2026, 3, 31)) == dt.date(2027, 3, 31)


def test_status_reports_days_left_and_the_renewal_todo(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.35")
    st = certification_status(p, dt.date(2026, 3, 1), today=dt.date(2026, 11, 28))
    assert (st.valid_until, st.days_left, st.expired) == (dt.date(2027, 3, 1), 93, False)
    assert st.kubernetes_version == "v1.35"
    assert st.newer_versions == ["1.36", "1.37"]
    todo = {(t["version"], t["requirement_id"]): t["todo"] for t in st.renewal}
    assert todo[("1.36", "dra_support")] == "drop it: removed from the checklist"
    assert todo[("1.36", "advanced_inference_ingress")] == "consider the new SHOULD requirement"
    assert todo[("1.37", "workload_sandboxing")] == "consider the new SHOULD requirement"


def test_status_reports_an_expired_certification(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.37")
    st = certification_status(p, dt.date(2025, 1, 10), today=dt.date(2026, 11, 28))
    assert st.expired and st.days_left == -322
    assert st.newer_versions == [] and st.renewal == []


def test_status_flags_a_should_that_became_must(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.33")
    st = certification_status(p, dt.date(2026, 1, 1), today=dt.date(2026, 2, 1))
    todo = {(t["version"], t["requirement_id"]): t["todo"] for t in st.renewal}
    assert todo[("1.34", "dra_support")] == (
        "now MUST in v1.34: it must be Implemented (today: '')"
    )


def test_status_refuses_a_future_date_and_an_unknown_version(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.37")
    with pytest.raises(UsageError, match="in the future"):
        certification_status(p, dt.date(2030, 1, 1), today=dt.date(2026, 1, 1))
    q = tmp_path / "loose" / "PRODUCT.yaml"
    q.parent.mkdir()
    q.write_text("metadata: {kubernetesVersion: latest}\nspec: {}\n")
    with pytest.raises(InputError, match="cannot tell the checklist version"):
        certification_status(q, dt.date(2026, 1, 1))


def test_upgrade_keeps_answers_drops_removed_and_adds_new(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.35")

    def answer(d: Any) -> None:
        r = requirement(d, "gpu_sharing")
        r["status"], r["notes"] = DQ("Implemented"), DQ("MIG and time-slicing")
        r["evidence"].append(DQ("https://docs.acme.example/gpu-sharing"))

    edit(p, answer)
    out = tmp_path / "v1.36" / "acme" / "PRODUCT.yaml"
    res = upgrade_checklist(p, "1.36", output=out)
    assert res.removed == ["dra_support"]
    assert res.added == [
        "advanced_inference_ingress",
        "high_performance_networking",
        "disaggregated_inference",
    ]
    assert "gang_scheduling" in res.kept and "gpu_sharing" in res.kept
    doc = yamlio.load_file(out).doc
    assert doc["metadata"]["kubernetesVersion"] == "v1.36"
    assert doc["metadata"]["k8sConformanceUrl"].endswith("/v1.37/acme")
    gpu = requirement(doc, "gpu_sharing")
    assert (gpu["status"], gpu["notes"], list(gpu["evidence"])) == (
        "Implemented",
        "MIG and time-slicing",
        ["https://docs.acme.example/gpu-sharing"],
    )
    assert out.read_text().startswith(cat.template_text("1.36").split("metadata:")[0])
    for name in (
        "gang_scheduling.md",
        "ai_inference.md",
        "accelerator_metrics.md",
        "ai_service_metrics.md",
        "pod_autoscaling.md",
        "robust_controller.md",
        "secure_accelerator_access.md",
        "cluster_autoscaling.md",
        "junit.xml",
    ):
        (out.parent / name).write_bytes((p.parent / name).read_bytes())
    errors = [f for f in validate(out) if f.severity is Severity.ERROR]
    assert errors == []


def test_upgrade_points_repo_root_style_evidence_at_the_new_folder(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.36")
    edit(
        p,
        lambda d: requirement(d, "gang_scheduling")["evidence"].__setitem__(
            1, DQ("file://v1.36/acme/junit.xml#TestGangScheduling")
        ),
    )
    out = tmp_path / "v1.37" / "acme" / "PRODUCT.yaml"
    res = upgrade_checklist(p, "1.37", output=out)
    ev = list(requirement(yamlio.load_file(out).doc, "gang_scheduling")["evidence"])
    assert ev[1] == "file://v1.37/acme/junit.xml#TestGangScheduling"
    assert '"file://v1.37/acme/junit.xml#TestGangScheduling"' in out.read_text()
    assert any("now file://v1.37/acme/junit.xml" in n for n in res.notes)


def test_upgrade_in_place_keeps_a_backup_and_flags_level_changes(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.33")
    before = p.read_bytes()
    res = upgrade_checklist(p, "1.34")
    assert res.backup is not None and res.backup.read_bytes() == before
    assert any(r.startswith("dra_support: level SHOULD -> MUST") for r in res.review)
    assert any("move it to v1.34/acme/" in n for n in res.notes)


def test_upgrade_writes_snake_case_metadata_in_camel_case(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.36")
    edit(p, lambda d: d["metadata"].__setitem__("website_url", d["metadata"].pop("websiteUrl")))
    out = tmp_path / "v1.37" / "acme" / "PRODUCT.yaml"
    res = upgrade_checklist(p, "1.37", output=out)
    assert "metadata website_url written as websiteUrl" in res.notes
    assert yamlio.load_file(out).doc["metadata"]["websiteUrl"] == "https://acme.example"


def test_upgrade_refuses_to_go_back_or_stay(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.36")
    for to in ("1.35", "1.36"):
        with pytest.raises(UsageError, match="is not newer"):
            upgrade_checklist(p, to)


# --- issue 16: init, upgrade and status -----------------------------------------------------


def test_init_without_repo_url_leaves_no_placeholder_the_validators_reject(tmp_path: Path) -> None:
    meta = {
        "platformName": "P",
        "platformVersion": "1",
        "vendorName": "V",
        "websiteUrl": "https://v.example",
        "documentationUrl": "https://v.example/d",
        "productLogoUrl": "https://v.example/l.svg",
        "description": "d.",
        "contactEmailAddress": "a@v.example",
        "k8sConformanceUrl": "https://github.com/cncf/k8s-conformance/tree/master/v1.37/acme",
    }
    for values in ({}, meta):
        d = tmp_path / str(len(values)) / "v1.37" / "acme"
        target = init_checklist(d, "1.37", values)
        rules = {f.rule for f in validate(target) if "repoUrl" in f.message}
        assert rules == set(), rules


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("vendorName", "\udcff", "--vendor: the value is not valid UTF-8"),
        ("platformName", "a\nb", "--platform: the value must be one line"),
        ("contactEmailAddress", "a\x1b[31m", "--contact-email: the value contains the control"),
    ],
)
def test_init_refuses_values_that_are_not_one_line_of_text(
    key: str, value: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[")):
        render_template("1.37", {key: value})


def test_upgrade_to_another_folder_says_which_evidence_files_to_copy(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.36")
    out = tmp_path / "v1.37" / "acme" / "PRODUCT.yaml"
    res = upgrade_checklist(p, "1.37", out)
    copies = [n for n in res.notes if n.startswith("copy ")]
    assert any(n.startswith("copy junit.xml from ") for n in copies), res.notes
    assert any(n.startswith("copy gang_scheduling.md from ") for n in copies)


def test_upgrade_output_over_an_existing_file_needs_force_and_keeps_a_backup(
    tmp_path: Path,
) -> None:
    p = write_valid(tmp_path, "1.36")
    other = tmp_path / "v1.37" / "other" / "PRODUCT.yaml"
    other.parent.mkdir(parents=True)
    other.write_text("another product\n")
    with pytest.raises(UsageError, match="exists; pass --force"):
        upgrade_checklist(p, "1.37", other)
    assert other.read_text() == "another product\n"
    res = upgrade_checklist(p, "1.37", other, force=True)
    assert res.backup is not None and res.backup.read_text() == "another product\n"


def test_status_on_the_last_representable_day_is_a_usage_error(tmp_path: Path) -> None:
    p = write_valid(tmp_path, "1.35")
    with pytest.raises(UsageError, match="9999-12-31"):
        certification_status(p, dt.date(9999, 12, 31), today=dt.date(9999, 12, 31))


def test_versions_in_other_scripts_digits_are_refused() -> None:
    with pytest.raises(UnknownVersionError):
        cat.normalize_version("\u0661.\u0663\u0666")
    from kaic.checklist.validate import folder_version

    assert folder_version(Path("v\u0661.\u0663\u0666/acme/PRODUCT.yaml")) is None
