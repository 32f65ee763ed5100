"""The cluster interface every check programs against, without the Kubernetes client.

Owns: ``ClusterAPI`` (a Protocol the real adapter and the tests' fake both satisfy)
and its small value types. Objects are plain ``dict`` in the Kubernetes JSON shape,
addressed by ``api_version`` (``v1``, ``apps/v1``, ``resource.k8s.io/v1``) and ``kind``.
Must not import the Kubernetes client (the real adapter lives beside it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

KubeObject = dict[str, Any]
KubeList = list[KubeObject]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "kaic"
RUN_ID_LABEL = "kaic.io/run-id"


@dataclass(frozen=True)
class ApiResource:
    """One resource a group/version serves, as discovery reports it."""

    group: str
    version: str
    name: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a container printed, and how it exited."""

    stdout: str
    stderr: str
    exit_code: int


@runtime_checkable
class ClusterAPI(Protocol):
    """What checks may do with a cluster. Every call raises a ``kaic.errors.ClusterError``
    subclass on failure (``NotFoundError``, ``ConflictError``, ``PermissionDeniedError``,
    ``RejectedError``, ``ClusterUnreachableError``, ``WaitTimeoutError``), never a client
    exception."""

    def server_version(self) -> str:
        """The server's gitVersion, e.g. ``v1.36.2``."""
        ...

    def api_versions(self) -> Sequence[str]:
        """Every group/version the server serves (``v1``, ``apps/v1``, …)."""
        ...

    def api_resources(self, api_version: str) -> Sequence[ApiResource]:
        """The resources ``api_version`` serves; ``[]`` when it is not served at all."""
        ...

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        """One object, or ``None`` when it does not exist."""
        ...

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> KubeList:
        """Objects of a kind (all namespaces when ``namespace`` is None), paged, without
        ``metadata.managedFields``."""
        ...

    def iterate(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Iterator[KubeObject]:
        """The objects ``list`` returns, one page at a time: only the page being read is
        held, so a caller that keeps what it needs of each object stays small on a large
        cluster."""
        ...

    def create(self, obj: KubeObject, *, dry_run: bool = False) -> KubeObject:
        """Create ``obj`` (namespace from its metadata); ``dry_run`` is server-side dry-run."""
        ...

    def apply(self, obj: KubeObject) -> KubeObject:
        """Server-side apply ``obj`` with field manager ``kaic``."""
        ...

    def create_subresource(
        self,
        api_version: str,
        kind: str,
        name: str,
        subresource: str,
        body: KubeObject,
        namespace: str | None = None,
    ) -> KubeObject:
        """POST ``body`` to a subresource of an object (``serviceaccounts/NAME/token``,
        ``pods/NAME/eviction``); the server's answer."""
        ...

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: KubeObject,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> KubeObject:
        """JSON merge patch of an object (or of its ``status`` / ``scale`` subresource)."""
        ...

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        wait_timeout: float | None = None,
    ) -> bool:
        """Delete with foreground propagation; ``False`` when it was already gone.
        With ``wait_timeout``, wait until the object has disappeared."""
        ...

    def wait_for(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        condition: Callable[[KubeObject | None], bool],
        *,
        timeout: float,
        what: str,
    ) -> KubeObject | None:
        """Watch one object until ``condition(obj)`` holds (obj is None when absent);
        raise ``WaitTimeoutError`` naming ``what`` after ``timeout`` seconds."""
        ...

    def wait_list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        condition: Callable[[KubeList], bool],
        *,
        timeout: float,
        what: str,
        label_selector: str | None = None,
    ) -> KubeList:
        """Watch a list until ``condition(objects)`` holds; ``WaitTimeoutError`` after
        ``timeout`` seconds."""
        ...

    def watch_list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        timeout: float,
        label_selector: str | None = None,
    ) -> Iterator[KubeList]:
        """Yield the full current list at start and after every change until ``timeout``
        seconds have passed (no error at the end): for properties that must hold for a
        whole observation window."""
        ...

    def exec(
        self,
        namespace: str,
        pod: str,
        command: Sequence[str],
        *,
        container: str | None = None,
        timeout: float = 60.0,
    ) -> ExecResult:
        """Run ``command`` in a container through the apiserver (pods/exec)."""
        ...

    def port_forward(self, namespace: str, pod: str, port: int) -> AbstractContextManager[int]:
        """Forward a local loopback port to ``port`` of a pod; yields the local port."""
        ...

    def http_get(
        self, namespace: str, pod: str, port: int, path: str, *, timeout: float = 30.0
    ) -> str:
        """GET ``path`` from a pod's port through a port-forward; returns the body."""
        ...

    def raw_get(self, path: str, *, timeout: float = 30.0) -> str:
        """GET an apiserver path (``/apis/custom.metrics.k8s.io/v1beta2/...``)."""
        ...

    def can_i(
        self,
        verb: str,
        resource: str,
        *,
        group: str = "",
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> bool:
        """SelfSubjectAccessReview: may the current user do this?"""
        ...

    def events(self, namespace: str, involved_name: str | None = None) -> KubeList:
        """Events of a namespace, optionally only those about one object."""
        ...


def labels_of(obj: KubeObject) -> dict[str, str]:
    """The labels of an object (empty when it has none)."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return dict(labels)


def name_of(obj: KubeObject) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def namespace_of(obj: KubeObject) -> str | None:
    ns = obj.get("metadata", {}).get("namespace")
    return str(ns) if ns else None


def condition(obj: KubeObject | None, type_: str) -> KubeObject | None:
    """The status condition of ``type_`` of an object, if any."""
    if not obj:
        return None
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def has_condition(obj: KubeObject | None, type_: str, status: str = "True") -> bool:
    c = condition(obj, type_)
    return c is not None and c.get("status") == status
