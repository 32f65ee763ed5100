"""Bookkeeping of what a run creates, and removal of what runs left behind.

Owns: ``TrackingCluster`` (a ``ClusterAPI`` wrapper that stamps
``app.kubernetes.io/managed-by=kaic``, ``kaic.io/run-id`` and ``kaic.io/check`` on every
object it creates or applies, records it, and deletes what it recorded in reverse order)
and ``find_leftovers``/``delete_leftovers`` for ``kaic cleanup``. Must not decide pass or
fail, and must not import the Kubernetes client (it works on any ``ClusterAPI``).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kaic.cluster.api import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    RUN_ID_LABEL,
    ApiResource,
    ClusterAPI,
    KubeObject,
)
from kaic.cluster.counting import SCOPE
from kaic.cluster.forwarding import ForwardingCluster
from kaic.errors import ClusterError, ClusterUnreachableError, WaitTimeoutError

__all__ = [
    "CHECK_LABEL",
    "CleanupReport",
    "Leftover",
    "ObjectRef",
    "TrackingCluster",
    "delete_leftovers",
    "find_leftovers",
    "stamp",
]

CHECK_LABEL = "kaic.io/check"
_SKIP_KINDS = {
    "Event",
    "Lease",
    "EndpointSlice",
    "Endpoints",
    "ComponentStatus",
    "Binding",
    "TokenReview",
    "SubjectAccessReview",
    "SelfSubjectAccessReview",
    "SelfSubjectRulesReview",
    "LocalSubjectAccessReview",
    "SelfSubjectReview",
}


@dataclass(frozen=True)
class ObjectRef:
    """Where an object lives: enough to delete it."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    @classmethod
    def of(cls, obj: KubeObject) -> ObjectRef:
        md = obj.get("metadata") or {}
        return cls(
            str(obj["apiVersion"]),
            str(obj["kind"]),
            str(md.get("name", "")),
            md.get("namespace") or None,
        )


@dataclass
class CleanupReport:
    """What a cleanup deleted and what it could not."""

    deleted: list[ObjectRef]
    failed: list[tuple[ObjectRef, str]]

    @property
    def ok(self) -> bool:
        return not self.failed


def stamp(obj: KubeObject, run_id: str, check: str | None = None) -> KubeObject:
    """A copy of ``obj`` carrying kaic's labels (also on a pod template, if any)."""
    out = copy.deepcopy(obj)
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_ID_LABEL: run_id}
    if check:
        labels[CHECK_LABEL] = check.replace("_", "-")
    md = out.setdefault("metadata", {})
    md["labels"] = {**(md.get("labels") or {}), **labels}
    template = (out.get("spec") or {}).get("template")
    if isinstance(template, dict):
        tmd = template.setdefault("metadata", {})
        tmd["labels"] = {**(tmd.get("labels") or {}), **labels}
    return out


class TrackingCluster(ForwardingCluster):
    """A ``ClusterAPI`` that labels and records everything created through it.

    Every other call passes straight through (``ForwardingCluster``). ``cleanup()``
    deletes what was recorded, newest first (namespaces last, since deleting one deletes
    its content), and is idempotent.
    """

    def __init__(self, inner: ClusterAPI, run_id: str, check: str | None = None) -> None:
        super().__init__(inner)
        self.run_id = run_id
        self.check = check
        self._created: list[ObjectRef] = []
        self._lock = threading.Lock()

    @property
    def created(self) -> list[ObjectRef]:
        with self._lock:
            return list(self._created)

    def adopt(self, refs: Sequence[ObjectRef]) -> None:
        """Take over objects created elsewhere, as if created through this wrapper
        in this order."""
        with self._lock:
            self._created.extend(r for r in refs if r not in self._created)

    def _record(self, obj: KubeObject) -> None:
        ref = ObjectRef.of(obj)
        with self._lock:
            if ref not in self._created:
                self._created.append(ref)

    def _before(self) -> None:
        # NOTE: requests are counted per check (kaic.cluster.counting): every call
        # through this wrapper, in whatever thread, is the check's.
        if self.check:
            SCOPE.set(self.check)

    # -- writes are stamped and recorded -----------------------------------------------
    def create(self, obj: KubeObject, *, dry_run: bool = False) -> KubeObject:
        self._before()
        stamped = stamp(obj, self.run_id, self.check)
        out = self.inner.create(stamped, dry_run=dry_run)
        if not dry_run:
            self._record(out if out.get("metadata", {}).get("name") else stamped)
        return out

    def apply(self, obj: KubeObject) -> KubeObject:
        self._before()
        stamped = stamp(obj, self.run_id, self.check)
        out = self.inner.apply(stamped)
        self._record(out if out.get("metadata", {}).get("name") else stamped)
        return out

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        wait_timeout: float | None = None,
    ) -> bool:
        self._before()
        gone = self.inner.delete(api_version, kind, name, namespace, wait_timeout=wait_timeout)
        ref = ObjectRef(api_version, kind, name, namespace)
        with self._lock:
            if ref in self._created:
                self._created.remove(ref)
        return gone

    def cleanup(
        self, *, wait_timeout: float = 60.0, on_progress: Callable[[str], None] | None = None
    ) -> CleanupReport:
        """Delete every recorded object, newest first, namespaces last; wait for them to go."""
        # NOTE: the runner cleans up from its own thread too: count these requests as
        # the check's, and leave that thread's scope as it was.
        token = SCOPE.set(self.check) if self.check else None
        try:
            return self._cleanup(wait_timeout, on_progress)
        finally:
            if token is not None:
                SCOPE.reset(token)

    def _cleanup(
        self, wait_timeout: float, on_progress: Callable[[str], None] | None
    ) -> CleanupReport:
        with self._lock:
            refs = list(reversed(self._created))
            self._created.clear()
        refs.sort(key=lambda r: r.kind == "Namespace")  # stable: namespaces at the end
        report = CleanupReport([], [])
        unreachable: str | None = None
        for ref in refs:
            if unreachable is not None:
                # NOTE: each delete would wait out the client's outage window again
                report.failed.append((ref, unreachable))
                continue
            if ref.namespace and any(
                r.kind == "Namespace" and r.name == ref.namespace for r in refs
            ):
                # deleting the namespace deletes it; only wait for the namespace
                report.deleted.append(ref)
                continue
            try:
                self.inner.delete(
                    ref.api_version, ref.kind, ref.name, ref.namespace, wait_timeout=wait_timeout
                )
                report.deleted.append(ref)
                if on_progress:
                    on_progress(f"deleted {ref}")
            except WaitTimeoutError:
                report.failed.append((ref, _why_stuck(self.inner, ref, wait_timeout)))
            except ClusterUnreachableError as e:
                unreachable = str(e)
                report.failed.append((ref, unreachable))
            except ClusterError as e:
                report.failed.append((ref, str(e)))
        return report


