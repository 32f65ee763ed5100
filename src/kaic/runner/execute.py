"""Executing a plan: preflight, a namespace and cleanup per check, a thread pool,
timeouts, interruption, and progress events for observers.

Owns: ``preflight``, ``execute`` (checks started as their locks allow, ``schedule``) and
the event types. Observers get frozen events whose
``record`` is a snapshot of the run so far. Each check has one ``Deadline`` (its timeout
and cancellation), shared by its context, its guarded cluster and the watchdog here.
Cleanup always runs — after a pass, a failure, a timeout, Ctrl-C or SIGTERM — unless
``keep_resources`` is set. Must not know any requirement's details and must not write
files (observers do).
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kaic import __version__
from kaic.checks.base import (
    CheckContext,
    Deadline,
    Permission,
    SharedReads,
    changes_inventory,
    run_check,
)
from kaic.cluster.api import ClusterAPI
from kaic.cluster.counting import COUNTS
from kaic.cluster.tracking import (
    CHECK_LABEL,
    CleanupReport,
    TrackingCluster,
    delete_leftovers,
    find_leftovers,
)
from kaic.errors import ClusterError, ClusterUnreachableError, PermissionDeniedError
from kaic.model import CheckResult, Outcome, SubResult
from kaic.runner.guard import GuardedCluster
from kaic.runner.plan import Plan, PlanItem
from kaic.runner.record import ResultEntry, RunRecord, evidence_path
from kaic.runner.request import RunRequest
from kaic.runner.schedule import Schedule

GRACE_S = 10.0
"""How long a cancelled or timed-out check may take to notice before it is abandoned."""


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStarted:
    record: RunRecord
    plan: Plan


@dataclass(frozen=True)
class CheckStarted:
    item: PlanItem
    namespace: str | None


@dataclass(frozen=True)
class CheckLog:
    item: PlanItem
    message: str


@dataclass(frozen=True)
class SubtestDone:
    item: PlanItem
    sub: SubResult


@dataclass(frozen=True)
class CheckDone:
    item: PlanItem
    entry: ResultEntry
    """The verdict; ``entry.result`` carries the evidence content too."""
    record: RunRecord
    """The run so far, this result included."""

    @property
    def result(self) -> CheckResult:
        return self.entry.result


@dataclass(frozen=True)
class CleanupDone:
    item: PlanItem | None
    report: CleanupReport
    record: RunRecord
    """The run so far, this cleanup's failures included."""


@dataclass(frozen=True)
class RunFinished:
    record: RunRecord


Event = RunStarted | CheckStarted | CheckLog | SubtestDone | CheckDone | CleanupDone | RunFinished
Observer = Callable[[Event], None]


# -- preflight ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MissingPermission:
    requirement_id: str
    permission: Permission
    namespace: str | None


@dataclass(frozen=True)
class Preflight:
    server_version: str
    missing: tuple[MissingPermission, ...]

    @property
    def ok(self) -> bool:
        return not self.missing


RUNNER_PERMISSIONS = (
    Permission("create", "namespaces", namespaced=False),
    Permission("delete", "namespaces", namespaced=False),
    Permission("get", "namespaces", namespaced=False),
    Permission("list", "namespaces", namespaced=False),
    Permission("watch", "namespaces", namespaced=False),
)


def preflight(cluster: ClusterAPI, plan: Plan, server_version: str | None = None) -> Preflight:
    """Reachability (the server version, unless the caller already asked for it) and,
    with SelfSubjectAccessReview, every permission the runner and the selected checks
    declare. Raises ``ClusterUnreachableError`` when the server cannot be reached."""
    version = server_version if server_version is not None else check_reachable(cluster)
    missing: list[MissingPermission] = []
    asked: dict[tuple[str, str, str, str | None, str | None], bool] = {}

    def ask(req_id: str, p: Permission, namespace: str | None) -> None:
        ns = namespace if p.namespaced else None
        key = (p.verb, p.resource, p.group, ns, p.subresource)
        if key not in asked:
            try:
                asked[key] = cluster.can_i(
                    p.verb, p.resource, group=p.group, namespace=ns, subresource=p.subresource
                )
            except PermissionDeniedError:
                asked[key] = False
        if not asked[key]:
            missing.append(MissingPermission(req_id, p, ns))

    if plan.automated:
        for p in RUNNER_PERMISSIONS:
            ask("(runner)", p, None)
    for item in plan.automated:
        assert item.spec is not None
        for p in item.spec.permissions:
            ask(item.id, p, f"{item.namespace_prefix}-preflight")
    return Preflight(version, tuple(missing))


