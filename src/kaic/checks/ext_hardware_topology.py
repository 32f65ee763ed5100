"""ext_hardware_topology (extended profile, TestExtHardwareTopology): accelerators and
high-performance NICs publish their physical layout as DRA device attributes, so that
accelerator-to-NIC alignment is discoverable.

Owns: which devices are accelerators and NICs (the shared vendor and NIC driver tables),
which attributes count as topology (``accelerators.TOPOLOGY_ATTRIBUTES``), the alignment
rule (an accelerator and a NIC of one node share a PCIe root or NUMA node) and the
evidence. Must not create anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from kaic.checks.accelerators import (
    TOPOLOGY_ATTRIBUTES,
    SliceDevice,
    accelerator_inventory,
    any_accelerator,
    cluster_nodes,
    dra_pools,
    dra_version,
    nic_devices,
    slices_of,
)
from kaic.checks.base import CheckContext, Permission, Resource, Subtest, check, shared
from kaic.checks.resources import allocatable
from kaic.cluster.api import KubeObject

ALIGNMENT_KEYS = ("pcieRoot", "numaNode", "numa")
"""Attributes whose equal values on an accelerator and a NIC of one node align them."""
SHOWN = 10


def topology_of(device: SliceDevice) -> dict[str, object]:
    """The topology attributes a device publishes (bare name → value)."""
    out: dict[str, object] = {}
    for name in TOPOLOGY_ATTRIBUTES:
        value = device.attribute(name)
        if value is not None:
            out[name] = value
    return out


def where(d: SliceDevice) -> str:
    return f"{d.node_name or 'shared'}/{d.driver}/{d.name}"


def listed(devices: Sequence[SliceDevice]) -> str:
    names = [where(d) for d in devices[:SHOWN]]
    more = f" and {len(devices) - SHOWN} more" if len(devices) > SHOWN else ""
    return ", ".join(names) + more


def aligned_pairs(
    gpus: Sequence[SliceDevice], nics: Sequence[SliceDevice]
) -> list[tuple[SliceDevice, SliceDevice, str]]:
    """(accelerator, NIC, key) for every accelerator and NIC of one node that share the
    value of an alignment attribute (the first such key)."""
    by_node: dict[str, list[SliceDevice]] = {}
    for n in nics:
        if n.node_name is not None:
            by_node.setdefault(n.node_name, []).append(n)
    out = []
    for g in gpus:
        for n in by_node.get(g.node_name or "", []):
            for key in ALIGNMENT_KEYS:
                gv, nv = g.attribute(key), n.attribute(key)
                if gv is not None and gv == nv:
                    out.append((g, n, key))
                    break
    return out


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.gpus: list[SliceDevice] = []
        self.nics: list[SliceDevice] = []
        self.nodes: list[KubeObject] = []
        self.table: dict[str, dict[str, object]] = {}

    def inventory(self) -> None:
        self.nodes = cluster_nodes(self.ctx)
        av = dra_version(self.c, ("ResourceSlice",))
        if av is None:
            return
        # NOTE: the accelerators from the run's shared read; the NICs (only the
        # topology checks read them) a page at a time, keeping their topology attributes.
        self.gpus.extend(d for p in accelerator_inventory(self.ctx).pools for d in p.devices)
        slices = slices_of(self.c, av, nic_devices())
        pools = dra_pools(
            slices, nic_devices(), self.nodes, attributes=(*TOPOLOGY_ATTRIBUTES, *ALIGNMENT_KEYS)
        )
        self.nics.extend(d for p in pools for d in p.devices)
        for d in [*self.gpus, *self.nics]:
            self.table[where(d)] = topology_of(d)

    def accelerators(self, t: Subtest) -> None:
        self.inventory()
        if not self.gpus:
            plugin = sorted(
                {
                    f"{n['metadata']['name']} ({r})"
                    for n in self.nodes
                    for r in any_accelerator().extended_resources
                    if allocatable(n, r) > 0
                }
            )
            t.fail(
                "no accelerator is published through DRA, so its topology cannot be"
                " discovered"
                + (f" (device-plugin accelerators only: {', '.join(plugin)})" if plugin else "")
            )
        bare = [d for d in self.gpus if not topology_of(d)]
        if bare:
            t.fail(
                f"{len(bare)} of {len(self.gpus)} accelerators publish no topology attribute"
                f" ({', '.join(TOPOLOGY_ATTRIBUTES)}): {listed(bare)}"
            )
        keys = sorted({k for d in self.gpus for k in topology_of(d)})
        t.log(f"{len(self.gpus)} accelerators publish topology: {', '.join(keys)}")

    def nic_topology(self, t: Subtest) -> None:
        if not self.nics:
            t.skip(
                "no NIC is published through DRA (drivers "
                + ", ".join(n for n in nic_devices().drivers)
                + "), so accelerator-to-NIC alignment cannot be discovered"
            )
        bare = [d for d in self.nics if not topology_of(d)]
        if bare:
            t.fail(f"{len(bare)} of {len(self.nics)} NICs publish no topology: {listed(bare)}")
        t.log(f"{len(self.nics)} NICs publish topology")

    def alignment(self, t: Subtest) -> None:
        pairs = aligned_pairs(self.gpus, self.nics)
        nic_nodes = {d.node_name for d in self.nics if d.node_name}
        gpu_nodes = {d.node_name for d in self.gpus if d.node_name}
        both = sorted(n for n in nic_nodes & gpu_nodes if n)
        if not both:
            t.skip("no node has both accelerators and NICs published through DRA")
        paired = {g.node_name for g, _, _ in pairs}
        unaligned = [n for n in both if n not in paired]
        if unaligned:
            t.fail(
                "no accelerator and NIC share a PCIe root or NUMA node on "
                + ", ".join(unaligned)
                + ": alignment cannot be discovered there"
            )
        t.log(
            f"{len(pairs)} accelerator-NIC pairs share a PCIe root or NUMA node on"
            f" {len(both)} nodes, e.g. {where(pairs[0][0])} ~ {where(pairs[0][1])}"
            f" ({pairs[0][2]})"
        )

    def keep_evidence(self) -> None:
        self.ctx.evidence(
            "topology.json", json.dumps(self.table, indent=2, sort_keys=True), "application/json"
        )


@check(
    "ext_hardware_topology",
    test="TestExtHardwareTopology",
    locks=shared(Resource.NODE_POOL),
    permissions=(
        Permission("list", "resourceslices", "resource.k8s.io", namespaced=False),
        Permission("list", "nodes", namespaced=False),
    ),
    timeout_s=60.0,
)
def ext_hardware_topology(ctx: CheckContext) -> None:
    """Every accelerator (and NIC) published through DRA carries topology attributes, and
    accelerators and NICs of a node can be matched by them."""
    run = _Run(ctx)
    try:
        ctx.step("AcceleratorTopologyPublished", run.accelerators)
        ctx.step("NicTopologyPublished", run.nic_topology, needs=("AcceleratorTopologyPublished",))
        ctx.step("AcceleratorNicAlignment", run.alignment, needs=("NicTopologyPublished",))
    finally:
        run.keep_evidence()
