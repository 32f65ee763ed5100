"""secure_accelerator_access: accelerators are reachable only by the containers granted them.

Owns: the accelerator table (per vendor: DeviceClass/driver, extended resource, taint,
device nodes, listing tool), the choice between DRA and device-plugin allocation, the
probe that runs inside pods, and the four sub-tests of ``TestSecureAcceleratorAccess``.
Must not import the Kubernetes client or know anything about the lab.

Procedure (upstream ``kubernetes-sigs/ai-conformance`` ``TestSecureAcceleratorAccess``
plus KAR-0049's cross-pod case): pick one Ready accelerator node, run probe pods pinned
to it, and ``exec`` a shell probe in every container. The probe counts the device nodes
(``/dev/nvidia[0-9]*``) and the devices the vendor's listing tool reports
(``nvidia-smi -L`` when present) and prints ``RESULT: ACCELERATOR_COUNT=<n>``.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from kaic.checks.base import CheckContext, CheckOption, Permission, Subtest, check
from kaic.cluster.api import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    RUN_ID_LABEL,
    ClusterAPI,
    KubeObject,
    has_condition,
    name_of,
)
from kaic.errors import ClusterError, UsageError

CHECK_LABEL = "kaic.io/check"
CHECK_NAME = "secure-accelerator-access"
CLAIM_TEMPLATE = "accelerator-claim-template"
CLAIM_REQUEST = "single-accelerator"
POD_CLAIM = "accelerator"
DRA_VERSIONS = ("resource.k8s.io/v1", "resource.k8s.io/v1beta2")
"""DRA API versions with the v1 object shape (``exactly`` requests, flat device fields),
in order of preference. A cluster serving only v1beta1 is treated as having no DRA."""

MODES = ("auto", "dra", "device-plugin")
PROBE_ATTEMPTS = 3


# ---------------------------------------------------------------------------------------
# The accelerator table
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceleratorType:
    """How one vendor's accelerators are requested and how a container sees them."""

    name: str
    device_class: str
    """The DeviceClass a DRA claim asks for."""
    driver: str
    """The DRA driver name on ResourceSlices."""
    extended_resource: str
    """The device plugin's extended resource."""
    taint_key: str
    """Taint key accelerator nodes commonly carry (tolerated by the probe pods)."""
    device_glob: str
    """Shell glob of the per-device nodes a granted container sees."""
    dra_device_type: str | None = None
    """Value of the driver's ``type`` attribute for whole devices (others are ignored)."""
    visible_env: str | None = None
    """Env var a runtime may trust to expose devices (the common leak)."""
    list_tool: str | None = None
    """A listing tool the runtime injects into granted containers, if any."""
    list_args: str = ""
    list_prefix: str = ""
    """How each device line the listing tool prints begins."""
    uuid_pattern: str = ""
    """Regex with one group: a device identity in a listed line."""
    uuid_attribute: str = "uuid"
    """The ResourceSlice attribute holding that identity."""


ACCELERATORS: dict[str, AcceleratorType] = {
    # NOTE: add other vendors here (the names must match what their device plugin and
    # DRA driver publish); probe-details.md §5.1 lists their device paths.
    "nvidia": AcceleratorType(
        name="nvidia",
        device_class="gpu.nvidia.com",
        driver="gpu.nvidia.com",
        extended_resource="nvidia.com/gpu",
        taint_key="nvidia.com/gpu",
        device_glob="/dev/nvidia[0-9]*",
        dra_device_type="gpu",
        visible_env="NVIDIA_VISIBLE_DEVICES",
        list_tool="nvidia-smi",
        list_args="-L",
        list_prefix="GPU ",
        uuid_pattern=r"\(UUID: ([^)]+)\)",
    ),
}