# -- execution ------------------------------------------------------------------------------


@dataclass
class _Running:
    """One automated check while it runs."""

    item: PlanItem
    tracker: TrackingCluster
    deadline: Deadline | None = None
    """Set when the check starts; until then the check has not begun."""
    started_at: str = ""
    cancel_requested: bool = False
    cleaned: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self) -> None:
        with self.lock:
            self.cancel_requested = True
            if self.deadline is not None:
                self.deadline.cancel()


class _Interrupt(BaseException):
    """SIGTERM, turned into an exception in the main thread."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Interrupt()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class _Execution:
    """The state of one ``execute`` call: the record so far (replaced, never changed,
    so that every event carries a snapshot), the running checks and the observers."""

    def __init__(
        self,
        cluster: ClusterAPI,
        plan: Plan,
        request: RunRequest,
        run_id: str,
        cluster_info: Mapping[str, Any],
        observers: list[Observer],
    ) -> None:
        self.cluster = cluster
        self.plan = plan
        self.request = request
        self.observers = observers
        self.record = RunRecord(
            run_id=run_id,
            kaic_version=__version__,
            started_at=utc_now(),
            catalog_version=plan.catalog_version,
            cluster=dict(cluster_info),
            options=request.to_json(),
        )
        self.order = {item.id: n for n, item in enumerate(plan.items)}
        self.running: dict[str, _Running] = {}
        self.lock = threading.RLock()
        self.shared = SharedReads()
        """The reads the checks of this run share (every Node, the accelerator slices)."""

    def emit(self, event: Event) -> None:
        with self.lock:
            for obs in self.observers:
                obs(event)

    # -- results and cleanup -----------------------------------------------------------
    def finish(self, item: PlanItem, result: CheckResult, started_at: str) -> None:
        """Record one verdict (the first one wins: a late result after a timeout is
        dropped) and tell the observers."""
        paths = tuple(dict.fromkeys(evidence_path(item.id, ev.name) for ev in result.evidence))
        entry = ResultEntry(
            result=result,
            level=item.requirement.level,
            category=item.requirement.category,
            started_at=started_at,
            evidence_paths=paths,
            profile=item.requirement.profile,
        )
        with self.lock:
            if any(e.id == item.id for e in self.record.results):
                return
            results = sorted([*self.record.results, entry], key=lambda e: self.order[e.id])
            self.record = dataclasses.replace(self.record, results=tuple(results))
            self.emit(CheckDone(item, entry, self.record))

    def finished(self, item: PlanItem) -> bool:
        with self.lock:
            return any(e.id == item.id for e in self.record.results)

    def cleanup(self, run: _Running) -> None:
        with run.lock:
            if run.cleaned:
                return
            run.cleaned = True
        if not self.request.keep_resources:
            report = run.tracker.cleanup(wait_timeout=self.request.cleanup_timeout_s)
            with self.lock:
                failed = tuple({"object": str(ref), "reason": why} for ref, why in report.failed)
                self.record = dataclasses.replace(
                    self.record, cleanup=(*self.record.cleanup, *failed)
                )
                self.emit(CleanupDone(run.item, report, self.record))
        # NOTE: a check that may have changed the nodes (grown the autoscaled pool, made
        # a device fail) is over, its objects gone: the checks after it read again.
        spec = run.item.spec
        if spec is not None and changes_inventory(spec.held(self.request.check_options)):
            self.shared.clear()

    # -- one check ---------------------------------------------------------------------
    def _error(self, item: PlanItem, reason: str, started_at: str, **kw: Any) -> None:
        self.finish(
            item, CheckResult(item.id, item.test_name, Outcome.ERROR, reason, **kw), started_at
        )

    def work(self, run: _Running) -> None:
        """Run one check in its own namespace (a pool thread); always cleans up."""
        item = run.item
        assert item.spec is not None
        deadline = Deadline(item.spec.timeout_s * self.request.timeout_scale)
        with run.lock:
            run.deadline, run.started_at = deadline, utc_now()
            if run.cancel_requested:
                deadline.cancel()
        try:
            if deadline.cancelled:
                self._error(item, "not run: the run was interrupted", run.started_at)
                return
            namespace = self._namespace(run)
            if namespace is None:
                return
            self.emit(CheckStarted(item, namespace))
            ctx = CheckContext(
                cluster=GuardedCluster(run.tracker, deadline),
                requirement=item.requirement,
                spec=item.spec,
                catalog_version=self.plan.catalog_version,
                run_id=self.record.run_id,
                namespace=namespace,
                options=dict(self.request.check_options),
                deadline=deadline,
                on_log=lambda m: self.emit(CheckLog(item, m)),
                on_subtest=lambda s: self.emit(SubtestDone(item, s)),
                shared=self.shared,
            )
            self.finish(item, run_check(ctx), run.started_at)
        except Exception as e:  # run_check never raises; this is a runner bug
            self._error(
                item,
                f"internal error in the runner: {type(e).__name__}: {e}",
                run.started_at or utc_now(),
                log=tuple(traceback.format_exc().splitlines()),
            )
        finally:
            self.cleanup(run)

    def _namespace(self, run: _Running) -> str | None:
        """The check's own labelled namespace; None (and an ERROR) when it cannot be made."""
        item, deadline = run.item, run.deadline
        assert deadline is not None
        try:
            ns = run.tracker.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "generateName": f"{item.namespace_prefix}-",
                        "labels": {CHECK_LABEL: item.id.replace("_", "-")},
                    },
                }
            )
        except ClusterError as e:
            self.emit(CheckStarted(item, None))
            self._error(
                item,
                f"could not create the check's namespace: {e}",
                run.started_at,
                duration_s=time.monotonic() - deadline.started,
            )
            return None
        return str(ns["metadata"]["name"])

    # -- the whole run -----------------------------------------------------------------
    def run(self) -> RunRecord:
        requests_before = COUNTS.snapshot()
        self.emit(RunStarted(self.record, self.plan))
        for item in self.plan.items:
            if item.spec is None:
                reason = (
                    f"kaic has no automated check for {item.id} in catalog"
                    f" v{self.plan.catalog_version}; provide evidence by hand"
                    if not item.requirement.is_extended
                    else f"kaic has no automated check for {item.id} yet (extended profile:"
                    f" informative; review {item.requirement.section} by hand)"
                )
                if item.requirement.manual_evidence:
                    reason += f": {item.requirement.manual_evidence}"
                self.finish(
                    item, CheckResult(item.id, item.test_name, Outcome.MANUAL, reason), utc_now()
                )
        interrupted = False
        automated = self.plan.automated
        for item in automated:
            self.running[item.id] = _Running(
                item, TrackingCluster(self.cluster, self.record.run_id, item.id)
            )
        schedule = Schedule(
            [
                (i.id, i.spec.held(self.request.check_options))
                for i in automated
                if i.spec is not None
            ],
            cap=self.request.parallel,
        )
        # NOTE: one thread per check at most; the schedule, not the pool, caps how many
        # run, so that a check abandoned past its timeout does not hold back the next.
        pool = ThreadPoolExecutor(
            max_workers=max(1, len(automated)), thread_name_prefix="kaic-check"
        )
        futures: dict[Future[None], _Running] = {}
        try:
            with _sigterm_raises():
                try:
                    self._watch(pool, schedule, futures)
                except (KeyboardInterrupt, _Interrupt):
                    interrupted = True
                    schedule.drop_waiting()
                    self._interrupt(futures)
        finally:
            for run in self.running.values():
                run.cancel()
                if run.deadline is not None:
                    self.cleanup(run)
            pool.shutdown(wait=False, cancel_futures=True)
            self.sweep(interrupted)
            with self.lock:
                self.record = dataclasses.replace(
                    self.record,
                    interrupted=interrupted,
                    finished_at=utc_now(),
                    api_requests=COUNTS.since(requests_before),
                )
                self.emit(RunFinished(self.record))
        return self.record

    def sweep(self, interrupted: bool) -> None:
        """After a run that went wrong (interrupted, an ERROR, a cleanup that failed):
        find every object still labelled with the run's id and delete it, so that what
        a lost answer or an outage left behind goes too; ``cleanup.failed`` then lists
        what is still there (or keeps the per-check failures when the cluster cannot be
        asked)."""
        if self.request.keep_resources:
            return
        with self.lock:
            troubled = (
                interrupted
                or bool(self.record.cleanup)
                or any(e.result.outcome is Outcome.ERROR for e in self.record.results)
            )
        if not troubled:
            return
        try:
            self.cluster.server_version()  # fails fast when the cluster is still away
            leftovers = find_leftovers(self.cluster, self.record.run_id)
        except ClusterError:
            return  # the per-check failures say what remains; kaic cleanup finds it later
        report = delete_leftovers(
            self.cluster, leftovers, wait_timeout=self.request.cleanup_timeout_s
        )
        deleted = {str(ref) for ref in report.deleted}
        with self.lock:
            # NOTE: a kind the credentials may no longer list is not found by the sweep;
            # its earlier failure stands unless the sweep deleted the object.
            kept = [f for f in self.record.cleanup if f["object"] not in deleted]
            again = [{"object": str(ref), "reason": why} for ref, why in report.failed]
            seen = {f["object"] for f in again}
            failed = (*again, *(f for f in kept if f["object"] not in seen))
            self.record = dataclasses.replace(self.record, cleanup=failed)
            self.emit(CleanupDone(None, report, self.record))

    def _watch(
        self, pool: ThreadPoolExecutor, schedule: Schedule, futures: dict[Future[None], _Running]
    ) -> None:
        """Start every check the schedule allows, wait for them, free their locks once
        they are cleaned up; cancel a check past its deadline and abandon it (an ERROR,
        cleaned up) once it has not stopped within ``GRACE_S``."""
        pending: set[Future[None]] = set()
        while True:
            for check_id in schedule.start():
                run = self.running[check_id]
                fut = pool.submit(self.work, run)
                futures[fut] = run
                pending.add(fut)
            if not pending:
                # NOTE: with nothing running every waiting check can start, so an
                # empty pool here means the schedule is through.
                return
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for fut in done:
                schedule.release(futures[fut].item.id)
            now = time.monotonic()
            for fut in list(pending):
                run = futures[fut]
                deadline = run.deadline
                if deadline is None or now <= deadline.ends:
                    continue
                deadline.cancel()
                if now > deadline.ends + GRACE_S:
                    self._error(
                        run.item,
                        f"check timed out after {deadline.timeout_s:.0f}s and did not stop",
                        run.started_at,
                        duration_s=now - deadline.started,
                    )
                    self.cleanup(run)
                    pending.discard(fut)
                    schedule.release(run.item.id)

    def _interrupt(self, futures: dict[Future[None], _Running]) -> None:
        """Ctrl-C or SIGTERM: cancel every check, give the running ones ``GRACE_S`` to
        stop, record the ones that did not finish (or never started), clean up."""
        for run in self.running.values():
            run.cancel()
        end = time.monotonic() + GRACE_S
        for fut in futures:
            with contextlib.suppress(Exception):
                fut.result(timeout=max(0.0, end - time.monotonic()))
        for run in self.running.values():
            with run.lock:
                started = run.deadline is not None
            if not started:
                if not self.finished(run.item):
                    self._error(run.item, "not run: the run was interrupted", utc_now())
                continue
            if not self.finished(run.item):
                self._error(run.item, "interrupted before it finished", run.started_at or utc_now())
            self.cleanup(run)


def execute(
    cluster: ClusterAPI,
    plan: Plan,
    *,
    request: RunRequest | None = None,
    run_id: str | None = None,
    observers: list[Observer] | None = None,
    cluster_info: Mapping[str, Any] | None = None,
) -> RunRecord:
    """Run every item of ``plan`` as ``request`` says and return the record; never
    raises for a check's failure. Ctrl-C or SIGTERM cancel the run, clean up, and mark
    it interrupted."""
    return _Execution(
        cluster,
        plan,
        request or RunRequest(),
        run_id or new_run_id(),
        cluster_info or {},
        list(observers or []),
    ).run()


def check_reachable(cluster: ClusterAPI) -> str:
    """The server version, or a ``ClusterUnreachableError`` that says why not."""
    try:
        return cluster.server_version()
    except ClusterUnreachableError:
        raise
    except ClusterError as e:
        raise ClusterUnreachableError(f"the cluster does not answer like Kubernetes: {e}") from e
