"""ext_failed_device_detection (extended profile, TestExtFailedDeviceDetection): a failed
accelerator is taken out of its node's allocatable resources (and DRA ResourceSlice), is
reported on the Node, and comes back when it recovers.

Owns: the program document's procedure (a node with healthy accelerators, a simulated
failure of one of them, polling the Node's ``status.allocatable``, its conditions and
Events, and with DRA its ResourceSlice; then recovery), kaic's fault-injection contract
(below) and the evidence. Must not know how the lab simulates devices.

Fault injection needs the platform's help. kaic's contract, which a (mock) device plugin
or DRA driver may honour (the lab's does):

* the Node carries ``kaic.io/device-fault-injection: node-annotation``: its device plugin
  honours the annotation below (``--device-fault-injection auto`` looks for it;
  ``node-annotation`` uses the contract without it; ``none`` does not inject);
* ``kaic.io/device-fault: "<index>[,<index>…]"`` on the Node fails those devices (the
  device plugin's device number, the DRA device's ``index`` or ``minor`` attribute);
  removing the annotation recovers them.

Without a way to inject, the check is MANUAL and says what to attach.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaic.checks.accelerators import (
    AcceleratorType,
    any_accelerator,
    dra_version,
    node_accelerators,
)
from kaic.checks.base import RUNS_ALONE, CheckContext, CheckOption, Permission, Subtest, check
from kaic.checks.predicates import node_ready
from kaic.checks.resources import allocatable
from kaic.cluster.api import KubeList, KubeObject, name_of
from kaic.errors import ClusterError, WaitTimeoutError

INJECTION_ANNOTATION = "kaic.io/device-fault-injection"
"""On a Node: the fault-injection method its device plugin honours (``node-annotation``)."""
FAULT_ANNOTATION = "kaic.io/device-fault"
"""On a Node: the indices of the devices to fail (comma-separated); removed to recover."""
NODE_ANNOTATION = "node-annotation"
METHODS = ("auto", NODE_ANNOTATION, "none")
EVENT_NAMESPACE = "default"
"""Where the kubelet and node problem reporters file Events about Nodes."""
UNHEALTHY_TAINT_EFFECTS = ("NoSchedule", "NoExecute")
UNHEALTHY_VALUES = (False, "false", "False", "Unhealthy", "unhealthy")

ATTACH = (
    "attach evidence of a failed accelerator being detected: the Node's"
    " status.allocatable of the accelerator resource before, during and after a device"
    " failure, its conditions and Events, (with DRA) its ResourceSlice without the device or"
    " with the device marked unhealthy, and the recovery"
)

OPTIONS = (
    CheckOption(
        "device-fault-injection",
        "how to fail a device: auto (kaic's node-annotation contract where a node"
        " advertises it), node-annotation (the platform honours kaic.io/device-fault),"
        " none (MANUAL)",
        "auto",
        choices=METHODS,
    ),
    CheckOption("device-fault-node", "node whose device to fail (default: chosen)", None),
    CheckOption("device-fault-count", "devices to fail at once", "1", kind="integer"),
    CheckOption(
        "device-fault-timeout", "seconds for the failure to show in the Node's resources", "60"
    ),
    CheckOption("device-recovery-timeout", "seconds for the device to come back", "60"),
)


def advertised(node: KubeObject) -> bool:
    ann = node.get("metadata", {}).get("annotations") or {}
    return ann.get(INJECTION_ANNOTATION) == NODE_ANNOTATION


def pending_fault(node: KubeObject) -> str | None:
    ann = node.get("metadata", {}).get("annotations") or {}
    value = ann.get(FAULT_ANNOTATION)
    return str(value) if value else None


def conditions_of(node: KubeObject | None) -> dict[str, tuple[str, str, str]]:
    """type -> (status, reason, message) of a Node's conditions."""
    out = {}
    for c in ((node or {}).get("status") or {}).get("conditions") or []:
        out[str(c.get("type"))] = (
            str(c.get("status")),
            str(c.get("reason", "")),
            str(c.get("message", "")),
        )
    return out


