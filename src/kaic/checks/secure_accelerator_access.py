"""secure_accelerator_access: accelerators are reachable only by the containers granted them.

Owns: the choice between DRA and device-plugin allocation (on the accelerator table and
inventory of ``kaic.checks.accelerators``), the probe that runs inside pods, and the
four sub-tests of ``TestSecureAcceleratorAccess``. Must not import the Kubernetes client
or know anything about the lab.

Procedure (upstream ``kubernetes-sigs/ai-conformance`` ``TestSecureAcceleratorAccess``
plus KAR-0049's cross-pod case): pick one Ready accelerator node, run probe pods pinned
to it, and ``exec`` a shell probe in every container. The probe counts the device nodes
(``/dev/nvidia[0-9]*``) and the devices the vendor's listing tool reports
(``nvidia-smi -L`` when present) and prints ``RESULT: ACCELERATOR_COUNT=<n>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from kaic.checks.accelerators import (
    ACCELERATORS,
    ALLOCATION_MODE_OPTION,
    ALLOCATION_MODES,
    DRA_VERSIONS,
    AcceleratorType,
    SliceDevice,
    SliceInventory,
    accelerator_inventory,
    accelerator_type_option,
    allocated_devices,
    cluster_nodes,
    device_count_lines,
    dra_pools,
    dra_version,
    one_device_claim_template,
    probe_pod_permissions,
    reserved_pool_taint,
    slices_of,
)
from kaic.checks.base import (
    CheckContext,
    CheckOption,
    Permission,
    Resource,
    Subtest,
    check,
    exclusive,
)
from kaic.checks.created import trimmed
from kaic.checks.execs import exec_with_retries
from kaic.checks.predicates import node_has_taint, node_schedulable, pod_started
from kaic.checks.resources import allocatable, requests_by_node
from kaic.cluster.api import ClusterAPI, KubeObject, name_of
from kaic.errors import ClusterError, UsageError

CLAIM_TEMPLATE = "accelerator-claim-template"
CLAIM_REQUEST = "single-accelerator"
POD_CLAIM = "accelerator"
MODES = ALLOCATION_MODES
PROBED = {name: acc for name, acc in ACCELERATORS.items() if acc.probeable}
"""The vendors of the accelerator table whose devices the probe knows how to see."""
PROBE_ATTEMPTS = 3


def probe_script(acc: AcceleratorType) -> str:
    """The POSIX shell probe: prints ``DEVICE:``/``LIST:``/``ENV:`` lines, then
    ``RESULT: ACCELERATOR_COUNT=<n>`` where n is the larger of the device nodes seen and
    the devices the listing tool reports. Always exits 0 once it got that far."""
    lines = device_count_lines(acc)
    if acc.visible_env:
        lines.append(f'echo "ENV: {acc.visible_env}=${{{acc.visible_env}-<unset>}}"')
    lines += [
        'echo "RESULT: DEVICE_NODES=$n LISTED=$m"',
        'if [ "$m" -gt "$n" ]; then n=$m; fi',
        'echo "RESULT: ACCELERATOR_COUNT=$n"',
        "exit 0",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class ProbeResult:
    """What a probe printed in one container."""

    count: int
    devices: tuple[str, ...]
    listed: tuple[str, ...]
    uuids: tuple[str, ...]

    def identities(self) -> set[str]:
        return set(self.devices) | set(self.uuids)

    def describe(self) -> str:
        seen = list(self.devices) + [u for u in self.uuids]
        return ", ".join(seen) if seen else "nothing"


_COUNT = re.compile(r"^RESULT: ACCELERATOR_COUNT=(\d+)\s*$", re.M)


def parse_probe(stdout: str, acc: AcceleratorType) -> ProbeResult | None:
    """The probe's findings, or None when it printed no ``RESULT`` line."""
    m = _COUNT.search(stdout)
    if not m:
        return None
    devices, listed, uuids = [], [], []
    uuid_re = re.compile(acc.uuid_pattern) if acc.uuid_pattern else None
    for line in stdout.splitlines():
        if line.startswith("DEVICE: "):
            devices.append(line[len("DEVICE: ") :].strip())
        elif line.startswith("LIST: "):
            text = line[len("LIST: ") :].strip()
            listed.append(text)
            u = uuid_re.search(text) if uuid_re else None
            if u:
                uuids.append(u.group(1))
    return ProbeResult(int(m.group(1)), tuple(devices), tuple(listed), tuple(uuids))


