"""gpu_sharing: one physical accelerator serves several workloads, as the platform offers.

Owns: detecting the sharing mechanisms a platform offers (time-slicing or MPS replicas of
a device plugin; partitions of one physical device published through DRA with shared
counters, KEP-4815), exercising each one found, and the sub-tests of ``TestGPUSharing``.
Must not import the Kubernetes client, another requirement's module, or know anything
about the lab.

Procedure (KAR-0003 test plan; there is no upstream test yet, so the sub-test names are
kaic's):

1. ``SharingMechanismExposed`` — replicas: a node whose allocatable ``nvidia.com/gpu``
   (or ``nvidia.com/gpu.shared``) exceeds its physical GPUs (GPU Feature Discovery's
   ``nvidia.com/gpu.count``, with ``nvidia.com/gpu.replicas`` / ``…sharing-strategy``);
   partitions: ResourceSlice devices of the vendor's DRA driver that consume a shared
   counter set, with the physical device they belong to (``parentUUID``). FAIL when
   there is neither (whole GPUs only).
2. ``TimeSlicedSharesShareOneGPU`` — on a node with replicas, one pod more than it has
   physical GPUs, each requesting one share, all run; a probe in each (``exec``) lists the
   GPU it sees, each sees exactly one, and (pigeonhole) at least two see the same
   physical GPU, by UUID or device node.
3. ``PartitionsShareOnePhysicalDevice`` — of one free physical device, the partition
   profile of which the fewest (m ≥ 2) fit its counters: m ResourceClaims for that
   profile and parent are allocated (their pods run) from that one device, and one more
   stays unallocated (its pod unschedulable) for ``--sharing-window`` seconds.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kaic.checks.accelerators import (
    AcceleratorType,
    SliceDevice,
    accelerator_type_option,
    allocated_devices,
    any_accelerator,
    device_count_lines,
    dra_version,
    node_accelerators,
    probe_pod_permissions,
    probed_accelerator,
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
from kaic.checks.predicates import node_schedulable, pod_bound
from kaic.checks.resources import allocatable, requests_by_node
from kaic.checks.waits import last_warning, pod_running_or_fail
from kaic.cluster import parse_quantity
from kaic.cluster.api import ClusterAPI, KubeObject, name_of
from kaic.errors import WaitTimeoutError

COUNT_LABEL = "nvidia.com/gpu.count"
REPLICAS_LABEL = "nvidia.com/gpu.replicas"
STRATEGY_LABEL = "nvidia.com/gpu.sharing-strategy"
PARTITION_CLASSES = {"gpu.nvidia.com": "mig.nvidia.com"}
"""The DeviceClass of each DRA driver's partitions (NVIDIA's DRA driver: MIG devices)."""
PARENT_ATTRIBUTES = ("parentUUID",)
PROFILE_ATTRIBUTES = ("profile",)
MAX_SHARE_PODS = 17
MAX_PROFILE_DEVICES = 16
PROBE_ATTEMPTS = 3
CLAIM_REQUEST = "partition"


# ---------------------------------------------------------------------------------------
# Replicas (time-slicing, MPS) in device-plugin mode
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedNode:
    """A node whose device plugin offers more accelerators than it has."""

    node: KubeObject
    resource: str
    physical: int
    shares: int
    free: int
    strategy: str

    @property
    def name(self) -> str:
        return name_of(self.node)

    def describe(self) -> str:
        return (
            f"node {self.name}: {self.shares} {self.resource} on {self.physical} physical "
            f"GPU(s) ({self.strategy}), {self.free} free"
        )


def _int_label(node: KubeObject, key: str) -> int | None:
    v = ((node.get("metadata") or {}).get("labels") or {}).get(key)
    try:
        return int(str(v)) if v is not None else None
    except ValueError:
        return None


def shared_nodes(
    nodes: Sequence[KubeObject], pods: Sequence[KubeObject], acc: AcceleratorType
) -> tuple[list[SharedNode], list[str]]:
    """Nodes offering replicas of their accelerators, and one line per accelerator node
    that offers whole ones (for the log)."""
    out: list[SharedNode] = []
    whole: list[str] = []
    for res in [r for base in acc.extended_resources for r in (base, f"{base}.shared")]:
        used = requests_by_node(pods, res)
        for n in nodes:
            shares = int(allocatable(n, res))
            if shares <= 0:
                continue
            labels = (n.get("metadata") or {}).get("labels") or {}
            replicas = _int_label(n, REPLICAS_LABEL) or 1
            physical = _int_label(n, COUNT_LABEL)
            if physical is None and replicas > 1:
                physical = shares // replicas
            strategy = str(labels.get(STRATEGY_LABEL) or ("replicas" if replicas > 1 else ""))
            if physical is None or physical <= 0 or shares <= physical:
                whole.append(
                    f"node {name_of(n)}: {shares} {res}"
                    + (f" on {physical} physical GPU(s)" if physical else "")
                    + f" (no {REPLICAS_LABEL} above 1)"
                )
                continue
            free = shares - int(used.get(name_of(n), 0))
            out.append(SharedNode(n, res, physical, shares, free, strategy))
    return out, whole


def mig_resources(nodes: Sequence[KubeObject]) -> list[str]:
    """``nvidia.com/mig-<profile>`` resources of the device plugin's mixed MIG strategy."""
    found = []
    for n in nodes:
        for res, v in sorted(((n.get("status") or {}).get("allocatable") or {}).items()):
            if res.startswith("nvidia.com/mig-") and int(allocatable(n, res)) > 0:
                found.append(f"node {name_of(n)}: {v} {res}")
    return found


