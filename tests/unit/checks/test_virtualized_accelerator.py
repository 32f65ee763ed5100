"""virtualized_accelerator against a fake cluster with a simulated scheduler.

The fake binds pods to the node their affinity names, allocates their ResourceClaims
from free devices of the claim's profile, and answers ``exec`` with the devices a pod
holds (or, to make the check fail, every device of the node, or another pod's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kaic.cluster.api import ExecResult
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

DRA = "resource.k8s.io/v1"


def device(i: int, kind: str = "vgpu") -> dict[str, Any]:
    return {
        "name": f"vgpu-{i}",
        "attributes": {
            "type": {"string": kind},
            "profile": {"string": "H100-20C"},
            "uuid": {"string": f"GPU-v{i}"},
            "index": {"int": i},
        },
    }


class Sim:
    def __init__(self, *, vgpus: int = 2, kind: str = "vgpu", dra: bool = True) -> None:
        self.fc = FakeCluster()
        self.mode = "isolated"
        self.execs: list[str] = []
        self.fc.add(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "vg-0"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }
        )
        if dra:
            self.fc.serve(
                DRA,
                ("deviceclasses", "DeviceClass", False),
                ("resourceslices", "ResourceSlice", False),
                ("resourceclaims", "ResourceClaim", True),
            )
            self.fc.add(
                {"apiVersion": DRA, "kind": "DeviceClass", "metadata": {"name": "vgpu.nvidia.com"}}
            )
            self.fc.add(
                {
                    "apiVersion": DRA,
                    "kind": "ResourceSlice",
                    "metadata": {"name": "vg-0-slice"},
                    "spec": {
                        "driver": "gpu.nvidia.com",
                        "nodeName": "vg-0",
                        "pool": {"name": "vg-0", "generation": 1, "resourceSliceCount": 1},
                        "devices": [device(i, kind) for i in range(vgpus)],
                    },
                }
            )
        self.fc.controllers.append(self.schedule)
        self.fc.exec_handler = self.exec

    def held(self, pod: dict[str, Any]) -> list[str]:
        out = []
        for rc in pod["spec"].get("resourceClaims") or []:
            c = self.fc.get(
                DRA, "ResourceClaim", rc["resourceClaimName"], pod["metadata"]["namespace"]
            )
            for r in (
                (((c or {}).get("status") or {}).get("allocation") or {})
                .get("devices", {})
                .get("results", [])
            ):
                out.append(r["device"])
        return out

    def schedule(self, fc: FakeCluster) -> None:
        for pod in fc.list("v1", "Pod"):
            if pod["spec"].get("nodeName"):
                continue
            md = pod["metadata"]
            taken = {d for p in fc.list("v1", "Pod") for d in self.held(p)}
            for rc in pod["spec"].get("resourceClaims") or []:
                claim = fc.get(DRA, "ResourceClaim", rc["resourceClaimName"], md["namespace"])
                assert claim is not None
                assert 'profile == "H100-20C"' in str(claim["spec"])
                sl = fc.get(DRA, "ResourceSlice", "vg-0-slice")
                assert sl is not None
                free = [d["name"] for d in sl["spec"]["devices"] if d["name"] not in taken]
                if not free:
                    return
                results = [
                    {
                        "request": "virtual",
                        "driver": "gpu.nvidia.com",
                        "pool": "vg-0",
                        "device": free[0],
                    }
                ]
                fc.patch(
                    DRA,
                    "ResourceClaim",
                    claim["metadata"]["name"],
                    {"status": {"allocation": {"devices": {"results": results}}}},
                    md["namespace"],
                )
            fc.patch(
                "v1",
                "Pod",
                md["name"],
                {"spec": {"nodeName": "vg-0"}, "status": {"phase": "Running"}},
                md["namespace"],
            )

    def exec(self, ns: str, pod: str, command: Sequence[str], container: str | None) -> ExecResult:
        self.execs.append(pod)
        obj = self.fc.get("v1", "Pod", pod, ns)
        assert obj is not None
        devs = self.held(obj)
        if self.mode == "leak" and not devs:
            devs = ["vgpu-0", "vgpu-1"]
        if self.mode == "swap" and devs:
            devs = ["vgpu-1" if d == "vgpu-0" else "vgpu-0" for d in devs]
        lines = [f"DEVICE: /dev/nvidia{d.rsplit('-', 1)[1]}" for d in devs]
        lines += [
            f"LIST: GPU {i}: NVIDIA H100-20C (UUID: GPU-v{d.rsplit('-', 1)[1]})"
            for i, d in enumerate(devs)
        ]
        lines.append(f"RESULT: ACCELERATOR_COUNT={len(devs)}")
        return ExecResult("\n".join(lines) + "\n", "", 0)

    def run(self, **options: str) -> CheckResult:
        return run_fake_check(
            self.fc, "virtualized_accelerator", options=options, catalog_version="1.37"
        )


def sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


def test_virtualized_accelerator_passes_when_a_vgpu_is_claimed_and_isolated() -> None:
    sim = Sim()
    r = sim.run()
    assert r.outcome is Outcome.PASS, r.reason
    assert [s.name for s in r.subresults] == [
        "VirtualAcceleratorsExposed",
        "VirtualAcceleratorAllocated",
        "VirtualAcceleratorIsolation",
    ]
    assert sim.execs == ["virtual-a", "virtual-none", "virtual-b"]
    assert any(
        "claim virtual-a holds vg-0/vgpu-0" in x for x in sub(r, "VirtualAcceleratorAllocated").log
    )


def test_virtualized_accelerator_passes_with_one_vfio_device_without_the_second_pod() -> None:
    sim = Sim(vgpus=1, kind="vfio")
    sim.fc.add(
        {"apiVersion": DRA, "kind": "DeviceClass", "metadata": {"name": "vfio.gpu.nvidia.com"}}
    )
    sim.fc.delete(DRA, "DeviceClass", "vgpu.nvidia.com")
    r = sim.run()
    assert r.outcome is Outcome.PASS, r.reason
    assert sim.execs == ["virtual-a", "virtual-none"]


def test_virtualized_accelerator_fails_when_a_pod_without_a_claim_sees_vgpus() -> None:
    sim = Sim()
    sim.mode = "leak"
    r = sim.run()
    assert r.outcome is Outcome.FAIL
    assert "pod virtual-none (no claim) sees 2" in sub(r, "VirtualAcceleratorIsolation").reason


def test_virtualized_accelerator_fails_when_a_pod_sees_another_device_than_its_own() -> None:
    sim = Sim()
    sim.mode = "swap"
    r = sim.run()
    assert r.outcome is Outcome.FAIL
    assert (
        "pod virtual-a sees GPU-v1 but holds vgpu-0" in sub(r, "VirtualAcceleratorIsolation").reason
    )


def test_virtualized_accelerator_is_not_applicable_without_virtual_devices() -> None:
    r = Sim(kind="gpu").run()
    assert r.outcome is Outcome.SKIP and r.not_applicable
    assert "no virtualized accelerators" in r.reason and "type vgpu/vfio" in r.reason


def test_virtualized_accelerator_is_not_applicable_without_dra() -> None:
    r = Sim(dra=False).run()
    assert r.outcome is Outcome.SKIP and r.not_applicable


def test_virtualized_accelerator_errors_without_a_device_class() -> None:
    sim = Sim()
    sim.fc.delete(DRA, "DeviceClass", "vgpu.nvidia.com")
    r = sim.run()
    assert r.outcome is Outcome.ERROR and "--virtual-device-class" in r.reason


def test_virtualized_accelerator_errors_when_every_vgpu_is_taken() -> None:
    sim = Sim(vgpus=1)
    sim.fc.add(
        {
            "apiVersion": DRA,
            "kind": "ResourceClaim",
            "metadata": {"name": "other", "namespace": "x"},
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {"driver": "gpu.nvidia.com", "pool": "vg-0", "device": "vgpu-0"}
                        ]
                    }
                }
            },
        }
    )
    r = sim.run()
    assert r.outcome is Outcome.ERROR and "no virtual accelerator is free" in r.reason


def test_virtualized_accelerator_reports_an_unknown_accelerator_type() -> None:
    r = Sim().run(**{"accelerator-type": "google-tpu"})
    assert r.outcome is Outcome.SKIP and r.reason.startswith("UNKNOWN:")


def test_virtualized_accelerator_is_not_applicable_on_an_empty_cluster() -> None:
    fc = FakeCluster()
    r = run_fake_check(fc, "virtualized_accelerator", catalog_version="1.36")
    assert r.outcome is Outcome.SKIP and r.not_applicable
