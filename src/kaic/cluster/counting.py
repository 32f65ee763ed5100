"""How many API requests kaic sends, by who sent them, verb and resource.

Every HTTP request the cluster client sends (each page of a list, each retry, each exec
or port-forward stream) is counted once in ``COUNTS`` under the current *scope*: the
requirement id of the check whose ``TrackingCluster`` made the call, or ``run`` for the
runner's own calls (preflight, discovery, cleanup outside a check). The runner writes a
run's counts into ``run.json`` (``api_requests``), so that the load a run puts on a
cluster, and how it grows with the cluster, is visible.

Owns: the scope (a context variable: per thread, set by ``TrackingCluster``), the
counter and the mapping of a request path to ``verb resource`` in the Kubernetes
sense (``list pods``, ``get nodes``, ``watch resourceslices.resource.k8s.io``,
``create pods/exec``). Must not import the Kubernetes client.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from urllib.parse import urlsplit

__all__ = ["COUNTS", "RUN_SCOPE", "SCOPE", "RequestCounts", "request_key"]

RUN_SCOPE = "run"
SCOPE: ContextVar[str] = ContextVar("kaic_request_scope", default=RUN_SCOPE)
"""Who is sending: a requirement id, or ``run``."""

_OBJECT_VERBS = {
    "GET": "get",
    "PUT": "update",
    "PATCH": "patch",
    "POST": "create",
    "DELETE": "delete",
}
_WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def request_key(method: str, path: str, query: Iterable[tuple[str, object]] = ()) -> str:
    """``verb resource`` of one request, as Kubernetes' audit log would name it.

    ``GET /api/v1/namespaces/x/pods`` is ``list pods``, with ``watch=true`` ``watch pods``,
    ``GET /apis/resource.k8s.io/v1/resourceslices/a`` ``get
    resourceslices.resource.k8s.io``, ``POST …/pods/p/exec`` ``create pods/exec``;
    discovery (``/api``, ``/apis``, ``/apis/<group>/<version>``) is ``get discovery``;
    anything else (``/version``, ``/openid/…``, ``/healthz``) ``get nonresource``.
    """
    method = method.upper()
    parts = urlsplit(path)
    segments = [s for s in parts.path.split("/") if s]
    params = dict((k, str(v)) for k, v in query)
    if parts.query:
        for pair in parts.query.split("&"):
            k, _, v = pair.partition("=")
            params.setdefault(k, v)
    plain = _OBJECT_VERBS.get(method, method.lower())
    if segments[:1] == ["api"] and len(segments) >= 3:
        group, rest = "", segments[2:]
    elif segments[:1] == ["apis"] and len(segments) >= 4:
        group, rest = segments[1], segments[3:]
    elif segments[:1] in (["api"], ["apis"]):
        return f"{plain} discovery"
    else:
        return f"{plain} nonresource"
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        rest = rest[2:]
    suffix = f".{group}" if group else ""
    if len(rest) >= 3:
        return f"{plain} {rest[0]}/{rest[2]}{suffix}"
    if len(rest) == 2:
        return f"{plain} {rest[0]}{suffix}"
    resource = rest[0] + suffix
    if method == "GET":
        verb = "watch" if params.get("watch") in ("true", "1") else "list"
    elif method == "DELETE":
        verb = "deletecollection"
    else:
        verb = _WRITE_VERBS.get(method, method.lower())
    return f"{verb} {resource}"


class RequestCounts:
    """A thread-safe count of requests by (scope, ``verb resource``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, method: str, path: str, query: Iterable[tuple[str, object]] = ()) -> None:
        key = (SCOPE.get(), request_key(method, path, query))
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self._counts)

    def since(self, before: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
        """Counts added after ``before`` (a ``snapshot``), as ``{scope: {key: n}}``, keys
        sorted."""
        now = self.snapshot()
        out: dict[str, dict[str, int]] = {}
        for (scope, key), n in sorted(now.items()):
            d = n - before.get((scope, key), 0)
            if d > 0:
                out.setdefault(scope, {})[key] = d
        return out


COUNTS = RequestCounts()
"""Every request of every cluster client in this process."""