def probe_script(acc: AcceleratorType) -> str:
    """The POSIX shell probe: prints ``DEVICE:``/``LIST:``/``ENV:`` lines, then
    ``RESULT: ACCELERATOR_COUNT=<n>`` where n is the larger of the device nodes seen and
    the devices the listing tool reports. Always exits 0 once it got that far."""
    lines = [
        "n=0",
        f"for d in {acc.device_glob}; do",
        '  if [ -e "$d" ]; then echo "DEVICE: $d"; n=$((n+1)); fi',
        "done",
        "m=0",
    ]
    if acc.list_tool:
        tool = shlex.quote(acc.list_tool)
        lines += [
            f"if command -v {tool} >/dev/null 2>&1; then",
            f"  out=$({tool} {acc.list_args} 2>&1)",
            "  set -f; old=$IFS; IFS='",
            "'",
            "  for line in $out; do",
            '    echo "LIST: $line"',
            f'    case "$line" in {shlex.quote(acc.list_prefix)}*) m=$((m+1));; esac',
            "  done",
            "  IFS=$old; set +f",
            "fi",
        ]
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
            devices.append(line[len("DEVICE: "):].strip())
        elif line.startswith("LIST: "):
            text = line[len("LIST: "):].strip()
            listed.append(text)
            u = uuid_re.search(text) if uuid_re else None
            if u:
                uuids.append(u.group(1))
    return ProbeResult(int(m.group(1)), tuple(devices), tuple(listed), tuple(uuids))


# ---------------------------------------------------------------------------------------
# Where accelerators are: nodes, ResourceSlice pools, allocations
# ---------------------------------------------------------------------------------------


def node_ready(node: KubeObject) -> bool:
    return has_condition(node, "Ready") and not node.get("spec", {}).get("unschedulable")


def _requirement_matches(expr: Mapping[str, Any], value: str | None) -> bool:
    op = expr.get("operator")
    values = [str(v) for v in expr.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_selector_matches(selector: Mapping[str, Any] | None, node: KubeObject) -> bool:
    """Whether a core/v1 ``NodeSelector`` (ORed terms of ANDed requirements) selects
    ``node``. An empty term selects nothing, as in Kubernetes."""
    if not selector:
        return False
    labels = node.get("metadata", {}).get("labels") or {}
    fields = {"metadata.name": name_of(node)}
    for term in selector.get("nodeSelectorTerms") or []:
        exprs = term.get("matchExpressions") or []
        flds = term.get("matchFields") or []
        if not exprs and not flds:
            continue
        if all(_requirement_matches(e, labels.get(e.get("key", ""))) for e in exprs) and all(
            _requirement_matches(f, fields.get(f.get("key", ""))) for f in flds
        ):
            return True
    return False


def _placement_nodes(spec: Mapping[str, Any], nodes: Sequence[KubeObject]) -> set[str] | None:
    """Nodes a slice (or a device with per-device placement) is available on; None when
    ``spec`` names no placement."""
    if spec.get("nodeName"):
        return {str(spec["nodeName"])}
    if spec.get("allNodes"):
        return {name_of(n) for n in nodes}
    if spec.get("nodeSelector"):
        return {name_of(n) for n in nodes if node_selector_matches(spec["nodeSelector"], n)}
    return None


@dataclass(frozen=True)
class SliceDevice:
    """One device published in a ResourceSlice, with the nodes it can be used from."""

    driver: str
    pool: str
    name: str
    attributes: Mapping[str, Any]
    nodes: frozenset[str]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.driver, self.pool, self.name)

    def attribute(self, name: str) -> Any:
        for k in (name, f"{self.driver}/{name}"):
            v = self.attributes.get(k)
            if isinstance(v, Mapping):
                for t in ("string", "int", "bool", "version"):
                    if t in v:
                        return v[t]
        return None


@dataclass
class Pool:
    """A ResourceSlice pool of one driver at its newest generation."""

    driver: str
    name: str
    generation: int
    expected_slices: int
    slices: list[str] = field(default_factory=list)
    devices: list[SliceDevice] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.slices) >= self.expected_slices

    def describe(self) -> str:
        state = "complete" if self.complete else "INCOMPLETE"
        nodes = sorted({n for d in self.devices for n in d.nodes})
        return (f"pool {self.name} (driver {self.driver}, generation {self.generation}): "
                f"{len(self.slices)}/{self.expected_slices} slices, {state}, "
                f"{len(self.devices)} devices, nodes {', '.join(nodes) or 'none'}")


