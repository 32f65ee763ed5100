"""The extended profile on the lab: the official results and the exit code of a run are
the same with and without it, and every extended check gets a verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kaic import catalog
from kaic.lab import Lab

pytestmark = pytest.mark.lab

OFFICIAL = "^(driver_runtime_management|accelerator_metrics|secure_accelerator_access)$"
"""Quick official checks of catalog 1.36 (those that FAIL or PASS in minutes)."""


def _run(lab: Lab, out: Path, *args: str) -> tuple[int, dict[str, Any]]:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaic",
            "run",
            f"--kubeconfig={lab.kubeconfig}",
            "--version=1.36",
            f"--output-dir={out}",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=1500,
    )
    assert r.returncode in (0, 1), r.stderr[-2000:]
    doc: dict[str, Any] = json.loads((out / "run.json").read_text())
    return r.returncode, doc


def _official(doc: dict[str, Any]) -> dict[str, tuple[str, str, list[tuple[str, str]]]]:
    return {
        r["requirement_id"]: (
            r["outcome"],
            r["reason"],
            [(s["name"], s["outcome"]) for s in r["subresults"]],
        )
        for r in doc["results"]
        if r.get("profile", "official") == "official"
    }


def test_official_results_and_exit_code_are_the_same_with_the_extended_profile(
    lab: Lab, tmp_path: Path
) -> None:
    code_a, alone = _run(lab, tmp_path / "official", f"--focus={OFFICIAL}")
    extended = [r.id for r in catalog.load("1.36").extended]
    focus = "^(" + "|".join([OFFICIAL.strip("^$()"), *extended]) + ")$"
    code_b, both = _run(lab, tmp_path / "all", "--profile=all", f"--focus={focus}")

    assert _official(alone) == _official(both)
    assert code_a == code_b
    assert set(_official(alone)) == set(OFFICIAL.strip("^$()").split("|"))
    verdicts = {
        r["requirement_id"]: r["outcome"] for r in both["results"] if r.get("profile") == "extended"
    }
    assert set(verdicts) == set(extended), "every extended requirement has a verdict"
    assert all(v in ("PASS", "FAIL", "SKIP", "ERROR", "MANUAL") for v in verdicts.values())
    # informative: the extended results never go into the official validator's artifacts
    official_names = {
        json.loads(line).get("Test", "").split("/")[0]
        for line in (tmp_path / "all" / "results.json").read_text().splitlines()
        if line.strip()
    }
    assert not any(n.startswith("TestExt") for n in official_names)
