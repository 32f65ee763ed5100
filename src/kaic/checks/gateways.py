"""Shared by the checks that send requests through a Gateway (ai_inference,
advanced_inference_ingress): the Gateway API group, a Gateway with one HTTP listener,
how a Gateway's and a route's status are read, and counting where the requests a client
pod sent landed.

Owns no requirement; imports no requirement module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kaic.cluster.api import KubeObject, condition, has_condition, name_of

GROUP = "gateway.networking.k8s.io"
API_VERSION = f"{GROUP}/v1"


def http_gateway(name: str, namespace: str, gateway_class: str, port: int) -> KubeObject:
    """A Gateway of ``gateway_class`` with one HTTP listener ``http`` on ``port`` for
    routes of its own namespace."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": gateway_class,
            "listeners": [
                {
                    "name": "http",
                    "protocol": "HTTP",
                    "port": port,
                    "allowedRoutes": {"namespaces": {"from": "Same"}},
                }
            ],
        },
    }


def as_status(part: KubeObject) -> KubeObject:
    """A route parent's or listener's status (conditions at its top level) shaped like an
    object, for ``condition``/``has_condition``."""
    return {**part, "status": {"conditions": part.get("conditions") or []}}


def parent_status(obj: KubeObject | None, kind: str, name: str) -> KubeObject | None:
    """The ``status.parents`` entry a controller wrote in ``obj`` (a route, an
    InferencePool) for the parent ``kind``/``name``."""
    for parent in (obj or {}).get("status", {}).get("parents") or []:
        ref = parent.get("parentRef") or {}
        if ref.get("name") == name and ref.get("kind", kind) == kind:
            return as_status(parent)
    return None


def conditions_line(obj: KubeObject | None, types: Sequence[str]) -> str:
    """``Accepted=True (Accepted), ResolvedRefs=False (InvalidKind: …)`` for ``types``."""
    parts = []
    for t in types:
        c = condition(obj, t)
        if c is None:
            parts.append(f"{t} missing")
        else:
            msg = f": {c.get('message')}" if c.get("message") else ""
            parts.append(f"{t}={c.get('status')} ({c.get('reason', '')}{msg})")
    return ", ".join(parts)


def class_line(gc: KubeObject) -> str:
    """``name [controller X, Accepted=True (Accepted)]`` of a GatewayClass."""
    return (
        f"{name_of(gc)} [controller {gc.get('spec', {}).get('controllerName', '?')},"
        f" {conditions_line(gc, ('Accepted',))}]"
    )


def gateway_url(gw: KubeObject | None, port: int) -> str | None:
    """``http://<first status address>:<port>`` of a Gateway, if it has an address."""
    for a in (gw or {}).get("status", {}).get("addresses") or []:
        value = str(a.get("value") or "")
        if value:
            host = f"[{value}]" if ":" in value else value
            return f"http://{host}:{port}"
    return None


def gateway_programmed(gw: KubeObject | None) -> bool:
    """Accepted, Programmed, and with an address to send requests to."""
    return (
        has_condition(gw, "Accepted")
        and has_condition(gw, "Programmed")
        and gateway_url(gw, 0) is not None
    )


@dataclass
class Tally:
    """Where the requests of one batch landed."""

    requests: int = 0
    by_backend: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    """One line per request that no known backend answered with 200 (status and body)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_backend": dict(sorted(self.by_backend.items())),
            "failed": len(self.failures),
            "failures_sample": self.failures[:10],
        }


def tally(output: str, requests: int, backends: Sequence[str]) -> Tally:
    """Count the lines a client printed, ``<who answered> <HTTP status>`` per request:
    a 200 from one of ``backends`` counts for it, anything else is a failure, and a
    request without a line is one too."""
    t = Tally(requests=requests, by_backend={b: 0 for b in backends})
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for line in lines[:requests]:
        who, _, status = line.rpartition(" ")
        who = who.strip()
        if status == "200" and who in t.by_backend:
            t.by_backend[who] += 1
        else:
            t.failures.append(line[:200])
    t.failures.extend(
        ["no answer printed for this request"] * (requests - min(len(lines), requests))
    )
    return t
