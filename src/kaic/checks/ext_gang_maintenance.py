"""ext_gang_maintenance (extended profile, TestExtGangMaintenance): tightly coupled groups
of nodes are taken down for maintenance together, by a mechanism that knows the groups.

Owns: the tables of node-group labels (``GROUP_LABELS``: which nodes form one tightly
coupled group) and of coordinated maintenance mechanisms (``MECHANISMS``: the API groups
of their CRDs), finding both on the cluster, and the evidence. Must not create or change
anything, and never takes a node down.

PASS needs both: nodes grouped by such a label (a group of two or more) and a mechanism
that takes groups of nodes down together. Anything less is MANUAL with what is missing
and what to attach.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kaic.checks.base import CheckContext, CheckOption, Permission, Subtest, check
from kaic.cluster.api import KubeList, labels_of, name_of


@dataclass(frozen=True)
class GroupLabel:
    key: str
    source: str
    meaning: str


GROUP_LABELS = (
    GroupLabel(
        "nvidia.com/gpu.clique",
        "NVIDIA GPU Feature Discovery",
        "the NVLink domain (clique) of multi-node NVLink systems such as GB200 NVL72",
    ),
    GroupLabel(
        "cloud.google.com/gke-placement-group",
        "GKE",
        "a compact placement policy: nodes placed close together as one group",
    ),
)
"""Node labels whose value names a group of tightly coupled nodes."""


@dataclass(frozen=True)
class Mechanism:
    api_group: str
    name: str
    how: str


MECHANISMS = (
    Mechanism(
        "maintenance.nvidia.com",
        "NVIDIA maintenance operator (Mellanox/maintenance-operator)",
        "NodeMaintenance requests scheduled together under MaintenanceOperatorConfig"
        " (maxParallelOperations, maxUnavailable)",
    ),
)
"""Controllers that drain and release several nodes as one coordinated operation, by the
API group of their CRDs. Per-node tools (cordon/drain, medik8s NodeMaintenance, kured)
take nodes down one at a time and do not count."""

OPTIONS = (
    CheckOption(
        "gang-group-label", "another node label whose value names a coupled node group", None
    ),
    CheckOption(
        "gang-maintenance-api",
        "another API group of a controller that maintains node groups together",
        None,
    ),
)

ATTACH = (
    "attach how the platform defines tightly coupled node groups (labels, node pools,"
    " placement) and how it takes such a group down for maintenance together (the"
    " controller and its configuration, or the provider's documentation), ideally with"
    " a maintenance run showing the group's nodes cordoned and drained together"
)


def node_groups(nodes: KubeList, keys: Iterable[str]) -> dict[str, dict[str, list[str]]]:
    """label key -> value -> nodes, for groups of two or more nodes."""
    out: dict[str, dict[str, list[str]]] = {}
    for key in keys:
        groups: dict[str, list[str]] = {}
        for n in nodes:
            v = labels_of(n).get(key)
            if v:
                groups.setdefault(v, []).append(name_of(n))
        big = {v: sorted(ns) for v, ns in groups.items() if len(ns) >= 2}
        if big:
            out[key] = big
    return out


def mechanisms_served(api_versions: Sequence[str], groups: Iterable[str]) -> list[str]:
    """The API groups of ``groups`` the server serves."""
    served = {av.rpartition("/")[0] for av in api_versions if "/" in av}
    return [g for g in groups if g in served]


@check(
    "ext_gang_maintenance",
    test="TestExtGangMaintenance",
    options=OPTIONS,
    permissions=(Permission("list", "nodes", namespaced=False),),
    timeout_s=60.0,
)
def ext_gang_maintenance(ctx: CheckContext) -> None:
    """Tightly coupled node groups are visible and a controller takes such groups down
    for maintenance together."""
    c = ctx.cluster
    keys = [g.key for g in GROUP_LABELS]
    if extra := ctx.option("gang-group-label"):
        keys.append(extra)
    apis = [m.api_group for m in MECHANISMS]
    if extra_api := ctx.option("gang-maintenance-api"):
        apis.append(extra_api)
    nodes = c.list("v1", "Node")
    groups = node_groups(nodes, keys)
    served = mechanisms_served(c.api_versions(), apis)
    ctx.evidence(
        "gang-maintenance.json",
        json.dumps(
            {"group_labels": keys, "groups": groups, "apis": apis, "served": served}, indent=2
        )
        + "\n",
        "application/json",
    )
    summary = "; ".join(
        f"{k}: " + ", ".join(f"{v} ({len(ns)} nodes)" for v, ns in sorted(vals.items()))
        for k, vals in sorted(groups.items())
    )
    if not groups and not served:
        ctx.manual(
            f"no tightly coupled node groups (no two nodes share a label {', '.join(keys)})"
            f" and no coordinated maintenance controller (no API group {', '.join(apis)});"
            f" {ATTACH}"
        )
    if not served:
        ctx.manual(
            f"node groups found ({summary}) but no controller that maintains a group"
            f" together (no API group {', '.join(apis)}); {ATTACH}"
        )
    if not groups:
        ctx.manual(
            f"a coordinated maintenance controller is installed ({', '.join(served)}) but no"
            f" nodes form tightly coupled groups (no two nodes share a label"
            f" {', '.join(keys)}); {ATTACH}"
        )

    def found(t: Subtest) -> None:
        t.log(f"node groups: {summary}")
        for m in MECHANISMS:
            if m.api_group in served:
                t.log(f"coordinated maintenance: {m.name}: {m.how}")
        for g in served:
            if g not in {m.api_group for m in MECHANISMS}:
                t.log(f"coordinated maintenance: API group {g} (--gang-maintenance-api)")

    ctx.step("GroupMaintenanceMechanism", found)