def changed_conditions(
    before: Mapping[str, tuple[str, str, str]], after: Mapping[str, tuple[str, str, str]]
) -> list[str]:
    """Conditions that appeared or changed status or reason, as ``Type=Status (reason:
    message)``."""
    out = []
    for t, (status, reason, message) in sorted(after.items()):
        old = before.get(t)
        if old is None or old[:2] != (status, reason):
            out.append(f"{t}={status} ({reason}: {message})" if reason else f"{t}={status}")
    return out


def event_key(e: KubeObject) -> tuple[str, str]:
    return (str(e.get("metadata", {}).get("uid", "")), str(e.get("count", "")))


def new_events(events: KubeList, seen: set[tuple[str, str]]) -> list[str]:
    return [
        f"{e.get('type')} {e.get('reason')}: {e.get('message')}"
        for e in events
        if event_key(e) not in seen and e.get("involvedObject", {}).get("kind") == "Node"
    ]


def published_healthy(
    slices: KubeList, acc: AcceleratorType, node: str, names: Sequence[str]
) -> list[str]:
    """Which of ``names`` the node's ResourceSlices (at their pool's newest generation)
    still publish as usable: present, without a NoSchedule/NoExecute taint and without a
    ``healthy: false``/``health: Unhealthy`` attribute."""
    newest: dict[tuple[str, str], int] = {}
    mine = [
        s
        for s in slices
        if s.get("spec", {}).get("driver") in acc.drivers and s["spec"].get("nodeName") == node
    ]
    for s in mine:
        p = s["spec"].get("pool") or {}
        key = (str(s["spec"]["driver"]), str(p.get("name", "")))
        newest[key] = max(newest.get(key, 0), int(p.get("generation", 0) or 0))
    usable = set()
    for s in mine:
        p = s["spec"].get("pool") or {}
        key = (str(s["spec"]["driver"]), str(p.get("name", "")))
        if int(p.get("generation", 0) or 0) != newest[key]:
            continue
        for d in s["spec"].get("devices") or []:
            if _marked_unhealthy(d):
                continue
            usable.add(str(d.get("name", "")))
    return [n for n in names if n in usable]


def _marked_unhealthy(device: Mapping[str, Any]) -> bool:
    if any(t.get("effect") in UNHEALTHY_TAINT_EFFECTS for t in device.get("taints") or []):
        return True
    for k, v in (device.get("attributes") or {}).items():
        if (
            k.rsplit("/", 1)[-1] in ("healthy", "health")
            and isinstance(v, Mapping)
            and any(v.get(t) in UNHEALTHY_VALUES for t in ("bool", "string"))
        ):
            return True
    return False


