"""Executing a plan: preflight, a namespace and cleanup per check, a thread pool,
timeouts, interruption, and progress events for observers.

Owns: ``preflight``, ``execute`` and the event types. Cleanup always runs — after a
pass, a failure, a timeout, Ctrl-C or SIGTERM — unless ``keep_resources`` is set.
Must not know any requirement's details and must not write files (observers do).
"""

from __future__ import annotations

import contextlib
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
from kaic.checks.base import CheckContext, Permission, run_check
from kaic.cluster.api import ClusterAPI
from kaic.cluster.tracking import CHECK_LABEL, CleanupReport, TrackingCluster
from kaic.errors import ClusterError, ClusterUnreachableError, PermissionDeniedError
from kaic.model import CheckResult, Outcome, SubResult
from kaic.runner.guard import GuardedCluster
from kaic.runner.plan import Plan, PlanItem
from kaic.runner.record import ResultEntry, RunRecord, evidence_path

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
    result: CheckResult
    """The full result, evidence content included (``entry`` holds only the paths)."""


@dataclass(frozen=True)
class CleanupDone:
    item: PlanItem | None
    report: CleanupReport


@dataclass(frozen=True)
class RunFinished:
    record: RunRecord


Event = RunStarted | CheckStarted | CheckLog | SubtestDone | CheckDone | CleanupDone \
    | RunFinished
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


def preflight(cluster: ClusterAPI, plan: Plan) -> Preflight:
    """Reachability (the server version) and, with SelfSubjectAccessReview, every
    permission the runner and the selected checks declare. Raises
    ``ClusterUnreachableError`` when the server cannot be reached."""
    version = cluster.server_version()
    missing: list[MissingPermission] = []
    asked: dict[tuple[str, str, str, str | None, str | None], bool] = {}

    def ask(req_id: str, p: Permission, namespace: str | None) -> None:
        ns = namespace if p.namespaced else None
        key = (p.verb, p.resource, p.group, ns, p.subresource)
        if key not in asked:
            try:
                asked[key] = cluster.can_i(p.verb, p.resource, group=p.group, namespace=ns,
                                           subresource=p.subresource)
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
class RunOptions:
    parallel: int = 1
    keep_resources: bool = False
    check_options: Mapping[str, str | None] = field(default_factory=dict)
    timeout_scale: float = 1.0
    cleanup_timeout_s: float = 60.0


@dataclass
class _Running:
    item: PlanItem
    tracker: TrackingCluster
    cancel: threading.Event
    started: float = 0.0
    deadline: float = 0.0
    started_at: str = ""
    cleaned: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


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


class _Emitter:
    def __init__(self, observers: list[Observer]) -> None:
        self.observers = observers
        self.lock = threading.RLock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            for obs in self.observers:
                obs(event)