# ---------------------------------------------------------------------------------------
# Where accelerators are: nodes, ResourceSlice pools, allocations
# ---------------------------------------------------------------------------------------


@dataclass
class Placement:
    """The allocation mode chosen and the node the probe pods are pinned to."""

    mode: str
    node: KubeObject
    free: int
    dra_version: str | None = None
    devices: dict[tuple[str, str, str], SliceDevice] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def node_name(self) -> str:
        return name_of(self.node)


class NoAccelerators(Exception):
    """No usable accelerators for the mode asked for (the message says why)."""


def _best(free: Mapping[str, int]) -> tuple[str, int] | None:
    """The node with the most free accelerators (ties: the first name), if any has one."""
    usable = sorted((-n, name) for name, n in free.items() if n > 0)
    return (usable[0][1], -usable[0][0]) if usable else None


def dra_placement(
    cluster: ClusterAPI,
    acc: AcceleratorType,
    nodes: list[KubeObject],
    notes: list[str],
    inventory: SliceInventory | None = None,
) -> Placement | None:
    """A Ready node with free devices in a complete pool of the driver, or None; the
    pools from ``inventory`` (read with the vendor's drivers) when given."""
    av = dra_version(cluster)
    if av is None:
        notes.append("DRA: resource.k8s.io/v1 (or v1beta2) is not served")
        return None
    dc = cluster.get(av, "DeviceClass", acc.device_class)
    if dc is None:
        notes.append(f"DRA: no DeviceClass {acc.device_class}")
        return None
    ready = [n for n in nodes if node_schedulable(n)]
    if inventory is not None:
        pools = inventory.of(acc)
    else:
        slices = slices_of(cluster, av, acc)
        pools = dra_pools(slices, acc, ready, attributes=(acc.uuid_attribute,))
    if not pools:
        notes.append(f"DRA: no ResourceSlice of driver {acc.driver}")
        return None
    for p in pools:
        notes.append(f"DRA: {p.describe()}")
    taken = allocated_devices(cluster.list(av, "ResourceClaim"))
    by_name = {name_of(n): n for n in ready}
    free: dict[str, int] = {}
    devices: dict[tuple[str, str, str], SliceDevice] = {}
    for p in pools:
        if not p.complete:
            continue
        for d in p.devices:
            devices[d.key] = d
            for node in d.nodes:
                if node not in by_name:  # a slice published for a node left out
                    continue
                free.setdefault(node, 0)
                if d.key not in taken:
                    free[node] += 1
    if not free:
        notes.append(f"DRA: no complete pool of {acc.driver} is on a Ready node")
        return None
    best = _best(free)
    if best is None:
        notes.append(f"DRA: every device of {acc.driver} on Ready nodes is allocated")
        return None
    name, n = best
    notes.append(f"DRA: node {name} has {n} free device(s)")
    return Placement("dra", by_name[name], n, av, devices, notes)


def device_plugin_placement(
    cluster: ClusterAPI, acc: AcceleratorType, nodes: list[KubeObject], notes: list[str]
) -> Placement | None:
    ready = {name_of(n): n for n in nodes if node_schedulable(n)}
    alloc = {name: int(allocatable(n, acc.extended_resource)) for name, n in ready.items()}
    alloc = {k: v for k, v in alloc.items() if v > 0}
    if not alloc:
        notes.append(f"device plugin: no Ready node has {acc.extended_resource} allocatable")
        return None
    for name, v in sorted(alloc.items()):
        notes.append(f"device plugin: node {name} allocatable {acc.extended_resource}={v}")
    used = requests_by_node(cluster.iterate("v1", "Pod"), acc.extended_resource)
    free = {k: v - int(used.get(k, 0)) for k, v in alloc.items()}
    best = _best(free)
    if best is None:
        notes.append(f"device plugin: every {acc.extended_resource} is in use")
        return None
    name, n = best
    notes.append(f"device plugin: node {name} has {n} free")
    return Placement("device-plugin", ready[name], n, notes=notes)


