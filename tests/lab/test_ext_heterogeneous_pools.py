"""ext_heterogeneous_pools on the lab: GPU nodes tainted like a real accelerator pool
(PASS); the default lab's untainted GPU nodes take any pod (FAIL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.lab.labtools import run_check_on_lab, sub

from kaic.lab.lab import Lab
from kaic.model import Outcome

pytestmark = pytest.mark.lab

TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def _gpu_nodes(lab: Lab) -> list[str]:
    nodes = lab.ctx.get("/api/v1/nodes?labelSelector=kaic.io%2Faccelerator-pool%3Dgpu")
    return [n["metadata"]["name"] for n in nodes["items"]]


@pytest.fixture
def tainted_pool(lab: Lab) -> Iterator[Lab]:
    """The lab's GPU nodes tainted nvidia.com/gpu=present:NoSchedule, then untainted."""
    for n in _gpu_nodes(lab):
        lab.ctx.request(
            "PATCH",
            f"/api/v1/nodes/{n}",
            body={"spec": {"taints": [TAINT]}},
            content_type="application/merge-patch+json",
        )
    try:
        yield lab
    finally:
        for n in _gpu_nodes(lab):
            lab.ctx.request(
                "PATCH",
                f"/api/v1/nodes/{n}",
                body={"spec": {"taints": None}},
                content_type="application/merge-patch+json",
            )


def test_ext_heterogeneous_pools_passes_on_a_tainted_accelerator_pool(tainted_pool: Lab) -> None:
    result = run_check_on_lab(tainted_pool, "ext_heterogeneous_pools")
    assert result.outcome is Outcome.PASS, result.reason
    assert sub(result, "PlainPodKeptOff").outcome is Outcome.PASS
    assert "kaic.io/accelerator-pool=gpu" in sub(result, "AIPodPlaced").log[0]


def test_ext_heterogeneous_pools_fails_when_gpu_nodes_take_any_pod(lab: Lab) -> None:
    result = run_check_on_lab(lab, "ext_heterogeneous_pools")
    assert result.outcome is Outcome.FAIL
    reason = sub(result, "PlainPodKeptOff").reason
    assert "a pod without the pool's tolerations was placed on accelerator node" in reason
    assert "carry no NoSchedule taint" in reason
