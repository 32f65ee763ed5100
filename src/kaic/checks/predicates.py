"""What the state of a pod or a node means, in one named function each.

Owns: the node predicates (``node_ready``: its Ready condition is True;
``node_cordoned``; ``node_schedulable``: Ready and not cordoned;
``node_has_blocking_taint``, ``node_has_taint``; ``tolerates``, ``toleration_of``), the pod
predicates (``pod_running``, ``pod_ready``, ``pod_bound``, ``pod_active``,
``pod_unschedulable``, ``pod_terminating``, ``pod_started``) and matching a core/v1
``NodeSelector`` against a node. Every check that asks one of these questions asks it
here. Must not talk to a cluster or decide pass or fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaic.cluster.api import KubeObject, condition, has_condition, name_of

BLOCKING_TAINT_EFFECTS = ("NoSchedule", "NoExecute")

# -- nodes ------------------------------------------------------------------------------


def node_ready(node: KubeObject | None) -> bool:
    """The node's ``Ready`` condition is True (cordoning and taints aside)."""
    return has_condition(node, "Ready")


def node_cordoned(node: KubeObject) -> bool:
    """``spec.unschedulable`` is set (``kubectl cordon``)."""
    return bool(node.get("spec", {}).get("unschedulable"))


def node_schedulable(node: KubeObject) -> bool:
    """Ready and not cordoned: the scheduler may place new pods there (taints permitting)."""
    return node_ready(node) and not node_cordoned(node)


def node_has_blocking_taint(node: KubeObject) -> bool:
    """A NoSchedule or NoExecute taint keeps pods without a toleration away."""
    taints: list[dict[str, Any]] = node.get("spec", {}).get("taints") or []
    return any(t.get("effect") in BLOCKING_TAINT_EFFECTS for t in taints)


def node_has_taint(node: KubeObject, taint: Mapping[str, str]) -> bool:
    """The node carries ``taint``: the same key and effect, and the same value when
    ``taint`` has one."""
    taints: list[dict[str, Any]] = node.get("spec", {}).get("taints") or []
    return any(
        t.get("key") == taint["key"]
        and t.get("effect") == taint["effect"]
        and ("value" not in taint or (t.get("value") or "") == taint["value"])
        for t in taints
    )


def tolerates(tolerations: list[KubeObject], taint: Mapping[str, Any]) -> bool:
    """Whether a pod with ``tolerations`` tolerates ``taint`` (as the scheduler decides:
    an empty key with ``Exists`` tolerates everything; an empty effect, every effect)."""
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        operator = tol.get("operator") or "Equal"
        if not tol.get("key"):
            if operator == "Exists":
                return True
            continue
        if tol.get("key") != taint.get("key"):
            continue
        if operator == "Exists" or (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def toleration_of(taint: Mapping[str, str]) -> dict[str, str]:
    """The toleration of exactly ``taint`` (any value when it names none)."""
    if "value" in taint:
        return {
            "key": taint["key"],
            "operator": "Equal",
            "value": taint["value"],
            "effect": taint["effect"],
        }
    return {"key": taint["key"], "operator": "Exists", "effect": taint["effect"]}


# -- pods -------------------------------------------------------------------------------


def pod_phase(pod: KubeObject | None) -> str:
    return str((pod or {}).get("status", {}).get("phase", ""))


def pod_running(pod: KubeObject | None) -> bool:
    """The pod's phase is Running."""
    return pod_phase(pod) == "Running"


def pod_ready(pod: KubeObject | None) -> bool:
    """Running, and its Ready condition is True."""
    return pod_running(pod) and has_condition(pod, "Ready")


def pod_bound(pod: KubeObject | None) -> bool:
    """The scheduler bound the pod to a node (``spec.nodeName`` is set)."""
    return bool((pod or {}).get("spec", {}).get("nodeName"))


def pod_active(pod: KubeObject | None) -> bool:
    """Not finished (neither Succeeded nor Failed): its requests still count on its node."""
    return pod_phase(pod) not in ("Succeeded", "Failed")


def pod_started(pod: KubeObject | None) -> bool:
    """Past Pending: Running, or already finished."""
    return pod_phase(pod) in ("Running", "Succeeded", "Failed")


def pod_unschedulable(pod: KubeObject | None) -> bool:
    """The scheduler reported it cannot place the pod (PodScheduled=False/Unschedulable)."""
    c = condition(pod, "PodScheduled")
    return c is not None and c.get("status") == "False" and c.get("reason") == "Unschedulable"


def pod_terminating(pod: KubeObject | None) -> bool:
    """Being deleted (``metadata.deletionTimestamp`` is set)."""
    return bool((pod or {}).get("metadata", {}).get("deletionTimestamp"))


# -- node selectors ---------------------------------------------------------------------


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
