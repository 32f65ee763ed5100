"""gpu_sharing against a fake cluster with a simulated scheduler.

The fake binds pods to the node their affinity names when the node has the extended
resource free, allocates their ResourceClaims from partitions whose attributes match the
claim's selectors while the partitions' shared counters allow (``enforce_counters``),
and answers ``exec`` with what the probe prints for the physical GPU behind each share.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from kaic.checks import gpu_sharing as gs
from kaic.checks.accelerators import ACCELERATORS
from kaic.checks.resources import requests_by_node
from kaic.cluster import parse_quantity
from kaic.cluster.api import ExecResult
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

DRA = "resource.k8s.io/v1"
PARENT = "GPU-parent-0"
PROFILES = (("1g.10gb", 1, 10, 7), ("3g.40gb", 3, 40, 2), ("7g.80gb", 7, 80, 1))


def node(name: str, alloc: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "status": {
            "capacity": alloc,
            "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


class Sim:
    def __init__(
        self,
        *,
        whole: bool = True,
        time_sliced: bool = False,
        partitions: bool = False,
        partition_attrs: bool = True,
    ) -> None:
        self.fc = FakeCluster()
        self.enforce_counters = True
        self.distinct_shares = False
        """Time-sliced shares that are really distinct GPUs (a broken platform)."""
        self.list_exit = 0
        self.execs: list[str] = []
        self.fc.serve(
            DRA,
            ("deviceclasses", "DeviceClass", False),
            ("resourceslices", "ResourceSlice", False),
            ("resourceclaims", "ResourceClaim", True),
        )
        if whole:
            self.fc.add(node("gpu-0", {"cpu": "8", "nvidia.com/gpu": "8"}, {gs.COUNT_LABEL: "8"}))
        if time_sliced:
            self.fc.add(
                node(
                    "ts-0",
                    {"cpu": "8", "nvidia.com/gpu": "8"},
                    {
                        gs.COUNT_LABEL: "2",
                        gs.REPLICAS_LABEL: "4",
                        gs.STRATEGY_LABEL: "time-slicing",
                    },
                )
            )
        if partitions:
            self.fc.add(node("mig-0", {"cpu": "8"}))
            self.fc.add(
                {"apiVersion": DRA, "kind": "DeviceClass", "metadata": {"name": "mig.nvidia.com"}}
            )
            pool = {"name": "mig-0", "generation": 1, "resourceSliceCount": 2}
            self.fc.add(
                {
                    "apiVersion": DRA,
                    "kind": "ResourceSlice",
                    "metadata": {"name": "mig-0-counters"},
                    "spec": {
                        "driver": "gpu.nvidia.com",
                        "nodeName": "mig-0",
                        "pool": pool,
                        "sharedCounters": [
                            {
                                "name": "gpu-0",
                                "counters": {
                                    "compute": {"value": "7"},
                                    "memory": {"value": "80Gi"},
                                },
                            }
                        ],
                    },
                }
            )
            devs = []
            for profile, compute, mem, n in PROFILES:
                for i in range(n):
                    attrs = {"type": {"string": "mig"}}
                    if partition_attrs:
                        attrs |= {"profile": {"string": profile}, "parentUUID": {"string": PARENT}}
                    devs.append(
                        {
                            "name": f"mig-{profile.replace('.', '')}-{i}",
                            "attributes": attrs,
                            "consumesCounters": [
                                {
                                    "counterSet": "gpu-0",
                                    "counters": {
                                        "compute": {"value": str(compute)},
                                        "memory": {"value": f"{mem}Gi"},
                                    },
                                }
                            ],
                        }
                    )
            self.fc.add(
                {
                    "apiVersion": DRA,
                    "kind": "ResourceSlice",
                    "metadata": {"name": "mig-0-devices"},
                    "spec": {
                        "driver": "gpu.nvidia.com",
                        "nodeName": "mig-0",
                        "pool": pool,
                        "devices": devs,
                    },
                }
            )
        self.fc.controllers.append(self.schedule)
        self.fc.exec_handler = self.exec

    def _device(self, name: str) -> dict[str, Any]:
        sl = self.fc.get(DRA, "ResourceSlice", "mig-0-devices")
        assert sl is not None
        return next(d for d in sl["spec"]["devices"] if d["name"] == name)

    def _allocate(self, claim: dict[str, Any]) -> bool:
        sl = self.fc.get(DRA, "ResourceSlice", "mig-0-devices")
        assert sl is not None
        exprs = [
            s["cel"]["expression"]
            for s in claim["spec"]["devices"]["requests"][0]["exactly"]["selectors"]
        ]
        want = [re.search(r'\.(\w+) == "([^"]+)"', e).groups() for e in exprs]  # type: ignore[union-attr]
        used: dict[str, Decimal] = {}
        taken = set()
        for c in self.fc.list(DRA, "ResourceClaim"):
            for r in (
                ((c.get("status") or {}).get("allocation") or {})
                .get("devices", {})
                .get("results", [])
            ):
                taken.add(r["device"])
                for k, v in self._device(r["device"])["consumesCounters"][0]["counters"].items():
                    used[k] = used.get(k, Decimal(0)) + parse_quantity(v["value"])
        cap = {"compute": Decimal(7), "memory": parse_quantity("80Gi")}
        for d in sl["spec"]["devices"]:
            if d["name"] in taken:
                continue
            if not all((d["attributes"].get(a) or {}).get("string") == v for a, v in want):
                continue
            need = {
                k: parse_quantity(v["value"])
                for k, v in d["consumesCounters"][0]["counters"].items()
            }
            if self.enforce_counters and any(
                used.get(k, Decimal(0)) + need[k] > cap[k] for k in need
            ):
                continue
            results = [
                {
                    "request": "partition",
                    "driver": "gpu.nvidia.com",
                    "pool": "mig-0",
                    "device": d["name"],
                }
            ]
            self.fc.patch(
                DRA,
                "ResourceClaim",
                claim["metadata"]["name"],
                {"status": {"allocation": {"devices": {"results": results}}}},
                claim["metadata"]["namespace"],
            )
            return True
        return False

    def schedule(self, fc: FakeCluster) -> None:
        for pod in fc.list("v1", "Pod"):
            if pod["spec"].get("nodeName"):
                continue
            md = pod["metadata"]
            target = pod["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
            ok = True
            for rc in pod["spec"].get("resourceClaims") or []:
                claim = fc.get(DRA, "ResourceClaim", rc["resourceClaimName"], md["namespace"])
                assert claim is not None
                if not (claim.get("status") or {}).get("allocation"):
                    ok = ok and self._allocate(claim)
            res = pod["spec"]["containers"][0].get("resources", {}).get("requests", {})
            for r, q in res.items():
                cap = int(fc.get("v1", "Node", target)["status"]["allocatable"].get(r, 0))
                if requests_by_node(fc.list("v1", "Pod"), r).get(target, 0) + int(q) > cap:
                    ok = False
            if ok:
                fc.patch(
                    "v1",
                    "Pod",
                    md["name"],
                    {"spec": {"nodeName": target}, "status": {"phase": "Running"}},
                    md["namespace"],
                )

    def exec(self, ns: str, pod: str, command: Sequence[str], container: str | None) -> ExecResult:
        assert list(command[:2]) == ["sh", "-c"]
        self.execs.append(pod)
        i = int(pod.rsplit("-", 1)[1])
        phys = i if self.distinct_shares else i // 4
        uuid = f"GPU-ts-{phys}"
        out = (
            f"DEVICE: /dev/nvidia{phys}\nLIST: GPU 0: H100 (UUID: {uuid})\n"
            f"RESULT: LIST_EXIT={self.list_exit}\nRESULT: ACCELERATOR_COUNT=1\n"
        )
        return ExecResult(out, "", 0)

    def run(self, **options: str) -> CheckResult:
        opts = {"sharing-window": "0.2"} | options
        return run_fake_check(self.fc, "gpu_sharing", options=opts, catalog_version="1.37")


def sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


def test_gpu_sharing_passes_with_time_sliced_replicas() -> None:
    sim = Sim(time_sliced=True)
    r = sim.run()
    assert r.outcome is Outcome.PASS, r.reason
    s = sub(r, "TimeSlicedSharesShareOneGPU")
    assert s.outcome is Outcome.PASS
    assert sim.execs == ["share-0", "share-1", "share-2"]
    assert any("share GPU GPU-ts-0 on node ts-0" in line for line in s.log)
    assert sub(r, "PartitionsShareOnePhysicalDevice").outcome is Outcome.SKIP


def test_gpu_sharing_passes_with_dra_partitions_up_to_their_counters() -> None:
    sim = Sim(partitions=True)
    r = sim.run()
    assert r.outcome is Outcome.PASS, r.reason
    s = sub(r, "PartitionsShareOnePhysicalDevice")
    assert s.outcome is Outcome.PASS
    assert any("at most 2 of profile 3g.40gb fit; claiming 2, then one 1g.10gb" in x for x in s.log)
    assert any("claim partition-3 stayed unallocated" in line for line in s.log)
    claim = sim.fc.get(DRA, "ResourceClaim", "partition-1", "kaic-t")
    assert claim is None  # deleted afterwards


def test_gpu_sharing_fails_with_whole_gpus_only() -> None:
    r = Sim().run()
    assert r.outcome is Outcome.FAIL
    s = sub(r, "SharingMechanismExposed")
    assert "only whole GPUs" in s.reason and "node gpu-0: 8 nvidia.com/gpu on 8" in s.reason
    assert sub(r, "TimeSlicedSharesShareOneGPU").outcome is Outcome.SKIP


def test_gpu_sharing_fails_when_counters_are_not_enforced() -> None:
    sim = Sim(partitions=True)
    sim.enforce_counters = False
    r = sim.run()
    assert r.outcome is Outcome.FAIL
    reason = sub(r, "PartitionsShareOnePhysicalDevice").reason
    assert "claim partition-3 for a 1g.10gb partition was allocated mig-1g10gb-0" in reason
    assert "counters are not enforced" in reason


def test_gpu_sharing_fails_when_shares_are_distinct_gpus() -> None:
    sim = Sim(time_sliced=True)
    sim.distinct_shares = True
    r = sim.run()
    assert r.outcome is Outcome.FAIL
    assert "the shares are not of one GPU" in sub(r, "TimeSlicedSharesShareOneGPU").reason


def test_gpu_sharing_fails_when_the_shared_gpu_is_unhealthy() -> None:
    sim = Sim(time_sliced=True)
    sim.list_exit = 9
    r = sim.run()
    assert r.outcome is Outcome.FAIL
    assert "not healthy" in sub(r, "TimeSlicedSharesShareOneGPU").reason


def test_gpu_sharing_errors_when_partitions_name_no_parent_device() -> None:
    r = Sim(whole=False, partitions=True, partition_attrs=False).run()
    assert r.outcome is Outcome.ERROR
    assert "no free physical device" in sub(r, "PartitionsShareOnePhysicalDevice").reason


def test_gpu_sharing_errors_without_the_partitions_device_class() -> None:
    sim = Sim(partitions=True)
    sim.fc.delete(DRA, "DeviceClass", "mig.nvidia.com")
    r = sim.run()
    assert r.outcome is Outcome.ERROR and "--sharing-device-class" in r.reason


def test_gpu_sharing_is_manual_when_only_mig_extended_resources_exist() -> None:
    fc = FakeCluster()
    fc.add(node("mig-dp", {"nvidia.com/mig-3g.40gb": "2"}))
    r = run_fake_check(fc, "gpu_sharing", catalog_version="1.37")
    assert r.outcome is Outcome.MANUAL and "nvidia.com/mig-3g.40gb" in r.reason


def test_gpu_sharing_reports_an_unknown_accelerator_type() -> None:
    r = Sim().run(**{"accelerator-type": "amd"})
    assert r.outcome is Outcome.SKIP and r.reason.startswith("UNKNOWN:")


def test_gpu_sharing_is_not_applicable_without_accelerators() -> None:
    fc = FakeCluster()
    fc.add(node("cpu", {"cpu": "8"}))
    r = run_fake_check(fc, "gpu_sharing", catalog_version="1.37")
    assert r.outcome is Outcome.SKIP and r.not_applicable


def test_most_that_fit_counts_partitions_within_every_counter() -> None:
    sets = gs.partition_sets(
        Sim(partitions=True).fc.list(DRA, "ResourceSlice"), ACCELERATORS["nvidia"]
    )
    (ps,) = sets
    assert ps.parent == PARENT and ps.node == "mig-0"
    assert [ps.most_that_fit(p) for p, *_ in PROFILES] == [7, 2, 1]
