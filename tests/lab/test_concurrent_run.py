"""The 8 MUSTs of v1.36 on a lab like `make demo`'s, run twice through ``kaic run``: by
default (checks that do not conflict run at the same time) and with ``--parallel 1``
(one after another). The verdicts must be the same check by check, the concurrent run
must really overlap checks, and no two checks whose locks conflict may overlap.

The run names the lab's autoscaled pool and its taint (``--autoscaler-pool-taint``), so
cluster_autoscaling holds only that pool. One lab serves both runs. The stability window
of cluster_autoscaling and the observation window of gang_scheduling are shortened
(check options) to keep the test as short as the checks allow; everything else runs as
in `make demo`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from labtools import require_program

from kaic.checks import load_builtin_checks
from kaic.cluster.client import connect
from kaic.cluster.tracking import find_leftovers
from kaic.lab import Lab
from kaic.lab.components.nodes import AUTOSCALED_POOL_OPTIONS

pytestmark = [pytest.mark.lab, pytest.mark.slow]

DEMO_WITH = {"kueue-controller", "node-autoscaler", "prometheus", "prometheus-adapter"}
CHECK_OPTIONS = {
    **AUTOSCALED_POOL_OPTIONS,
    "autoscaler-stability-window": "10",
    "gang-negative-window": "10",
}
OPTIONS = tuple(arg for name, value in CHECK_OPTIONS.items() for arg in (f"--{name}", value))
MUSTS = {
    "ai_inference",
    "gang_scheduling",
    "cluster_autoscaling",
    "pod_autoscaling",
    "accelerator_metrics",
    "ai_service_metrics",
    "secure_accelerator_access",
    "robust_controller",
}


@pytest.fixture(scope="module")
def demo_lab(lab_factory: Any) -> Lab:
    for program in ("kueue", "karpenter", "prometheus", "prometheus-adapter"):
        require_program(program)
    lab: Lab = lab_factory(with_=DEMO_WITH)
    return lab


def _run(lab: Lab, out: Path, *extra: str) -> dict[str, Any]:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaic",
            "run",
            "--kubeconfig",
            str(lab.kubeconfig),
            "--version",
            "1.36",
            "--level",
            "must",
            "-o",
            str(out),
            *OPTIONS,
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    doc: dict[str, Any] = json.loads((out / "run.json").read_text())
    doc["stderr"] = r.stderr
    doc["returncode"] = r.returncode
    return doc


def _when(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def _spans(doc: dict[str, Any]) -> dict[str, tuple[datetime, datetime]]:
    return {
        r["requirement_id"]: (
            start := _when(r["started_at"]),
            start + timedelta(seconds=r["duration_s"]),
        )
        for r in doc["results"]
    }


def _overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_the_musts_have_the_same_verdicts_concurrently_and_one_at_a_time(
    demo_lab: Lab, tmp_path: Path
) -> None:
    together = _run(demo_lab, tmp_path / "together")
    alone = _run(demo_lab, tmp_path / "alone", "--parallel", "1")
    verdicts = {
        name: {r["requirement_id"]: r["outcome"] for r in doc["results"]}
        for name, doc in (("together", together), ("alone", alone))
    }
    reasons = {r["requirement_id"]: r["reason"] for r in together["results"] + alone["results"]}
    assert set(verdicts["alone"]) == MUSTS, alone["stderr"]
    assert verdicts["together"] == verdicts["alone"], (reasons, together["stderr"])
    # the lab of `make demo` meets every MUST, so both runs prove something
    assert set(verdicts["alone"].values()) == {"PASS"}, (reasons, alone["stderr"])
    assert together["returncode"] == alone["returncode"] == 0
    order = [r["requirement_id"] for r in alone["results"]]
    assert [r["requirement_id"] for r in together["results"]] == order
    assert together["options"]["parallel"] is None and alone["options"]["parallel"] == 1

    specs = {s.requirement_id: s for s in load_builtin_checks().all()}
    spans = _spans(together)
    overlapping = [(a, b) for a in spans for b in spans if a < b and _overlap(spans[a], spans[b])]
    assert overlapping, "no two checks ran at the same time"
    assert ("ai_inference", "cluster_autoscaling") in overlapping
    # the autoscaled pool is dedicated, so the checks that use the other accelerators
    # and sizes its gangs on the untainted nodes run beside cluster_autoscaling
    for other in ("gang_scheduling", "pod_autoscaling", "secure_accelerator_access"):
        assert ("cluster_autoscaling", other) in overlapping, (other, spans)
    held = {name: spec.held(CHECK_OPTIONS) for name, spec in specs.items()}
    clashes = [
        (a, b) for a, b in overlapping if any(x.conflicts(y) for x in held[a] for y in held[b])
    ]
    assert clashes == [], clashes
    serial = _spans(alone)
    assert not any(_overlap(serial[a], serial[b]) for a in serial for b in serial if a < b), (
        "--parallel 1 overlapped checks"
    )

    cluster = connect(str(demo_lab.kubeconfig))
    for doc in (together, alone):
        assert find_leftovers(cluster, doc["run_id"]) == []
    log = (tmp_path / "together" / "e2e.log").read_text()
    tests = [line.split()[2] for line in log.splitlines() if line.startswith("--- ")]
    assert tests == [r["test_name"] for r in together["results"]]
