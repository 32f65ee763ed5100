"""``kaic checklist …``: formats, exit codes 0/1/2 and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from checklist_helpers import edit, requirement, write_bundle, write_valid
from ruamel.yaml.scalarstring import DoubleQuotedScalarString as DQ

from kaic.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_validate_a_valid_checklist_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write_valid(tmp_path)
    code, out, err = run(capsys, "checklist", "validate", "--offline", str(p))
    assert code == 0
    assert f"{p}:25:15: not-checked: not checked: https://acme.example (--offline)" in out
    assert err.strip().endswith("valid: 0 error(s), 0 warning(s), 6 not checked")


def test_validate_an_invalid_checklist_exits_1_with_file_line_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write_valid(tmp_path)
    edit(p, lambda d: requirement(d, "ai_inference").__setitem__("status", DQ("Not Applicable")))
    code, out, _ = run(capsys, "checklist", "validate", "--offline", str(p))
    assert code == 1
    line = next(n for n, t in enumerate(p.read_text().splitlines(), 1) if "Not Applicable" in t)
    assert (
        f"{p}:{line}:15: error: Invalid status 'Not Applicable' for 'ai_inference'. Must be"
        " one of [Implemented Not Implemented Partially Implemented N/A] "
        "[status.non-canonical]\n    hint: did you mean 'N/A'?"
    ) in out


def test_validate_json_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_valid(tmp_path)
    code, out, _ = run(
        capsys, "checklist", "validate", "--offline", "--format", "json", str(p.parent)
    )  # a product directory stands for its PRODUCT.yaml
    data = json.loads(out)
    assert code == 0 and data["valid"] is True
    assert data["summary"] == {"error": 0, "warning": 0, "not-checked": 6}
    f = data["files"][0]
    assert f["version"] == "1.37" and f["path"] == str(p)
    assert set(f["findings"][0]) == {
        "path",
        "line",
        "column",
        "severity",
        "rule",
        "message",
        "hint",
    }


def test_validate_github_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_valid(tmp_path)
    edit(p, lambda d: d["metadata"].__setitem__("vendorName", DQ("[Vendor Name]")))
    code, out, _ = run(capsys, "checklist", "validate", "--offline", "--format", "github", str(p))
    assert code == 1
    lines = out.splitlines()
    assert (
        f"::error file={p},line=24,col=15,title=metadata.placeholder::Metadata field "
        "vendorName has placeholder value: [Vendor Name] (hint: replace the template "
        "placeholder with the real value)"
    ) in lines
    assert any(x.startswith("::notice ") and "url.not-checked" in x for x in lines)


def test_validate_with_members(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_valid(tmp_path)
    landscape = tmp_path / "landscape.yml"
    landscape.write_text(
        "landscape:\n  - category:\n    name: CNCF Members\n    subcategories:\n"
        "      - subcategory:\n        name: Silver\n        items:\n"
        "          - item:\n            name: Acme Corp (member)\n"
    )
    code, out, _ = run(
        capsys, "checklist", "validate", "--offline", "--members", str(landscape), str(p)
    )
    assert code == 0 and "metadata.vendor-member" not in out
    landscape.write_text("landscape: []\n")
    code, _, err = run(
        capsys, "checklist", "validate", "--offline", "--members", str(landscape), str(p)
    )
    assert code == 2
    assert err == (
        "kaic: error: "
        + str(landscape)
        + ": could not find 'CNCF Members' category in landscape data\n"
    )


def test_validate_unreadable_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "v1.37" / "acme" / "PRODUCT.yaml"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"\x00\x01binary")
    code, out, _ = run(capsys, "checklist", "validate", str(p))
    assert code == 2 and "[input.binary]" in out


def test_pod_autoscaling_na_fails_as_in_the_newest_official_validator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write_valid(tmp_path)

    def na(d: object) -> None:
        r = requirement(d, "pod_autoscaling")
        r["status"], r["notes"] = DQ("N/A"), DQ("The platform offers no HPA custom metrics.")

    edit(p, na)
    code, out, _ = run(capsys, "checklist", "validate", "--offline", str(p))
    assert code == 1
    assert (
        "Requirement 'pod_autoscaling' is MUST level but status is 'N/A'. It must be "
        "'Implemented'." in out
    )
    assert run(capsys, "checklist", "validate", "--offline", "--strict", str(p))[0] == 1


def test_cluster_autoscaling_na_is_decided_per_official_revision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write_valid(tmp_path)

    def na(d: object) -> None:
        r = requirement(d, "cluster_autoscaling")
        r["status"], r["notes"] = DQ("N/A"), DQ("Bare metal: fixed node pools.")
        r["evidence"].clear()

    edit(p, na)
    for flags in ([], ["--strict"], ["--official-revision", "hybrid"]):
        code, out, _ = run(capsys, "checklist", "validate", "--offline", *flags, str(p))
        assert code == 0, flags
        assert (
            "warning: Requirement 'cluster_autoscaling' is MUST level and marked N/A; "
            "review the justification in notes" in out
        )
        assert "may still reject" not in out
    code, out, _ = run(
        capsys, "checklist", "validate", "--offline", "--official-revision", "b2c8969", str(p)
    )
    assert code == 1 and "It must be 'Implemented'. [status.must-implemented]" in out


def test_init_fill_status_upgrade_round(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "v1.36" / "acme"
    code, _, err = run(capsys, "checklist", "init", "--dir", str(d), "--vendor", "Acme Corp")
    assert code == 0 and "template v1.36" in err
    code, _, err = run(capsys, "checklist", "init", "--dir", str(d))
    assert code == 2 and err.startswith("kaic: error: ") and "--force" in err
    bundle = write_bundle(
        tmp_path / "run",
        [
            {
                "requirement_id": "gang_scheduling",
                "test_name": "TestGangScheduling",
                "outcome": "PASS",
            }
        ],
        catalog_version="1.36",
    )
    code, _, err = run(
        capsys, "checklist", "fill", str(d / "PRODUCT.yaml"), "--results", str(bundle)
    )
    assert code == 0 and "set       gang_scheduling: Implemented" in err
    code, out, _ = run(
        capsys,
        "checklist",
        "status",
        str(d / "PRODUCT.yaml"),
        "--certified-on",
        "2026-06-30",
        "--today",
        "2026-11-28",
    )
    assert code == 0
    assert "valid until:      2027-06-30 (214 day(s) left)" in out
    assert "v1.37  workload_sandboxing: consider the new SHOULD requirement" in out
    code, out, _ = run(
        capsys,
        "checklist",
        "status",
        str(d / "PRODUCT.yaml"),
        "--certified-on",
        "2025-06-30",
        "--today",
        "2026-11-28",
        "-o",
        "json",
    )
    assert code == 1 and json.loads(out)["expired"] is True
    code, _, err = run(
        capsys, "checklist", "status", str(d / "PRODUCT.yaml"), "--certified-on", "June 30"
    )
    assert code == 2 and "is not a date like" in err
    code, out, _ = run(
        capsys, "checklist", "upgrade", str(d / "PRODUCT.yaml"), "--to", "1.37", "--dry-run"
    )
    assert code == 0 and "added    workload_sandboxing (new: fill it in)" in out


def test_fill_without_a_bundle_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write_valid(tmp_path)
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "checklist", "fill", str(p), "--results", str(tmp_path / "empty"))
    assert code == 2
    assert err == f"kaic: error: {tmp_path / 'empty'} is not a kaic run bundle (no run.json)\n"


def test_the_installed_command_validates_without_a_traceback(tmp_path: Path) -> None:
    p = tmp_path / "v1.37" / "acme" / "PRODUCT.yaml"
    p.parent.mkdir(parents=True)
    p.write_text("a: &a [*a]\n")
    r = subprocess.run(
        [sys.executable, "-m", "kaic", "checklist", "validate", "--offline", str(p)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode in (1, 2)
    assert "Traceback" not in r.stderr + r.stdout


# --- issue 16: output safety and one-line errors --------------------------------------------


def test_validate_escapes_terminal_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write_valid(tmp_path)
    edit(
        p,
        lambda d: requirement(d, "ai_inference").__setitem__(
            "status", DQ("\x1b]0;pwned\x07\u202e")
        ),
    )
    for fmt in ("text", "github"):
        code, out, err = run(capsys, "checklist", "validate", "--offline", "--format", fmt, str(p))
        assert code == 1
        assert "\x1b" not in out + err and "\x07" not in out + err and "\u202e" not in out
        assert "\\x1b]0;pwned\\x07\\u202e" in out


def test_fill_change_lines_are_not_wrapped_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write_valid(tmp_path)
    long_reason = "the reason is long " * 12
    bundle = write_bundle(
        tmp_path / "run",
        [
            {
                "requirement_id": "robust_controller",
                "test_name": "TestRobustCRDControllerOperation",
                "outcome": "ERROR",
                "reason": long_reason,
            }
        ],
    )
    code, _, err = run(capsys, "checklist", "fill", str(p), "--results", str(bundle))
    assert code == 0
    line = next(x for x in err.splitlines() if "robust_controller" in x)
    assert line.strip().endswith(" ".join(long_reason.split()))


def test_a_landscape_with_a_malformed_members_category_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write_valid(tmp_path)
    landscape = tmp_path / "landscape.yml"
    landscape.write_text("landscape:\n  - name: CNCF Members\n    subcategories: 5\n")
    code, _, err = run(
        capsys, "checklist", "validate", "--offline", "--members", str(landscape), str(p)
    )
    assert code == 2 and "Traceback" not in err
    assert "'subcategories' of 'CNCF Members' is a int, not a list" in err


def test_status_on_the_last_day_of_year_9999_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write_valid(tmp_path)
    code, _, err = run(
        capsys,
        "checklist",
        "status",
        str(p),
        "--certified-on",
        "9999-12-31",
        "--today",
        "9999-12-31",
    )
    assert code == 2 and "Traceback" not in err and "9999-12-31" in err


def test_init_names_the_option_whose_value_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "v1.37" / "acme"
    code, _, err = run(capsys, "checklist", "init", "--dir", str(d), "--platform", "a\nb")
    assert code == 2 and "--platform: the value must be one line" in err
    code, _, err = run(capsys, "checklist", "init", "--dir", str(d), "--vendor", "\udcff")
    assert code == 2 and "--vendor: the value is not valid UTF-8 text" in err
    assert not (d / "PRODUCT.yaml").exists()


def test_versions_in_other_scripts_digits_are_refused_by_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "checklist",
        "init",
        "--dir",
        str(tmp_path / "x"),
        "--version",
        "\u0661.\u0663\u0666",
    )
    assert code == 2 and "not a version" in err
