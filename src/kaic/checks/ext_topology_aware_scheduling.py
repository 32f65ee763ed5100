"""ext_topology_aware_scheduling (extended profile, TestExtTopologyAwareScheduling): when
accelerator topology is discoverable, the scheduler places a multi-device request only on
devices that share the constrained topology attribute.

Owns: the two ResourceClaims (one the cluster can satisfy with aligned devices, one that
asks for more aligned devices than any node has), the pods that make the scheduler
allocate them, the alignment test on the allocation, and the evidence. Must not know how
the lab publishes its devices.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from kaic.checks.accelerators import (
    ACCELERATORS,
    SliceDevice,
    accelerator_taint_tolerations,
    any_accelerator,
    dra_pools,
    dra_version,
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
    shared,
)
from kaic.checks.predicates import pod_unschedulable
from kaic.cluster.api import KubeObject
from kaic.errors import WaitTimeoutError

ATTRIBUTE = "resource.kubernetes.io/pcieRoot"
IMAGE = "docker.io/library/busybox:1.37"
ALIGNED, TOO_BIG = "kaic-aligned", "kaic-too-big"

OPTIONS = (
    CheckOption(
        "topology-attribute",
        "the fully qualified device attribute the claims constrain with matchAttribute",
        ATTRIBUTE,
    ),
    CheckOption(
        "topology-device-class",
        "DeviceClass of the accelerators (default: the first known vendor's that exists)",
    ),
    CheckOption("topology-image", "image of the pods that hold the claims", IMAGE),
    CheckOption(
        "topology-allocate-timeout", "seconds for the aligned claim to be allocated", "120"
    ),
    CheckOption(
        "topology-negative-window",
        "seconds the unsatisfiable claim must stay unallocated",
        "15",
    ),
)


def claim(namespace: str, name: str, device_class: str, count: int, attribute: str) -> KubeObject:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "devices": {
                "requests": [
                    {"name": "gpus", "exactly": {"deviceClassName": device_class, "count": count}}
                ],
                "constraints": [{"requests": ["gpus"], "matchAttribute": attribute}],
            }
        },
    }


def holder(namespace: str, name: str, image: str) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "tolerations": accelerator_taint_tolerations(ACCELERATORS["nvidia"].extended_resource),
            "resourceClaims": [{"name": "gpus", "resourceClaimName": name}],
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": ["sh", "-c", "sleep 3600"],
                    "resources": {"claims": [{"name": "gpus"}]},
                }
            ],
        },
    }


def value_of(device: SliceDevice, attribute: str) -> Any:
    """A device's value of a fully qualified attribute (``domain/name``)."""
    domain, _, name = attribute.rpartition("/")
    raw = device.attributes.get(attribute)
    if raw is None and domain == device.driver:
        raw = device.attributes.get(name)
    if isinstance(raw, dict):
        for t in ("string", "int", "bool", "version"):
            if t in raw:
                return raw[t]
    return None


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.ns = ctx.namespace
        self.attribute = ctx.option("topology-attribute") or ATTRIBUTE
        self.image = ctx.option("topology-image") or IMAGE
        self.av = ""
        self.device_class = ""
        self.devices: dict[tuple[str, str, str], SliceDevice] = {}
        self.largest = 0
        self.evidence: dict[str, Any] = {"attribute": self.attribute}

    def discover(self, t: Subtest) -> None:
        av = dra_version(self.c)
        if av is None:
            t.fail(
                "the cluster serves no DRA API (resource.k8s.io/v1), so no claim can say"
                " where its devices must sit"
            )
        self.av = av
        nodes = self.c.list("v1", "Node")
        slices = slices_of(self.c, av, any_accelerator())
        devs = [d for p in dra_pools(slices, any_accelerator(), nodes) for d in p.devices]
        self.devices = {d.key: d for d in devs}
        groups = Counter(
            (d.node_name, value_of(d, self.attribute))
            for d in devs
            if d.node_name and value_of(d, self.attribute) is not None
        )
        if not groups:
            t.fail(
                f"no accelerator published through DRA has attribute {self.attribute}"
                f" ({len(devs)} accelerators published): topology cannot be scheduled on"
            )
        self.largest = max(groups.values())
        if self.largest < 2:
            t.fail(f"no two accelerators of one node share a value of {self.attribute}")
        wanted = self.ctx.option("topology-device-class")
        classes = {c["metadata"]["name"] for c in self.c.list(av, "DeviceClass")}
        if wanted:
            if wanted not in classes:
                t.fail(f"DeviceClass {wanted} does not exist")
            self.device_class = wanted
        else:
            known = [a.device_class for a in ACCELERATORS.values() if a.device_class]
            found = [c for c in known if c in classes]
            if not found:
                t.fail(
                    "no accelerator DeviceClass kaic knows exists"
                    f" ({', '.join(known)}); give --topology-device-class"
                )
            self.device_class = found[0]
        self.evidence["groups"] = {f"{n}={v}": k for (n, v), k in sorted(groups.items())}
        t.log(
            f"{len(devs)} accelerators; up to {self.largest} on one node share a value of"
            f" {self.attribute}; DeviceClass {self.device_class}"
        )

    def allocation(self, name: str) -> list[SliceDevice | tuple[str, str, str]]:
        obj = self.c.get(self.av, "ResourceClaim", name, self.ns) or {}
        results = ((obj.get("status") or {}).get("allocation") or {}).get("devices", {})
        out: list[SliceDevice | tuple[str, str, str]] = []
        for r in results.get("results") or []:
            key = (str(r.get("driver")), str(r.get("pool")), str(r.get("device")))
            out.append(self.devices.get(key, key))
        return out

    def aligned(self, t: Subtest) -> None:
        self.c.create(claim(self.ns, ALIGNED, self.device_class, 2, self.attribute))
        self.c.create(holder(self.ns, ALIGNED, self.image))
        timeout = self.ctx.budget(self.ctx.float_option("topology-allocate-timeout"))
        try:
            self.c.wait_for(
                self.av,
                "ResourceClaim",
                ALIGNED,
                self.ns,
                lambda o: bool(((o or {}).get("status") or {}).get("allocation")),
                timeout=timeout,
                what="the aligned claim's allocation",
            )
        except WaitTimeoutError:
            pod = self.c.get("v1", "Pod", ALIGNED, self.ns) or {}
            conds = (pod.get("status") or {}).get("conditions") or []
            why = next((c.get("message") for c in conds if c.get("type") == "PodScheduled"), "")
            t.fail(
                f"a claim for 2 accelerators sharing {self.attribute} was not allocated within"
                f" {timeout:.0f}s" + (f": {why}" if why else "")
            )
        got = self.allocation(ALIGNED)
        values = {
            str(d) if not isinstance(d, SliceDevice) else f"{d.node_name}/{d.name}": (
                value_of(d, self.attribute) if isinstance(d, SliceDevice) else None
            )
            for d in got
        }
        self.evidence["aligned_allocation"] = values
        if len(got) != 2:
            t.fail(f"the claim asked for 2 devices and got {len(got)}: {values}")
        if None in values.values() or len(set(values.values())) != 1:
            t.fail(f"the allocated devices do not share {self.attribute}: {values}")
        t.log(
            f"allocated {', '.join(values)} sharing {self.attribute}={next(iter(values.values()))}"
        )

    def unsatisfiable(self, t: Subtest) -> None:
        count = self.largest + 1
        self.c.create(claim(self.ns, TOO_BIG, self.device_class, count, self.attribute))
        self.c.create(holder(self.ns, TOO_BIG, self.image))
        window = self.ctx.budget(self.ctx.float_option("topology-negative-window"))
        allocated = False
        for objs in self.c.watch_list(self.av, "ResourceClaim", self.ns, timeout=window):
            mine = [o for o in objs if o.get("metadata", {}).get("name") == TOO_BIG]
            if mine and (mine[0].get("status") or {}).get("allocation"):
                allocated = True
                break
        if allocated:
            got = self.allocation(TOO_BIG)
            self.evidence["unsatisfiable_allocation"] = [str(d) for d in got]
            t.fail(
                f"a claim for {count} accelerators sharing {self.attribute} (no node has that"
                f" many) was allocated: the constraint was not honoured"
            )
        pod = self.c.get("v1", "Pod", TOO_BIG, self.ns)
        t.log(
            f"a claim for {count} aligned accelerators stayed unallocated for {window:.0f}s"
            + (" and its pod is Unschedulable" if pod_unschedulable(pod) else "")
        )

    def keep_evidence(self) -> None:
        self.ctx.evidence(
            "topology-scheduling.json",
            json.dumps(self.evidence, indent=2, default=str),
            "application/json",
        )


@check(
    "ext_topology_aware_scheduling",
    test="TestExtTopologyAwareScheduling",
    locks=exclusive(Resource.ACCELERATORS, Resource.NODE_POOL) + shared(Resource.AUTOSCALED_POOL),
    options=OPTIONS,
    permissions=(
        Permission("list", "resourceslices", "resource.k8s.io", namespaced=False),
        Permission("list", "deviceclasses", "resource.k8s.io", namespaced=False),
        Permission("create", "resourceclaims", "resource.k8s.io"),
        Permission("create", "pods"),
        Permission("list", "nodes", namespaced=False),
    ),
    timeout_s=300.0,
)
def ext_topology_aware_scheduling(ctx: CheckContext) -> None:
    """A claim for two accelerators constrained to one topology value is allocated to
    aligned devices; a claim for more aligned devices than any node has stays
    unallocated."""
    run = _Run(ctx)
    try:
        ctx.step("TopologyDiscoverable", run.discover)
        ctx.step("AlignedClaimAllocated", run.aligned, needs=("TopologyDiscoverable",))
        ctx.step(
            "UnsatisfiableClaimStaysUnallocated", run.unsatisfiable, needs=("TopologyDiscoverable",)
        )
    finally:
        run.keep_evidence()
