"""ext_failed_device_detection against the fake cluster: a device plugin that honours the
fault annotation (PASS), one that ignores it (FAIL: allocatable did not drop), one that
never recovers, DRA-only and device-plugin-only nodes, no way to inject (MANUAL) and no
accelerators (N/A)."""

from __future__ import annotations

import json
from typing import Any

from kaic.checks.accelerators import any_accelerator
from kaic.checks.base import CheckOption
from kaic.checks.ext_failed_device_detection import (
    FAULT_ANNOTATION,
    INJECTION_ANNOTATION,
    changed_conditions,
    published_healthy,
)
from kaic.lab.sims import device_health
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, gpu_slice, run_fake_check

NODE = "gpu-0"
GPUS = 4


def _node(name: str = NODE, *, gpus: int = GPUS, advertise: bool = True) -> dict[str, Any]:
    ann = {INJECTION_ANNOTATION: "node-annotation"} if advertise else {}
    cap = {"cpu": "8", "nvidia.com/gpu": str(gpus)} if gpus else {"cpu": "8"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": ann},
        "status": {
            "capacity": dict(cap),
            "allocatable": dict(cap),
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _slice(name: str = NODE, gpus: int = GPUS) -> dict[str, Any]:
    return gpu_slice(name, gpus)


def _fake(*, dra: bool = True, plugin: bool = True, advertise: bool = True) -> FakeCluster:
    fake = FakeCluster()
    fake.add(_node(gpus=GPUS if plugin else 0, advertise=advertise))
    fake.add(_node("cpu-0", gpus=0, advertise=False))
    if dra:
        fake.serve("resource.k8s.io/v1", ("resourceslices", "ResourceSlice", False))
        fake.add(_slice())
    return fake


def _device_plugin(
    fake: FakeCluster, *, react: bool = True, recover: bool = True, taint: bool = False
) -> None:
    """A device plugin and DRA driver that honour kaic.io/device-fault."""
    full = _slice()["spec"]["devices"]

    def act(c: FakeCluster) -> None:
        node = c.store[("v1", "Node", None, NODE)]
        failed = device_health.parse_indices(node["metadata"]["annotations"].get(FAULT_ANNOTATION))
        if not react or (not failed and not recover):
            return
        cap = node["status"]["capacity"].get("nvidia.com/gpu")
        if cap is not None:
            node["status"]["allocatable"]["nvidia.com/gpu"] = str(int(cap) - len(failed))
        status = "True" if failed else "False"
        conds = [x for x in node["status"]["conditions"] if x["type"] != "GPUUnhealthy"]
        node["status"]["conditions"] = [*conds, {"type": "GPUUnhealthy", "status": status}]
        key = ("resource.k8s.io/v1", "ResourceSlice", None, f"{NODE}-gpu")
        if key in c.store:
            spec = c.store[key]["spec"]
            if taint:
                spec["devices"] = [
                    d | ({"taints": [{"key": "k", "effect": "NoSchedule"}]} if i in failed else {})
                    for i, d in enumerate(full)
                ]
            else:
                spec["devices"] = [d for i, d in enumerate(full) if i not in failed]
        if failed and ("v1", "Event", "default", "ev") not in c.store:
            c.add(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": "ev", "namespace": "default"},
                    "involvedObject": {"kind": "Node", "name": NODE},
                    "type": "Warning",
                    "reason": "DeviceUnhealthy",
                    "message": "gpu-3 failed",
                }
            )

    fake.controllers.append(act)


def _run(fake: FakeCluster, **options: str) -> CheckResult:
    opts = {"device-fault-timeout": "0.3", "device-recovery-timeout": "0.3"} | options
    return run_fake_check(fake, "ext_failed_device_detection", options=opts)


def _outcomes(r: CheckResult) -> dict[str, Outcome]:
    return {s.name: s.outcome for s in r.subresults}


def test_passes_when_the_device_plugin_reports_the_failure_and_the_recovery() -> None:
    fake = _fake()
    _device_plugin(fake)
    r = _run(fake)
    assert r.outcome is Outcome.PASS, r.reason
    assert list(_outcomes(r)) == [
        "HealthyBaseline",
        "FaultInjected",
        "AllocatableDrops",
        "ResourceSliceUpdated",
        "FailureReported",
        "Recovers",
    ]
    assert set(_outcomes(r).values()) == {Outcome.PASS}
    log = "\n".join(r.log)
    assert "nvidia.com/gpu of gpu-0: 4 -> 3" in log
    assert "GPUUnhealthy=True" in log and "DeviceUnhealthy" in log
    node = fake.get("v1", "Node", NODE)
    assert node is not None and FAULT_ANNOTATION not in node["metadata"]["annotations"]
    evidence = json.loads(next(e.content for e in r.evidence if e.name == "device-health.json"))
    assert evidence["failed_indices"] == [3] and evidence["dra_devices"] == ["gpu-3"]


def test_fails_when_allocatable_does_not_drop() -> None:
    fake = _fake()
    _device_plugin(fake, react=False)
    r = _run(fake)
    assert r.outcome is Outcome.FAIL
    reason = r.subresults[2].reason
    assert _outcomes(r)["AllocatableDrops"] is Outcome.FAIL
    assert "allocatable nvidia.com/gpu of gpu-0 did not drop by 1" in reason
    assert "stayed 4, expected 3" in reason
    assert _outcomes(r)["ResourceSliceUpdated"] is Outcome.FAIL
    assert _outcomes(r)["FailureReported"] is Outcome.SKIP
    assert _outcomes(r)["Recovers"] is Outcome.SKIP
    node = fake.get("v1", "Node", NODE)
    assert node is not None and FAULT_ANNOTATION not in node["metadata"]["annotations"]


def test_fails_when_the_device_does_not_come_back() -> None:
    fake = _fake()
    _device_plugin(fake, recover=False)
    r = _run(fake)
    assert _outcomes(r)["AllocatableDrops"] is Outcome.PASS
    assert _outcomes(r)["Recovers"] is Outcome.FAIL
    assert "did not come back" in r.reason


def test_a_device_tainted_in_its_slice_counts_as_marked_unhealthy() -> None:
    fake = _fake(plugin=False)
    _device_plugin(fake, taint=True)
    r = _run(fake)
    assert r.outcome is Outcome.PASS, r.reason
    assert _outcomes(r)["AllocatableDrops"] is Outcome.SKIP
    assert _outcomes(r)["ResourceSliceUpdated"] is Outcome.PASS


def test_a_device_plugin_only_node_skips_the_slice() -> None:
    fake = _fake(dra=False)
    _device_plugin(fake)
    r = _run(fake, **{"device-fault-count": "2"})
    assert r.outcome is Outcome.PASS, r.reason
    assert _outcomes(r)["ResourceSliceUpdated"] is Outcome.SKIP
    assert "4 -> 2" in "\n".join(r.log)


def test_manual_without_a_way_to_inject_a_fault() -> None:
    fake = _fake(advertise=False)
    _device_plugin(fake)
    r = _run(fake)
    assert r.outcome is Outcome.MANUAL
    assert "no accelerator node advertises" in r.reason
    assert "--device-fault-injection node-annotation" in r.reason
    assert "status.allocatable" in r.reason
    node = fake.get("v1", "Node", NODE)
    assert node is not None and FAULT_ANNOTATION not in node["metadata"]["annotations"]


def test_the_contract_can_be_named_without_the_advertisement() -> None:
    fake = _fake(advertise=False)
    _device_plugin(fake)
    r = _run(fake, **{"device-fault-injection": "node-annotation"})
    assert r.outcome is Outcome.PASS, r.reason


def test_manual_when_injection_is_turned_off() -> None:
    fake = _fake()
    _device_plugin(fake)
    r = _run(fake, **{"device-fault-injection": "none"})
    assert r.outcome is Outcome.MANUAL and "--device-fault-injection none" in r.reason


def test_not_applicable_without_accelerators() -> None:
    fake = FakeCluster()
    fake.add(_node("cpu-0", gpus=0))
    r = _run(fake)
    assert r.outcome is Outcome.SKIP and r.not_applicable
    assert "no node advertises accelerators" in r.reason


def test_a_named_node_without_accelerators_fails() -> None:
    fake = _fake()
    r = _run(fake, **{"device-fault-node": "cpu-0"})
    assert (
        r.outcome is Outcome.FAIL and "cpu-0 (--device-fault-node) has no accelerators" in r.reason
    )


def test_the_injection_option_accepts_only_its_methods() -> None:
    opt = CheckOption("x", "h", "auto", choices=("auto", "none"))
    assert opt.problem("none") is None
    assert opt.problem("ssh") == "--x must be one of auto, none, got 'ssh'"


def test_the_check_and_the_lab_share_the_contract() -> None:
    assert FAULT_ANNOTATION == device_health.FAULT_ANNOTATION
    assert INJECTION_ANNOTATION == device_health.INJECTION_ANNOTATION
    assert device_health.INJECTION_METHOD == "node-annotation"


def test_changed_conditions_name_new_and_flipped_ones_only() -> None:
    before = {"Ready": ("True", "KubeletReady", ""), "X": ("False", "", "")}
    after = before | {"X": ("True", "Bad", "gpu 3"), "GPUUnhealthy": ("True", "", "")}
    assert changed_conditions(before, after) == ["GPUUnhealthy=True", "X=True (Bad: gpu 3)"]


def test_an_unhealthy_attribute_marks_a_device() -> None:
    s = _slice()
    s["spec"]["devices"][1]["attributes"]["gpu.nvidia.com/healthy"] = {"bool": False}
    assert published_healthy([s], any_accelerator(), NODE, ["gpu-0", "gpu-1"]) == ["gpu-0"]
