"""driver_runtime_management: what the platform publishes about accelerator drivers is true.

Owns: reading the driver and runtime versions a platform publishes per accelerator node
(DRA device attributes first, node labels of GPU Feature Discovery / NFD otherwise), the
driver probe run inside a vanilla container granted one accelerator, and the two
sub-tests of ``TestAcceleratorDriverRuntimeManagement``. Must not import the Kubernetes
client, another requirement's module, or know anything about the lab.

Procedure (KAR-0001; upstream ``TestAcceleratorDriverRuntimeManagement``):

1. ``VerifiableMechanismExposed`` — every accelerator node of a vendor kaic has a driver
   probe for publishes a driver version (its devices agreeing with each other), and
   reports a container runtime. A node that publishes none FAILs by name.
2. ``DriverAndRuntimeCompatibility`` — on every such node a probe pod granted one
   accelerator (DRA claim or extended resource) runs the vendor's probe through
   ``exec``: it must see exactly one device, the runtime must have injected the vendor's
   tools (``RUNTIME_CONFIG_OK``), the driver must answer (``DRIVER_FUNCTIONAL``), and the
   driver and runtime versions it reads (``ACTUAL_DRIVER_VERSION``,
   ``ACTUAL_RUNTIME_VERSION``) must equal the published ones at their shared precision.

An accelerator kaic has no driver probe for is ``UNKNOWN`` (KAR-0001's conformance
strategy): logged as ``RESULT: STATUS=UNKNOWN`` and SKIPped with the reason, never failed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kaic.checks.accelerators import (
    ACCELERATORS,
    ALLOCATION_MODE_OPTION,
    ALLOCATION_MODES,
    AcceleratorType,
    SliceDevice,
    SliceInventory,
    accelerator_inventory,
    accelerator_type_option,
    allocated_devices,
    any_accelerator,
    cluster_nodes,
    dra_version,
    one_device_claim_template,
    probe_pod_permissions,
)
from kaic.checks.base import (
    CheckContext,
    CheckOption,
    Permission,
    Resource,
    Subtest,
    check,
    exclusive,
    shared,
)
from kaic.checks.created import Created
from kaic.checks.execs import probe
from kaic.checks.predicates import pod_started
from kaic.checks.resources import allocatable, requests_by_node
from kaic.checks.sampling import limit_option, spread
from kaic.checks.waits import last_warning
from kaic.cluster.api import ClusterAPI, KubeObject, name_of
from kaic.errors import ClusterError, RejectedError, UsageError

UNKNOWN_LINE = "RESULT: STATUS=UNKNOWN"
MODES = ALLOCATION_MODES
CLAIM_TEMPLATE = "driver-runtime-claim-template"
CLAIM_REQUEST = "single-accelerator"
POD_CLAIM = "accelerator"
CONTAINER = "prober"
PROBE_ATTEMPTS = 3
PROBERS = 8
"""Probe pods waited for and probed at a time."""


# ---------------------------------------------------------------------------------------
# Per vendor: where versions are published and how a container reads the real ones
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriverProbe:
    """How one vendor's driver and runtime versions are published and read."""

    vendor: str
    dra_driver_attributes: tuple[str, ...]
    dra_runtime_attributes: tuple[str, ...]
    driver_labels: tuple[str, ...]
    """Node labels (or annotations) holding the whole driver version, in order."""
    driver_label_parts: tuple[tuple[str, ...], ...]
    """Label triples (major, minor, revision) that together spell the driver version."""
    runtime_labels: tuple[str, ...]
    runtime_label_parts: tuple[tuple[str, ...], ...]
    script: str
    """POSIX shell run after the device count; prints the ``RESULT:`` lines."""