def choose_placement(
    cluster: ClusterAPI,
    acc: AcceleratorType,
    mode: str,
    reserved: Mapping[str, str] | None = None,
    *,
    nodes: list[KubeObject] | None = None,
    inventory: SliceInventory | None = None,
) -> Placement:
    """Resolve ``auto``/``dra``/``device-plugin`` like upstream: ``auto`` prefers DRA when a
    complete pool of the driver is on a Ready node, else the device plugin. Nodes with the
    ``reserved`` taint (the dedicated autoscaled pool's) are never chosen: the probe pods
    tolerate their node's taints, and that pool is cluster_autoscaling's alone. ``nodes``
    and ``inventory`` (every Node, the accelerator slices) are read when not given."""
    notes: list[str] = []
    if nodes is None:
        nodes = cluster.list("v1", "Node")
    if reserved is not None:
        kept = [n for n in nodes if not node_has_taint(n, reserved)]
        if len(kept) < len(nodes):
            notes.append(
                f"{len(nodes) - len(kept)} node(s) of the dedicated autoscaled pool "
                f"(taint {reserved['key']}:{reserved['effect']}) left out"
            )
        nodes = kept
    if mode in ("auto", "dra"):
        p = dra_placement(cluster, acc, nodes, notes, inventory)
        if p is not None:
            return p
        if mode == "dra":
            raise NoAccelerators("; ".join(notes))
    if mode == "device-plugin":
        av = dra_version(cluster)
        if av is not None:
            for dc in cluster.list(av, "DeviceClass"):
                if (dc.get("spec") or {}).get("extendedResourceName") == acc.extended_resource:
                    raise NoAccelerators(
                        f"{acc.extended_resource} is backed by DRA (DeviceClass {name_of(dc)} "
                        "sets extendedResourceName); test it with --allocation-mode=dra"
                    )
    p = device_plugin_placement(cluster, acc, nodes, notes)
    if p is not None:
        return p
    raise NoAccelerators("; ".join(notes))


def shared_placement(ctx: CheckContext, acc: AcceleratorType, mode: str) -> Placement:
    """``choose_placement`` from the run's shared reads of the Nodes and accelerator
    slices; the node chosen is read again, and when it is no longer schedulable the
    placement is chosen again from reads of now."""
    reserved = reserved_pool_taint(ctx.options)
    placement = choose_placement(
        ctx.cluster,
        acc,
        mode,
        reserved,
        nodes=cluster_nodes(ctx),
        inventory=accelerator_inventory(ctx),
    )
    now = ctx.cluster.get("v1", "Node", placement.node_name)
    if now is not None and node_schedulable(now):
        placement.node = now
        return placement
    ctx.log(f"node {placement.node_name} is no longer schedulable: placing from reads of now")
    return choose_placement(ctx.cluster, acc, mode, reserved)


# ---------------------------------------------------------------------------------------
# Probe pods
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeContainer:
    name: str
    granted: bool
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbePod:
    name: str
    containers: tuple[ProbeContainer, ...]
    purpose: str

    @property
    def devices_needed(self) -> int:
        return sum(1 for c in self.containers if c.granted)


