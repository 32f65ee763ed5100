"""ext_hardware_topology on the lab: the simulated GPUs and NICs publish their PCIe roots
through DRA and line up (PASS); a driver publishing a GPU without topology is named
(FAIL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.lab.labtools import run_check_on_lab, sub

from kaic.lab.lab import Lab
from kaic.model import Outcome

pytestmark = pytest.mark.lab

BARE_SLICE = "kaic-test-gpu-without-topology"


@pytest.fixture
def gpu_without_topology(lab: Lab) -> Iterator[Lab]:
    """One more ResourceSlice of the GPU driver whose device publishes no topology."""
    lab.ctx.apply(
        [
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceSlice",
                "metadata": {"name": BARE_SLICE},
                "spec": {
                    "driver": "gpu.nvidia.com",
                    "nodeName": "kaic-cpu-0",
                    "pool": {"name": BARE_SLICE, "generation": 1, "resourceSliceCount": 1},
                    "devices": [{"name": "gpu-0", "attributes": {"type": {"string": "gpu"}}}],
                },
            }
        ]
    )
    try:
        yield lab
    finally:
        lab.ctx.request("DELETE", f"/apis/resource.k8s.io/v1/resourceslices/{BARE_SLICE}")


def test_ext_hardware_topology_passes_on_the_simulated_pcie_layout(lab: Lab) -> None:
    result = run_check_on_lab(lab, "ext_hardware_topology")
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.outcome for s in result.subresults] == [Outcome.PASS] * 3
    table = json.loads(next(e.content for e in result.evidence if e.name == "topology.json"))
    assert (
        table["kaic-gpu-0/gpu.nvidia.com/gpu-0"]["pcieRoot"]
        == (table["kaic-gpu-0/dra.net/nic-0"]["pcieRoot"])
    )


def test_ext_hardware_topology_names_a_gpu_without_topology(gpu_without_topology: Lab) -> None:
    result = run_check_on_lab(gpu_without_topology, "ext_hardware_topology")
    assert result.outcome is Outcome.FAIL
    reason = sub(result, "AcceleratorTopologyPublished").reason
    assert "publish no topology attribute" in reason
    assert "kaic-cpu-0/gpu.nvidia.com/gpu-0" in reason


def test_ext_topology_aware_scheduling_passes_with_the_real_scheduler(lab: Lab) -> None:
    result = run_check_on_lab(
        lab, "ext_topology_aware_scheduling", options={"topology-negative-window": "8"}
    )
    assert result.outcome is Outcome.PASS, result.reason
    log = "\n".join(result.log)
    assert "sharing resource.kubernetes.io/pcieRoot=pci0000:" in log
    assert "a claim for 3 aligned accelerators stayed unallocated" in log


def test_ext_topology_aware_scheduling_fails_without_dra_accelerators(lab_factory: Any) -> None:
    # NOTE: the same options as the device-leak lab of test_secure_accelerator_access, so
    # one lab serves both in a session.
    plugin_lab = lab_factory(
        accelerators="device-plugin", nodes=1, cpu_nodes=1, gpus_per_node=4, with_={"device-leak"}
    )
    result = run_check_on_lab(plugin_lab, "ext_topology_aware_scheduling")
    assert result.outcome is Outcome.FAIL
    assert (
        "no accelerator published through DRA has attribute"
        in sub(result, "TopologyDiscoverable").reason
    )
