"""Reaching what pods serve over HTTP: the words a pod is known by, its container ports,
the Running pods behind a Service port, and GETs of URLs the user gives.

Owns: ``pod_words``, ``container_ports``, ``resolve_target_port``, ``service_pods`` and
``http_get_url``. Pods are reached through ``ClusterAPI.http_get`` (a port-forward
through the apiserver); only URLs that the user gives are dialled directly. Must not
decide pass or fail.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from kaic.checks.predicates import pod_running
from kaic.cluster.api import ClusterAPI, KubeObject, labels_of
from kaic.errors import ClusterError, UsageError

_NAME_LABELS = (
    "app",
    "app.kubernetes.io/name",
    "app.kubernetes.io/component",
    "app.kubernetes.io/instance",
    "k8s-app",
    "name",
    "component",
)


def pod_words(pod: KubeObject) -> str:
    """A pod's name, name-like labels, container names and images, lower-cased."""
    md = pod.get("metadata", {})
    words = [md.get("name", "")]
    words += [v for k, v in labels_of(pod).items() if k in _NAME_LABELS]
    for c in pod.get("spec", {}).get("containers") or []:
        words += [c.get("name", ""), c.get("image", "")]
    return " ".join(words).lower()


def container_ports(pod: KubeObject) -> list[dict[str, Any]]:
    """Every port every container of the pod declares."""
    return [p for c in pod.get("spec", {}).get("containers") or [] for p in c.get("ports") or []]


def resolve_target_port(pod: KubeObject, target: Any) -> int | None:
    """A Service's ``targetPort`` (number or port name) as a port of ``pod``."""
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for p in container_ports(pod):
        if p.get("name") == target:
            return int(p["containerPort"])
    return None


def service_pods(
    cluster: ClusterAPI, namespace: str, name: str, port: str, *, option: str
) -> list[tuple[KubeObject, int | None]]:
    """The Running pods behind port ``port`` (number or name) of a Service, each with
    the pod port it targets; a ``UsageError`` naming ``option`` when the Service or its
    port does not exist."""
    svc = cluster.get("v1", "Service", name, namespace)
    if svc is None:
        raise UsageError(f"{option}: Service {namespace}/{name} not found")
    spec = svc.get("spec", {})
    sp = next(
        (p for p in spec.get("ports") or [] if str(p.get("port")) == port or p.get("name") == port),
        None,
    )
    if sp is None:
        raise UsageError(f"{option}: Service {namespace}/{name} has no port {port}")
    sel = spec.get("selector") or {}
    selector = ",".join(f"{k}={v}" for k, v in sel.items())
    return [
        (pod, resolve_target_port(pod, sp.get("targetPort", sp.get("port"))))
        for pod in cluster.list("v1", "Pod", namespace, label_selector=selector or None)
        if pod_running(pod)
    ]


def http_get_url(url: str, timeout: float) -> str:
    """GET a URL the user gave (loopback URLs bypass any proxy); ``ClusterError`` on
    failure."""
    host = urllib.parse.urlsplit(url).hostname or ""
    handlers: list[urllib.request.BaseHandler] = []
    if host in ("localhost", "::1") or host.startswith("127."):
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=timeout) as r:
            body: bytes = r.read()
    except urllib.error.HTTPError as e:
        raise ClusterError(f"GET {url}: HTTP {e.code}") from e
    except (urllib.error.URLError, OSError) as e:
        raise ClusterError(f"GET {url}: {getattr(e, 'reason', e)}") from e
    return body.decode("utf-8", errors="replace")
