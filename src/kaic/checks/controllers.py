"""Finding a controller and reading what its admission webhooks said.

Owns: ``find_controller`` (a controller is running when its pods are Running and
Ready, or, for one that runs outside the cluster's pods, when its leader-election Lease
is renewed while we watch), ``version_of`` (an operator's version from labels or image
tags), and ``try_create`` with ``classify_admission`` (accepted, denied by which
webhook, webhook unreachable, or rejected by something else). Must not decide pass or
fail of any requirement; checks do that with what these return.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kaic.checks.predicates import pod_ready
from kaic.cluster.api import ClusterAPI, KubeObject, labels_of, name_of, namespace_of
from kaic.errors import ClusterError, ClusterUnreachableError, WaitTimeoutError

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


def find_pods(cluster: ClusterAPI, selectors: Sequence[tuple[str | None, str]]) -> list[KubeObject]:
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
    return [
        lease
        for lease in cluster.list("coordination.k8s.io/v1", "Lease")
        if name_of(lease) in wanted
    ]


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


def find_controller(
    cluster: ClusterAPI,
    *,
    pod_selectors: Sequence[tuple[str | None, str]],
    lease_names: Sequence[str],
    lease_window: float,
) -> ControllerFinding:
    """A controller is running when its pods are all Running and Ready, or (for a
    controller that runs outside the cluster's pods) when its leader-election Lease is
    renewed while we watch."""
    pods = find_pods(cluster, pod_selectors)
    if pods:
        not_ready = [
            f"{namespace_of(p)}/{name_of(p)} ({p.get('status', {}).get('phase', 'Unknown')})"
            for p in pods
            if not pod_ready(p)
        ]
        names = ", ".join(f"{namespace_of(p)}/{name_of(p)}" for p in pods)
        if not_ready:
            return ControllerFinding(
                True,
                "pods",
                f"controller pods not Ready: {', '.join(not_ready)}",
                tuple(pods),
                ready=False,
            )
        return ControllerFinding(
            True, "pods", f"controller pods Running and Ready: {names}", tuple(pods), ready=True
        )
    for lease in find_leases(cluster, lease_names):
        holder = lease.get("spec", {}).get("holderIdentity") or "nobody"
        where = f"{namespace_of(lease)}/{name_of(lease)}"
        if lease_renewed(cluster, lease, lease_window):
            return ControllerFinding(
                True,
                "lease",
                f"no controller pods; leader-election "
                f"Lease {where} held by {holder} is renewed (the "
                "controller runs outside the cluster's pods)",
                ready=True,
            )
        return ControllerFinding(
            True,
            "lease",
            f"no controller pods; leader-election Lease "
            f"{where} (holder {holder}) was not renewed within "
            f"{lease_window:.0f}s",
            ready=False,
        )
    sel = "; ".join(f"{ns or 'all namespaces'}: {s}" for ns, s in pod_selectors)
    return ControllerFinding(
        False,
        "none",
        f"no controller pods ({sel}) and no "
        f"leader-election Lease ({', '.join(lease_names) or 'none known'})",
    )


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
        return Admission("denied", message[start : message.index('"', start)], message)
    if "failed calling webhook" in lowered:
        start = lowered.find('webhook "')
        name = None
        if start >= 0:
            start += len('webhook "')
            name = message[start : message.index('"', start)]
        return Admission("unreachable", name, message)
    return Admission("rejected", None, message)


def try_create(
    cluster: ClusterAPI, obj: KubeObject, *, dry_run: bool
) -> tuple[Admission, KubeObject | None]:
    """Create (or server-side dry-run) ``obj`` and classify what admission said."""
    try:
        created = cluster.create(obj, dry_run=dry_run)
    except (ClusterUnreachableError, WaitTimeoutError):
        raise
    except ClusterError as e:
        return classify_admission(e), None
    return classify_admission(None), created
