"""Simulated device health: the lab's GPUs fail and recover when asked through the API.

Owns: the lab side of kaic's device fault-injection contract (docs/checks.md,
``ext_failed_device_detection``) and what the simulated device plugin and DRA driver do
when a device fails. Run by the device visibility agent (``kaic.lab.sims.devices``) on
every reconcile. Must not import the ``kubernetes`` client.

The contract, as a platform's (mock) device plugin would honour it:

* every GPU node carries the annotation ``kaic.io/device-fault-injection:
  node-annotation`` (written here): "this node's device plugin honours the next one";
* the annotation ``kaic.io/device-fault: "7"`` (comma-separated device indices, the
  ``index``/``minor`` of the DRA device and the device plugin's device number) fails
  those devices; removing it (or an empty value) makes them healthy again.

What a failure does here, as a real device plugin and DRA driver would:

* ``status.allocatable`` of ``nvidia.com/gpu`` drops by the failed count (capacity stays);
* the failed devices leave the node's ``gpu.nvidia.com`` ResourceSlice (the pool's
  generation goes up; the removed devices are kept in the slice's annotation
  ``kaic.io/failed-devices`` so that recovery can put them back);
* Node condition ``GPUUnhealthy`` turns ``True`` (reason ``DeviceFailed``, naming the
  devices), back to ``False`` (``DevicesHealthy``) on recovery;
* a Warning Event ``DeviceUnhealthy`` (recovery: Normal ``DeviceHealthy``) about the Node
  in namespace ``default``, where the kubelet files node events;
* the annotation ``kaic.io/device-fault-reported`` records what was last reported.

ConfigMap ``kube-system/kaic-lab-device-health`` with ``reporting: "off"`` (the
``device-health-off`` component) turns the reaction off while the contract is still
advertised: a platform whose device plugin does not report failed devices, for negative
tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kaic.lab.apiserver import ApiClient, ApiError

INJECTION_ANNOTATION = "kaic.io/device-fault-injection"
INJECTION_METHOD = "node-annotation"
FAULT_ANNOTATION = "kaic.io/device-fault"
REPORTED_ANNOTATION = "kaic.io/device-fault-reported"
STASH_ANNOTATION = "kaic.io/failed-devices"
CONDITION = "GPUUnhealthy"
CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "kaic-lab-device-health"
EVENT_NAMESPACE = "default"
DRIVER = "gpu.nvidia.com"
RESOURCE = "nvidia.com/gpu"
SOURCE = "kaic-lab-device-plugin"


def parse_indices(value: str | None) -> frozenset[int]:
    """Device indices of an annotation value (``"3"``, ``"0, 5"``); junk is ignored."""
    out = set()
    for part in (value or "").split(","):
        part = part.strip()
        if part.isdecimal():
            out.add(int(part))
    return frozenset(out)


def format_indices(indices: Iterable[int]) -> str:
    return ",".join(str(i) for i in sorted(indices))


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def device_index(device: Mapping[str, Any]) -> int | None:
    """The ``index`` (else ``minor``) attribute of a ResourceSlice device."""
    attrs = device.get("attributes") or {}
    for name in ("index", "minor", f"{DRIVER}/index", f"{DRIVER}/minor"):
        v = attrs.get(name)
        if isinstance(v, Mapping) and "int" in v:
            return _int(v["int"])
    return None


def node_slices(slices: Iterable[Mapping[str, Any]], node: str) -> list[Mapping[str, Any]]:
    return slices_by_node(slices).get(node, [])


def slices_by_node(slices: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The simulated driver's slices by node name (one pass: a large lab has thousands)."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for s in slices:
        spec = s.get("spec") or {}
        if spec.get("driver") == DRIVER and spec.get("nodeName"):
            out.setdefault(str(spec["nodeName"]), []).append(s)
    return out


def split_slice(
    slice_: Mapping[str, Any], failed: frozenset[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(published, stashed) devices of a slice with ``failed`` taken out: every device the
    slice publishes or keeps in its stash, healthy ones published in index order."""
    md = slice_.get("metadata") or {}
    try:
        stash = json.loads((md.get("annotations") or {}).get(STASH_ANNOTATION) or "[]")
    except ValueError:
        stash = []
    every = [dict(d) for d in (slice_.get("spec") or {}).get("devices") or []]
    names = {d.get("name") for d in every}
    every += [dict(d) for d in stash if isinstance(d, dict) and d.get("name") not in names]
    every.sort(key=lambda d: (device_index(d) is None, device_index(d) or 0, d.get("name", "")))
    published = [d for d in every if device_index(d) not in failed]
    stashed = [d for d in every if device_index(d) in failed]
    return published, stashed


