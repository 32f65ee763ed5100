"""A ``ClusterAPI`` that forwards every call to another one: the base of the cluster
decorators (``TrackingCluster``, the runner's ``GuardedCluster``).

Owns: ``ForwardingCluster``. Each decorator overrides only the calls it changes; every
forwarded call first runs ``_before()`` (a no-op here), so a decorator that must act on
every call (the guard's cancellation check) overrides that one hook. Must not decide
pass or fail, and must not import the Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager

from kaic.cluster.api import ApiResource, ClusterAPI, ExecResult, KubeList, KubeObject

__all__ = ["ForwardingCluster"]


class ForwardingCluster:
    """Passes every ``ClusterAPI`` call to ``inner`` after ``_before()``."""

    def __init__(self, inner: ClusterAPI) -> None:
        self.inner = inner

    def _before(self) -> None:
        """Runs before every forwarded call; decorators override it."""

    def server_version(self) -> str:
        self._before()
        return self.inner.server_version()

    def api_versions(self) -> Sequence[str]:
        self._before()
        return self.inner.api_versions()

    def api_resources(self, api_version: str) -> Sequence[ApiResource]:
        self._before()
        return self.inner.api_resources(api_version)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        self._before()
        return self.inner.get(api_version, kind, name, namespace)

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> KubeList:
        self._before()
        return self.inner.list(
            api_version,
            kind,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
        )

    def iterate(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Iterator[KubeObject]:
        self._before()
        return self.inner.iterate(
            api_version,
            kind,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
        )

    def create(self, obj: KubeObject, *, dry_run: bool = False) -> KubeObject:
        self._before()
        return self.inner.create(obj, dry_run=dry_run)

    def apply(self, obj: KubeObject) -> KubeObject:
        self._before()
        return self.inner.apply(obj)

    def create_subresource(
        self,
        api_version: str,
        kind: str,
        name: str,
        subresource: str,
        body: KubeObject,
        namespace: str | None = None,
    ) -> KubeObject:
        self._before()
        return self.inner.create_subresource(api_version, kind, name, subresource, body, namespace)

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
        self._before()
        return self.inner.patch(api_version, kind, name, patch, namespace, subresource=subresource)

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
        return self.inner.delete(api_version, kind, name, namespace, wait_timeout=wait_timeout)

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
        self._before()
        return self.inner.wait_for(
            api_version, kind, name, namespace, condition, timeout=timeout, what=what
        )

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
        self._before()
        return self.inner.wait_list(
            api_version,
            kind,
            namespace,
            condition,
            timeout=timeout,
            what=what,
            label_selector=label_selector,
        )

    def watch_list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        timeout: float,
        label_selector: str | None = None,
    ) -> Iterator[KubeList]:
        self._before()
        return self.inner.watch_list(
            api_version, kind, namespace, timeout=timeout, label_selector=label_selector
        )

    def exec(
        self,
        namespace: str,
        pod: str,
        command: Sequence[str],
        *,
        container: str | None = None,
        timeout: float = 60.0,
    ) -> ExecResult:
        self._before()
        return self.inner.exec(namespace, pod, command, container=container, timeout=timeout)

    def port_forward(self, namespace: str, pod: str, port: int) -> AbstractContextManager[int]:
        self._before()
        return self.inner.port_forward(namespace, pod, port)

    def http_get(
        self, namespace: str, pod: str, port: int, path: str, *, timeout: float = 30.0
    ) -> str:
        self._before()
        return self.inner.http_get(namespace, pod, port, path, timeout=timeout)

    def raw_get(self, path: str, *, timeout: float = 30.0) -> str:
        self._before()
        return self.inner.raw_get(path, timeout=timeout)

    def can_i(
        self,
        verb: str,
        resource: str,
        *,
        group: str = "",
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> bool:
        self._before()
        return self.inner.can_i(
            verb, resource, group=group, namespace=namespace, subresource=subresource
        )

    def events(self, namespace: str, involved_name: str | None = None) -> KubeList:
        self._before()
        return self.inner.events(namespace, involved_name)