def dra_pools(slices: Iterable[KubeObject], acc: AcceleratorType,
              nodes: Sequence[KubeObject]) -> list[Pool]:
    """The driver's pools at their newest generation, with the devices the DeviceClass
    would consider and the nodes each is available on (``nodeName``, ``allNodes``,
    ``nodeSelector`` or per-device placement)."""
    newest: dict[str, int] = {}
    mine = [s for s in slices if s.get("spec", {}).get("driver") == acc.driver]
    for s in mine:
        p = s["spec"].get("pool") or {}
        newest[p.get("name", "")] = max(newest.get(p.get("name", ""), 0),
                                        int(p.get("generation", 0)))
    pools: dict[str, Pool] = {}
    for s in mine:
        spec = s["spec"]
        p = spec.get("pool") or {}
        pname = p.get("name", "")
        if int(p.get("generation", 0)) != newest[pname]:
            continue
        pool = pools.setdefault(pname, Pool(acc.driver, pname, newest[pname],
                                            int(p.get("resourceSliceCount", 1) or 1)))
        pool.slices.append(name_of(s))
        slice_nodes = _placement_nodes(spec, nodes)
        for d in spec.get("devices") or []:
            dev_nodes = _placement_nodes(d, nodes)
            where = dev_nodes if dev_nodes is not None else (slice_nodes or set())
            dev = SliceDevice(acc.driver, pname, str(d.get("name", "")),
                              d.get("attributes") or {}, frozenset(where))
            dtype = dev.attribute("type")
            if acc.dra_device_type and dtype is not None and dtype != acc.dra_device_type:
                continue
            pool.devices.append(dev)
    return sorted(pools.values(), key=lambda p: p.name)


def allocated_devices(claims: Iterable[KubeObject]) -> set[tuple[str, str, str]]:
    """(driver, pool, device) of every device some ResourceClaim holds."""
    out = set()
    for c in claims:
        alloc = (c.get("status") or {}).get("allocation") or {}
        for r in (alloc.get("devices") or {}).get("results") or []:
            out.add((str(r.get("driver")), str(r.get("pool")), str(r.get("device"))))
    return out


def _quantity_int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def extended_resource_use(pods: Iterable[KubeObject], resource: str) -> dict[str, int]:
    """How many units of ``resource`` the non-terminal pods hold, per node."""
    used: dict[str, int] = {}
    for p in pods:
        node = p.get("spec", {}).get("nodeName")
        if not node or p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for c in p["spec"].get("containers") or []:
            res = c.get("resources") or {}
            n = (res.get("limits") or {}).get(resource, (res.get("requests") or {}).get(resource))
            if n is not None:
                used[node] = used.get(node, 0) + _quantity_int(n)
    return used


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


def _dra_version(cluster: ClusterAPI) -> str | None:
    for av in DRA_VERSIONS:
        kinds = {r.kind for r in cluster.api_resources(av)}
        if {"ResourceSlice", "ResourceClaim", "ResourceClaimTemplate", "DeviceClass"} <= kinds:
            return av
    return None


def _best(free: Mapping[str, int]) -> tuple[str, int] | None:
    """The node with the most free accelerators (ties: the first name), if any has one."""
    usable = sorted((-n, name) for name, n in free.items() if n > 0)
    return (usable[0][1], -usable[0][0]) if usable else None


def dra_placement(cluster: ClusterAPI, acc: AcceleratorType, nodes: list[KubeObject],
                  notes: list[str]) -> Placement | None:
    """A Ready node with free devices in a complete pool of the driver, or None."""
    av = _dra_version(cluster)
    if av is None:
        notes.append("DRA: resource.k8s.io/v1 (or v1beta2) is not served")
        return None
    dc = cluster.get(av, "DeviceClass", acc.device_class)
    if dc is None:
        notes.append(f"DRA: no DeviceClass {acc.device_class}")
        return None
    ready = [n for n in nodes if node_ready(n)]
    pools = dra_pools(cluster.list(av, "ResourceSlice"), acc, ready)
    if not pools:
        notes.append(f"DRA: no ResourceSlice of driver {acc.driver}")
        return None
    for p in pools:
        notes.append(f"DRA: {p.describe()}")
    taken = allocated_devices(cluster.list(av, "ResourceClaim"))
    free: dict[str, int] = {}
    devices: dict[tuple[str, str, str], SliceDevice] = {}
    for p in pools:
        if not p.complete:
            continue
        for d in p.devices:
            devices[d.key] = d
            for node in d.nodes:
                free.setdefault(node, 0)
                if d.key not in taken:
                    free[node] += 1
    if not free:
        notes.append(f"DRA: no complete pool of {acc.driver} is on a Ready node")
        return None
    by_name = {name_of(n): n for n in ready}
    best = _best(free)
    if best is None:
        notes.append(f"DRA: every device of {acc.driver} on Ready nodes is allocated")
        return None
    name, n = best
    notes.append(f"DRA: node {name} has {n} free device(s)")
    return Placement("dra", by_name[name], n, av, devices, notes)


