"""The lab's simulated device health: the fault annotation lowers allocatable, takes the
device out of the ResourceSlice, sets a condition and files an Event; removing it
restores all; with reporting off nothing reacts."""

from __future__ import annotations

import copy
import json
from typing import Any

from kaic.lab.apiserver import ApiError
from kaic.lab.components import device_health_off
from kaic.lab.sims import device_health as h


def _merge(dst: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


class Api:
    """Nodes, one ResourceSlice, Events and the reporting ConfigMap, patched in place."""

    def __init__(self, reporting: str | None = None) -> None:
        self.node: dict[str, Any] = {
            "metadata": {"name": "n0", "uid": "u0", "annotations": {}},
            "status": {
                "capacity": {"nvidia.com/gpu": "4"},
                "allocatable": {"nvidia.com/gpu": "4"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
        self.slice: dict[str, Any] = {
            "metadata": {"name": "n0-gpu.nvidia.com", "resourceVersion": "1"},
            "spec": {
                "driver": h.DRIVER,
                "nodeName": "n0",
                "pool": {"name": "n0", "generation": 1, "resourceSliceCount": 1},
                "devices": [
                    {"name": f"gpu-{i}", "attributes": {"index": {"int": i}}} for i in range(4)
                ],
            },
        }
        self.events: list[dict[str, Any]] = []
        self.reporting = reporting

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if method == "GET" and path.endswith(f"/configmaps/{h.CONFIGMAP_NAME}"):
            if self.reporting is None:
                raise ApiError(404, "not found")
            return {"data": {"reporting": self.reporting}}
        if method == "PATCH" and path == "/api/v1/nodes/n0":
            _merge(self.node, body)
        elif method == "PATCH" and path == "/api/v1/nodes/n0/status":
            conds = body["status"].pop("conditions", None)
            _merge(self.node, body)
            if conds:
                keep = [
                    c for c in self.node["status"]["conditions"] if c["type"] != conds[0]["type"]
                ]
                self.node["status"]["conditions"] = keep + conds
        elif method == "PATCH" and path.endswith("/resourceslices/n0-gpu.nvidia.com"):
            body["metadata"].pop("resourceVersion")
            _merge(self.slice, body)
        elif method == "POST" and path.endswith("/events"):
            self.events.append(body)
        else:
            raise AssertionError(f"unexpected {method} {path}")
        return None

    def tick(self) -> None:
        h.HealthReporter(self, lambda m: None).reconcile(  # type: ignore[arg-type]
            [copy.deepcopy(self.node)], [copy.deepcopy(self.slice)]
        )

    def devices(self) -> list[str]:
        return [d["name"] for d in self.slice["spec"]["devices"]]

    def condition(self) -> str | None:
        for c in self.node["status"]["conditions"]:
            if c["type"] == h.CONDITION:
                return str(c["status"])
        return None


def test_gpu_nodes_advertise_the_contract() -> None:
    api = Api()
    api.tick()
    assert api.node["metadata"]["annotations"][h.INJECTION_ANNOTATION] == "node-annotation"
    assert api.devices() == ["gpu-0", "gpu-1", "gpu-2", "gpu-3"]


def test_a_healthy_node_with_the_contract_is_not_written() -> None:
    api = Api()
    api.tick()  # the contract's annotation is written once (a lab's node is created with it)
    writes: list[str] = []
    request = api.request

    def counting(method: str, path: str, *args: Any, **kw: Any) -> Any:
        if method != "GET":
            writes.append(f"{method} {path}")
        return request(method, path, *args, **kw)

    api.request = counting  # type: ignore[method-assign]
    api.tick()
    assert writes == [] and api.condition() is None and api.events == []


def test_a_fault_is_reported_everywhere_and_recovery_restores_it() -> None:
    api = Api()
    api.tick()
    api.node["metadata"]["annotations"][h.FAULT_ANNOTATION] = "3, 1"
    api.tick()
    assert api.node["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    assert api.node["status"]["capacity"]["nvidia.com/gpu"] == "4"
    assert api.devices() == ["gpu-0", "gpu-2"]
    assert api.slice["spec"]["pool"]["generation"] == 2
    stash = json.loads(api.slice["metadata"]["annotations"][h.STASH_ANNOTATION])
    assert [d["name"] for d in stash] == ["gpu-1", "gpu-3"]
    assert api.condition() == "True"
    assert [(e["reason"], e["involvedObject"]["uid"]) for e in api.events] == [
        ("DeviceUnhealthy", "u0"),
        ("DeviceUnhealthy", "u0"),
    ]
    api.tick()  # nothing new to report
    assert len(api.events) == 2
    del api.node["metadata"]["annotations"][h.FAULT_ANNOTATION]
    api.tick()
    assert api.node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert api.devices() == ["gpu-0", "gpu-1", "gpu-2", "gpu-3"]
    assert h.STASH_ANNOTATION not in api.slice["metadata"].get("annotations", {})
    assert api.condition() == "False"
    assert [e["reason"] for e in api.events[2:]] == ["DeviceHealthy", "DeviceHealthy"]


def test_allocatable_reset_by_the_lab_is_lowered_again() -> None:
    api = Api()
    api.node["metadata"]["annotations"][h.FAULT_ANNOTATION] = "0"
    api.tick()
    api.node["status"]["allocatable"]["nvidia.com/gpu"] = "4"  # `kaic lab up` again
    api.tick()
    assert api.node["status"]["allocatable"]["nvidia.com/gpu"] == "3"


def test_with_reporting_off_a_fault_changes_nothing_but_the_contract_stays() -> None:
    api = Api(reporting="off")
    api.node["metadata"]["annotations"][h.FAULT_ANNOTATION] = "2"
    api.tick()
    assert api.node["metadata"]["annotations"][h.INJECTION_ANNOTATION] == "node-annotation"
    assert api.node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert len(api.devices()) == 4 and api.events == [] and api.condition() is None


def test_indices_that_are_no_device_are_ignored() -> None:
    assert h.parse_indices("1,x, 9 ,") == {1, 9}
    api = Api()
    api.node["metadata"]["annotations"][h.FAULT_ANNOTATION] = "9"
    api.tick()
    assert api.node["status"]["allocatable"]["nvidia.com/gpu"] == "4"


def test_the_off_component_writes_the_reporting_configmap() -> None:
    cm = device_health_off.reporting_configmap("off")
    assert (cm["metadata"]["namespace"], cm["metadata"]["name"]) == (
        h.CONFIGMAP_NAMESPACE,
        h.CONFIGMAP_NAME,
    )
    assert cm["data"] == {"reporting": "off"}
    assert device_health_off.DeviceHealthOff.default is False
