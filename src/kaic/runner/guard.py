"""The cluster a check sees: every call honours the check's ``Deadline`` (its timeout
and the run's cancellation).

Owns: ``GuardedCluster``. Long waits are cut into short slices so that Ctrl-C, SIGTERM
or a check's timeout is noticed within about ``SLICE_S`` seconds; once cancelled, no
new object can be created. Must not know any requirement's details.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from kaic.checks.base import Deadline
from kaic.cluster.api import ClusterAPI, ExecResult, KubeList, KubeObject
from kaic.cluster.forwarding import ForwardingCluster
from kaic.errors import WaitTimeoutError

SLICE_S = 2.0
T = TypeVar("T")


class GuardedCluster(ForwardingCluster):
    """A ``ClusterAPI`` that stops a check when its deadline is cancelled or passed.

    Every call first checks the deadline (``_before``); the calls that can take long
    are bounded by what is left of it."""

    def __init__(self, inner: ClusterAPI, deadline: Deadline) -> None:
        super().__init__(inner)
        self.deadline = deadline

    def _before(self) -> None:
        self.deadline.check()

    def _left(self, wanted: float) -> float:
        self.deadline.check()
        return max(0.1, min(wanted, self.deadline.remaining()))

    def _slice(self, end: float) -> float:
        now = time.monotonic()
        return min(SLICE_S, end - now, max(0.1, self.deadline.remaining()))

    def _sliced(self, timeout: float, what: str, attempt: Callable[[float], T]) -> T:
        """Run ``attempt(slice)`` until it succeeds, re-checking the deadline between
        slices; ``WaitTimeoutError`` after ``timeout`` seconds as the caller asked."""
        end = time.monotonic() + timeout
        while True:
            self.deadline.check()
            if time.monotonic() >= end:
                raise WaitTimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            try:
                return attempt(self._slice(end))
            except WaitTimeoutError:
                continue

    # -- calls that can take long --------------------------------------------------------
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
        return self._sliced(
            timeout,
            what,
            lambda s: self.inner.wait_for(
                api_version, kind, name, namespace, condition, timeout=s, what=what
            ),
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
        return self._sliced(
            timeout,
            what,
            lambda s: self.inner.wait_list(
                api_version,
                kind,
                namespace,
                condition,
                timeout=s,
                what=what,
                label_selector=label_selector,
            ),
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
        end = time.monotonic() + timeout
        while True:
            self.deadline.check()
            if end - time.monotonic() <= 0:
                return
            for objs in self.inner.watch_list(
                api_version,
                kind,
                namespace,
                timeout=self._slice(end),
                label_selector=label_selector,
            ):
                self.deadline.check()
                yield objs

    def exec(
        self,
        namespace: str,
        pod: str,
        command: Sequence[str],
        *,
        container: str | None = None,
        timeout: float = 60.0,
    ) -> ExecResult:
        return self.inner.exec(
            namespace, pod, command, container=container, timeout=self._left(timeout)
        )

    def http_get(
        self, namespace: str, pod: str, port: int, path: str, *, timeout: float = 30.0
    ) -> str:
        return self.inner.http_get(namespace, pod, port, path, timeout=self._left(timeout))

    def raw_get(self, path: str, *, timeout: float = 30.0) -> str:
        return self.inner.raw_get(path, timeout=self._left(timeout))

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        wait_timeout: float | None = None,
    ) -> bool:
        self.deadline.check()
        return self.inner.delete(
            api_version,
            kind,
            name,
            namespace,
            wait_timeout=None if wait_timeout is None else self._left(wait_timeout),
        )
