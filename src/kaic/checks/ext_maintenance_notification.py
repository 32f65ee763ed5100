"""ext_maintenance_notification (extended profile, TestExtMaintenanceNotification): planned
maintenance is announced on the Node ahead of time, where workloads can see it.

Owns: the table of the signals platforms use to announce upcoming maintenance on a Node
(``SIGNALS``: conditions, taints, labels), finding them on the cluster's nodes, and the
evidence. Must not create or change anything.

A notice is visible only while maintenance is pending, so finding none is MANUAL (with
what to attach), never a FAIL; and nothing is a PASS unless a node shows one now.

Upstream Kubernetes has no standard Node condition for it yet: KEP-4212 (Declarative
Node Maintenance, kubernetes/enhancements#4212, provisional) proposes a NodeMaintenance
API, and an earlier Node Maintenance Lease KEP (kubernetes/enhancements#1411) was closed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from kaic.checks.base import CheckContext, CheckOption, Permission, Subtest, check
from kaic.cluster.api import KubeList, KubeObject, labels_of, name_of


@dataclass(frozen=True)
class Signal:
    """One way a platform announces upcoming maintenance on a Node."""

    kind: str
    """``condition`` (present with status True), ``taint`` or ``label`` (present)."""
    key: str
    source: str
    meaning: str


SIGNALS = (
    Signal(
        "condition",
        "VMEventScheduled",
        "AKS (node problem detector, on by default)",
        "an Azure scheduled event (reboot, redeploy, freeze, preempt, terminate) is pending"
        " for the node's VM",
    ),
    Signal(
        "label",
        "cloud.google.com/scheduled-maintenance-time",
        "GKE (GPU and TPU nodes, 1.31.1-gke.2008000 and later)",
        "start of an upcoming Compute Engine host maintenance event (Unix time)",
    ),
    Signal(
        "taint",
        "aws-node-termination-handler/scheduled-maintenance",
        "AWS Node Termination Handler (EKS)",
        "an EC2 scheduled maintenance event is pending (value: the event id)",
    ),
    Signal(
        "taint",
        "aws-node-termination-handler/spot-itn",
        "AWS Node Termination Handler (EKS)",
        "a Spot interruption notice (two minutes ahead)",
    ),
)
"""Signals of planned maintenance by platform (docs/checks.md has the same table)."""

OPTIONS = (
    CheckOption(
        "maintenance-signal",
        "another Node condition type, taint key or label key that announces maintenance",
        None,
    ),
)

ATTACH = (
    "attach the platform's documentation of its maintenance notice (the Node condition,"
    " taint or label, and how far ahead it appears) and a Node showing it during a"
    " maintenance window (kubectl get node NAME -o yaml)"
)


def signals(extra: str | None = None) -> tuple[Signal, ...]:
    """The table, plus ``extra`` (user-given) as a condition, taint and label."""
    if not extra:
        return SIGNALS
    return SIGNALS + tuple(Signal(k, extra, "--maintenance-signal", "") for k in SIGNAL_KINDS)


SIGNAL_KINDS = ("condition", "taint", "label")


def notices(node: KubeObject, table: tuple[Signal, ...]) -> list[str]:
    """What ``node`` shows of ``table``, one line each."""
    out = []
    conditions = {str(c.get("type")): c for c in (node.get("status") or {}).get("conditions") or []}
    taints = {str(t.get("key")): t for t in (node.get("spec") or {}).get("taints") or []}
    labels = labels_of(node)
    for s in table:
        if s.kind == "condition":
            c = conditions.get(s.key)
            if c is not None and c.get("status") == "True":
                msg = f"{c.get('reason', '')}: {c.get('message', '')}".strip(": ")
                out.append(f"Node condition {s.key}=True ({s.source}): {msg}")
        elif s.kind == "taint":
            t = taints.get(s.key)
            if t is not None:
                out.append(f"taint {s.key}={t.get('value', '')}:{t.get('effect', '')} ({s.source})")
        elif s.key in labels:
            out.append(f"label {s.key}={labels[s.key]} ({s.source})")
    return out


def looked_for(table: tuple[Signal, ...]) -> str:
    return "; ".join(
        f"{kind}s " + ", ".join(s.key for s in table if s.kind == kind)
        for kind in SIGNAL_KINDS
        if any(s.kind == kind for s in table)
    )


@check(
    "ext_maintenance_notification",
    test="TestExtMaintenanceNotification",
    options=OPTIONS,
    permissions=(Permission("list", "nodes", namespaced=False),),
    timeout_s=60.0,
)
def ext_maintenance_notification(ctx: CheckContext) -> None:
    """A Node announces planned maintenance ahead of time through a condition, taint or
    label that workloads can watch."""
    table = signals(ctx.option("maintenance-signal"))
    nodes: KubeList = ctx.cluster.list("v1", "Node")
    found = {name_of(n): notices(n, table) for n in nodes}
    found = {n: v for n, v in found.items() if v}
    ctx.evidence(
        "maintenance-notices.json",
        json.dumps({"looked_for": looked_for(table), "nodes": found}, indent=2) + "\n",
        "application/json",
    )
    if not found:
        ctx.manual(
            f"no node announces planned maintenance now (looked at {len(nodes)} nodes for"
            f" {looked_for(table)}); a notice shows only while maintenance is pending:"
            f" {ATTACH}"
        )

    def visible(t: Subtest) -> None:
        for node, lines in sorted(found.items()):
            for line in lines:
                t.log(f"{node}: {line}")

    ctx.step("MaintenanceNoticeVisible", visible)