def _why_stuck(cluster: ClusterAPI, ref: ObjectRef, waited: float) -> str:
    """Why an object did not go away: its finalizers and, for a namespace, its conditions."""
    try:
        obj = cluster.get(ref.api_version, ref.kind, ref.name, ref.namespace)
    except ClusterError:
        obj = None
    if obj is None:
        return f"still present after {waited:.0f}s"
    md = obj.get("metadata") or {}
    parts = [f"still present after {waited:.0f}s"]
    finalizers = list(md.get("finalizers") or []) + list(
        (obj.get("spec") or {}).get("finalizers") or []
    )
    if finalizers:
        parts.append(f"finalizers: {', '.join(map(str, finalizers))}")
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("message"):
            parts.append(f"{c.get('type')}: {c.get('message')}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Leftover:
    """An object some kaic run created and did not delete."""

    ref: ObjectRef
    run_id: str
    check: str


def _selector(run_id: str | None) -> str:
    sel = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
    return f"{sel},{RUN_ID_LABEL}={run_id}" if run_id else sel


def _listable(cluster: ClusterAPI) -> list[ApiResource]:
    """Every kind that can be listed and deleted, preferring one version per group/kind."""
    seen: set[tuple[str, str]] = set()
    out: list[ApiResource] = []
    for av in cluster.api_versions():
        for r in cluster.api_resources(av):
            if r.kind in _SKIP_KINDS or (r.verbs and not {"list", "delete"} <= set(r.verbs)):
                continue
            if (r.group, r.kind) in seen:
                continue
            seen.add((r.group, r.kind))
            out.append(r)
    return out


def find_leftovers(cluster: ClusterAPI, run_id: str | None = None) -> list[Leftover]:
    """Objects labelled ``managed-by=kaic`` (and the run id, if given), of every kind the
    server serves; objects inside a leftover namespace are folded into it."""
    found: list[Leftover] = []
    selector = _selector(run_id)
    for res in _listable(cluster):
        try:
            objs = cluster.list(res.api_version, res.kind, label_selector=selector)
        except ClusterError:
            continue  # a kind we may not list, or an aggregated API that is down
        for obj in objs:
            labels: dict[str, Any] = (obj.get("metadata") or {}).get("labels") or {}
            found.append(
                Leftover(
                    ObjectRef.of(obj),
                    str(labels.get(RUN_ID_LABEL, "")),
                    str(labels.get(CHECK_LABEL, "")),
                )
            )
    namespaces = {lo.ref.name for lo in found if lo.ref.kind == "Namespace"}
    return [lo for lo in found if lo.ref.namespace not in namespaces]


def delete_leftovers(
    cluster: ClusterAPI,
    leftovers: Sequence[Leftover],
    *,
    wait_timeout: float = 60.0,
    on_progress: Callable[[str], None] | None = None,
) -> CleanupReport:
    """Delete ``leftovers``: namespaced objects, then cluster-scoped ones, namespaces last."""
    tracker = TrackingCluster(cluster, run_id="cleanup")
    ordered = sorted(
        leftovers, key=lambda lo: (lo.ref.kind == "Namespace", lo.ref.namespace is None)
    )
    # NOTE: TrackingCluster.cleanup deletes newest first, so adopt in reverse.
    tracker.adopt([lo.ref for lo in reversed(ordered)])
    return tracker.cleanup(wait_timeout=wait_timeout, on_progress=on_progress)