NVIDIA_SCRIPT = """smi=""
for c in "$(command -v nvidia-smi 2>/dev/null)" /usr/bin/nvidia-smi \\
    /usr/local/nvidia/bin/nvidia-smi; do
  if [ -n "$c" ] && [ -x "$c" ]; then smi=$c; break; fi
done
ok=false; functional=false; drv=""; rt=""
if [ -n "$smi" ] && [ "$n" -gt 0 ]; then
  ok=true
  q=$("$smi" --query-gpu=driver_version --format=csv,noheader,nounits 2>/dev/null)
  rc=$?
  v=$(printf '%s\\n' "$q" | head -n 1 | tr -d '[:space:]')
  case "$v" in
    ''|*[!0-9.]*) ;;
    *) if [ "$rc" -eq 0 ]; then functional=true; drv=$v; fi;;
  esac
  rt=$("$smi" 2>/dev/null | sed -n 's/.*CUDA Version: *\\([0-9][0-9.]*\\).*/\\1/p' | head -n 1)
fi
if [ -z "$drv" ] && [ -r /proc/driver/nvidia/version ]; then
  drv=$(grep -o '[0-9][0-9]*\\.[0-9][0-9.]*' /proc/driver/nvidia/version | head -n 1)
fi
echo "RESULT: RUNTIME_CONFIG_OK=$ok"
echo "RESULT: DRIVER_FUNCTIONAL=$functional"
echo "RESULT: ACTUAL_DRIVER_VERSION=$drv"
echo "RESULT: ACTUAL_RUNTIME_VERSION=$rt"
"""

DRIVER_PROBES: dict[str, DriverProbe] = {
    # NOTE: other vendors are added here with their published names and a script that
    # prints the same RESULT lines; until then their nodes are UNKNOWN (manual evidence).
    "nvidia": DriverProbe(
        vendor="nvidia",
        dra_driver_attributes=("driverVersion",),
        dra_runtime_attributes=("cudaDriverVersion",),
        driver_labels=("nvidia.com/cuda.driver-version.full",),
        driver_label_parts=(
            (
                "nvidia.com/cuda.driver-version.major",
                "nvidia.com/cuda.driver-version.minor",
                "nvidia.com/cuda.driver-version.revision",
            ),
            (
                "nvidia.com/cuda.driver.major",
                "nvidia.com/cuda.driver.minor",
                "nvidia.com/cuda.driver.rev",
            ),
        ),
        runtime_labels=("nvidia.com/cuda.runtime-version.full",),
        runtime_label_parts=(
            ("nvidia.com/cuda.runtime-version.major", "nvidia.com/cuda.runtime-version.minor"),
            ("nvidia.com/cuda.runtime.major", "nvidia.com/cuda.runtime.minor"),
        ),
        script=NVIDIA_SCRIPT,
    ),
}


def probe_script(acc: AcceleratorType, probe: DriverProbe) -> str:
    """The whole probe: the device count line, then the vendor's driver lines."""
    return "\n".join(
        [
            "n=0",
            f"for d in {acc.device_glob}; do",
            '  if [ -e "$d" ]; then n=$((n+1)); fi',
            "done",
            'echo "RESULT: ACCELERATOR_COUNT=$n"',
            probe.script.rstrip("\n"),
            "exit 0",
        ]
    )


@dataclass(frozen=True)
class ProbeResult:
    """The RESULT lines one probe printed."""

    count: int
    runtime_config_ok: bool
    driver_functional: bool
    driver: str
    runtime: str


_RESULT = re.compile(r"^RESULT: ([A-Z_]+)=(.*)$")
_NEEDED = (
    "ACCELERATOR_COUNT",
    "RUNTIME_CONFIG_OK",
    "DRIVER_FUNCTIONAL",
    "ACTUAL_DRIVER_VERSION",
    "ACTUAL_RUNTIME_VERSION",
)


def parse_probe(stdout: str) -> ProbeResult | None:
    """The probe's findings, or None when a RESULT line is missing."""
    seen: dict[str, str] = {}
    for line in stdout.splitlines():
        m = _RESULT.match(line.strip())
        if m:
            seen[m.group(1)] = m.group(2).strip()
    if any(k not in seen for k in _NEEDED) or not seen["ACCELERATOR_COUNT"].isdigit():
        return None
    return ProbeResult(
        int(seen["ACCELERATOR_COUNT"]),
        seen["RUNTIME_CONFIG_OK"] == "true",
        seen["DRIVER_FUNCTIONAL"] == "true",
        seen["ACTUAL_DRIVER_VERSION"],
        seen["ACTUAL_RUNTIME_VERSION"],
    )


def _numeric(v: str) -> list[int] | None:
    v = v.strip().removeprefix("v")
    v = re.split(r"[-+]", v, maxsplit=1)[0]
    parts = v.split(".")
    if not v or not all(p.isdigit() for p in parts):
        return None
    return [int(p) for p in parts]