# ---------------------------------------------------------------------------------------
# Partitions in DRA (shared counters)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    device: SliceDevice
    profile: str
    consumes: Mapping[str, Decimal]


@dataclass
class PartitionSet:
    """The partitions of one physical device: devices consuming one shared counter set."""

    node: str
    driver: str
    pool: str
    counter_set: str
    capacity: dict[str, Decimal]
    parent: str = ""
    parent_attribute: str = ""
    profile_attribute: str = ""
    partitions: list[Partition] = field(default_factory=list)

    def describe(self) -> str:
        profiles = sorted({p.profile for p in self.partitions})
        cap = ", ".join(f"{k}={v}" for k, v in sorted(self.capacity.items()))
        return (
            f"node {self.node}: {len(self.partitions)} partition(s) of {self.parent or '?'} "
            f"(driver {self.driver}, pool {self.pool}, counter set {self.counter_set}: {cap}; "
            f"profiles {', '.join(profiles)})"
        )

    def _fits(self, combo: Sequence[Partition]) -> bool:
        return all(c in self.capacity for p in combo for c in p.consumes) and all(
            sum((p.consumes.get(c, Decimal(0)) for p in combo), Decimal(0)) <= cap
            for c, cap in self.capacity.items()
        )

    def best_fit(self, profile: str) -> tuple[Partition, ...]:
        """The most partitions of ``profile`` that the counters allow together."""
        mine = [p for p in self.partitions if p.profile == profile]
        for k in range(len(mine), 0, -1):
            for combo in itertools.combinations(mine, k):
                if self._fits(combo):
                    return combo
        return ()

    def most_that_fit(self, profile: str) -> int:
        return len(self.best_fit(profile))

    def blocked_after(self, combo: Sequence[Partition]) -> list[Partition]:
        """The other partitions that no longer fit once ``combo`` is allocated."""
        return [p for p in self.partitions if p not in combo and not self._fits([*combo, p])]


def _attr_key(d: SliceDevice, names: Sequence[str]) -> tuple[str, str]:
    """(qualified name, value) of the first of ``names`` the device has."""
    for name in names:
        for k in (name, f"{d.driver}/{name}"):
            if k in d.attributes:
                v = d.attribute(name)
                if v is not None:
                    return (k if "/" in k else f"{d.driver}/{k}"), str(v)
    return "", ""


