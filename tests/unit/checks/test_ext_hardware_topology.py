"""ext_hardware_topology against the fake cluster."""

from __future__ import annotations

from typing import Any

from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

DRA = "resource.k8s.io/v1"


def _slice(driver: str, node: str, devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": DRA,
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-{driver}"},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def _dev(name: str, **attrs: str) -> dict[str, Any]:
    return {"name": name, "attributes": {k: {"string": v} for k, v in attrs.items()}}


def _fake(*, gpu_root: bool = True, nics: bool = True, nic_root: str = "pci0000:10") -> FakeCluster:
    fake = FakeCluster()
    fake.serve(DRA, ("resourceslices", "ResourceSlice", False))
    fake.add({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    root = {"resource.kubernetes.io/pcieRoot": "pci0000:10"} if gpu_root else {}
    fake.add(_slice("gpu.nvidia.com", "n1", [_dev("gpu-0", type="gpu", **root)]))
    if nics:
        fake.add(
            _slice(
                "dra.net",
                "n1",
                [
                    _dev(
                        "nic-0", **{"resource.kubernetes.io/pcieRoot": nic_root} if nic_root else {}
                    )
                ],
            )
        )
    return fake


def _run(fake: FakeCluster) -> CheckResult:
    return run_fake_check(fake, "ext_hardware_topology")


def test_passes_when_gpus_and_nics_share_a_pcie_root() -> None:
    r = _run(_fake())
    assert r.outcome is Outcome.PASS, r.reason
    assert "share a PCIe root or NUMA node on 1 nodes" in "\n".join(r.log)


def test_fails_naming_a_gpu_without_topology() -> None:
    r = _run(_fake(gpu_root=False))
    assert r.outcome is Outcome.FAIL
    assert "n1/gpu.nvidia.com/gpu-0" in r.subresults[0].reason


def test_device_plugin_accelerators_only_fail() -> None:
    fake = FakeCluster()
    fake.add(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "g1"},
            "status": {"allocatable": {"nvidia.com/gpu": "8"}},
        }
    )
    r = _run(fake)
    assert r.outcome is Outcome.FAIL
    assert "device-plugin accelerators only: g1 (nvidia.com/gpu)" in r.subresults[0].reason


def test_without_nics_the_nic_steps_are_skipped_and_the_gpus_pass() -> None:
    r = _run(_fake(nics=False))
    assert r.outcome is Outcome.PASS
    assert [s.outcome for s in r.subresults] == [Outcome.PASS, Outcome.SKIP, Outcome.SKIP]


def test_nics_without_topology_fail() -> None:
    r = _run(_fake(nic_root=""))
    assert r.subresults[1].outcome is Outcome.FAIL and "n1/dra.net/nic-0" in r.subresults[1].reason


def test_gpus_and_nics_on_different_roots_cannot_be_aligned() -> None:
    r = _run(_fake(nic_root="pci0000:30"))
    assert r.subresults[2].outcome is Outcome.FAIL
    assert "alignment cannot be discovered there" in r.subresults[2].reason
