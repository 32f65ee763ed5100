"""virtualized_accelerator: virtual accelerators are claimed like physical ones, and isolated.

Owns: finding virtual accelerators (DRA devices marked virtual: ``type`` ``vgpu`` or
``vfio``, or ``virtual: true``), claiming one through DRA like a physical partition, and
probing what containers see of it; the sub-tests of ``TestVirtualizedAccelerator``. Must
not import the Kubernetes client, another requirement's module, or know anything about
the lab.

Procedure (KAR-0004 test plan; no upstream test yet, so the sub-test names are kaic's):

1. ``VirtualAcceleratorsExposed`` — the vendor driver's ResourceSlices (complete pools,
   newest generation) publish devices marked virtual, each with its profile; listed per
   node. None at all: not applicable, with the reason.
2. ``VirtualAcceleratorAllocated`` — a ResourceClaim for one (DeviceClass of the virtual
   devices, CEL selector on the profile) with a pod pinned to the node with the most free
   ones: the pod runs and the claim holds exactly one device marked virtual.
3. ``VirtualAcceleratorIsolation`` — a probe (``exec``) in that pod sees exactly one
   accelerator, the allocated one (by ``uuid``); a pod on the same node without a claim
   sees none; with a second free device, a second claimed pod sees only its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kaic.checks.accelerators import (
    AcceleratorType,
    SliceDevice,
    accelerator_type_option,
    allocated_devices,
    device_count_lines,
    dra_version,
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
from kaic.checks.predicates import node_schedulable
from kaic.checks.waits import pod_running_or_fail
from kaic.cluster.api import ClusterAPI, KubeObject, name_of

VIRTUAL_TYPES = ("vgpu", "vfio")
VIRTUAL_CLASSES = {"gpu.nvidia.com": ("vgpu.nvidia.com", "vfio.gpu.nvidia.com")}
"""DeviceClasses of each driver's virtual devices, in order of preference."""
PROBE_ATTEMPTS = 3


@dataclass(frozen=True)
class Virtual:
    """One virtual accelerator a ResourceSlice publishes."""

    device: SliceDevice
    kind: str
    profile: str
    uuid: str

    @property
    def node(self) -> str:
        return self.device.node_name or ""

    def describe(self) -> str:
        return f"{self.node}/{self.device.name} ({self.kind}, profile {self.profile or '?'})"


def virtual_devices(slices: Sequence[KubeObject], acc: AcceleratorType) -> list[Virtual]:
    """Node-local devices of ``acc``'s drivers in complete pools (newest generation) that
    are marked virtual."""
    newest: dict[tuple[str, str], int] = {}
    mine = [s for s in slices if (s.get("spec") or {}).get("driver") in acc.drivers]
    for s in mine:
        p = s["spec"].get("pool") or {}
        key = (str(s["spec"]["driver"]), str(p.get("name", "")))
        newest[key] = max(newest.get(key, 0), int(p.get("generation", 0)))
    seen: dict[tuple[str, str], int] = {}
    want: dict[tuple[str, str], int] = {}
    current = []
    for s in mine:
        p = s["spec"].get("pool") or {}
        key = (str(s["spec"]["driver"]), str(p.get("name", "")))
        if int(p.get("generation", 0)) != newest[key]:
            continue
        current.append((key, s))
        seen[key] = seen.get(key, 0) + 1
        want[key] = int(p.get("resourceSliceCount", 1) or 1)
    out = []
    for key, s in current:
        if seen[key] < want[key]:
            continue
        node = s["spec"].get("nodeName")
        for d in s["spec"].get("devices") or []:
            dev = SliceDevice(
                key[0],
                key[1],
                str(d.get("name", "")),
                d.get("attributes") or {},
                frozenset({str(node)} if node else set()),
                str(node) if node else None,
            )
            kind = str(dev.attribute("type") or "")
            if kind not in VIRTUAL_TYPES and dev.attribute("virtual") is not True:
                continue
            if not node:
                continue
            out.append(
                Virtual(
                    dev,
                    kind or "virtual",
                    str(dev.attribute("profile") or ""),
                    str(dev.attribute(acc.uuid_attribute) or ""),
                )
            )
    return out