def partition_sets(slices: Sequence[KubeObject], acc: AcceleratorType) -> list[PartitionSet]:
    """Per node-local shared counter set of ``acc``'s drivers (newest generation of
    complete pools): its capacity and the devices that consume it."""
    newest: dict[tuple[str, str], int] = {}
    mine = [s for s in slices if (s.get("spec") or {}).get("driver") in acc.drivers]
    for s in mine:
        p = s["spec"].get("pool") or {}
        key = (str(s["spec"]["driver"]), str(p.get("name", "")))
        newest[key] = max(newest.get(key, 0), int(p.get("generation", 0)))
    current = [
        s
        for s in mine
        if int((s["spec"].get("pool") or {}).get("generation", 0))
        == newest[(str(s["spec"]["driver"]), str((s["spec"].get("pool") or {}).get("name", "")))]
    ]
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for s in current:
        p = s["spec"].get("pool") or {}
        key = (str(s["spec"]["driver"]), str(p.get("name", "")))
        seen, want = counts.get(key, (0, int(p.get("resourceSliceCount", 1) or 1)))
        counts[key] = (seen + 1, want)
    sets: dict[tuple[str, str, str], PartitionSet] = {}
    for s in current:
        spec = s["spec"]
        driver, pool = str(spec["driver"]), str((spec.get("pool") or {}).get("name", ""))
        seen, want = counts[(driver, pool)]
        if seen < want:
            continue
        for cs in spec.get("sharedCounters") or []:
            ps = sets.setdefault(
                (driver, pool, str(cs.get("name"))),
                PartitionSet(
                    str(spec.get("nodeName") or ""), driver, pool, str(cs.get("name")), {}
                ),
            )
            ps.capacity = {
                k: parse_quantity(str((v or {}).get("value", "0")))
                for k, v in (cs.get("counters") or {}).items()
            }
            if spec.get("nodeName"):
                ps.node = str(spec["nodeName"])
    for s in current:
        spec = s["spec"]
        driver, pool = str(spec["driver"]), str((spec.get("pool") or {}).get("name", ""))
        if counts[(driver, pool)][0] < counts[(driver, pool)][1]:
            continue
        node = spec.get("nodeName")
        for d in spec.get("devices") or []:
            uses = d.get("consumesCounters") or []
            if len(uses) != 1 or d.get("nodeName") or d.get("nodeSelector") or d.get("allNodes"):
                continue
            found = sets.get((driver, pool, str(uses[0].get("counterSet"))))
            if found is None:
                continue
            ps = found
            where = {str(node)} if node else set()
            dev = SliceDevice(
                driver,
                pool,
                str(d.get("name", "")),
                d.get("attributes") or {},
                frozenset(where),
                str(node) if node else None,
            )
            pkey, parent = _attr_key(dev, PARENT_ATTRIBUTES)
            fkey, profile = _attr_key(dev, PROFILE_ATTRIBUTES)
            consumes = {
                k: parse_quantity(str((v or {}).get("value", "0")))
                for k, v in (uses[0].get("counters") or {}).items()
            }
            if not profile:
                # NOTE: without a profile attribute, partitions alike in what they consume
                # are one profile.
                profile = ",".join(f"{k}={v}" for k, v in sorted(consumes.items()))
            if parent and not ps.parent:
                ps.parent, ps.parent_attribute = parent, pkey
            ps.profile_attribute = ps.profile_attribute or fkey
            ps.node = ps.node or str(node or "")
            ps.partitions.append(Partition(dev, profile, consumes))
    return [ps for _, ps in sorted(sets.items()) if ps.partitions]


def _cel(driver: str, qualified: str, value: str) -> str:
    domain, _, name = qualified.rpartition("/")
    return f"device.attributes[{json.dumps(domain or driver)}].{name} == {json.dumps(value)}"


# ---------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------


