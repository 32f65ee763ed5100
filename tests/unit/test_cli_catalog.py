"""The catalog commands: output shapes and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def kaic(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaic", *args], capture_output=True, text=True, check=False
    )


def test_version_prints_the_package_version() -> None:
    r = kaic("--version")
    assert r.returncode == 0 and r.stdout.startswith("kaic, version ")


def test_catalog_versions_lists_all_five() -> None:
    r = kaic("catalog", "versions", "-o", "json")
    assert [v["version"] for v in json.loads(r.stdout)["versions"]] == [
        "1.33",
        "1.34",
        "1.35",
        "1.36",
        "1.37",
    ]


def test_catalog_list_filters_by_level() -> None:
    r = kaic("catalog", "list", "--version", "v1.36.2", "--level", "should", "-o", "json")
    data = json.loads(r.stdout)
    assert data["version"] == "1.36"
    assert {x["level"] for x in data["requirements"]} == {"SHOULD"}
    assert len(data["requirements"]) == 6


def test_catalog_show_prints_the_official_description() -> None:
    r = kaic("catalog", "show", "gang_scheduling", "--version", "1.34")
    assert r.returncode == 0
    assert "all-or-nothing scheduling" in r.stdout and "TestGangScheduling" in r.stdout


def test_catalog_diff_1_33_1_34_reports_one_change() -> None:
    r = kaic("catalog", "diff", "1.33", "1.34")
    assert r.returncode == 0
    assert r.stdout.splitlines() == [
        "1 change(s) from v1.33 to v1.34:",
        "  ~ dra_support level SHOULD -> MUST",
    ]


def test_catalog_diff_1_36_1_37_reports_workload_sandboxing_added() -> None:
    r = kaic("catalog", "diff", "1.36", "1.37", "-o", "yaml")
    assert "kind: added\n  requirement_id: workload_sandboxing" in r.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("catalog", "list", "--version", "1.99"),
        ("catalog", "list", "--version", "1.2"),
        ("catalog", "show", "no_such_id"),
        ("catalog", "list", "--bogus"),
        ("catalog", "list", "--level", "maybe"),
        ("catalog", "diff", "1.33"),
        ("nonsense",),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(args: tuple[str, ...]) -> None:
    r = kaic(*args)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("kaic: error: ")
    assert "Traceback" not in r.stderr


def test_catalog_list_shows_every_1_37_requirement_automated() -> None:
    r = kaic("catalog", "list", "--version", "1.37", "-o", "json")
    manual = {x["id"] for x in json.loads(r.stdout)["requirements"] if not x["automated"]}
    assert manual == set()


def test_catalog_show_says_what_evidence_to_attach_for_a_manual_requirement() -> None:
    r = kaic("catalog", "show", "disaggregated_inference", "--version", "1.37")
    assert r.returncode == 0
    assert "evidence to attach by hand:" in r.stdout
    assert "a prefill pod and of a different decode pod" in r.stdout
    r = kaic("catalog", "show", "gpu_sharing", "--version", "1.37")
    assert "evidence to attach by hand" not in r.stdout