def probe_script(acc: AcceleratorType) -> str:
    """Device nodes and listed devices a container sees."""
    lines = device_count_lines(acc)
    lines += [
        'if [ "$m" -gt "$n" ]; then n=$m; fi',
        'echo "RESULT: ACCELERATOR_COUNT=$n"',
        "exit 0",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Seen:
    count: int
    uuids: tuple[str, ...]
    devices: tuple[str, ...]

    def describe(self) -> str:
        return ", ".join(self.devices + self.uuids) or "nothing"


def parse_seen(stdout: str, acc: AcceleratorType) -> Seen | None:
    m = re.search(r"^RESULT: ACCELERATOR_COUNT=(\d+)\s*$", stdout, re.M)
    if not m:
        return None
    uuid_re = re.compile(acc.uuid_pattern) if acc.uuid_pattern else None
    uuids, devs = [], []
    for line in stdout.splitlines():
        if line.startswith("LIST: ") and uuid_re and (u := uuid_re.search(line)):
            uuids.append(u.group(1))
        elif line.startswith("DEVICE: "):
            devs.append(line[len("DEVICE: ") :].strip())
    return Seen(int(m.group(1)), tuple(uuids), tuple(devs))


@check(
    "virtualized_accelerator",
    test="TestVirtualizedAccelerator",
    locks=exclusive(Resource.ACCELERATORS) + shared(Resource.NODE_POOL),
    options=(
        accelerator_type_option(),
        CheckOption(
            "virtual-device-class",
            "DeviceClass of the virtual accelerators (default: vgpu.nvidia.com, else "
            "vfio.gpu.nvidia.com)",
            default="",
        ),
        CheckOption(
            "virtual-image", "image of the pods (needs a POSIX sh)", default="ubuntu:22.04"
        ),
        CheckOption("virtual-pod-timeout", "seconds to wait for each pod to run", default="300"),
    ),
    permissions=probe_pod_permissions(
        Permission("create", "resourceclaims", "resource.k8s.io"),
    ),
    timeout_s=900.0,
)
def virtualized_accelerator(ctx: CheckContext) -> None:
    """A virtual accelerator published through DRA is claimed, scheduled and isolated like
    a physical one: its pod sees exactly it, a pod without a claim sees none."""
    acc = probed_accelerator(ctx, "virtual-accelerator test")
    av = dra_version(ctx.cluster, ("ResourceSlice", "ResourceClaim", "DeviceClass"))
    if av is None:
        ctx.not_applicable(
            "no virtualized accelerators: the DRA API (resource.k8s.io/v1) is not served, "
            "and kaic looks for virtual accelerators in ResourceSlices"
        )
    virtuals = virtual_devices(ctx.cluster.list(av, "ResourceSlice"), acc)
    if not virtuals:
        ctx.not_applicable(
            f"no virtualized accelerators: no ResourceSlice device of {', '.join(acc.drivers)} "
            f"is marked virtual (type {'/'.join(VIRTUAL_TYPES)} or virtual=true)"
        )
    run = _Run(ctx, acc, av)
    try:
        with ctx.subtest("VirtualAcceleratorsExposed") as t:
            by_node: dict[str, list[Virtual]] = {}
            for v in virtuals:
                by_node.setdefault(v.node, []).append(v)
            for node, vs in sorted(by_node.items()):
                t.log(f"node {node}: {len(vs)} virtual: " + ", ".join(v.describe() for v in vs))
            ctx.evidence("virtual-devices.txt", "\n".join(v.describe() for v in virtuals) + "\n")
            nameless = [v.describe() for v in virtuals if not v.profile]
            if nameless:
                t.log(
                    f"WARNING: virtual devices without a profile attribute: {', '.join(nameless)}"
                )
        ctx.step("VirtualAcceleratorAllocated", lambda t: run.allocate(t, virtuals))
        ctx.step(
            "VirtualAcceleratorIsolation",
            run.isolation,
            needs=("VirtualAcceleratorAllocated",),
        )
    finally:
        run.record_evidence()
        run.delete_all()


class _Run:
    def __init__(self, ctx: CheckContext, acc: AcceleratorType, av: str) -> None:
        self.ctx = ctx
        self.cluster: ClusterAPI = ctx.cluster
        self.acc = acc
        self.av = av
        self.image = ctx.option("virtual-image") or "ubuntu:22.04"
        self.pod_timeout = ctx.float_option("virtual-pod-timeout") or 300.0
        self.transcript: list[str] = []
        self.created = Created(ctx)
        self.node: KubeObject = {}
        self.dclass = ""
        self.profile = ""
        self.free: list[Virtual] = []
        self.allocated: dict[str, Virtual] = {}

    def pod(self, name: str, claim: str | None) -> KubeObject:
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "activeDeadlineSeconds": int(self.ctx.timeout_s) + 120,
            "containers": [
                {
                    "name": "probe",
                    "image": self.image,
                    "command": ["sh", "-c", "sleep 3600"],
                    "resources": {"claims": [{"name": "accel"}]} if claim else {},
                }
            ],
            "tolerations": [{"key": self.acc.taint_key, "operator": "Exists"}]
            + [
                {"key": x.get("key"), "operator": "Exists", "effect": x.get("effect")}
                for x in (self.node.get("spec") or {}).get("taints") or []
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
                                        "values": [name_of(self.node)],
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
        }
        if claim:
            spec["resourceClaims"] = [{"name": "accel", "resourceClaimName": claim}]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.ctx.namespace,
                "labels": {"kaic.io/probe": "virtualized-accelerator"},
            },
            "spec": spec,
        }

    def claim(self, name: str, driver: str) -> KubeObject:
        request: dict[str, Any] = {
            "deviceClassName": self.dclass,
            "allocationMode": "ExactCount",
            "count": 1,
        }
        if self.profile:
            request["selectors"] = [
                {
                    "cel": {
                        "expression": f"device.attributes[{json.dumps(driver)}].profile == "
                        f"{json.dumps(self.profile)}"
                    }
                }
            ]
        return {
            "apiVersion": self.av,
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": self.ctx.namespace},
            "spec": {"devices": {"requests": [{"name": "virtual", "exactly": request}]}},
        }

    def start(self, t: Subtest, pod: str, claim: str | None, driver: str) -> KubeObject:
        if claim:
            self.cluster.create(self.claim(claim, driver))
            self.created.add(self.av, "ResourceClaim", claim)
        self.cluster.create(self.pod(pod, claim))
        self.created.add("v1", "Pod", pod)
        return pod_running_or_fail(self.ctx, t, pod, self.pod_timeout)

    def allocate(self, t: Subtest, virtuals: Sequence[Virtual]) -> None:
        taken = allocated_devices(self.cluster.list(self.av, "ResourceClaim"))
        nodes = {name_of(n): n for n in self.cluster.list("v1", "Node") if node_schedulable(n)}
        free: dict[tuple[str, str], list[Virtual]] = {}
        for v in virtuals:
            if v.device.key not in taken and v.node in nodes:
                free.setdefault((v.node, v.profile), []).append(v)
        if not free:
            t.error(
                "no virtual accelerator is free on a schedulable node: "
                + ", ".join(v.describe() for v in virtuals)
            )
        (node, profile), vs = max(free.items(), key=lambda kv: (len(kv[1]), kv[0]))
        driver = vs[0].device.driver
        self.node, self.profile, self.free = nodes[node], profile, vs
        wanted = self.ctx.option("virtual-device-class")
        classes = (wanted,) if wanted else VIRTUAL_CLASSES.get(driver, ())
        self.dclass = next(
            (c for c in classes if self.cluster.get(self.av, "DeviceClass", c) is not None), ""
        )
        if not self.dclass:
            t.error(
                f"no DeviceClass {' or '.join(classes) or '(none known)'} for the virtual "
                f"devices of {driver}; name one with --virtual-device-class"
            )
        t.log(
            f"node {node}: {len(vs)} free virtual device(s) of profile {profile or '?'}; "
            f"claiming one (DeviceClass {self.dclass})"
        )
        self.start(t, "virtual-a", "virtual-a", driver)
        self.allocated["virtual-a"] = self.check_claim(t, "virtual-a")

    def check_claim(self, t: Subtest, name: str) -> Virtual:
        claim = self.cluster.get(self.av, "ResourceClaim", name, self.ctx.namespace) or {}
        results = (((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}).get(
            "results"
        ) or []
        keys = [(str(r.get("driver")), str(r.get("pool")), str(r.get("device"))) for r in results]
        by_key = {v.device.key: v for v in self.free}
        got = [by_key.get(k) for k in keys]
        if len(got) != 1 or got[0] is None:
            t.fail(
                f"claim {name} holds {', '.join('/'.join(k) for k in keys) or 'nothing'}, not "
                f"one virtual device of node {name_of(self.node)}"
            )
        t.log(f"claim {name} holds {got[0].describe()} ({got[0].uuid or 'no uuid'})")
        return got[0]

    def isolation(self, t: Subtest) -> None:
        driver = next(iter(self.allocated.values())).device.driver
        self.start(t, "virtual-none", None, driver)
        second = len(self.free) >= 2
        if second:
            self.start(t, "virtual-b", "virtual-b", driver)
            self.allocated["virtual-b"] = self.check_claim(t, "virtual-b")
        problems = []
        for pod in ["virtual-a", "virtual-none"] + (["virtual-b"] if second else []):
            seen = self.probe(t, pod)
            t.log(f"pod {pod} sees {seen.count}: {seen.describe()}")
            mine = self.allocated.get(pod)
            if mine is None:
                if seen.count:
                    problems.append(
                        f"pod {pod} (no claim) sees {seen.count} accelerator(s) on node "
                        f"{name_of(self.node)}: {seen.describe()}"
                    )
                continue
            if seen.count != 1:
                problems.append(f"pod {pod} holds one virtual device but sees {seen.count}")
            elif mine.uuid and seen.uuids and set(seen.uuids) != {mine.uuid}:
                problems.append(
                    f"pod {pod} sees {', '.join(seen.uuids)} but holds {mine.device.name} "
                    f"({mine.uuid})"
                )
        if problems:
            t.fail("; ".join(problems))

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

    def record_evidence(self) -> None:
        self.ctx.evidence("probe-commands.log", "\n".join(self.transcript) or "(no probe ran)\n")
        self.created.record("objects.yaml", ["Pod", "ResourceClaim"])

    def delete_all(self) -> None:
        self.created.delete_all(["Pod", "ResourceClaim"])