def versions_agree(a: str, b: str) -> bool:
    """Two versions are the same at the precision they share, numerically (``580.82.07``
    equals ``580.82.7``; ``13.0`` equals ``13.0.0``); other strings must be equal ignoring
    case. Empty never agrees."""
    na, nb = _numeric(a), _numeric(b)
    if na is None or nb is None:
        return bool(a.strip()) and a.strip().lower() == b.strip().lower()
    return all(x == y for x, y in zip(na, nb, strict=False))


# ---------------------------------------------------------------------------------------
# What a node publishes
# ---------------------------------------------------------------------------------------


@dataclass
class Published:
    """What one accelerator node publishes about its driver and container runtime."""

    node: str
    mechanism: str = ""
    """``dra`` (ResourceSlice device attributes) or ``node-labels``; empty: nothing."""
    driver: str = ""
    driver_key: str = ""
    runtime: str = ""
    runtime_key: str = ""
    container_runtime: str = ""
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if not self.driver:
            return f"node {self.node} publishes no driver version"
        rt = f", runtime {self.runtime} [{self.runtime_key}]" if self.runtime else ", no runtime"
        return (
            f"node {self.node} publishes via {self.mechanism}: driver {self.driver} "
            f"[{self.driver_key}]{rt}; container runtime {self.container_runtime or '(none)'}"
        )


def _label(node: KubeObject, key: str) -> str:
    md = node.get("metadata") or {}
    for where in ("labels", "annotations"):
        v = (md.get(where) or {}).get(key)
        if v is not None and str(v).strip():
            return str(v).strip()
    return ""


def _from_labels(
    node: KubeObject, whole: Sequence[str], parts: Sequence[Sequence[str]]
) -> tuple[str, str]:
    """(value, where) of a version published as one label or as major/minor[/rev] labels."""
    for k in whole:
        v = _label(node, k)
        if v:
            return v, k
    for group in parts:
        values = [_label(node, k) for k in group]
        # NOTE: a major version alone says too little to compare; need at least minor.
        if values[0] and values[1]:
            got = [v for v in values if v]
            return ".".join(got), "+".join(k for k, v in zip(group, values, strict=True) if v)
    return "", ""


def published(node: KubeObject, devices: Sequence[SliceDevice], probe: DriverProbe) -> Published:
    """What ``node`` publishes: DRA attributes of its devices (which must agree), else
    node labels or annotations."""
    info = Published(
        name_of(node),
        container_runtime=str(
            ((node.get("status") or {}).get("nodeInfo") or {}).get("containerRuntimeVersion") or ""
        ).strip(),
    )
    for what, attrs in (
        ("driver", probe.dra_driver_attributes),
        ("runtime", probe.dra_runtime_attributes),
    ):
        values: dict[str, list[str]] = {}
        key = ""
        for d in devices:
            for a in attrs:
                v = d.attribute(a)
                if v is not None and str(v).strip():
                    values.setdefault(str(v).strip(), []).append(d.name)
                    key = key or f"{d.driver}/{a}"
                    break
        if len(values) > 1:
            info.problems.append(
                f"node {info.node}: its devices publish different {what} versions: "
                + "; ".join(f"{v} ({', '.join(sorted(ds))})" for v, ds in sorted(values.items()))
            )
        if values:
            v = sorted(values)[0]
            if what == "driver":
                info.mechanism, info.driver, info.driver_key = "dra", v, key
            else:
                info.runtime, info.runtime_key = v, key
    if not info.driver:
        v, k = _from_labels(node, probe.driver_labels, probe.driver_label_parts)
        if v:
            info.mechanism, info.driver, info.driver_key = "node-labels", v, k
    if not info.runtime:
        info.runtime, info.runtime_key = _from_labels(
            node, probe.runtime_labels, probe.runtime_label_parts
        )
    return info


# ---------------------------------------------------------------------------------------
# Where a probe pod can get one accelerator
# ---------------------------------------------------------------------------------------


@dataclass
class Target:
    """One accelerator node to probe and how its probe pod gets an accelerator."""

    node: KubeObject
    devices: list[SliceDevice]
    """The node's DRA devices of the vendor (empty in device-plugin mode)."""
    mode: str = ""
    """``dra`` or ``device-plugin``; empty when nothing is free on the node."""
    free: int = 0

    @property
    def name(self) -> str:
        return name_of(self.node)


