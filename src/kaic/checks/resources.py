"""How much of a resource pods request and nodes offer, read with the one quantity
parser (``kaic.cluster.parse_quantity``).

Owns: ``pod_requests`` (what one pod asks for), ``requests_by_node`` (what the active
pods bound to each node ask for) and ``allocatable`` (what a node offers). Must not talk
to a cluster or decide pass or fail.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from kaic.checks.predicates import pod_active
from kaic.cluster import KubeObject, parse_quantity


def container_request(container: KubeObject, resource: str) -> Decimal:
    """What one container requests of ``resource``; its limit when it sets no request
    (the API server defaults requests to limits, and extended resources often set only
    limits)."""
    res: dict[str, Any] = container.get("resources") or {}
    requests = res.get("requests") or {}
    value = requests.get(resource)
    if value is None:
        value = (res.get("limits") or {}).get(resource)
    return parse_quantity(value)


def pod_requests(pod: KubeObject, resource: str) -> Decimal:
    """What a pod requests of ``resource`` (sum over containers; max with init containers)."""
    spec = pod.get("spec", {})
    total = sum((container_request(c, resource) for c in spec.get("containers") or []), Decimal(0))
    init = max(
        (container_request(c, resource) for c in spec.get("initContainers") or []),
        default=Decimal(0),
    )
    return max(total, init)


def requests_by_node(pods: Iterable[KubeObject], resource: str) -> dict[str, Decimal]:
    """What the active (not finished) pods bound to each node request of ``resource``;
    nodes where no pod requests any are absent."""
    used: dict[str, Decimal] = {}
    for pod in pods:
        node = pod.get("spec", {}).get("nodeName")
        if not node or not pod_active(pod):
            continue
        amount = pod_requests(pod, resource)
        if amount:
            used[node] = used.get(node, Decimal(0)) + amount
    return used


def allocatable(node: KubeObject, resource: str) -> Decimal:
    """What a node offers of ``resource`` (its ``status.allocatable``; 0 when absent)."""
    return parse_quantity((node.get("status", {}).get("allocatable") or {}).get(resource))
