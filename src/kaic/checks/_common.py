"""Helpers shared by several checks: labels for created objects, timed waits, finding a
controller (pods or a live leader-election Lease), reading admission errors, quantities.

Must not decide pass or fail of any requirement; checks do that with what these return.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from kaic.checks.base import CheckContext
from kaic.cluster.api import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    RUN_ID_LABEL,
    ClusterAPI,
    KubeObject,
    has_condition,
    labels_of,
    name_of,
    namespace_of,
)
from kaic.errors import ClusterError, ClusterUnreachableError, WaitTimeoutError

T = TypeVar("T")


def managed_labels(ctx: CheckContext, **extra: str) -> dict[str, str]:
    """Labels every object a check creates carries (``kaic cleanup`` finds them)."""
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_ID_LABEL: ctx.run_id, **extra}


@dataclass
class Waits:
    """Every wait of a check with its timeout and measured duration (kept as evidence)."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def timed(self, what: str, timeout: float, func: Callable[[], T]) -> T:
        """Run ``func`` (a wait bounded by ``timeout``) and record how long it took."""
        start = time.monotonic()
        outcome = "error"
        try:
            value = func()
            outcome = "ok"
            return value
        except ClusterError as e:
            outcome = f"{type(e).__name__}: {e}"
            raise
        finally:
            self.entries.append({"wait": what, "timeout_s": round(timeout, 1),
                                 "took_s": round(time.monotonic() - start, 3),
                                 "result": outcome})

    def record(self, what: str, timeout: float, took: float, result: str) -> None:
        self.entries.append({"wait": what, "timeout_s": round(timeout, 1),
                             "took_s": round(took, 3), "result": result})

    def save(self, ctx: CheckContext, name: str = "waits.json") -> None:
        ctx.evidence(name, json.dumps(self.entries, indent=2), "application/json")


def dump(obj: Any) -> str:
    """JSON text of an object for evidence (stable key order)."""
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


# -- quantities -------------------------------------------------------------------------

_SUFFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
           "P": Decimal(10**15), "E": Decimal(10**18), "Ki": Decimal(2**10),
           "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
           "Pi": Decimal(2**50), "Ei": Decimal(2**60)}


def quantity(value: str | int | float | None) -> Decimal:
    """A Kubernetes quantity (``500m``, ``64Gi``, ``1e3``) as a Decimal; 0 when absent."""
    if value is None or value == "":
        return Decimal(0)
    text = str(value).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number = text[: -len(suffix)]
            try:
                return Decimal(number) * _SUFFIX[suffix]
            except InvalidOperation:
                break
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from None


def pod_requests(pod: KubeObject, resource: str) -> Decimal:
    """What a pod requests of ``resource`` (sum over containers; max with init containers)."""
    spec = pod.get("spec", {})
    total = sum((quantity((c.get("resources") or {}).get("requests", {}).get(resource))
                 for c in spec.get("containers") or []), Decimal(0))
    init = max((quantity((c.get("resources") or {}).get("requests", {}).get(resource))
                for c in spec.get("initContainers") or []), default=Decimal(0))
    return max(total, init)


def node_schedulable(node: KubeObject) -> bool:
    """Ready, not cordoned, and without NoSchedule/NoExecute taints."""
    if node.get("spec", {}).get("unschedulable"):
        return False
    if not has_condition(node, "Ready"):
        return False
    taints: list[dict[str, Any]] = node.get("spec", {}).get("taints") or []
    return all(t.get("effect") not in ("NoSchedule", "NoExecute") for t in taints)


def pod_bound(pod: KubeObject) -> bool:
    return bool(pod.get("spec", {}).get("nodeName"))


def pod_running(pod: KubeObject) -> bool:
    return bool(pod.get("status", {}).get("phase") == "Running")


def pod_ready(pod: KubeObject) -> bool:
    return pod_running(pod) and has_condition(pod, "Ready")


def pod_active(pod: KubeObject) -> bool:
    """Not finished: its requests still count against its node."""
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


# -- finding a controller ------------------------------------------------------------------

@dataclass(frozen=True)
class ControllerFinding:
    """How a controller was found running (or not)."""

    found: bool
    how: str
    """``pods``, ``lease`` or ``none``."""
    detail: str
    pods: tuple[KubeObject, ...] = ()
    ready: bool = False


def find_pods(cluster: ClusterAPI, selectors: Sequence[tuple[str | None, str]]
              ) -> list[KubeObject]:
    """Pods matching any ``(namespace or None for all, label selector)``; first hit wins."""
    for namespace, selector in selectors:
        pods = cluster.list("v1", "Pod", namespace, label_selector=selector)
        if pods:
            return pods
    return []