@dataclass
class _Target:
    node: str
    resource: str | None
    """The extended resource whose allocatable count should drop (None: DRA only)."""
    baseline: int
    indices: list[int]
    dra_names: list[str]
    """The DRA devices of those indices (empty: no DRA)."""
    timeline: list[dict[str, Any]] = field(default_factory=list)


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.acc = any_accelerator()
        self.av = dra_version(self.c, ("ResourceSlice",))
        self.t: _Target | None = None
        self.injected = False
        self.conds_before: dict[str, tuple[str, str, str]] = {}
        self.events_seen: set[tuple[str, str]] = set()
        self.reported: list[str] = []

    # -- choosing ------------------------------------------------------------------
    def choose(self) -> None:
        """Pick the node and devices, or end the check (N/A, MANUAL)."""
        method = self.ctx.option("device-fault-injection") or "auto"
        if method not in METHODS:
            self.ctx.error(
                f"--device-fault-injection must be one of {', '.join(METHODS)}, got {method!r}"
            )
        nodes = self.c.list("v1", "Node")
        inv, notes = node_accelerators(self.c, self.acc, nodes)
        for n in notes:
            self.ctx.log(n)
        if not inv:
            self.ctx.not_applicable("no node advertises accelerators (allocatable or DRA)")
        if method == "none":
            self.ctx.manual(f"no fault injection (--device-fault-injection none); {ATTACH}")
        by_name = {name_of(n): n for n in nodes}
        wanted = self.ctx.option("device-fault-node")
        if wanted:
            if wanted not in inv:
                self.ctx.fail(f"node {wanted} (--device-fault-node) has no accelerators")
            candidates = [wanted]
        else:
            candidates = [
                n
                for n in sorted(inv, key=lambda n: (-len(inv[n]), n))
                if node_ready(by_name[n]) and not pending_fault(by_name[n])
            ]
        if method == "auto":
            candidates = [n for n in candidates if advertised(by_name[n])]
            if not candidates:
                self.ctx.manual(
                    "no way to inject a device fault: no accelerator node advertises kaic's"
                    f" fault-injection contract ({INJECTION_ANNOTATION}={NODE_ANNOTATION}); if"
                    f" the platform's device plugin honours the Node annotation"
                    f" {FAULT_ANNOTATION}, run with --device-fault-injection {NODE_ANNOTATION};"
                    f" otherwise {ATTACH}"
                )
        if not candidates:
            self.ctx.fail("no Ready accelerator node without a pending device fault")
        name = candidates[0]
        node = by_name[name]
        count = int(self.ctx.option("device-fault-count") or "1")
        indexed = sorted(
            (a for a in inv[name] if a.index is not None),
            key=lambda a: a.index if a.index is not None else -1,
        )
        if len(indexed) < count:
            self.ctx.error(
                f"{name} has {len(indexed)} accelerators with a device index, fewer than"
                f" --device-fault-count {count}: kaic cannot name the devices to fail"
            )
        chosen = indexed[-count:]
        resource = next((r for r in self.acc.extended_resources if allocatable(node, r) > 0), None)
        self.t = _Target(
            node=name,
            resource=resource,
            baseline=int(allocatable(node, resource)) if resource else 0,
            indices=[a.index for a in chosen if a.index is not None],
            dra_names=[a.name for a in chosen if "#" not in a.name],
        )

    # -- observing -------------------------------------------------------------------
    def _node(self) -> KubeObject:
        assert self.t is not None
        node = self.c.get("v1", "Node", self.t.node)
        if node is None:
            raise ClusterError(f"node {self.t.node} disappeared")
        return node

    def _count(self, node: KubeObject | None) -> int:
        assert self.t is not None and self.t.resource is not None
        return int(allocatable(node or {}, self.t.resource))

    def _note(self, what: str, node: KubeObject | None = None) -> None:
        assert self.t is not None
        entry: dict[str, Any] = {"t": round(time.monotonic() - self.ctx.started, 2), "what": what}
        if self.t.resource and node is not None:
            entry["allocatable"] = self._count(node)
            self.ctx.sample("allocatable", self.t.resource, self._count(node), unit="devices")
        self.t.timeline.append(entry)

    def _slices(self) -> KubeList:
        return self.c.list(self.av, "ResourceSlice") if self.av else []

    def _events(self) -> KubeList:
        assert self.t is not None
        return self.c.events(EVENT_NAMESPACE, involved_name=self.t.node)

    # -- steps -----------------------------------------------------------------------
    def baseline(self, st: Subtest) -> None:
        t = self.t
        assert t is not None
        node = self._node()
        if pending_fault(node):
            st.fail(f"{t.node} already has {FAULT_ANNOTATION}={pending_fault(node)}")
        if not node_ready(node):
            st.fail(f"{t.node} is not Ready")
        if t.dra_names:
            usable = published_healthy(self._slices(), self.acc, t.node, t.dra_names)
            missing = [n for n in t.dra_names if n not in usable]
            if missing:
                st.fail(f"devices {', '.join(missing)} of {t.node} are not published healthy")
        self.conds_before = conditions_of(node)
        self.events_seen = {event_key(e) for e in self._events()}
        self._note("baseline", node)
        st.log(
            f"{t.node}: devices {', '.join(map(str, t.indices))} healthy"
            + (f"; allocatable {t.resource}={t.baseline}" if t.resource else "")
            + (f"; DRA devices {', '.join(t.dra_names)} published" if t.dra_names else "")
        )

    def inject(self, st: Subtest) -> None:
        t = self.t
        assert t is not None
        value = ",".join(str(i) for i in t.indices)
        self.c.patch("v1", "Node", t.node, {"metadata": {"annotations": {FAULT_ANNOTATION: value}}})
        self.injected = True
        self._note(f"{FAULT_ANNOTATION}={value}")
        st.log(f"annotated {t.node} with {FAULT_ANNOTATION}={value}")

    def allocatable_drops(self, st: Subtest) -> None:
        t = self.t
        assert t is not None
        if t.resource is None:
            st.skip(f"{t.node} offers no accelerator extended resource (DRA only)")
        want = t.baseline - len(t.indices)
        timeout = self.ctx.budget(self.ctx.float_option("device-fault-timeout"))
        try:
            node = self.c.wait_for(
                "v1",
                "Node",
                t.node,
                None,
                lambda n: n is not None and self._count(n) <= want,
                timeout=timeout,
                what=f"allocatable {t.resource} of {t.node} to drop",
            )
        except WaitTimeoutError:
            now = self._count(self.c.get("v1", "Node", t.node))
            st.fail(
                f"allocatable {t.resource} of {t.node} did not drop by {len(t.indices)} within"
                f" {timeout:.0f}s of the device failure (stayed {now}, expected {want})"
            )
        self._note("allocatable dropped", node)
        got = self._count(node)
        st.require(
            got == want,
            f"allocatable {t.resource} of {t.node} dropped to {got}, not by the failed count"
            f" {len(t.indices)} (expected {want})",
        )
        st.log(f"allocatable {t.resource} of {t.node}: {t.baseline} -> {got}")

    def slice_updated(self, st: Subtest) -> None:
        t = self.t
        assert t is not None
        if not t.dra_names or self.av is None:
            st.skip(f"{t.node} publishes no DRA accelerator devices")
        timeout = self.ctx.budget(self.ctx.float_option("device-fault-timeout"))
        try:
            self.c.wait_list(
                self.av,
                "ResourceSlice",
                None,
                lambda s: not published_healthy(s, self.acc, t.node, t.dra_names),
                timeout=timeout,
                what=f"the failed devices to leave {t.node}'s ResourceSlice",
            )
        except WaitTimeoutError:
            still = published_healthy(self._slices(), self.acc, t.node, t.dra_names)
            st.fail(
                f"the ResourceSlice of {t.node} still publishes {', '.join(still)} as healthy"
                f" {timeout:.0f}s after the failure (neither removed nor tainted)"
            )
        self._note("ResourceSlice updated")
        st.log(f"{', '.join(t.dra_names)} left {t.node}'s ResourceSlice (or are marked unhealthy)")

    def reported_on_node(self, st: Subtest) -> None:
        t = self.t
        assert t is not None
        deadline = time.monotonic() + self.ctx.budget(10.0)
        while True:
            changed = changed_conditions(self.conds_before, conditions_of(self._node()))
            events = new_events(self._events(), self.events_seen)
            if changed or events or time.monotonic() >= deadline:
                break
            self.ctx.sleep(1.0)
        if bool(changed) != bool(events):
            # NOTE: a reporter writes the condition and the Event one after the other:
            # seen between the two, the other gets a moment to appear (both are evidence).
            self.ctx.sleep(2.0)
            changed = changed or changed_conditions(self.conds_before, conditions_of(self._node()))
            events = events or new_events(self._events(), self.events_seen)
        self.reported = changed + events
        if not self.reported:
            st.skip(
                f"no Node condition changed and no Event about {t.node} appeared (the"
                " resource counts above are the detection)"
            )
        for line in changed:
            st.log(f"condition {line}")
        for line in events:
            st.log(f"event {line}")

    def recovers(self, st: Subtest) -> None:
        t = self.t
        assert t is not None
        self.c.patch("v1", "Node", t.node, {"metadata": {"annotations": {FAULT_ANNOTATION: None}}})
        self.injected = False
        self._note(f"{FAULT_ANNOTATION} removed")
        timeout = self.ctx.budget(self.ctx.float_option("device-recovery-timeout"))
        if t.resource is not None and self.ctx.passed("AllocatableDrops"):
            try:
                node = self.c.wait_for(
                    "v1",
                    "Node",
                    t.node,
                    None,
                    lambda n: n is not None and self._count(n) >= t.baseline,
                    timeout=timeout,
                    what=f"allocatable {t.resource} of {t.node} to come back",
                )
            except WaitTimeoutError:
                now = self._count(self.c.get("v1", "Node", t.node))
                st.fail(
                    f"allocatable {t.resource} of {t.node} did not come back within"
                    f" {timeout:.0f}s of the recovery ({now}, was {t.baseline})"
                )
            self._note("allocatable restored", node)
            st.log(f"allocatable {t.resource} of {t.node} back to {self._count(node)}")
        if t.dra_names and self.av is not None and self.ctx.passed("ResourceSliceUpdated"):
            try:
                self.c.wait_list(
                    self.av,
                    "ResourceSlice",
                    None,
                    lambda s: (
                        len(published_healthy(s, self.acc, t.node, t.dra_names)) == len(t.dra_names)
                    ),
                    timeout=self.ctx.budget(timeout),
                    what=f"the devices to come back to {t.node}'s ResourceSlice",
                )
            except WaitTimeoutError:
                st.fail(
                    f"{', '.join(t.dra_names)} did not come back to {t.node}'s ResourceSlice"
                    f" within {timeout:.0f}s of the recovery"
                )
            self._note("ResourceSlice restored")
            st.log(f"{', '.join(t.dra_names)} published again")

    def restore(self) -> None:
        """Remove the fault annotation if a step ended before recovery did."""
        if not self.injected or self.t is None:
            return
        try:
            self.c.patch(
                "v1",
                "Node",
                self.t.node,
                {"metadata": {"annotations": {FAULT_ANNOTATION: None}}},
            )
            self.injected = False
        except ClusterError as e:
            self.ctx.log(
                f"could not remove {FAULT_ANNOTATION} from {self.t.node}: {e} (remove it by hand)"
            )

    def keep_evidence(self) -> None:
        t = self.t
        if t is None:
            return
        doc: dict[str, Any] = {
            "node": t.node,
            "resource": t.resource,
            "baseline_allocatable": t.baseline,
            "failed_indices": t.indices,
            "dra_devices": t.dra_names,
            "timeline": t.timeline,
            "reported": self.reported,
        }
        try:
            node = self.c.get("v1", "Node", t.node)
            doc["node_status"] = {
                "allocatable": (node or {}).get("status", {}).get("allocatable"),
                "conditions": (node or {}).get("status", {}).get("conditions"),
            }
            doc["events"] = [
                {k: e.get(k) for k in ("type", "reason", "message", "count", "lastTimestamp")}
                for e in self._events()
            ]
        except ClusterError as e:
            self.ctx.log(f"could not read {t.node} for the evidence: {e}")
        self.ctx.evidence(
            "device-health.json", json.dumps(doc, indent=2) + "\n", "application/json"
        )