class Probes:
    """Creates probe pods, waits for them, runs the probe and keeps the transcript."""

    def __init__(
        self,
        ctx: CheckContext,
        acc: AcceleratorType,
        placement: Placement,
        image: str,
        pod_timeout: float,
    ) -> None:
        self.ctx = ctx
        self.cluster = ctx.cluster
        self.acc = acc
        self.placement = placement
        self.image = image
        self.pod_timeout = pod_timeout
        self.script = probe_script(acc)
        self.transcript: list[str] = []
        self.created: dict[str, ProbePod] = {}
        self.running: dict[str, KubeObject] = {}
        self.last: dict[str, KubeObject] = {}
        """The newest copy of every probe pod seen (for evidence after deletion)."""

    # -- objects -------------------------------------------------------------------------
    def claim_template(self) -> KubeObject:
        return one_device_claim_template(
            self.placement.dra_version or DRA_VERSIONS[0],
            CLAIM_TEMPLATE,
            self.ctx.namespace,
            CLAIM_REQUEST,
            self.acc.device_class,
        )

    def tolerations(self) -> list[dict[str, Any]]:
        tols: list[dict[str, Any]] = [{"key": self.acc.taint_key, "operator": "Exists"}]
        for t in self.placement.node.get("spec", {}).get("taints") or []:
            if t.get("key") != self.acc.taint_key and t.get("effect") in (
                "NoSchedule",
                "NoExecute",
            ):
                tol = {"key": t.get("key"), "operator": "Exists", "effect": t.get("effect")}
                if tol not in tols:
                    tols.append(tol)
        return tols

    def pod_object(self, pod: ProbePod) -> KubeObject:
        containers = []
        for c in pod.containers:
            spec: dict[str, Any] = {
                "name": c.name,
                "image": self.image,
                "command": ["sh", "-c", "sleep 3600"],
                # NOTE: the probe reads the container's view of /dev; workingDir is fixed
                # so the listing does not depend on the image's WORKDIR.
                "workingDir": "/",
                "resources": {},
            }
            if c.env:
                spec["env"] = [{"name": k, "value": v} for k, v in c.env.items()]
            if c.granted:
                if self.placement.mode == "dra":
                    spec["resources"] = {"claims": [{"name": POD_CLAIM}]}
                else:
                    spec["resources"] = {
                        "limits": {self.acc.extended_resource: "1"},
                        "requests": {self.acc.extended_resource: "1"},
                    }
            containers.append(spec)
        obj: KubeObject = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod.name,
                "namespace": self.ctx.namespace,
                "labels": {"kaic.io/probe": pod.name},
            },
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "automountServiceAccountToken": False,
                "activeDeadlineSeconds": int(self.ctx.timeout_s) + 120,
                "containers": containers,
                "tolerations": self.tolerations(),
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchFields": [
                                        {
                                            "key": "metadata.name",
                                            "operator": "In",
                                            "values": [self.placement.node_name],
                                        }
                                    ]
                                }
                            ]
                        }
                    }
                },
            },
        }
        if self.placement.mode == "dra" and pod.devices_needed:
            obj["spec"]["resourceClaims"] = [
                {"name": POD_CLAIM, "resourceClaimTemplateName": CLAIM_TEMPLATE}
            ]
        return obj

    # -- lifecycle -----------------------------------------------------------------------
    def setup(self) -> None:
        if self.placement.mode == "dra":
            self.cluster.create(self.claim_template())

    def create(self, pods: Sequence[ProbePod]) -> None:
        for p in pods:
            if p.name not in self.created:
                self.cluster.create(self.pod_object(p))
                self.created[p.name] = p

    def wait_running(self, t: Subtest, pods: Sequence[ProbePod]) -> None:
        """Wait for ``pods`` to run on the chosen node; ERROR the sub-test if they don't."""
        self.create(pods)
        for p in pods:
            if p.name in self.running:
                continue
            try:
                obj = self.cluster.wait_for(
                    "v1",
                    "Pod",
                    p.name,
                    self.ctx.namespace,
                    pod_started,
                    timeout=self.ctx.budget(self.pod_timeout),
                    what=f"pod {p.name} to run",
                )
            except ClusterError as e:
                self.keep_pod(p.name)
                t.error(f"pod {p.name} did not start: {e}{self._why_pending(p.name)}")
            assert obj is not None
            phase = obj.get("status", {}).get("phase")
            if phase != "Running":
                self.keep_pod(p.name)
                t.error(f"pod {p.name} ended ({phase}) before it could be probed")
            node = obj.get("spec", {}).get("nodeName")
            if node != self.placement.node_name:
                t.error(f"pod {p.name} runs on {node}, not on {self.placement.node_name}")
            self.running[p.name] = self.last[p.name] = obj

    def _why_pending(self, pod: str) -> str:
        try:
            evs = self.cluster.events(self.ctx.namespace, pod)
        except ClusterError:
            return ""
        msgs = [f"{e.get('reason')}: {e.get('message')}" for e in evs if e.get("type") == "Warning"]
        return f" ({msgs[-1]})" if msgs else ""

    def probe(self, t: Subtest, pod: str, container: str) -> ProbeResult:
        """Run the probe in one container. An exec that fails or prints no ``RESULT`` line
        is retried (a container may not accept exec at once); ERROR after three tries."""
        cmd = ["sh", "-c", self.script]
        try:
            r = exec_with_retries(
                self.ctx,
                self.cluster,
                self.ctx.namespace,
                pod,
                cmd,
                container=container,
                accept=lambda r: parse_probe(r.stdout, self.acc) is not None,
                attempts=PROBE_ATTEMPTS,
                transcript=self.transcript,
            )
        except ClusterError as e:
            t.error(
                f"exec into pod {pod} container {container} failed: {e} "
                f"(tried {PROBE_ATTEMPTS} times)"
            )
        res = parse_probe(r.stdout, self.acc)
        if res is not None:
            t.log(f"pod {pod} container {container}: {res.count} accelerator(s): {res.describe()}")
            return res
        problem = (
            f"the probe in pod {pod} container {container} printed no RESULT "
            f"line (exit code {r.exit_code}; the image needs a POSIX sh): "
            f"{(r.stderr or r.stdout).strip()[:200]}"
        )
        t.error(f"{problem} (tried {PROBE_ATTEMPTS} times)")

    def keep_pod(self, name: str) -> None:
        try:
            obj = self.cluster.get("v1", "Pod", name, self.ctx.namespace)
        except ClusterError:
            return
        if obj is not None:
            self.last[name] = obj

    # -- what was allocated ----------------------------------------------------------------
    def allocation_of(self, pod: str) -> list[SliceDevice | str]:
        """The devices allocated to ``pod`` (DRA: from its claim; device plugin: unknown
        to the API, so the node's allocatable is shown instead)."""
        if self.placement.mode != "dra" or self.placement.dra_version is None:
            return []
        obj = self.cluster.get("v1", "Pod", pod, self.ctx.namespace) or {}
        out: list[SliceDevice | str] = []
        for st in (obj.get("status") or {}).get("resourceClaimStatuses") or []:
            claim_name = st.get("resourceClaimName")
            if not claim_name:
                continue
            claim = (
                self.cluster.get(
                    self.placement.dra_version, "ResourceClaim", claim_name, self.ctx.namespace
                )
                or {}
            )
            alloc = (claim.get("status") or {}).get("allocation") or {}
            for r in (alloc.get("devices") or {}).get("results") or []:
                key = (str(r.get("driver")), str(r.get("pool")), str(r.get("device")))
                out.append(self.placement.devices.get(key, "/".join(key)))
        return out

    def allocated_uuids(self, pod: str) -> set[str]:
        out = set()
        for d in self.allocation_of(pod):
            if isinstance(d, SliceDevice):
                u = d.attribute(self.acc.uuid_attribute)
                if u:
                    out.add(str(u))
        return out

    # -- evidence ------------------------------------------------------------------------------
    def record_evidence(self) -> None:
        ctx = self.ctx
        ctx.evidence("probe-commands.log", "\n".join(self.transcript) or "(no probe ran)\n")
        pods = []
        for name in self.created:
            try:
                obj = self.cluster.get("v1", "Pod", name, ctx.namespace)
            except ClusterError:
                obj = None
            pods.append(trimmed(obj or self.last.get(name) or {"metadata": {"name": name}}))
        ctx.evidence("pods.yaml", yaml.safe_dump_all(pods, sort_keys=False), "application/yaml")
        if self.placement.mode == "dra" and self.placement.dra_version:
            try:
                claims = self.cluster.list(
                    self.placement.dra_version, "ResourceClaim", ctx.namespace
                )
            except ClusterError as e:
                claims = [{"error": str(e)}]
            ctx.evidence(
                "resourceclaims.yaml",
                yaml.safe_dump_all([trimmed(c) for c in claims], sort_keys=False),
                "application/yaml",
            )

    def delete_all(self) -> None:
        for name in list(self.created):
            try:
                self.cluster.delete("v1", "Pod", name, self.ctx.namespace)
            except ClusterError as e:
                self.ctx.log(f"could not delete pod {name}: {e}")