def targets(
    cluster: ClusterAPI,
    acc: AcceleratorType,
    nodes: Sequence[KubeObject],
    mode: str,
    notes: list[str],
    inventory: SliceInventory,
) -> tuple[list[Target], str | None]:
    """The accelerator nodes of ``acc`` among ``nodes``, each with its DRA devices (from
    ``inventory``, read with ``acc``'s drivers) and the way its probe pod gets one free
    accelerator; and the DRA version used."""
    av = dra_version(cluster)
    devices: dict[str, list[SliceDevice]] = {}
    free_dra: dict[str, int] = {}
    if av is not None:
        dc = cluster.get(av, "DeviceClass", acc.device_class) if acc.device_class else None
        taken = allocated_devices(cluster.list(av, "ResourceClaim"))
        for pool in inventory.of(acc):
            for d in pool.devices:
                if d.node_name is None:
                    continue
                devices.setdefault(d.node_name, []).append(d)
                if pool.complete and dc is not None and d.key not in taken:
                    free_dra[d.node_name] = free_dra.get(d.node_name, 0) + 1
            if not pool.complete:
                notes.append(f"DRA: {pool.describe()} (not used for claims)")
        if dc is None:
            notes.append(f"DRA: no DeviceClass {acc.device_class}")
    else:
        notes.append("DRA: resource.k8s.io/v1 (or v1beta2) is not served")
    # the nodes probed through DRA: a free device in a complete pool
    by_dra = (
        {name for name, free in free_dra.items() if free > 0} if mode != "device-plugin" else set()
    )
    accelerated = [
        (n, int(alloc))
        for n in nodes
        if (alloc := allocatable(n, acc.extended_resource)) or name_of(n) in devices
    ]
    # NOTE: what the cluster's pods request of the extended resource takes a list of
    # every pod (tens of thousands in a large cluster): read only when some node is to
    # be probed through the device plugin.
    need_used = mode != "dra" and any(
        has_dp and name_of(n) not in by_dra for n, has_dp in accelerated
    )
    used = (
        requests_by_node(cluster.iterate("v1", "Pod"), acc.extended_resource) if need_used else {}
    )
    out: list[Target] = []
    for n, has_dp in accelerated:
        name = name_of(n)
        t = Target(n, devices.get(name, []))
        if name in by_dra:
            t.mode, t.free = "dra", free_dra[name]
            dp_text = f"allocatable {acc.extended_resource}={has_dp}"
        else:
            dp_free = has_dp - int(used.get(name, 0))
            if mode in ("auto", "device-plugin") and dp_free > 0:
                t.mode, t.free = "device-plugin", dp_free
            dp_text = f"allocatable {acc.extended_resource}={has_dp} ({max(dp_free, 0)} free)"
        notes.append(
            f"node {name}: {len(t.devices)} DRA device(s) ({free_dra.get(name, 0)} free), "
            f"{dp_text}; "
            + (
                f"probe by {t.mode}"
                if t.mode
                else f"no free accelerator (--allocation-mode={mode})"
            )
        )
        out.append(t)
    return out, av


# ---------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------