@check(
    "gpu_sharing",
    test="TestGPUSharing",
    locks=exclusive(Resource.ACCELERATORS) + shared(Resource.NODE_POOL),
    options=(
        accelerator_type_option(),
        CheckOption(
            "sharing-device-class",
            "DeviceClass of the partitions (default: the vendor's, mig.nvidia.com)",
            default="",
        ),
        CheckOption(
            "sharing-image", "image of the pods (needs a POSIX sh)", default="ubuntu:22.04"
        ),
        CheckOption(
            "sharing-window",
            "seconds the claim beyond the counters must stay unallocated",
            default="15",
        ),
        CheckOption("sharing-pod-timeout", "seconds to wait for each pod to run", default="300"),
    ),
    permissions=probe_pod_permissions(
        Permission("list", "pods", namespaced=False),
        Permission("create", "resourceclaims", "resource.k8s.io"),
    ),
    timeout_s=900.0,
)
def gpu_sharing(ctx: CheckContext) -> None:
    """One physical accelerator serves several pods: time-sliced replicas of one GPU run
    side by side, and DRA partitions of one device are allocated up to its counters."""
    acc = probed_accelerator(
        ctx, "sharing test", "verify by hand and attach how one physical device is shared"
    )
    window = ctx.float_option("sharing-window")
    nodes = [n for n in ctx.cluster.list("v1", "Node") if node_schedulable(n)]
    everything, _ = node_accelerators(ctx.cluster, any_accelerator(), nodes)
    av = dra_version(ctx.cluster, ("ResourceSlice", "ResourceClaim", "DeviceClass"))
    slices = ctx.cluster.list(av, "ResourceSlice") if av else []
    sets = partition_sets(slices, acc)
    pods = ctx.cluster.list("v1", "Pod")
    replicas, whole = shared_nodes(nodes, pods, acc)
    migs = mig_resources(nodes)
    if not everything and not sets and not migs:
        ctx.not_applicable("no schedulable node has accelerators to share")
    run = _Run(ctx, acc, av)
    try:
        with ctx.subtest("SharingMechanismExposed") as t:
            found = [r.describe() for r in replicas] + [s.describe() for s in sets] + migs
            for line in found:
                t.log(line)
            for line in whole:
                t.log(f"whole GPUs: {line}")
            ctx.evidence(
                "mechanisms.txt",
                "\n".join(found + [f"whole GPUs: {w}" for w in whole] or ["nothing found"]) + "\n",
            )
            if not replicas and not sets:
                if migs:
                    ctx.manual(
                        "the device plugin offers MIG partitions as extended resources ("
                        + "; ".join(migs)
                        + "), which kaic does not exercise yet: attach evidence that two pods "
                        "requesting one partition each run on one physical GPU"
                    )
                t.fail(
                    "only whole GPUs: "
                    + ("; ".join(whole) or "no node offers replicas")
                    + f"; and no ResourceSlice device of {', '.join(acc.drivers)} consumes a "
                    "shared counter set (no partitions)"
                )
        ctx.step(
            "TimeSlicedSharesShareOneGPU",
            lambda t: run.time_slicing(t, replicas),
            needs=("SharingMechanismExposed",),
        )
        ctx.step(
            "PartitionsShareOnePhysicalDevice",
            lambda t: run.partitions(t, sets, window),
            needs=("SharingMechanismExposed",),
        )
    finally:
        run.record_evidence()
        run.delete_all()