# ---------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------

POSITIVE = ProbePod("accel-positive", (ProbeContainer("probe", True),), "granted one accelerator")
MULTI = ProbePod(
    "accel-multi",
    (ProbeContainer("authorized", True), ProbeContainer("unauthorized", False)),
    "claim granted to container authorized only",
)
CROSS_A = ProbePod("accel-cross-a", (ProbeContainer("probe", True),), "granted one accelerator")
CROSS_B = ProbePod("accel-cross-b", (ProbeContainer("probe", True),), "granted one accelerator")


def negative_pods(acc: AcceleratorType) -> list[ProbePod]:
    pods = [ProbePod("accel-negative", (ProbeContainer("probe", False),), "no request")]
    if acc.visible_env:
        pods.append(
            ProbePod(
                "accel-negative-envvar",
                (ProbeContainer("probe", False, {acc.visible_env: "all"}),),
                f"no request, {acc.visible_env}=all",
            )
        )
    return pods


@check(
    "secure_accelerator_access",
    test="TestSecureAcceleratorAccess",
    locks=exclusive(Resource.ACCELERATORS),
    options=(
        ALLOCATION_MODE_OPTION,
        accelerator_type_option(),
        CheckOption(
            "probe-image", "image of the probe pods (needs a POSIX sh)", default="ubuntu:22.04"
        ),
        CheckOption("probe-pod-timeout", "seconds to wait for a probe pod to run", default="300"),
    ),
    permissions=probe_pod_permissions(
        Permission("get", "nodes", namespaced=False),
        Permission("list", "pods", namespaced=False),
        Permission("create", "resourceclaimtemplates", "resource.k8s.io"),
        Permission("list", "events"),
    ),
    timeout_s=900.0,
)
def secure_accelerator_access(ctx: CheckContext) -> None:
    """A container sees exactly the accelerators granted to it: one when granted one, none
    without a grant (also with NVIDIA_VISIBLE_DEVICES=all), and never another pod's."""
    mode = (ctx.option("allocation-mode") or "auto").lower()
    if mode not in MODES:
        raise UsageError(f"--allocation-mode must be one of {', '.join(MODES)}, got {mode!r}")
    acc_name = (ctx.option("accelerator-type") or "nvidia").lower()
    acc = PROBED.get(acc_name)
    if acc is None:
        raise UsageError(f"--accelerator-type must be one of {', '.join(PROBED)}, got {acc_name!r}")
    image = ctx.option("probe-image") or "ubuntu:22.04"
    pod_timeout = ctx.float_option("probe-pod-timeout") or 300.0

    try:
        # NOTE: the probe pods tolerate their node's taints; so that this check may run
        # beside cluster_autoscaling, a dedicated autoscaled pool is left out.
        placement = shared_placement(ctx, acc, mode)
    except NoAccelerators as e:
        ctx.evidence("allocation.txt", f"allocation mode asked: {mode}\n{e}\n")
        if mode == "auto":
            ctx.skip(
                f"no free {acc.name} accelerator on a Ready node, by DRA or device plugin: {e}"
            )
        ctx.error(f"--allocation-mode={mode}: {e}")
    ctx.log(
        f"allocation mode {placement.mode} (asked: {mode}); node {placement.node_name} "
        f"with {placement.free} free accelerator(s)"
    )
    node_alloc = (placement.node.get("status") or {}).get("allocatable") or {}
    ctx.evidence(
        "allocation.txt",
        "\n".join(
            [
                f"allocation mode asked: {mode}",
                f"allocation mode used: {placement.mode}"
                + (f" ({placement.dra_version})" if placement.dra_version else ""),
                f"accelerator type: {acc.name} (DeviceClass {acc.device_class}, extended resource "
                f"{acc.extended_resource}, devices {acc.device_glob})",
                f"node: {placement.node_name} ({placement.free} free)",
                f"node allocatable: {json.dumps(node_alloc, sort_keys=True)}",
                *placement.notes,
            ]
        )
        + "\n",
    )

    probes = Probes(ctx, acc, placement, image, pod_timeout)
    try:
        probes.setup()
        negatives = negative_pods(acc)
        # NOTE: with enough free accelerators every pod is created at once (faster);
        # otherwise each sub-test's pods are created in turn and removed after it.
        all_pods = [POSITIVE, *negatives, MULTI, CROSS_A, CROSS_B]
        together = placement.free >= sum(p.devices_needed for p in all_pods)
        if together:
            probes.create(all_pods)
        _positive(ctx, probes)
        if not together:
            _release(probes, [POSITIVE])
        _negative(ctx, probes, negatives)
        _multi_container(ctx, probes)
        if not together:
            _release(probes, [MULTI])
        _cross_pod(ctx, probes)
    finally:
        probes.record_evidence()
        probes.delete_all()