def device_plugin_placement(cluster: ClusterAPI, acc: AcceleratorType, nodes: list[KubeObject],
                            notes: list[str]) -> Placement | None:
    ready = {name_of(n): n for n in nodes if node_ready(n)}
    alloc = {name: _quantity_int((n.get("status", {}).get("allocatable") or {})
                                 .get(acc.extended_resource, 0))
             for name, n in ready.items()}
    alloc = {k: v for k, v in alloc.items() if v > 0}
    if not alloc:
        notes.append(f"device plugin: no Ready node has {acc.extended_resource} allocatable")
        return None
    for name, v in sorted(alloc.items()):
        notes.append(f"device plugin: node {name} allocatable {acc.extended_resource}={v}")
    used = extended_resource_use(cluster.list("v1", "Pod"), acc.extended_resource)
    free = {k: v - used.get(k, 0) for k, v in alloc.items()}
    best = _best(free)
    if best is None:
        notes.append(f"device plugin: every {acc.extended_resource} is in use")
        return None
    name, n = best
    notes.append(f"device plugin: node {name} has {n} free")
    return Placement("device-plugin", ready[name], n, notes=notes)


def choose_placement(cluster: ClusterAPI, acc: AcceleratorType, mode: str) -> Placement:
    """Resolve ``auto``/``dra``/``device-plugin`` like upstream: ``auto`` prefers DRA when a
    complete pool of the driver is on a Ready node, else the device plugin."""
    notes: list[str] = []
    nodes = cluster.list("v1", "Node")
    if mode in ("auto", "dra"):
        p = dra_placement(cluster, acc, nodes, notes)
        if p is not None:
            return p
        if mode == "dra":
            raise NoAccelerators("; ".join(notes))
    if mode == "device-plugin":
        av = _dra_version(cluster)
        if av is not None:
            for dc in cluster.list(av, "DeviceClass"):
                if (dc.get("spec") or {}).get("extendedResourceName") == acc.extended_resource:
                    raise NoAccelerators(
                        f"{acc.extended_resource} is backed by DRA (DeviceClass {name_of(dc)} "
                        "sets extendedResourceName); test it with --allocation-mode=dra")
    p = device_plugin_placement(cluster, acc, nodes, notes)
    if p is not None:
        return p
    raise NoAccelerators("; ".join(notes))


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

    def __init__(self, ctx: CheckContext, acc: AcceleratorType, placement: Placement,
                 image: str, pod_timeout: float) -> None:
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
    def labels(self) -> dict[str, str]:
        return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_ID_LABEL: self.ctx.run_id,
                CHECK_LABEL: CHECK_NAME}

    def claim_template(self) -> KubeObject:
        return {
            "apiVersion": self.placement.dra_version, "kind": "ResourceClaimTemplate",
            "metadata": {"name": CLAIM_TEMPLATE, "namespace": self.ctx.namespace,
                         "labels": self.labels()},
            "spec": {"spec": {"devices": {"requests": [{
                "name": CLAIM_REQUEST,
                "exactly": {"deviceClassName": self.acc.device_class,
                            "allocationMode": "ExactCount", "count": 1},
            }]}}},
        }

    def tolerations(self) -> list[dict[str, Any]]:
        tols: list[dict[str, Any]] = [{"key": self.acc.taint_key, "operator": "Exists"}]
        for t in self.placement.node.get("spec", {}).get("taints") or []:
            if t.get("key") != self.acc.taint_key and t.get("effect") in (
                    "NoSchedule", "NoExecute"):
                tol = {"key": t.get("key"), "operator": "Exists", "effect": t.get("effect")}
                if tol not in tols:
                    tols.append(tol)
        return tols

    def pod_object(self, pod: ProbePod) -> KubeObject:
        containers = []
        for c in pod.containers:
            spec: dict[str, Any] = {
                "name": c.name, "image": self.image,
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
                    spec["resources"] = {"limits": {self.acc.extended_resource: "1"},
                                         "requests": {self.acc.extended_resource: "1"}}
            containers.append(spec)
        obj: KubeObject = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": self.ctx.namespace,
                         "labels": self.labels() | {"kaic.io/probe": pod.name}},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "automountServiceAccountToken": False,
                "activeDeadlineSeconds": int(self.ctx.timeout_s) + 120,
                "containers": containers,
                "tolerations": self.tolerations(),
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [{
                        "key": "metadata.name", "operator": "In",
                        "values": [self.placement.node_name]}]}]}}},
            },
        }
        if self.placement.mode == "dra" and pod.devices_needed:
            obj["spec"]["resourceClaims"] = [{"name": POD_CLAIM,
                                              "resourceClaimTemplateName": CLAIM_TEMPLATE}]
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
                    "v1", "Pod", p.name, self.ctx.namespace,
                    lambda o: o is not None and o.get("status", {}).get("phase") in (
                        "Running", "Succeeded", "Failed"),
                    timeout=self.ctx.budget(self.pod_timeout), what=f"pod {p.name} to run")
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
        msgs = [f"{e.get('reason')}: {e.get('message')}" for e in evs
                if e.get("type") == "Warning"]
        return f" ({msgs[-1]})" if msgs else ""

    def probe(self, t: Subtest, pod: str, container: str) -> ProbeResult:
        """Run the probe in one container. An exec that fails or prints no ``RESULT`` line
        is retried (a container may not accept exec at once); ERROR after three tries."""
        cmd = ["sh", "-c", self.script]
        shown = f"kubectl exec -n {self.ctx.namespace} {pod} -c {container} -- " \
                f"sh -c {shlex.quote(self.script)}"
        problem = ""
        for attempt in range(PROBE_ATTEMPTS):
            if attempt:
                time.sleep(min(float(attempt), self.ctx.budget(float(attempt))))
            try:
                r = self.cluster.exec(self.ctx.namespace, pod, cmd, container=container,
                                      timeout=self.ctx.budget(60.0))
            except ClusterError as e:
                self.transcript.append(f"$ {shown}\n(exec failed: {e})\n")
                problem = f"exec into pod {pod} container {container} failed: {e}"
                continue
            self.transcript.append(
                f"$ {shown}\n{r.stdout}" + (f"[stderr]\n{r.stderr}" if r.stderr else "")
                + f"[exit code {r.exit_code}]\n")
            res = parse_probe(r.stdout, self.acc)
            if res is not None:
                t.log(f"pod {pod} container {container}: {res.count} accelerator(s): "
                      f"{res.describe()}")
                return res
            problem = (f"the probe in pod {pod} container {container} printed no RESULT "
                       f"line (exit code {r.exit_code}; the image needs a POSIX sh): "
                       f"{(r.stderr or r.stdout).strip()[:200]}")
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
            claim = self.cluster.get(self.placement.dra_version, "ResourceClaim", claim_name,
                                     self.ctx.namespace) or {}
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
            pods.append(_trim(obj or self.last.get(name) or {"metadata": {"name": name}}))
        ctx.evidence("pods.yaml", yaml.safe_dump_all(pods, sort_keys=False),
                     "application/yaml")
        if self.placement.mode == "dra" and self.placement.dra_version:
            try:
                claims = self.cluster.list(self.placement.dra_version, "ResourceClaim",
                                           ctx.namespace)
            except ClusterError as e:
                claims = [{"error": str(e)}]
            ctx.evidence("resourceclaims.yaml",
                         yaml.safe_dump_all([_trim(c) for c in claims], sort_keys=False),
                         "application/yaml")

    def delete_all(self) -> None:
        for name in list(self.created):
            try:
                self.cluster.delete("v1", "Pod", name, self.ctx.namespace)
            except ClusterError as e:
                self.ctx.log(f"could not delete pod {name}: {e}")


