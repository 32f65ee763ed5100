"""The cluster a check sees: every call honours the run's cancellation and the check's
deadline.

Owns: ``GuardedCluster``. Long waits are cut into short slices so that Ctrl-C, SIGTERM
or a check's timeout is noticed within about ``SLICE_S`` seconds; once cancelled, no
new object can be created. Must not know any requirement's details.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TypeVar

from kaic.checks.base import Cancelled
from kaic.cluster.api import ApiResource, ClusterAPI, ExecResult, KubeList, KubeObject
from kaic.errors import WaitTimeoutError

SLICE_S = 2.0
T = TypeVar("T")


class GuardedCluster:
    """A ``ClusterAPI`` that stops a check when the run is cancelled or time is up."""

    def __init__(self, inner: ClusterAPI, cancel: threading.Event, deadline: float,
                 timeout_s: float) -> None:
        self.inner = inner
        self.cancel = cancel
        self.deadline = deadline
        self.timeout_s = timeout_s

    def _check(self) -> None:
        if time.monotonic() >= self.deadline:
            raise Cancelled(f"check timed out after {self.timeout_s:g}s")
        if self.cancel.is_set():
            raise Cancelled("interrupted")

    def _left(self, wanted: float) -> float:
        self._check()
        return max(0.1, min(wanted, self.deadline - time.monotonic()))

    def _sliced(self, timeout: float, what: str, attempt: Callable[[float], T]) -> T:
        """Run ``attempt(slice)`` until it succeeds, re-checking cancellation between
        slices; ``WaitTimeoutError`` after ``timeout`` seconds as the caller asked."""
        end = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            self._check()
            if now >= end:
                raise WaitTimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            piece = min(SLICE_S, end - now, max(0.1, self.deadline - now))
            try:
                return attempt(piece)
            except WaitTimeoutError:
                continue

    # -- calls that can take long --------------------------------------------------------
    def wait_for(self, api_version: str, kind: str, name: str, namespace: str | None,
                 condition: Callable[[KubeObject | None], bool], *, timeout: float,
                 what: str) -> KubeObject | None:
        return self._sliced(timeout, what, lambda s: self.inner.wait_for(
            api_version, kind, name, namespace, condition, timeout=s, what=what))

    def wait_list(self, api_version: str, kind: str, namespace: str | None,
                  condition: Callable[[KubeList], bool], *, timeout: float,
                  what: str, label_selector: str | None = None) -> KubeList:
        return self._sliced(timeout, what, lambda s: self.inner.wait_list(
            api_version, kind, namespace, condition, timeout=s, what=what,
            label_selector=label_selector))

    def watch_list(self, api_version: str, kind: str, namespace: str | None, *,
                   timeout: float, label_selector: str | None = None
                   ) -> Iterator[KubeList]:
        end = time.monotonic() + timeout
        while True:
            self._check()
            left = end - time.monotonic()
            if left <= 0:
                return
            piece = min(SLICE_S, left, max(0.1, self.deadline - time.monotonic()))
            for objs in self.inner.watch_list(api_version, kind, namespace, timeout=piece,
                                              label_selector=label_selector):
                self._check()
                yield objs

    def exec(self, namespace: str, pod: str, command: Sequence[str], *,
             container: str | None = None, timeout: float = 60.0) -> ExecResult:
        return self.inner.exec(namespace, pod, command, container=container,
                               timeout=self._left(timeout))

    def http_get(self, namespace: str, pod: str, port: int, path: str, *,
                 timeout: float = 30.0) -> str:
        return self.inner.http_get(namespace, pod, port, path, timeout=self._left(timeout))

    def raw_get(self, path: str, *, timeout: float = 30.0) -> str:
        return self.inner.raw_get(path, timeout=self._left(timeout))

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               *, wait_timeout: float | None = None) -> bool:
        self._check()
        return self.inner.delete(api_version, kind, name, namespace,
                                 wait_timeout=None if wait_timeout is None
                                 else self._left(wait_timeout))

    # -- quick calls ---------------------------------------------------------------------
    def server_version(self) -> str:
        self._check()
        return self.inner.server_version()

    def api_versions(self) -> Sequence[str]:
        self._check()
        return self.inner.api_versions()

    def api_resources(self, api_version: str) -> Sequence[ApiResource]:
        self._check()
        return self.inner.api_resources(api_version)

    def get(self, api_version: str, kind: str, name: str,
            namespace: str | None = None) -> KubeObject | None:
        self._check()
        return self.inner.get(api_version, kind, name, namespace)

    def list(self, api_version: str, kind: str, namespace: str | None = None, *,
             label_selector: str | None = None,
             field_selector: str | None = None) -> KubeList:
        self._check()
        return self.inner.list(api_version, kind, namespace, label_selector=label_selector,
                               field_selector=field_selector)

    def create(self, obj: KubeObject, *, dry_run: bool = False) -> KubeObject:
        self._check()
        return self.inner.create(obj, dry_run=dry_run)

    def apply(self, obj: KubeObject) -> KubeObject:
        self._check()
        return self.inner.apply(obj)

    def patch(self, api_version: str, kind: str, name: str, patch: KubeObject,
              namespace: str | None = None, *, subresource: str | None = None) -> KubeObject:
        self._check()
        return self.inner.patch(api_version, kind, name, patch, namespace,
                                subresource=subresource)

    def port_forward(self, namespace: str, pod: str,
                     port: int) -> AbstractContextManager[int]:
        self._check()
        return self.inner.port_forward(namespace, pod, port)

    def can_i(self, verb: str, resource: str, *, group: str = "",
              namespace: str | None = None, subresource: str | None = None) -> bool:
        self._check()
        return self.inner.can_i(verb, resource, group=group, namespace=namespace,
                                subresource=subresource)

    def events(self, namespace: str, involved_name: str | None = None) -> KubeList:
        self._check()
        return self.inner.events(namespace, involved_name)