def _release(probes: Probes, pods: Sequence[ProbePod]) -> None:
    """Delete accelerator pods so later sub-tests find free devices."""
    for p in pods:
        if p.name in probes.created:
            probes.keep_pod(p.name)
            try:
                probes.cluster.delete(
                    "v1", "Pod", p.name, probes.ctx.namespace, wait_timeout=probes.ctx.budget(120.0)
                )
            except ClusterError as e:
                probes.ctx.log(f"could not delete pod {p.name}: {e}")
            probes.running.pop(p.name, None)


def _positive(ctx: CheckContext, probes: Probes) -> None:
    with ctx.subtest("PositiveAccessTest") as t:
        probes.wait_running(t, [POSITIVE])
        res = probes.probe(t, POSITIVE.name, "probe")
        t.require(
            res.count == 1,
            f"pod {POSITIVE.name} was granted one accelerator but sees "
            f"{res.count}: {res.describe()}",
        )
        _match_allocation(t, probes, POSITIVE.name, res)


def _match_allocation(t: Subtest, probes: Probes, pod: str, res: ProbeResult) -> None:
    """The device a pod sees is the one allocated to it (when both identities are known)."""
    want = probes.allocated_uuids(pod)
    if want:
        t.log(f"pod {pod} was allocated {', '.join(sorted(want))}")
    if want and res.uuids and not set(res.uuids) <= want:
        other = sorted(set(res.uuids) - want)
        t.fail(f"pod {pod} sees {', '.join(other)} but was allocated {', '.join(sorted(want))}")


