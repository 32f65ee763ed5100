"""ext_topology_aware_scheduling against the fake cluster: a fake scheduler that honours
(or ignores) matchAttribute."""

from __future__ import annotations

from typing import Any

from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

DRA = "resource.k8s.io/v1"
ROOT = "resource.kubernetes.io/pcieRoot"
NS = "kaic-t"


def _fake(*, honour: bool = True, roots: bool = True) -> FakeCluster:
    fake = FakeCluster()
    fake.serve(
        DRA,
        ("resourceslices", "ResourceSlice", False),
        ("resourceclaims", "ResourceClaim", True),
        ("resourceclaimtemplates", "ResourceClaimTemplate", True),
        ("deviceclasses", "DeviceClass", False),
    )
    fake.add({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    fake.add({"apiVersion": DRA, "kind": "DeviceClass", "metadata": {"name": "gpu.nvidia.com"}})
    devices = [
        {
            "name": f"gpu-{i}",
            "attributes": {"type": {"string": "gpu"}}
            | ({ROOT: {"string": f"root-{i // 2}"}} if roots else {}),
        }
        for i in range(4)
    ]
    fake.add(
        {
            "apiVersion": DRA,
            "kind": "ResourceSlice",
            "metadata": {"name": "n1-gpu"},
            "spec": {
                "driver": "gpu.nvidia.com",
                "nodeName": "n1",
                "pool": {"name": "n1", "generation": 1, "resourceSliceCount": 1},
                "devices": devices,
            },
        }
    )

    def scheduler(c: FakeCluster) -> None:
        for cl in c.list(DRA, "ResourceClaim", NS):
            if (cl.get("status") or {}).get("allocation"):
                continue
            count = cl["spec"]["devices"]["requests"][0]["exactly"]["count"]
            if honour:
                picks = next(
                    ([f"gpu-{2 * r}", f"gpu-{2 * r + 1}"] for r in range(2) if count <= 2), None
                )
                if picks is None:
                    continue
                picks = picks[:count]
            else:
                picks = [f"gpu-{i}" for i in (0, 2, 3)][:count]  # across roots
            cl["status"] = {
                "allocation": {
                    "devices": {
                        "results": [
                            {
                                "driver": "gpu.nvidia.com",
                                "pool": "n1",
                                "device": d,
                                "request": "gpus",
                            }
                            for d in picks
                        ]
                    }
                }
            }
            c.add(cl)

    fake.controllers.append(scheduler)
    return fake


def _run(fake: FakeCluster) -> CheckResult:
    return run_fake_check(
        fake,
        "ext_topology_aware_scheduling",
        namespace=NS,
        options={"topology-allocate-timeout": "0.5", "topology-negative-window": "0.3"},
    )


def _reason(r: CheckResult, name: str) -> Any:
    return next(s for s in r.subresults if s.name == name).reason


def test_passes_when_the_scheduler_honours_match_attribute() -> None:
    r = _run(_fake())
    assert r.outcome is Outcome.PASS, r.reason
    assert "a claim for 3 aligned accelerators stayed unallocated" in "\n".join(r.log)


def test_fails_when_the_allocation_ignores_the_constraint() -> None:
    r = _run(_fake(honour=False))
    assert r.outcome is Outcome.FAIL
    assert "do not share resource.kubernetes.io/pcieRoot" in _reason(r, "AlignedClaimAllocated")
    assert "the constraint was not honoured" in _reason(r, "UnsatisfiableClaimStaysUnallocated")


def test_fails_when_no_device_publishes_the_attribute() -> None:
    r = _run(_fake(roots=False))
    assert r.outcome is Outcome.FAIL
    assert "has attribute resource.kubernetes.io/pcieRoot" in _reason(r, "TopologyDiscoverable")


def test_fails_without_dra() -> None:
    r = _run(FakeCluster())
    assert "serves no DRA API" in _reason(r, "TopologyDiscoverable")
