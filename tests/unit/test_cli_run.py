"""``kaic run``/``report``/``cleanup`` at the command line: plan listing, generated check
flags, one-line errors and documented exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parents[1] / "golden" / "bundle"


def kaic(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaic", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )


def test_list_prints_the_plan_without_a_cluster_when_the_version_is_given() -> None:
    r = kaic("run", "--version", "1.35", "--list", "--level", "must")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(
        line.split()[:4] == ["dra_support", "MUST", "TestDRASupport", "automated"] for line in lines
    )
    assert any("ai_inference" in line and "--gateway-class" in line for line in lines)
    assert not any("gpu_sharing" in line for line in lines)


def test_check_options_become_run_flags() -> None:
    r = kaic("run", "--help")
    assert r.returncode == 0 and "--gateway-class" in r.stdout and "[check option]" in r.stdout


def test_a_bad_focus_regex_is_a_one_line_usage_error() -> None:
    r = kaic("run", "--version", "1.36", "--list", "--focus", "(")
    assert r.returncode == 2
    assert r.stderr.startswith("kaic: error: --focus '(' is not a valid regular expression")
    assert "Traceback" not in r.stderr


def test_an_unknown_catalog_version_is_a_usage_error() -> None:
    r = kaic("run", "--version", "1.20", "--list")
    assert r.returncode == 2 and "unknown catalog version" in r.stderr


def test_an_unreachable_cluster_exits_3(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:"
        " {server: 'http://127.0.0.1:9'}\nusers:\n- name: u\n  user: {token: t}\n"
        "contexts:\n- name: x\n  context: {cluster: c, user: u}\n"
        "current-context: x\n"
    )
    r = kaic("run", "--kubeconfig", str(kc), "-o", str(tmp_path / "out"))
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("kaic: error: cannot reach the cluster at http://127.0.0.1:9")
    assert not (tmp_path / "out").exists()


def test_a_missing_kubeconfig_is_a_usage_error(tmp_path: Path) -> None:
    r = kaic("run", "--kubeconfig", str(tmp_path / "nope"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_report_re_renders_a_bundle_and_exits_with_the_run_code() -> None:
    r = kaic("report", str(GOLDEN), "--format", "json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["run_id"] == "20261128-101500-ab12cd"
    md = kaic("report", str(GOLDEN))
    assert md.stdout == (GOLDEN / "report.md").read_text()
    html = kaic("report", str(GOLDEN), "--format", "html")
    assert html.stdout == (GOLDEN / "report.html").read_text()


def test_report_on_something_that_is_not_a_bundle_is_a_usage_error(tmp_path: Path) -> None:
    r = kaic("report", str(tmp_path))
    assert r.returncode == 2 and "a kaic result bundle?" in r.stderr


def _unreachable_kubeconfig(tmp_path: Path) -> Path:
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:"
        " {server: 'http://127.0.0.1:9'}\nusers:\n- name: u\n  user: {token: t}\n"
        "contexts:\n- name: x\n  context: {cluster: c, user: u}\n"
        "current-context: x\n"
    )
    return kc


@pytest.mark.parametrize("scale", ["nan", "inf", "-inf", "0", "-2"])
def test_a_timeout_scale_that_is_not_positive_and_finite_exits_2(
    tmp_path: Path, scale: str
) -> None:
    r = kaic(
        "run",
        "--kubeconfig",
        str(_unreachable_kubeconfig(tmp_path)),
        "--timeout-scale",
        scale,
        "-o",
        str(tmp_path / "out"),
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("kaic: error: --timeout-scale must be a positive number")
    assert len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--gang-negative-size", "abc"),
        ("--gang-negative-size", "0"),
        ("--gang-admit-timeout", "soon"),
        ("--probe-pod-timeout", "nan"),
        ("--autoscaler-pool-taint", "dedicated"),
        ("--autoscaler-node-pool-label", "gpu"),
    ],
)
def test_a_malformed_check_option_exits_2_before_anything_runs(
    tmp_path: Path, flag: str, value: str
) -> None:
    # The cluster is unreachable: exit 2 (not 3) shows the value was judged first.
    r = kaic(
        "run",
        "--kubeconfig",
        str(_unreachable_kubeconfig(tmp_path)),
        flag,
        value,
        "-o",
        str(tmp_path / "out"),
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"kaic: error: {flag} must be ")
    assert len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_level_is_accepted_in_upper_case_like_catalog_list() -> None:
    r = kaic("run", "--version", "1.35", "--list", "--level", "MUST")
    assert r.returncode == 0, r.stderr
    assert not any("gpu_sharing" in line for line in r.stdout.splitlines())