def probe_script(acc: AcceleratorType) -> str:
    """Device nodes and listed devices a container sees, and the listing tool's exit code."""
    lines = device_count_lines(acc, list_exit=True)
    lines += [
        'if [ "$m" -gt "$n" ]; then n=$m; fi',
        'echo "RESULT: LIST_EXIT=$rc"',
        'echo "RESULT: ACCELERATOR_COUNT=$n"',
        "exit 0",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Seen:
    count: int
    identities: tuple[str, ...]
    list_exit: str


def parse_seen(stdout: str, acc: AcceleratorType) -> Seen | None:
    m = re.search(r"^RESULT: ACCELERATOR_COUNT=(\d+)\s*$", stdout, re.M)
    if not m:
        return None
    rc = re.search(r"^RESULT: LIST_EXIT=(\S+)\s*$", stdout, re.M)
    uuid_re = re.compile(acc.uuid_pattern) if acc.uuid_pattern else None
    uuids, devs = [], []
    for line in stdout.splitlines():
        if line.startswith("LIST: ") and uuid_re and (u := uuid_re.search(line)):
            uuids.append(u.group(1))
        elif line.startswith("DEVICE: "):
            devs.append(line[len("DEVICE: ") :].strip())
    return Seen(int(m.group(1)), tuple(uuids or devs), rc.group(1) if rc else "none")


class _Run:
    def __init__(self, ctx: CheckContext, acc: AcceleratorType, av: str | None) -> None:
        self.ctx = ctx
        self.cluster: ClusterAPI = ctx.cluster
        self.acc = acc
        self.av = av
        self.image = ctx.option("sharing-image") or "ubuntu:22.04"
        self.pod_timeout = ctx.float_option("sharing-pod-timeout") or 300.0
        self.transcript: list[str] = []
        self.created = Created(ctx)
        self.notes: list[str] = []

    # -- objects -----------------------------------------------------------------------
    def pod(
        self, name: str, node: KubeObject, resources: dict[str, Any], **spec: Any
    ) -> KubeObject:
        taints = (node.get("spec") or {}).get("taints") or []
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.ctx.namespace,
                "labels": {"kaic.io/probe": "gpu-sharing"},
            },
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "automountServiceAccountToken": False,
                "activeDeadlineSeconds": int(self.ctx.timeout_s) + 120,
                "containers": [
                    {
                        "name": "probe",
                        "image": self.image,
                        "command": ["sh", "-c", "sleep 3600"],
                        "resources": resources,
                    }
                ],
                "tolerations": [{"key": self.acc.taint_key, "operator": "Exists"}]
                + [
                    {"key": x.get("key"), "operator": "Exists", "effect": x.get("effect")}
                    for x in taints
                    if x.get("effect") in ("NoSchedule", "NoExecute")
                ],
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchFields": [
                                        {
                                            "key": "metadata.name",
                                            "operator": "In",
                                            "values": [name_of(node)],
                                        }
                                    ]
                                }
                            ]
                        }
                    }
                },
                **spec,
            },
        }

    def create_pod(self, obj: KubeObject) -> None:
        self.cluster.create(obj)
        self.created.add("v1", "Pod", name_of(obj))

    # -- replicas ------------------------------------------------------------------------
    def time_slicing(self, t: Subtest, replicas: Sequence[SharedNode]) -> None:
        if not replicas:
            t.skip("no node offers replicas of its GPUs (time-slicing or MPS)")
        usable = [
            r for r in replicas if r.free >= r.physical + 1 and r.physical + 1 <= MAX_SHARE_PODS
        ]
        if not usable:
            t.error(
                "no shared node has one free share more than its physical GPUs: "
                + "; ".join(r.describe() for r in replicas)
            )
        sn = min(usable, key=lambda r: (r.physical, r.name))
        n = sn.physical + 1
        t.log(f"{sn.describe()}: {n} pods requesting one {sn.resource} each")
        names = [f"share-{i}" for i in range(n)]
        for name in names:
            self.create_pod(
                self.pod(
                    name, sn.node, {"limits": {sn.resource: "1"}, "requests": {sn.resource: "1"}}
                )
            )
        for name in names:
            obj = pod_running_or_fail(self.ctx, t, name, self.pod_timeout)
            t.require(
                (obj.get("spec") or {}).get("nodeName") == sn.name,
                f"pod {name} ran on {(obj.get('spec') or {}).get('nodeName')}, not {sn.name}",
            )
        seen = {name: self.probe(t, name) for name in names}
        problems = []
        by_gpu: dict[str, list[str]] = {}
        for name, s in seen.items():
            t.log(f"pod {name} sees {s.count}: {', '.join(s.identities) or 'nothing'}")
            if s.count != 1:
                problems.append(f"pod {name} holds one {sn.resource} but sees {s.count} GPU(s)")
            if s.list_exit not in ("0", "none"):
                problems.append(
                    f"pod {name}: {self.acc.list_tool} failed (exit {s.list_exit}): the shared "
                    "GPU is not healthy"
                )
            for ident in s.identities[:1]:
                by_gpu.setdefault(ident, []).append(name)
        if problems:
            t.fail("; ".join(problems))
        shared = {g: ps for g, ps in by_gpu.items() if len(ps) > 1}
        if not shared:
            t.fail(
                f"{n} pods on {sn.physical} physical GPU(s) of node {sn.name} each see a "
                f"different GPU ({', '.join(sorted(by_gpu))}): the shares are not of one GPU"
            )
        for g, ps in sorted(shared.items()):
            t.log(f"pods {', '.join(ps)} share GPU {g} on node {sn.name}")

    def probe(self, t: Subtest, pod: str) -> Seen:
        return probe(
            self.ctx,
            t,
            pod,
            probe_script(self.acc),
            lambda r: parse_seen(r.stdout, self.acc),
            lambda r: f"the probe in pod {pod} printed no RESULT line (exit code {r.exit_code})",
            container="probe",
            timeout=60.0,
            attempts=PROBE_ATTEMPTS,
            transcript=self.transcript,
        )

    # -- partitions --------------------------------------------------------------------------
    def partitions(self, t: Subtest, sets: Sequence[PartitionSet], window: float) -> None:
        if not sets:
            t.skip(
                f"no ResourceSlice device of {', '.join(self.acc.drivers)} consumes shared counters"
            )
        assert self.av is not None
        taken = allocated_devices(self.cluster.list(self.av, "ResourceClaim"))
        nodes = {name_of(n): n for n in self.cluster.list("v1", "Node")}
        choices = []
        for ps in sets:
            if not ps.parent or ps.node not in nodes:
                t.log(
                    f"not usable (no {'/'.join(PARENT_ATTRIBUTES)} attribute or node): "
                    f"{ps.describe()}"
                )
                continue
            if any(p.device.key in taken for p in ps.partitions):
                t.log(f"not used (some partitions are allocated): {ps.describe()}")
                continue
            if not ps.profile_attribute:
                t.log(f"not usable (no {'/'.join(PROFILE_ATTRIBUTES)} attribute): {ps.describe()}")
                continue
            for profile in sorted({p.profile for p in ps.partitions}):
                count = sum(1 for p in ps.partitions if p.profile == profile)
                if count > MAX_PROFILE_DEVICES:
                    continue
                combo = ps.best_fit(profile)
                blocked = ps.blocked_after(combo)
                if len(combo) < 2 or not blocked:
                    continue
                # NOTE: the extra claim asks for a partition whose device is free but whose
                # counters are used up: the same profile if one is left, else the smallest.
                same = [b for b in blocked if b.profile == profile]
                spare = (
                    same[0]
                    if same
                    else min(
                        blocked, key=lambda b: (sum(b.consumes.values(), Decimal(0)), b.profile)
                    )
                )
                choices.append((len(combo), ps.node, ps.parent, profile, spare.profile, ps))
        if not choices:
            t.error(
                "no free physical device has a partition profile of which two or more fit its "
                "counters and leave another partition without room: "
                + "; ".join(ps.describe() for ps in sets)
            )
        m, node_name, parent, profile, extra_profile, ps = min(choices, key=lambda c: c[:5])
        dclass = self.ctx.option("sharing-device-class") or PARTITION_CLASSES.get(ps.driver, "")
        if not dclass or self.cluster.get(self.av, "DeviceClass", dclass) is None:
            t.error(
                f"no DeviceClass {dclass or '(none known)'} for the partitions of {ps.driver}; "
                "name one with --sharing-device-class"
            )
        t.log(
            f"{ps.describe()}: at most {m} of profile {profile} fit; claiming {m}, then one "
            f"{extra_profile} that no longer fits the counters (DeviceClass {dclass})"
        )
        node = nodes[node_name]
        names = [f"partition-{i}" for i in range(1, m + 2)]
        for i, name in enumerate(names):
            self.cluster.create(
                {
                    "apiVersion": self.av,
                    "kind": "ResourceClaim",
                    "metadata": {"name": name, "namespace": self.ctx.namespace},
                    "spec": {
                        "devices": {
                            "requests": [
                                {
                                    "name": CLAIM_REQUEST,
                                    "exactly": {
                                        "deviceClassName": dclass,
                                        "allocationMode": "ExactCount",
                                        "count": 1,
                                        "selectors": [
                                            {"cel": {"expression": e}}
                                            for e in (
                                                _cel(ps.driver, ps.parent_attribute, parent),
                                                _cel(
                                                    ps.driver,
                                                    ps.profile_attribute,
                                                    profile if i < m else extra_profile,
                                                ),
                                            )
                                        ],
                                    },
                                }
                            ]
                        }
                    },
                }
            )
            self.created.add(self.av or "resource.k8s.io/v1", "ResourceClaim", name)
            if i < m:
                self.create_pod(self.claim_pod(name, node))
        by_key = {p.device.key: p for p in ps.partitions}
        for name in names[:m]:
            pod_running_or_fail(self.ctx, t, name, self.pod_timeout)
            claim = self.cluster.get(self.av, "ResourceClaim", name, self.ctx.namespace) or {}
            results = (
                ((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}
            ).get("results") or []
            keys = [
                (str(r.get("driver")), str(r.get("pool")), str(r.get("device"))) for r in results
            ]
            got = [by_key.get(k) for k in keys]
            if len(got) != 1 or got[0] is None:
                t.fail(
                    f"claim {name} was allocated "
                    f"{', '.join('/'.join(k) for k in keys) or 'nothing'}, "
                    f"not one partition of {parent}"
                )
            t.log(f"claim {name} (pod {name}) got {got[0].device.name} of {parent}")
        extra = names[m]
        self.create_pod(self.claim_pod(extra, node))
        av = self.av

        def allocated(c: KubeObject | None) -> bool:
            return bool(((c or {}).get("status") or {}).get("allocation"))

        left: KubeObject | None
        try:
            left = self.cluster.wait_for(
                av,
                "ResourceClaim",
                extra,
                self.ctx.namespace,
                allocated,
                timeout=min(window, max(0.0, self.ctx.remaining() - 5.0)),
                what=f"claim {extra} to stay unallocated",
            )
        except WaitTimeoutError:
            left = None
        if left is not None:
            devs = [
                str(r.get("device"))
                for r in (
                    ((left.get("status") or {}).get("allocation") or {}).get("devices") or {}
                ).get("results")
                or []
            ]
            t.fail(
                f"claim {extra} for a {extra_profile} partition was allocated {', '.join(devs)} "
                f"although {m} {profile} partitions of {parent} already use its counters: the "
                "counters are not enforced"
            )
        if pod_bound(self.cluster.get("v1", "Pod", extra, self.ctx.namespace)):
            t.fail(f"pod {extra} was bound although its claim {extra} is not allocated")
        t.log(
            f"claim {extra} stayed unallocated for {window:.0f}s; pod {extra}: "
            f"{last_warning(self.cluster, self.ctx.namespace, extra).strip(' ()') or 'pending'}"
        )

    def claim_pod(self, name: str, node: KubeObject) -> KubeObject:
        return self.pod(
            name,
            node,
            {"claims": [{"name": "part"}]},
            resourceClaims=[{"name": "part", "resourceClaimName": name}],
        )

    # -- evidence ------------------------------------------------------------------------------
    def record_evidence(self) -> None:
        self.ctx.evidence("probe-commands.log", "\n".join(self.transcript) or "(no probe ran)\n")
        self.created.record("objects.yaml", ["Pod", "ResourceClaim"])

    def delete_all(self) -> None:
        self.created.delete_all(["Pod", "ResourceClaim"])