def _negative(ctx: CheckContext, probes: Probes, negatives: Sequence[ProbePod]) -> None:
    with ctx.subtest("NegativeIsolationTest") as t:
        probes.wait_running(t, negatives)
        leaks = []
        for p in negatives:
            res = probes.probe(t, p.name, "probe")
            if res.count:
                leaks.append(
                    f"pod {p.name} ({p.purpose}) sees {res.count} accelerator(s) "
                    f"on node {probes.placement.node_name}: {res.describe()}"
                )
        if leaks:
            t.fail("; ".join(leaks))


def _multi_container(ctx: CheckContext, probes: Probes) -> None:
    with ctx.subtest("MultiContainerIsolationTest") as t:
        probes.wait_running(t, [MULTI])
        auth = probes.probe(t, MULTI.name, "authorized")
        unauth = probes.probe(t, MULTI.name, "unauthorized")
        if unauth.count:
            t.fail(
                f"pod {MULTI.name} container unauthorized (only container authorized "
                f"was granted an accelerator) sees {unauth.count} accelerator(s): "
                f"{unauth.describe()}"
            )
        t.require(
            auth.count == 1,
            f"pod {MULTI.name} container authorized was granted one "
            f"accelerator but sees {auth.count}: {auth.describe()}",
        )


def _cross_pod(ctx: CheckContext, probes: Probes) -> None:
    with ctx.subtest("CrossPodIsolationTest") as t:
        if probes.placement.free < 2:
            t.skip(
                f"needs two free accelerators on one node; {probes.placement.node_name} "
                f"has {probes.placement.free}"
            )
        probes.wait_running(t, [CROSS_A, CROSS_B])
        a = probes.probe(t, CROSS_A.name, "probe")
        b = probes.probe(t, CROSS_B.name, "probe")
        problems = []
        for me, mine, other in ((CROSS_A.name, a, CROSS_B.name), (CROSS_B.name, b, CROSS_A.name)):
            foreign = sorted(set(mine.uuids) & probes.allocated_uuids(other))
            if foreign:
                problems.append(f"pod {me} sees {', '.join(foreign)}, allocated to pod {other}")
            elif mine.count != 1:
                problems.append(
                    f"pod {me} was granted one accelerator but sees {mine.count}: {mine.describe()}"
                )
        shared = sorted(a.identities() & b.identities())
        if shared and not problems:
            problems.append(f"pods {CROSS_A.name} and {CROSS_B.name} both see {', '.join(shared)}")
        if problems:
            t.fail("; ".join(problems))
        if not a.identities() or not b.identities():
            t.error("the probe showed no device identity (device node or UUID) to compare")
        t.log(f"{CROSS_A.name} sees {a.describe()}; {CROSS_B.name} sees {b.describe()}")