def find_leases(cluster: ClusterAPI, names: Iterable[str]) -> list[KubeObject]:
    wanted = set(names)
    if not wanted or not cluster.api_resources("coordination.k8s.io/v1"):
        return []
    return [lease for lease in cluster.list("coordination.k8s.io/v1", "Lease")
            if name_of(lease) in wanted]


def lease_renewed(cluster: ClusterAPI, lease: KubeObject, window: float) -> bool:
    """Whether the holder renews ``lease`` within ``window`` seconds (watched, not slept)."""
    first = lease.get("spec", {}).get("renewTime")
    ns = namespace_of(lease)
    for leases in cluster.watch_list("coordination.k8s.io/v1", "Lease", ns, timeout=window):
        for other in leases:
            if name_of(other) == name_of(lease):
                renew = other.get("spec", {}).get("renewTime")
                if renew and renew != first and other.get("spec", {}).get("holderIdentity"):
                    return True
    return False


def find_controller(cluster: ClusterAPI, *, pod_selectors: Sequence[tuple[str | None, str]],
                    lease_names: Sequence[str], lease_window: float) -> ControllerFinding:
    """A controller is running when its pods are all Running and Ready, or (for a
    controller that runs outside the cluster's pods) when its leader-election Lease is
    renewed while we watch."""
    pods = find_pods(cluster, pod_selectors)
    if pods:
        not_ready = [f"{namespace_of(p)}/{name_of(p)} "
                     f"({p.get('status', {}).get('phase', 'Unknown')})"
                     for p in pods if not pod_ready(p)]
        names = ", ".join(f"{namespace_of(p)}/{name_of(p)}" for p in pods)
        if not_ready:
            return ControllerFinding(True, "pods", f"controller pods not Ready: "
                                     f"{', '.join(not_ready)}", tuple(pods), ready=False)
        return ControllerFinding(True, "pods", f"controller pods Running and Ready: {names}",
                                 tuple(pods), ready=True)
    for lease in find_leases(cluster, lease_names):
        holder = lease.get("spec", {}).get("holderIdentity") or "nobody"
        where = f"{namespace_of(lease)}/{name_of(lease)}"
        if lease_renewed(cluster, lease, lease_window):
            return ControllerFinding(True, "lease", f"no controller pods; leader-election "
                                     f"Lease {where} held by {holder} is renewed (the "
                                     "controller runs outside the cluster's pods)", ready=True)
        return ControllerFinding(True, "lease", f"no controller pods; leader-election Lease "
                                 f"{where} (holder {holder}) was not renewed within "
                                 f"{lease_window:.0f}s", ready=False)
    sel = "; ".join(f"{ns or 'all namespaces'}: {s}" for ns, s in pod_selectors)
    return ControllerFinding(False, "none", f"no controller pods ({sel}) and no "
                             f"leader-election Lease ({', '.join(lease_names) or 'none known'})")


def version_of(objects: Iterable[KubeObject]) -> str | None:
    """An operator version from ``app.kubernetes.io/version`` labels or image tags."""
    for obj in objects:
        v = labels_of(obj).get("app.kubernetes.io/version")
        if v:
            return v
    for obj in objects:
        for c in obj.get("spec", {}).get("containers") or []:
            image = str(c.get("image", ""))
            tail = image.rsplit("/", 1)[-1]
            if ":" in tail:
                return tail.split(":", 1)[1].split("@", 1)[0]
    return None


# -- admission errors -----------------------------------------------------------------------

@dataclass(frozen=True)
class Admission:
    """What the apiserver said to a create: accepted, denied by a webhook (and which),
    webhook unreachable, or rejected by something else (schema, CEL, RBAC)."""

    verdict: str
    """``accepted``, ``denied``, ``unreachable`` or ``rejected``."""
    webhook: str | None
    message: str


def classify_admission(error: ClusterError | None) -> Admission:
    if error is None:
        return Admission("accepted", None, "")
    message = str(error)
    lowered = message.lower()
    marker = 'admission webhook "'
    if marker in lowered and "denied the request" in lowered:
        start = lowered.index(marker) + len(marker)
        return Admission("denied", message[start:message.index('"', start)], message)
    if "failed calling webhook" in lowered:
        start = lowered.find('webhook "')
        name = None
        if start >= 0:
            start += len('webhook "')
            name = message[start:message.index('"', start)]
        return Admission("unreachable", name, message)
    return Admission("rejected", None, message)


def try_create(cluster: ClusterAPI, obj: KubeObject, *, dry_run: bool
               ) -> tuple[Admission, KubeObject | None]:
    """Create (or server-side dry-run) ``obj`` and classify what admission said."""
    try:
        created = cluster.create(obj, dry_run=dry_run)
    except (ClusterUnreachableError, WaitTimeoutError):
        raise
    except ClusterError as e:
        return classify_admission(e), None
    return classify_admission(None), created