RECOVERY_NEEDS = ("AllocatableDrops", "ResourceSliceUpdated")


@check(
    "ext_failed_device_detection",
    test="TestExtFailedDeviceDetection",
    # NOTE: it fails an accelerator of a node on purpose: nothing else may run.
    locks=RUNS_ALONE,
    options=OPTIONS,
    permissions=(
        Permission("list", "nodes", namespaced=False),
        Permission("get", "nodes", namespaced=False),
        Permission("patch", "nodes", namespaced=False),
        Permission("list", "resourceslices", "resource.k8s.io", namespaced=False),
        Permission("list", "events", namespaced=False),
    ),
    timeout_s=300.0,
)
def ext_failed_device_detection(ctx: CheckContext) -> None:
    """A simulated accelerator failure lowers its node's allocatable count (and takes the
    device out of its ResourceSlice), and recovery restores it."""
    run = _Run(ctx)
    run.choose()
    try:
        ctx.step("HealthyBaseline", run.baseline)
        ctx.step("FaultInjected", run.inject, needs=("HealthyBaseline",))
        ctx.step("AllocatableDrops", run.allocatable_drops, needs=("FaultInjected",))
        ctx.step("ResourceSliceUpdated", run.slice_updated, needs=("FaultInjected",))
        ctx.step("FailureReported", run.reported_on_node, needs=("FaultInjected",))
        if any(ctx.passed(n) for n in RECOVERY_NEEDS):
            ctx.step("Recovers", run.recovers)
        else:
            ctx.step("Recovers", run.recovers, needs=("AllocatableDrops",))
    finally:
        run.restore()
        run.keep_evidence()