def _trim(obj: KubeObject) -> KubeObject:
    """An object without noisy metadata (managedFields) for evidence files."""
    out = json.loads(json.dumps(obj))
    out.get("metadata", {}).pop("managedFields", None)
    return out  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------

POSITIVE = ProbePod("accel-positive", (ProbeContainer("probe", True),),
                    "granted one accelerator")
MULTI = ProbePod("accel-multi", (ProbeContainer("authorized", True),
                                 ProbeContainer("unauthorized", False)),
                 "claim granted to container authorized only")
CROSS_A = ProbePod("accel-cross-a", (ProbeContainer("probe", True),), "granted one accelerator")
CROSS_B = ProbePod("accel-cross-b", (ProbeContainer("probe", True),), "granted one accelerator")


def negative_pods(acc: AcceleratorType) -> list[ProbePod]:
    pods = [ProbePod("accel-negative", (ProbeContainer("probe", False),), "no request")]
    if acc.visible_env:
        pods.append(ProbePod("accel-negative-envvar",
                             (ProbeContainer("probe", False, {acc.visible_env: "all"}),),
                             f"no request, {acc.visible_env}=all"))
    return pods


@check(
    "secure_accelerator_access",
    test="TestSecureAcceleratorAccess",
    options=(
        CheckOption("allocation-mode", "how accelerators are requested: auto (DRA when a "
                    "complete ResourceSlice pool of the driver is on a Ready node, else the "
                    "device plugin), dra or device-plugin", default="auto"),
        CheckOption("accelerator-type", "accelerator vendor: " + ", ".join(ACCELERATORS),
                    default="nvidia"),
        CheckOption("probe-image", "image of the probe pods (needs a POSIX sh)",
                    default="ubuntu:22.04"),
        CheckOption("probe-pod-timeout", "seconds to wait for a probe pod to run",
                    default="300"),
    ),
    permissions=(
        Permission("list", "nodes", namespaced=False),
        Permission("list", "pods", namespaced=False),
        Permission("create", "pods"),
        Permission("get", "pods"),
        Permission("delete", "pods"),
        Permission("create", "pods", subresource="exec"),
        Permission("list", "resourceslices", "resource.k8s.io", namespaced=False),
        Permission("list", "resourceclaims", "resource.k8s.io", namespaced=False),
        Permission("list", "deviceclasses", "resource.k8s.io", namespaced=False),
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
    acc = ACCELERATORS.get(acc_name)
    if acc is None:
        raise UsageError(f"--accelerator-type must be one of {', '.join(ACCELERATORS)}, "
                         f"got {acc_name!r}")
    image = ctx.option("probe-image") or "ubuntu:22.04"
    pod_timeout = ctx.float_option("probe-pod-timeout") or 300.0

    try:
        placement = choose_placement(ctx.cluster, acc, mode)
    except NoAccelerators as e:
        ctx.evidence("allocation.txt", f"allocation mode asked: {mode}\n{e}\n")
        if mode == "auto":
            ctx.skip(f"no free {acc.name} accelerator on a Ready node, by DRA or device "
                     f"plugin: {e}")
        ctx.error(f"--allocation-mode={mode}: {e}")
    ctx.log(f"allocation mode {placement.mode} (asked: {mode}); node {placement.node_name} "
            f"with {placement.free} free accelerator(s)")
    node_alloc = (placement.node.get("status") or {}).get("allocatable") or {}
    ctx.evidence("allocation.txt", "\n".join([
        f"allocation mode asked: {mode}",
        f"allocation mode used: {placement.mode}"
        + (f" ({placement.dra_version})" if placement.dra_version else ""),
        f"accelerator type: {acc.name} (DeviceClass {acc.device_class}, extended resource "
        f"{acc.extended_resource}, devices {acc.device_glob})",
        f"node: {placement.node_name} ({placement.free} free)",
        f"node allocatable: {json.dumps(node_alloc, sort_keys=True)}",
        *placement.notes,
    ]) + "\n")

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
                probes.cluster.delete("v1", "Pod", p.name, probes.ctx.namespace,
                                      wait_timeout=probes.ctx.budget(120.0))
            except ClusterError as e:
                probes.ctx.log(f"could not delete pod {p.name}: {e}")
            probes.running.pop(p.name, None)


def _positive(ctx: CheckContext, probes: Probes) -> None:
    with ctx.subtest("PositiveAccessTest") as t:
        probes.wait_running(t, [POSITIVE])
        res = probes.probe(t, POSITIVE.name, "probe")
        t.require(res.count == 1, f"pod {POSITIVE.name} was granted one accelerator but sees "
                  f"{res.count}: {res.describe()}")
        _match_allocation(t, probes, POSITIVE.name, res)


def _match_allocation(t: Subtest, probes: Probes, pod: str, res: ProbeResult) -> None:
    """The device a pod sees is the one allocated to it (when both identities are known)."""
    want = probes.allocated_uuids(pod)
    if want:
        t.log(f"pod {pod} was allocated {', '.join(sorted(want))}")
    if want and res.uuids and not set(res.uuids) <= want:
        other = sorted(set(res.uuids) - want)
        t.fail(f"pod {pod} sees {', '.join(other)} but was allocated "
               f"{', '.join(sorted(want))}")


def _negative(ctx: CheckContext, probes: Probes, negatives: Sequence[ProbePod]) -> None:
    with ctx.subtest("NegativeIsolationTest") as t:
        probes.wait_running(t, negatives)
        leaks = []
        for p in negatives:
            res = probes.probe(t, p.name, "probe")
            if res.count:
                leaks.append(f"pod {p.name} ({p.purpose}) sees {res.count} accelerator(s) "
                             f"on node {probes.placement.node_name}: {res.describe()}")
        if leaks:
            t.fail("; ".join(leaks))


def _multi_container(ctx: CheckContext, probes: Probes) -> None:
    with ctx.subtest("MultiContainerIsolationTest") as t:
        probes.wait_running(t, [MULTI])
        auth = probes.probe(t, MULTI.name, "authorized")
        unauth = probes.probe(t, MULTI.name, "unauthorized")
        if unauth.count:
            t.fail(f"pod {MULTI.name} container unauthorized (only container authorized "
                   f"was granted an accelerator) sees {unauth.count} accelerator(s): "
                   f"{unauth.describe()}")
        t.require(auth.count == 1, f"pod {MULTI.name} container authorized was granted one "
                  f"accelerator but sees {auth.count}: {auth.describe()}")


def _cross_pod(ctx: CheckContext, probes: Probes) -> None:
    with ctx.subtest("CrossPodIsolationTest") as t:
        if probes.placement.free < 2:
            t.skip(f"needs two free accelerators on one node; {probes.placement.node_name} "
                   f"has {probes.placement.free}")
        probes.wait_running(t, [CROSS_A, CROSS_B])
        a = probes.probe(t, CROSS_A.name, "probe")
        b = probes.probe(t, CROSS_B.name, "probe")
        problems = []
        for me, mine, other in ((CROSS_A.name, a, CROSS_B.name), (CROSS_B.name, b, CROSS_A.name)):
            foreign = sorted(set(mine.uuids) & probes.allocated_uuids(other))
            if foreign:
                problems.append(f"pod {me} sees {', '.join(foreign)}, allocated to pod {other}")
            elif mine.count != 1:
                problems.append(f"pod {me} was granted one accelerator but sees "
                                f"{mine.count}: {mine.describe()}")
        shared = sorted(a.identities() & b.identities())
        if shared and not problems:
            problems.append(f"pods {CROSS_A.name} and {CROSS_B.name} both see "
                            f"{', '.join(shared)}")
        if problems:
            t.fail("; ".join(problems))
        if not a.identities() or not b.identities():
            t.error("the probe showed no device identity (device node or UUID) to compare")
        t.log(f"{CROSS_A.name} sees {a.describe()}; {CROSS_B.name} sees {b.describe()}")