@check(
    "driver_runtime_management",
    test="TestAcceleratorDriverRuntimeManagement",
    locks=exclusive(Resource.ACCELERATORS) + shared(Resource.NODE_POOL),
    options=(
        accelerator_type_option(),
        ALLOCATION_MODE_OPTION,
        CheckOption(
            "driver-runtime-image",
            "image of the driver probe pods: a vanilla image without the vendor's tools "
            "(the runtime must inject them)",
            default="ubuntu:22.04",
        ),
        CheckOption(
            "driver-runtime-nodes",
            "label selector of the accelerator nodes to check (default: all)",
            default="",
        ),
        CheckOption(
            "driver-runtime-pod-timeout", "seconds to wait for each probe pod to run", default="300"
        ),
        CheckOption(
            "driver-runtime-max-nodes",
            "probe at most this many accelerator nodes, spread over them (every node's "
            "published versions are still checked; the log names the sample)",
            default="16",
        ),
    ),
    permissions=probe_pod_permissions(
        Permission("list", "pods", namespaced=False),
        Permission("create", "resourceclaimtemplates", "resource.k8s.io"),
    ),
    timeout_s=900.0,
)
def driver_runtime_management(ctx: CheckContext) -> None:
    """Every accelerator node publishes its driver version, and a container granted one of
    its accelerators finds that same driver and runtime installed and working."""
    mode = (ctx.option("allocation-mode") or "auto").lower()
    if mode not in MODES:
        raise UsageError(f"--allocation-mode must be one of {', '.join(MODES)}, got {mode!r}")
    vendor = (ctx.option("accelerator-type") or "nvidia").lower()
    image = ctx.option("driver-runtime-image") or "ubuntu:22.04"
    selector = ctx.option("driver-runtime-nodes") or None
    pod_timeout = ctx.float_option("driver-runtime-pod-timeout") or 300.0

    try:
        nodes = (
            ctx.cluster.list("v1", "Node", label_selector=selector)
            if selector
            else cluster_nodes(ctx)
        )
    except RejectedError as e:
        raise UsageError(f"--driver-runtime-nodes {selector!r}: {e}") from e
    acc = ACCELERATORS.get(vendor)
    probe = DRIVER_PROBES.get(vendor)
    if acc is None or probe is None or not acc.probeable:
        ctx.log(UNKNOWN_LINE)
        ctx.skip(
            f"UNKNOWN: accelerator type {vendor!r} has no automated driver and runtime probe "
            f"(kaic probes {', '.join(DRIVER_PROBES)}); verify by hand and attach the "
            "driver and runtime versions each accelerator node publishes and runs"
        )
    notes: list[str] = []
    # NOTE: one read of the slices of every vendor's drivers serves both the nodes with
    # any accelerator and this vendor's devices with their version attributes (the
    # run's shared read of them when every node is checked).
    wanted = (*probe.dra_driver_attributes, *probe.dra_runtime_attributes)
    inventory = (
        SliceInventory.read(ctx.cluster, any_accelerator(), nodes, wanted)
        if selector
        else accelerator_inventory(ctx)
    )
    everything, _ = inventory.accelerators(any_accelerator(), nodes)
    found, av = targets(ctx.cluster, acc, nodes, mode, notes, inventory)
    others = sorted(set(everything) - {t.name for t in found})
    if not found:
        ctx.evidence("nodes.txt", "\n".join(notes) + "\n")
        if others:
            ctx.log(UNKNOWN_LINE)
            ctx.skip(
                f"UNKNOWN: the accelerator nodes ({', '.join(others)}) have no {acc.name} "
                "accelerators and kaic has no driver probe for theirs; verify by hand"
            )
        where = f" matching {selector!r}" if selector else ""
        ctx.not_applicable(
            f"no node{where} has accelerators (no {acc.name} devices or allocatable)"
        )
    if others:
        ctx.log(
            f"{UNKNOWN_LINE} for nodes {', '.join(others)}: their accelerators are not "
            f"{acc.name}; they need manual verification"
        )
    infos = {t.name: published(t.node, t.devices, probe) for t in found}
    run = _Run(ctx, acc, probe, av, image, pod_timeout)
    try:
        ctx.step("VerifiableMechanismExposed", lambda t: _mechanism(t, found, infos))
        ctx.step("DriverAndRuntimeCompatibility", lambda t: run.compatibility(t, found, infos))
    finally:
        ctx.evidence("nodes.txt", "\n".join(notes + [i.describe() for i in infos.values()]) + "\n")
        run.record_evidence()
        run.delete_all()


def _mechanism(t: Subtest, found: Sequence[Target], infos: Mapping[str, Published]) -> None:
    problems: list[str] = []
    for tgt in found:
        info = infos[tgt.name]
        t.log(info.describe())
        problems += info.problems
        if not info.driver:
            problems.append(
                f"node {tgt.name} publishes no driver version (no DRA device attribute "
                "and no node label)"
            )
        if not info.runtime:
            t.log(f"WARNING: node {tgt.name} publishes no runtime version")
        if not info.container_runtime:
            problems.append(
                f"node {tgt.name} reports no container runtime "
                "(status.nodeInfo.containerRuntimeVersion is empty)"
            )
        elif "://" not in info.container_runtime:
            # NOTE: CRI runtimes report NAME://VERSION (upstream requires that form); a
            # node agent that is no CRI runtime (kwok in the lab) reports something else.
            t.log(
                f"WARNING: node {tgt.name} reports container runtime "
                f"{info.container_runtime!r}, not in the CRI form NAME://VERSION"
            )
    if problems:
        t.fail("; ".join(problems))