def execute(cluster: ClusterAPI, plan: Plan, *, run_id: str | None = None,
            options: RunOptions | None = None, observers: list[Observer] | None = None,
            cluster_info: Mapping[str, Any] | None = None,
            run_options: Mapping[str, Any] | None = None) -> RunRecord:
    """Run every item of ``plan`` and return the record; never raises for a check's
    failure. Ctrl-C or SIGTERM cancel the run, clean up, and mark it interrupted."""
    opts = options or RunOptions()
    emit = _Emitter(list(observers or []))
    record = RunRecord(
        run_id=run_id or new_run_id(), kaic_version=__version__, started_at=utc_now(),
        catalog_version=plan.catalog_version, cluster=dict(cluster_info or {}),
        options=dict(run_options or {}),
    )
    order = {item.id: n for n, item in enumerate(plan.items)}
    results: dict[str, ResultEntry] = {}
    results_lock = threading.Lock()
    run_cancel = threading.Event()

    def finish(item: PlanItem, result: CheckResult, started_at: str) -> None:
        paths = tuple(dict.fromkeys(evidence_path(item.id, ev.name) for ev in result.evidence))
        entry = ResultEntry(result=result, level=item.requirement.level,
                            category=item.requirement.category, started_at=started_at,
                            evidence_paths=paths)
        with results_lock:
            if item.id in results:
                return  # abandoned after a timeout; the late result is dropped
            results[item.id] = entry
            record.results = sorted(results.values(), key=lambda e: order[e.id])
        emit(CheckDone(item, entry, result))

    emit(RunStarted(record, plan))

    for item in plan.items:
        if item.spec is None:
            reason = (f"kaic has no automated check for {item.id} in catalog"
                      f" v{plan.catalog_version}; provide evidence by hand")
            finish(item, CheckResult(item.id, item.test_name, Outcome.MANUAL, reason),
                   utc_now())

    running: dict[str, _Running] = {}

    def cleanup(run: _Running) -> None:
        with run.lock:
            if run.cleaned:
                return
            run.cleaned = True
        if opts.keep_resources:
            return
        report = run.tracker.cleanup(wait_timeout=opts.cleanup_timeout_s)
        for ref, why in report.failed:
            record.cleanup.append({"object": str(ref), "reason": why})
        emit(CleanupDone(run.item, report))

    def work(run: _Running) -> None:
        item = run.item
        assert item.spec is not None
        timeout = item.spec.timeout_s * opts.timeout_scale
        run.started, run.started_at = time.monotonic(), utc_now()
        run.deadline = run.started + timeout
        namespace: str | None = None
        try:
            if run.cancel.is_set():
                finish(item, CheckResult(item.id, item.test_name, Outcome.ERROR,
                                         "not run: the run was interrupted"), run.started_at)
                return
            try:
                ns = run.tracker.create({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"generateName": f"{item.namespace_prefix}-",
                                 "labels": {CHECK_LABEL: item.id.replace("_", "-")}},
                })
                namespace = str(ns["metadata"]["name"])
            except ClusterError as e:
                emit(CheckStarted(item, None))
                finish(item, CheckResult(item.id, item.test_name, Outcome.ERROR,
                                         f"could not create the check's namespace: {e}",
                                         duration_s=time.monotonic() - run.started),
                       run.started_at)
                return
            emit(CheckStarted(item, namespace))
            ctx = CheckContext(
                cluster=GuardedCluster(run.tracker, run.cancel, run.deadline, timeout),
                requirement=item.requirement, spec=item.spec,
                catalog_version=plan.catalog_version, run_id=record.run_id,
                namespace=namespace, options=dict(opts.check_options), timeout_s=timeout,
                cancel_event=run.cancel, on_log=lambda m: emit(CheckLog(item, m)),
                on_subtest=lambda s: emit(SubtestDone(item, s)), started=run.started,
            )
            finish(item, run_check(ctx), run.started_at)
        except Exception as e:  # run_check never raises; this is a runner bug
            finish(item, CheckResult(item.id, item.test_name, Outcome.ERROR,
                                     f"internal error in the runner: {type(e).__name__}: {e}",
                                     log=tuple(traceback.format_exc().splitlines())),
                   run.started_at or utc_now())
        finally:
            cleanup(run)

    interrupted = False
    pool = ThreadPoolExecutor(max_workers=max(1, opts.parallel),
                              thread_name_prefix="kaic-check")
    futures: dict[Future[None], _Running] = {}
    try:
        with _sigterm_raises():
            try:
                for item in plan.automated:
                    run = _Running(item, TrackingCluster(cluster, record.run_id, item.id),
                                   threading.Event())
                    running[item.id] = run
                    futures[pool.submit(work, run)] = run
                pending = set(futures)
                while pending:
                    _, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                    now = time.monotonic()
                    for fut in list(pending):
                        run = futures[fut]
                        if run.deadline and now > run.deadline:
                            run.cancel.set()
                        if run.deadline and now > run.deadline + GRACE_S:
                            assert run.item.spec is not None
                            finish(run.item, CheckResult(
                                run.item.id, run.item.test_name, Outcome.ERROR,
                                f"check timed out after {run.deadline - run.started:.0f}s"
                                " and did not stop", duration_s=now - run.started),
                                run.started_at)
                            cleanup(run)
                            pending.discard(fut)
            except (KeyboardInterrupt, _Interrupt):
                interrupted = True
                run_cancel.set()
                for run in running.values():
                    run.cancel.set()
                end = time.monotonic() + GRACE_S
                for fut in futures:
                    with contextlib.suppress(Exception):
                        fut.result(timeout=max(0.0, end - time.monotonic()))
                for run in running.values():
                    if run.item.id not in results:
                        finish(run.item, CheckResult(run.item.id, run.item.test_name,
                                                     Outcome.ERROR,
                                                     "interrupted before it finished"),
                               run.started_at or utc_now())
                    cleanup(run)
    finally:
        for run in running.values():
            run.cancel.set()
            if run.started:
                cleanup(run)
        pool.shutdown(wait=False, cancel_futures=True)
        record.interrupted = interrupted
        record.finished_at = utc_now()
        emit(RunFinished(record))
    return record


def check_reachable(cluster: ClusterAPI) -> str:
    """The server version, or a ``ClusterUnreachableError`` that says why not."""
    try:
        return cluster.server_version()
    except ClusterUnreachableError:
        raise
    except ClusterError as e:
        raise ClusterUnreachableError(f"the cluster does not answer like Kubernetes: {e}") \
            from e
