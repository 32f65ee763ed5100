"""Waiting inside a check, and the record of how long each wait took.

Owns: ``Waits`` (every wait with its timeout and measured duration, kept as
``waits.json`` evidence), ``Phases`` (timed phases of a scaling check, kept as
``phases.json``), ``poll`` (for what cannot be watched, such as an aggregated API; it
sleeps through ``CheckContext.sleep`` so that cancellation and the check's timeout end
it) and ``dump`` (stable JSON text for evidence). Must not decide pass or fail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kaic.checks.base import CheckContext, Subtest
from kaic.checks.predicates import pod_started
from kaic.cluster.api import ClusterAPI, KubeObject
from kaic.errors import ClusterError

T = TypeVar("T")


def dump(obj: Any) -> str:
    """JSON text of an object for evidence (stable key order)."""
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


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
            self.entries.append(
                {
                    "wait": what,
                    "timeout_s": round(timeout, 1),
                    "took_s": round(time.monotonic() - start, 3),
                    "result": outcome,
                }
            )

    def record(self, what: str, timeout: float, took: float, result: str) -> None:
        self.entries.append(
            {
                "wait": what,
                "timeout_s": round(timeout, 1),
                "took_s": round(took, 3),
                "result": result,
            }
        )

    def save(self, ctx: CheckContext, name: str = "waits.json") -> None:
        ctx.evidence(name, json.dumps(self.entries, indent=2), "application/json")


@dataclass
class Phases:
    """Measured duration of every timed phase, written as evidence ``phases.json``."""

    items: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def timed(self, name: str, timeout_s: float) -> Iterator[dict[str, Any]]:
        entry: dict[str, Any] = {"phase": name, "timeout_s": timeout_s}
        start = time.monotonic()
        try:
            yield entry
        finally:
            entry["duration_s"] = round(time.monotonic() - start, 3)
            self.items.append(entry)

    def save(self, ctx: CheckContext, name: str = "phases.json") -> None:
        ctx.evidence(name, dump(self.items), "application/json")


def poll(
    ctx: CheckContext,
    timeout: float,
    probe: Callable[[], bool],
    *,
    interval: float = 2.0,
    on_error: Callable[[Exception], None] | None = None,
    errors: tuple[type[Exception], ...] = (ClusterError, ValueError),
) -> bool:
    """Call ``probe`` every ``interval`` seconds until it returns True (True) or
    ``timeout`` seconds have passed (False). ``errors`` raised by ``probe`` count as
    "not yet" and go to ``on_error``; cancellation or the check's timeout raise
    ``Cancelled``."""
    deadline = time.monotonic() + timeout
    while True:
        ctx.check_cancelled()
        try:
            if probe():
                return True
        except errors as e:
            if on_error is not None:
                on_error(e)
        if time.monotonic() >= deadline:
            return False
        ctx.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def last_warning(cluster: ClusterAPI, namespace: str, name: str) -> str:
    """`` (<message>)`` of the newest Warning event about ``name``, or ``""`` (also when
    the events cannot be read): the why of a pod that did not run."""
    try:
        msgs = [
            str(ev.get("message", ""))
            for ev in cluster.events(namespace, name)
            if ev.get("type") == "Warning"
        ]
    except ClusterError:
        msgs = []
    return f" ({msgs[-1]})" if msgs else ""


def pod_running_or_fail(
    ctx: CheckContext, t: Subtest, pod: str, timeout: float, *, what: str = "pod"
) -> KubeObject:
    """Wait (at most ``timeout``, capped by the check's budget) until ``pod`` of the
    check's namespace has started; FAIL sub-test ``t`` with the newest Warning event
    otherwise."""
    try:
        obj = ctx.cluster.wait_for(
            "v1",
            "Pod",
            pod,
            ctx.namespace,
            pod_started,
            timeout=ctx.budget(timeout),
            what=f"{what} {pod} to run",
        )
    except ClusterError as e:
        t.fail(f"{what} {pod} did not run: {e}{last_warning(ctx.cluster, ctx.namespace, pod)}")
    assert obj is not None
    return obj