class _Run:
    """Probe pods, one per accelerator node; the exec transcript for the evidence."""

    def __init__(
        self,
        ctx: CheckContext,
        acc: AcceleratorType,
        probe: DriverProbe,
        av: str | None,
        image: str,
        pod_timeout: float,
    ) -> None:
        self.ctx = ctx
        self.cluster = ctx.cluster
        self.acc = acc
        self.av = av
        self.image = image
        self.pod_timeout = pod_timeout
        self.script = probe_script(acc, probe)
        self.transcript: list[str] = []
        self.created = Created(ctx)
        self.template = False

    def pod_name(self, node: str) -> str:
        return f"driver-runtime-{re.sub(r'[^a-z0-9-]', '-', node.lower())}"[:63].rstrip("-")

    def pod_object(self, tgt: Target) -> KubeObject:
        container: dict[str, Any] = {
            "name": CONTAINER,
            "image": self.image,
            "command": ["sh", "-c", "sleep 3600"],
        }
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "activeDeadlineSeconds": int(self.ctx.timeout_s) + 120,
            "containers": [container],
            "tolerations": [{"key": self.acc.taint_key, "operator": "Exists"}]
            + [
                {"key": x.get("key"), "operator": "Exists", "effect": x.get("effect")}
                for x in (tgt.node.get("spec") or {}).get("taints") or []
                if x.get("key") != self.acc.taint_key
                and x.get("effect") in ("NoSchedule", "NoExecute")
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {"key": "metadata.name", "operator": "In", "values": [tgt.name]}
                                ]
                            }
                        ]
                    }
                }
            },
        }
        if tgt.mode == "dra":
            container["resources"] = {"claims": [{"name": POD_CLAIM}]}
            spec["resourceClaims"] = [
                {"name": POD_CLAIM, "resourceClaimTemplateName": CLAIM_TEMPLATE}
            ]
        else:
            res = self.acc.extended_resource
            container["resources"] = {"limits": {res: "1"}, "requests": {res: "1"}}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.pod_name(tgt.name),
                "namespace": self.ctx.namespace,
                "labels": {"kaic.io/probe": "driver-runtime"},
            },
            "spec": spec,
        }

    def ensure_template(self) -> None:
        if self.template or self.av is None:
            return
        self.cluster.create(
            one_device_claim_template(
                self.av, CLAIM_TEMPLATE, self.ctx.namespace, CLAIM_REQUEST, self.acc.device_class
            )
        )
        self.template = True

    def compatibility(
        self, t: Subtest, found: Sequence[Target], infos: Mapping[str, Published]
    ) -> None:
        probed = [x for x in found if x.mode]
        busy = [x.name for x in found if not x.mode]
        if not probed:
            t.error(
                f"no accelerator node has a free {self.acc.name} accelerator for a probe pod "
                f"(nodes: {', '.join(busy)})"
            )
        sample = spread(probed, limit_option(self.ctx, "driver-runtime-max-nodes"))
        if len(sample) < len(probed):
            t.log(
                f"probing {len(sample)} of {len(probed)} accelerator nodes, spread over them "
                f"(--driver-runtime-max-nodes): {', '.join(x.name for x in sample)}"
            )
            probed = sample
        for tgt in probed:
            if tgt.mode == "dra":
                self.ensure_template()
            self.cluster.create(self.pod_object(tgt))
            self.created.add("v1", "Pod", self.pod_name(tgt.name))
        problems: list[str] = []
        for tgt, (pod, res) in zip(probed, self.probe_all(t, probed), strict=True):
            info = infos[tgt.name]
            t.log(
                f"node {tgt.name} (pod {pod}, {tgt.mode}): sees {res.count} device(s), "
                f"runtime config ok={res.runtime_config_ok}, driver functional="
                f"{res.driver_functional}, driver {res.driver or '(none)'}, runtime "
                f"{res.runtime or '(none)'}; published driver {info.driver or '(none)'}, "
                f"runtime {info.runtime or '(none)'}"
            )
            problems += _judge(tgt.name, pod, res, info)
        if problems:
            if busy:
                problems.append(f"not probed (no free accelerator): {', '.join(busy)}")
            t.fail("; ".join(problems))
        if busy:
            t.error(
                f"nodes {', '.join(busy)} could not be probed: none of their accelerators is "
                "free (free one, or narrow --driver-runtime-nodes)"
            )

    def probe_all(self, t: Subtest, probed: Sequence[Target]) -> list[tuple[str, ProbeResult]]:
        """Each target's probe pod waited for and probed, ``PROBERS`` at a time; the
        results and the transcript in the order of ``probed``. The first target, in that
        order, whose pod did not run or whose probe failed ends the subtest, as if they
        had been probed one after another."""

        def one(tgt: Target, transcript: list[str]) -> tuple[str, ProbeResult]:
            pod = self.pod_name(tgt.name)
            self.wait_running(t, pod, tgt.name)
            return pod, self.run_probe(t, pod, transcript)

        transcripts: list[list[str]] = [[] for _ in probed]
        with ThreadPoolExecutor(
            max_workers=max(1, min(PROBERS, len(probed))), thread_name_prefix="kaic-drm-probe"
        ) as pool:
            futures = [
                pool.submit(one, tgt, tr) for tgt, tr in zip(probed, transcripts, strict=True)
            ]
        for tr in transcripts:
            self.transcript.extend(tr)
        return [f.result() for f in futures]

    def wait_running(self, t: Subtest, pod: str, node: str) -> None:
        try:
            obj = self.cluster.wait_for(
                "v1",
                "Pod",
                pod,
                self.ctx.namespace,
                pod_started,
                timeout=self.ctx.budget(self.pod_timeout),
                what=f"probe pod {pod} to run",
            )
        except ClusterError as e:
            last = last_warning(self.cluster, self.ctx.namespace, pod)
            t.error(f"probe pod {pod} for node {node} did not run: {e}{last}")
        if obj is None or (obj.get("spec") or {}).get("nodeName") != node:
            t.error(f"probe pod {pod} did not land on node {node}")

    def run_probe(self, t: Subtest, pod: str, transcript: list[str]) -> ProbeResult:
        return probe(
            self.ctx,
            t,
            pod,
            self.script,
            lambda r: parse_probe(r.stdout),
            lambda r: (
                f"the probe in pod {pod} printed no complete RESULT lines (exit code "
                f"{r.exit_code}; the image needs a POSIX sh): "
                f"{(r.stderr or r.stdout).strip()[:200]}"
            ),
            container=CONTAINER,
            timeout=90.0,
            attempts=PROBE_ATTEMPTS,
            transcript=transcript,
        )

    def record_evidence(self) -> None:
        self.ctx.evidence("probe-commands.log", "\n".join(self.transcript) or "(no probe ran)\n")
        self.created.record("pods.yaml", ["Pod"])

    def delete_all(self) -> None:
        self.created.delete_all(["Pod"])