def expected_allocatable(node: Mapping[str, Any], failed: frozenset[int]) -> str | None:
    """What ``status.allocatable`` of the resource should say with ``failed`` out (None:
    the node offers no such resource)."""
    cap = _int(((node.get("status") or {}).get("capacity") or {}).get(RESOURCE))
    if cap is None or cap <= 0:
        return None
    return str(cap - len([i for i in failed if 0 <= i < cap]))


def node_devices(node: Mapping[str, Any], slices: Sequence[Mapping[str, Any]]) -> set[int]:
    """Indices of the node's devices: its capacity and its slices' devices (also failed)."""
    out = set(range(_int(((node.get("status") or {}).get("capacity") or {}).get(RESOURCE)) or 0))
    for s in slices:
        published, stashed = split_slice(s, frozenset())
        out |= {i for i in (device_index(d) for d in published + stashed) if i is not None}
    return out


def reporting_on(data: Mapping[str, Any]) -> bool:
    """Whether the settings ConfigMap's ``data`` leaves failure reporting on."""
    return str(data.get("reporting", "on")).strip().lower() != "off"


class HealthReporter:
    """Applies the fault annotations of the lab's GPU nodes (see the module docstring)."""

    def __init__(self, api: ApiClient, log: Callable[[str], None]) -> None:
        self.api = api
        self.log = log

    def reporting(self) -> bool:
        try:
            cm = self.api.request(
                "GET", f"/api/v1/namespaces/{CONFIGMAP_NAMESPACE}/configmaps/{CONFIGMAP_NAME}"
            )
        except ApiError as e:
            if e.status == 404:
                return True
            raise
        return reporting_on(cm.get("data") or {})

    def reconcile(
        self,
        nodes: Sequence[Mapping[str, Any]],
        slices: Sequence[Mapping[str, Any]],
        on: bool | None = None,
    ) -> None:
        """``on``: whether failures are reported (None: read the settings ConfigMap)."""
        if on is None:
            on = self.reporting()
        by_node = slices_by_node(slices)
        for node in nodes:
            name = str((node.get("metadata") or {}).get("name", ""))
            mine = by_node.get(name, [])
            have = node_devices(node, mine)
            if not have:
                continue
            ann = (node.get("metadata") or {}).get("annotations") or {}
            if ann.get(INJECTION_ANNOTATION) != INJECTION_METHOD:
                self._patch_node(name, {INJECTION_ANNOTATION: INJECTION_METHOD})
            if not on:
                continue
            failed = parse_indices(ann.get(FAULT_ANNOTATION)) & have
            reported = parse_indices(ann.get(REPORTED_ANNOTATION))
            self._sync_allocatable(node, failed)
            for s in mine:
                self._sync_slice(s, failed)
            # NOTE: a healthy node that never failed has nothing to report: a large lab's
            # start-up writes no node for it (a node write reaches every node watcher).
            if failed != reported:
                self._report(node, failed, reported)
                self._patch_node(name, {REPORTED_ANNOTATION: format_indices(failed)})

    # -- the device plugin: allocatable ---------------------------------------------
    def _sync_allocatable(self, node: Mapping[str, Any], failed: frozenset[int]) -> None:
        want = expected_allocatable(node, failed)
        alloc = ((node.get("status") or {}).get("allocatable") or {}).get(RESOURCE)
        if want is None or str(alloc) == want:
            return
        name = node["metadata"]["name"]
        self.api.request(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            {"status": {"allocatable": {RESOURCE: want}}},
            content_type="application/merge-patch+json",
        )
        self.log(f"{name}: allocatable {RESOURCE} {alloc} -> {want}")

    # -- the DRA driver: the node's ResourceSlice -------------------------------------
    def _sync_slice(self, slice_: Mapping[str, Any], failed: frozenset[int]) -> None:
        published, stashed = split_slice(slice_, failed)
        current = (slice_.get("spec") or {}).get("devices") or []
        if [d.get("name") for d in current] == [d.get("name") for d in published]:
            return
        md = slice_["metadata"]
        pool = dict((slice_.get("spec") or {}).get("pool") or {})
        pool["generation"] = int(pool.get("generation", 0) or 0) + 1
        patch = {
            "metadata": {
                "resourceVersion": md.get("resourceVersion"),
                "annotations": {STASH_ANNOTATION: json.dumps(stashed) if stashed else None},
            },
            "spec": {"devices": published, "pool": pool},
        }
        try:
            self.api.request(
                "PATCH",
                f"/apis/resource.k8s.io/v1/resourceslices/{md['name']}",
                patch,
                content_type="application/merge-patch+json",
            )
        except ApiError as e:
            if e.status != 409:  # changed meanwhile: the next reconcile sees the new one
                raise
            return
        self.log(
            f"ResourceSlice {md['name']}: {len(published)} devices published"
            + (f", {', '.join(str(d.get('name')) for d in stashed)} failed" if stashed else "")
        )

    # -- the node problem reporter: condition and Event -------------------------------
    def _report(
        self, node: Mapping[str, Any], failed: frozenset[int], reported: frozenset[int]
    ) -> None:
        md = node["metadata"]
        name = md["name"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if failed:
            cond = {
                "type": CONDITION,
                "status": "True",
                "reason": "DeviceFailed",
                "message": f"{RESOURCE} device(s) {format_indices(failed)} failed",
            }
        else:
            cond = {
                "type": CONDITION,
                "status": "False",
                "reason": "DevicesHealthy",
                "message": f"every {RESOURCE} device is healthy",
            }
        cond |= {"lastHeartbeatTime": now, "lastTransitionTime": now}
        # NOTE: a strategic merge patch keeps the kubelet's (kwok's) own conditions:
        # Node conditions merge by type.
        self.api.request(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            {"status": {"conditions": [cond]}},
            content_type="application/strategic-merge-patch+json",
        )
        for idx, bad in [(i, True) for i in sorted(failed - reported)] + [
            (i, False) for i in sorted(reported - failed)
        ]:
            self._event(md, idx, bad, now)
        self.log(f"{name}: {CONDITION}={cond['status']} ({cond['message']})")

    def _event(self, md: Mapping[str, Any], idx: int, bad: bool, now: str) -> None:
        name = md["name"]
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{name}.gpu-{idx}.",
                "namespace": EVENT_NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "kaic-lab"},
            },
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Node",
                "name": name,
                "uid": md.get("uid", ""),
            },
            "type": "Warning" if bad else "Normal",
            "reason": "DeviceUnhealthy" if bad else "DeviceHealthy",
            "message": (
                f"{RESOURCE} device {idx} (gpu-{idx}) is unhealthy (simulated fault)"
                if bad
                else f"{RESOURCE} device {idx} (gpu-{idx}) is healthy again"
            ),
            "source": {"component": SOURCE, "host": name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": SOURCE,
            "reportingInstance": name,
        }
        try:
            self.api.request("POST", f"/api/v1/namespaces/{EVENT_NAMESPACE}/events", body)
        except ApiError as e:
            self.log(f"cannot record the event for {name} device {idx}: {e}")

    def _patch_node(self, name: str, annotations: Mapping[str, str | None]) -> None:
        self.api.request(
            "PATCH",
            f"/api/v1/nodes/{name}",
            {"metadata": {"annotations": dict(annotations)}},
            content_type="application/merge-patch+json",
        )