def _judge(node: str, pod: str, res: ProbeResult, info: Published) -> list[str]:
    """Why the probe on ``node`` does not prove a compatible, truthfully published stack."""
    at = f"node {node} (pod {pod})"
    if res.count != 1:
        return [f"{at}: the container granted one accelerator sees {res.count}"]
    if not res.runtime_config_ok:
        return [
            f"{at}: the container runtime did not inject the vendor's tools and libraries "
            "into a container granted an accelerator (RUNTIME_CONFIG_OK=false)"
        ]
    if not res.driver_functional or not res.driver:
        return [
            f"{at}: the driver did not answer inside the container (DRIVER_FUNCTIONAL="
            f"{str(res.driver_functional).lower()}, ACTUAL_DRIVER_VERSION={res.driver!r})"
        ]
    out = []
    if not res.runtime:
        out.append(f"{at}: the driver reports no runtime version (ACTUAL_RUNTIME_VERSION empty)")
    if info.driver and not versions_agree(info.driver, res.driver):
        out.append(
            f"{at}: publishes driver version {info.driver} ({info.driver_key}) but runs "
            f"driver {res.driver}"
        )
    if info.runtime and res.runtime and not versions_agree(info.runtime, res.runtime):
        out.append(
            f"{at}: publishes runtime version {info.runtime} ({info.runtime_key}) but its "
            f"driver supports {res.runtime}"
        )
    return out
