"""The check contract: registration, options, permissions, and the context a check runs in.

Owns: ``@check`` and the ``Registry``, ``CheckOption``, ``Permission``, ``Lock`` and
``Resource`` (what a check holds while it runs, for the runner's scheduler), ``CheckSpec``,
``CheckContext`` (sub-tests, gated steps, evidence, samples of quantities over time,
logging, cancellation and cancellable sleeps), ``SharedReads`` (the reads of a run's
checks have in common, made once) and how a check's sub-tests fold into one
``CheckResult``. Must not run anything by itself: the runner creates contexts, calls
checks and writes what they collected.

A check is a plain synchronous function ``def check(ctx: CheckContext) -> None``.
It proves its requirement through named sub-tests::

    with ctx.subtest("PositiveAccessTest") as t:
        ...
        t.fail("pod saw 2 devices, expected 1")

A sequence of sub-tests where each builds on the ones before is written as gated
steps: a step runs only when the steps it ``needs`` passed, otherwise it is recorded as
SKIP naming the step that did not pass::

    ctx.step("StableBaseline", run.stable_baseline)
    ctx.step("ScaleUp", run.scale_up, needs=("StableBaseline",))

A check ends the whole check with ``ctx.fail(...)``, ``ctx.skip(...)``,
``ctx.not_applicable(...)`` or ``ctx.manual(...)``. A check that records nothing is
an ERROR, never a PASS.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeVar, cast

from kaic.catalog import Catalog
from kaic.cluster.api import ClusterAPI
from kaic.errors import KaicError
from kaic.model import CheckResult, Evidence, Outcome, Requirement, Series, SubResult

_OPTION_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class CheckOption:
    """A check-specific flag, surfaced by ``kaic run`` as ``--<name>``."""

    name: str
    help: str
    default: str | None = None
    kind: str | None = None
    """``number`` (finite, not negative), ``integer`` (a whole number above 0) or
    ``text``; by default ``number`` when the default value is one, else ``text``."""
    choices: tuple[str, ...] = ()
    """The only values a ``text`` option takes (empty: any)."""
    parse: Callable[[str], object] | None = None
    """A parser of a ``text`` option's value that raises ``KaicError`` (its message: why
    the value is not acceptable)."""

    def __post_init__(self) -> None:
        if not _OPTION_NAME.match(self.name):
            raise ValueError(f"option name {self.name!r} must be lower-case-with-dashes")
        if self.kind is None:
            numeric = self.default is not None and _number(self.default) is not None
            object.__setattr__(self, "kind", "number" if numeric else "text")
        if self.kind not in _KINDS:
            raise ValueError(f"option kind {self.kind!r} must be one of {', '.join(_KINDS)}")

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not acceptable for this option (None: it is); the runner asks
        before anything runs."""
        if self.kind == "number":
            n = _number(value)
            if n is None or n < 0:
                return f"--{self.name} must be a number of 0 or more, got {value!r}"
        elif self.choices and value not in self.choices:
            return f"--{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
        elif self.kind == "integer" and not (
            value.strip().isdecimal() and value.strip().isascii() and int(value) > 0
        ):
            return f"--{self.name} must be a whole number above 0, got {value!r}"
        elif self.parse is not None:
            try:
                self.parse(value)
            except KaicError as e:
                return str(e)
        return None


_KINDS = ("text", "number", "integer")


def _number(text: str) -> float | None:
    """``text`` as a finite number, or None."""
    try:
        n = float(text)
    except ValueError:
        return None
    return n if math.isfinite(n) else None


@dataclass(frozen=True)
class Permission:
    """One verb on one resource that a check needs (checked with SelfSubjectAccessReview)."""

    verb: str
    resource: str
    group: str = ""
    namespaced: bool = True
    subresource: str | None = None

    def __str__(self) -> str:
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        grp = f".{self.group}" if self.group else ""
        return f"{self.verb} {res}{grp}"


# -- what a check holds while it runs ---------------------------------------------------


class Resource:
    """The resources checks commonly hold (``Lock``); any lower-case name will do, and
    checks naming the same one conflict."""

    CLUSTER = "cluster"
    """The whole cluster. A check holding it exclusively runs alone; every other check
    holds it shared. The default of a check that declares no locks, so that a new check
    never disturbs another until its author says what it touches."""
    ACCELERATORS = "accelerators"
    """The cluster's free accelerators (extended resources and DRA devices alike):
    exclusively by a check that allocates any or counts the free ones."""
    NODE_POOL = "node-pool"
    """The set of nodes: exclusively by a check that grows or shrinks it (cluster
    autoscaling) or leaves pods Unschedulable on purpose (an autoscaler would add nodes
    for them); shared by a check that compares the node or accelerator inventory with
    something (a node coming or going mid-check would change it)."""
    AUTOSCALED_POOL = "autoscaled-pool"
    """The nodes of the autoscaled accelerator pool: exclusively by the check that grows
    and shrinks it (cluster_autoscaling), and by a check that may place pods there
    because it tolerates whatever taints a node carries; shared by a check that compares
    the node or accelerator inventory with something (a node of the pool coming or going
    mid-check would change it). A check that holds ``node-pool`` shared holds this one
    shared too. When the pool is dedicated (``--autoscaler-pool-taint``: a taint that only
    cluster_autoscaling's pods tolerate), cluster_autoscaling holds only this resource;
    otherwise it holds the accelerators and the node pool exclusively as well."""
    NODE_CAPACITY = "node-capacity"
    """The nodes' free CPU and memory: exclusively by a check that sizes a workload on
    what is free; shared by every check whose pods ask for CPU or memory (they take some
    of it)."""
    KUEUE_QUEUES = "kueue-queues"
    """Kueue's cluster-scoped queues (ClusterQueues, ResourceFlavors, and the quota of
    the ClusterQueue a check submits to): exclusively by a check that creates, lists or
    submits to one."""
    GATEWAY = "gateway"
    """The Gateway API implementation's listeners (a Gateway of the cluster's class on
    its address and port): exclusively by a check that creates a Gateway."""


@dataclass(frozen=True, order=True)
class Lock:
    """A resource a check holds while it runs, its cleanup included: exclusively (no
    other check holds it at all) or ``shared`` (other checks may share it, none may hold
    it exclusively). The runner starts a check only when none of its locks conflicts
    with a running check's (``kaic.runner.schedule``)."""

    resource: str
    shared: bool = False

    def __post_init__(self) -> None:
        if not _OPTION_NAME.match(self.resource):
            raise ValueError(f"resource name {self.resource!r} must be lower-case-with-dashes")

    def conflicts(self, other: Lock) -> bool:
        return self.resource == other.resource and not (self.shared and other.shared)

    def __str__(self) -> str:
        return f"{self.resource} (shared)" if self.shared else self.resource


def exclusive(*resources: str) -> tuple[Lock, ...]:
    """Exclusive locks on ``resources`` (for ``@check(locks=…)``)."""
    return tuple(Lock(r) for r in resources)


def shared(*resources: str) -> tuple[Lock, ...]:
    """Shared locks on ``resources`` (for ``@check(locks=…)``)."""
    return tuple(Lock(r, shared=True) for r in resources)


RUNS_ALONE = exclusive(Resource.CLUSTER)
"""The locks of a check that declares none: the whole cluster, exclusively."""


def effective_locks(locks: Iterable[Lock] | None) -> tuple[Lock, ...]:
    """What a check holds: ``RUNS_ALONE`` when it declares nothing (None); else its
    locks (an exclusive lock wins over a shared one of the same resource), the
    autoscaled pool shared when it holds the node pool shared, and the whole cluster
    shared unless it holds it exclusively. Sorted by resource."""
    if locks is None:
        return RUNS_ALONE
    held: dict[str, Lock] = {}
    for lock in locks:
        if lock.resource not in held or not lock.shared:
            held[lock.resource] = lock
    pool = held.get(Resource.NODE_POOL)
    if pool is not None and pool.shared:
        held.setdefault(Resource.AUTOSCALED_POOL, Lock(Resource.AUTOSCALED_POOL, shared=True))
    held.setdefault(Resource.CLUSTER, Lock(Resource.CLUSTER, shared=True))
    return tuple(sorted(held.values()))


OptionLocks = Callable[[Mapping[str, str]], Iterable[Lock] | None]
"""What a check holds in a run with the given check options (``--<name>`` → value); None
for the locks it declares."""


CheckFunc = Callable[["CheckContext"], None]


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: which requirement it proves and what it needs."""

    requirement_id: str
    test_name: str
    func: CheckFunc
    versions: frozenset[str] | None = None
    options: tuple[CheckOption, ...] = ()
    permissions: tuple[Permission, ...] = ()
    timeout_s: float = 300.0
    needs_namespace: bool = True
    locks: tuple[Lock, ...] = RUNS_ALONE
    """What the check holds while it runs (``effective_locks`` of its declaration)."""
    option_locks: OptionLocks | None = None
    """What it holds instead when the run's check options say so (``held``)."""

    def held(self, options: Mapping[str, str]) -> tuple[Lock, ...]:
        """What the check holds in a run with these check options."""
        chosen = self.option_locks(options) if self.option_locks is not None else None
        return self.locks if chosen is None else effective_locks(chosen)

    def conflicts(self, other: CheckSpec) -> bool:
        """Whether the two checks must not run at the same time."""
        return any(a.conflicts(b) for a in self.locks for b in other.locks)

    @property
    def summary(self) -> str:
        doc = (self.func.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def applies_to(self, catalog_version: str) -> bool:
        return self.versions is None or catalog_version in self.versions


class Registry:
    """Checks by requirement id; tests can build their own."""

    def __init__(self) -> None:
        self._specs: dict[str, list[CheckSpec]] = {}

    def add(self, spec: CheckSpec) -> None:
        for other in self._specs.get(spec.requirement_id, []):
            if other.versions is None or spec.versions is None or (other.versions & spec.versions):
                raise ValueError(f"two checks for {spec.requirement_id} overlap in versions")
        self._specs.setdefault(spec.requirement_id, []).append(spec)

    def find(self, requirement_id: str, catalog_version: str) -> CheckSpec | None:
        for spec in self._specs.get(requirement_id, []):
            if spec.applies_to(catalog_version):
                return spec
        return None

    def for_catalog(
        self, catalog: Catalog, profile: str = "official"
    ) -> list[tuple[Requirement, CheckSpec | None]]:
        """Every requirement of ``catalog``'s ``profile`` (``official``: template order;
        ``extended``; ``all``: official first), with its check if any."""
        return [(r, self.find(r.id, catalog.version)) for r in catalog.profile(profile)]

    def all(self) -> list[CheckSpec]:
        return [s for specs in self._specs.values() for s in specs]

    def options(self) -> list[CheckOption]:
        """Every check option, each name once (first registration wins)."""
        seen: dict[str, CheckOption] = {}
        for spec in self.all():
            for opt in spec.options:
                seen.setdefault(opt.name, opt)
        return sorted(seen.values(), key=lambda o: o.name)


REGISTRY = Registry()


def check(
    requirement_id: str,
    *,
    test: str,
    versions: tuple[str, ...] | None = None,
    options: tuple[CheckOption, ...] = (),
    permissions: tuple[Permission, ...] = (),
    timeout_s: float = 300.0,
    locks: Iterable[Lock] | None = None,
    option_locks: OptionLocks | None = None,
    registry: Registry | None = None,
) -> Callable[[CheckFunc], CheckFunc]:
    """Register ``func`` as the check of ``requirement_id`` under upstream test name ``test``.

    ``locks`` says what the check holds while it runs (``Lock``, ``Resource``), so that
    the runner runs it at the same time as the checks it cannot disturb: ``()`` for a
    check that touches nothing another check uses, None (the default) for one that must
    run alone. ``option_locks`` may hold less (or more) when the run's check options
    say what the check will touch."""
    held = effective_locks(locks)

    def deco(func: CheckFunc) -> CheckFunc:
        (registry or REGISTRY).add(
            CheckSpec(
                requirement_id=requirement_id,
                test_name=test,
                func=func,
                versions=frozenset(versions) if versions else None,
                options=options,
                permissions=permissions,
                timeout_s=timeout_s,
                locks=held,
                option_locks=option_locks,
            )
        )
        return func

    return deco


class CheckEnded(Exception):
    """Raised by ``ctx.fail``/``skip``/… to end a check with an outcome."""

    def __init__(self, outcome: Outcome, reason: str, not_applicable: bool = False) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.not_applicable = not_applicable


class SubtestEnded(Exception):
    """Raised by ``Subtest.fail``/``skip``/``error`` to end one sub-test."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


_ENDED_AS = {
    Outcome.PASS: "passed",
    Outcome.FAIL: "failed",
    Outcome.ERROR: "could not be decided",
    Outcome.SKIP: "was skipped",
    Outcome.MANUAL: "needs manual evidence",
}
"""How a needed step ended, for the reason of a step skipped because of it."""


class Cancelled(KaicError):
    """The run was interrupted or the check ran past its timeout."""


class Deadline:
    """One check's time limit and its cancellation, in one place.

    The runner creates one per check and shares it with the check's ``CheckContext``
    and the guarded cluster the check talks to; ``cancel()`` (Ctrl-C, SIGTERM, the
    runner's watchdog) and the clock are seen by all three alike.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.started = time.monotonic()
        self.ends = self.started + timeout_s
        self._cancel = threading.Event()

    def remaining(self) -> float:
        """Seconds left before the timeout (never negative)."""
        return max(0.0, self.ends - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.ends

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def event(self) -> threading.Event:
        """The cancellation as an event, for code that waits on one."""
        return self._cancel

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (capped by what is left); True when cancelled."""
        return self._cancel.wait(max(0.0, min(seconds, self.remaining())))

    def check(self) -> None:
        """Raise ``Cancelled`` once past the timeout or cancelled (the watchdog also
        cancels a check past its timeout, so the time is asked first)."""
        if self.expired:
            raise Cancelled(f"check timed out after {self.timeout_s:g}s")
        if self._cancel.is_set():
            raise Cancelled("interrupted")


SHARED_MAX_AGE_S = 300.0
"""How old a shared read may be before the next check to ask reads it again."""

T = TypeVar("T")


@dataclass(frozen=True)
class Shared(Generic[T]):
    """One shared read: its value, which check made it and when (``time.monotonic``)."""

    value: T
    read_by: str
    read_at: float


class SharedReads:
    """Reads of the cluster that every check of a run would make alike (every Node, the
    accelerator ResourceSlices), made once and handed to each check that asks, until
    they are ``max_age_s`` old.

    One read at a time per key: a check asking while another reads waits for that read
    (cancellably) instead of reading too; a read that fails is not kept, so the next
    check to ask reads itself. A shared value is read-only for its users. The runner
    gives all contexts of a run one instance, and ``clear``s it when a check that may
    change the inventory ends (``changes_inventory``); a read still under way then is
    handed to its check but not kept. A context made without one has its own."""

    def __init__(
        self, max_age_s: float = SHARED_MAX_AGE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._values: dict[str, Shared[Any]] = {}
        self._generation = 0

    def age(self, shared: Shared[Any]) -> float:
        return max(0.0, self._clock() - shared.read_at)

    def get(self, key: str, read: Callable[[], T], by: str, wait: Callable[[], None]) -> Shared[T]:
        """The value of ``key``: the kept one when it is fresh, else ``read()`` (made by
        ``by``). ``wait`` is called while another read of ``key`` is under way; it
        raises to stop waiting (a cancelled check)."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        while not lock.acquire(timeout=0.25):
            wait()
        try:
            with self._guard:
                kept = self._values.get(key)
                if kept is not None and self.age(kept) <= self.max_age_s:
                    return cast(Shared[T], kept)
                self._values.pop(key, None)
                generation = self._generation
            shared = Shared(read(), by, self._clock())
            with self._guard:
                if generation == self._generation:  # not cleared while reading
                    self._values[key] = shared
            return shared
        finally:
            lock.release()

    def clear(self) -> None:
        """Forget every kept read (the next check to ask reads again)."""
        with self._guard:
            self._values.clear()
            self._generation += 1


INVENTORY_RESOURCES = frozenset({Resource.CLUSTER, Resource.NODE_POOL, Resource.AUTOSCALED_POOL})
"""Resources whose exclusive holder may add, remove or change nodes (and so their
accelerators): the shared reads are cleared when it ends."""


def changes_inventory(locks: Iterable[Lock]) -> bool:
    """Whether a check holding ``locks`` may change the node inventory."""
    return any(not lock.shared and lock.resource in INVENTORY_RESOURCES for lock in locks)


@dataclass
class Subtest:
    """A running sub-test; ``fail``/``skip``/``error`` end it with that outcome."""

    name: str
    ctx: CheckContext
    log_lines: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        self.log_lines.append(message)
        self.ctx.log(f"{self.name}: {message}")

    def fail(self, reason: str) -> NoReturn:
        raise SubtestEnded(Outcome.FAIL, reason)

    def skip(self, reason: str) -> NoReturn:
        raise SubtestEnded(Outcome.SKIP, reason)

    def error(self, reason: str) -> NoReturn:
        raise SubtestEnded(Outcome.ERROR, reason)

    def require(self, condition: bool, reason: str) -> None:
        """Fail with ``reason`` unless ``condition`` holds."""
        if not condition:
            self.fail(reason)


@dataclass
class _Sampled:
    """The samples of one series while the check runs."""

    unit: str = ""
    target: float | None = None
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class CheckContext:
    """Everything one check may use while it runs."""

    cluster: ClusterAPI
    requirement: Requirement
    spec: CheckSpec
    catalog_version: str
    run_id: str
    namespace: str
    options: Mapping[str, str | None] = field(default_factory=dict)
    timeout_s: float = 300.0
    deadline: Deadline | None = None
    """The runner's deadline of this check; without one, ``timeout_s`` from now."""
    on_log: Callable[[str], None] | None = None
    on_subtest: Callable[[SubResult], None] | None = None
    subresults: list[SubResult] = field(default_factory=list)
    evidence_items: list[Evidence] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    samples: dict[tuple[str, str], _Sampled] = field(default_factory=dict)
    shared: SharedReads = field(default_factory=SharedReads)
    """The run's shared reads (``shared_read``)."""
    shared_logged: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.deadline is None:
            self.deadline = Deadline(self.timeout_s)
        self.timeout_s = self.deadline.timeout_s

    @property
    def clock(self) -> Deadline:
        assert self.deadline is not None  # set by __post_init__
        return self.deadline

    @property
    def started(self) -> float:
        return self.clock.started

    @property
    def cancel_event(self) -> threading.Event:
        """Set when the check is cancelled (the deadline's event, not a copy)."""
        return self.clock.event

    # -- time and cancellation -------------------------------------------------------
    def remaining(self) -> float:
        """Seconds left before the check's timeout (never negative)."""
        return self.clock.remaining()

    def budget(self, wanted: float) -> float:
        """``wanted`` seconds, capped by what is left of the check's timeout."""
        self.check_cancelled()
        return min(wanted, self.remaining())

    def check_cancelled(self) -> None:
        self.clock.check()

    def sleep(self, seconds: float) -> None:
        """Pause a poll for ``seconds`` (at most what is left of the timeout); raises
        ``Cancelled`` as soon as the run is interrupted, and when the timeout has passed.
        Checks poll with this, never with a plain sleep."""
        self.check_cancelled()
        if self.cancel_event.wait(max(0.0, min(seconds, self.remaining()))):
            # NOTE: the runner's watchdog also cancels a check past its timeout; the
            # timeout is the reason then, not an interruption.
            self.check_cancelled()
            raise Cancelled("interrupted")
        self.check_cancelled()

    # -- options -----------------------------------------------------------------------
    def option(self, name: str) -> str | None:
        """The value of a check option (``--<name>``), or its default."""
        if name in self.options and self.options[name] is not None:
            return self.options[name]
        for opt in self.spec.options:
            if opt.name == name:
                return opt.default
        raise KeyError(f"{self.spec.requirement_id} declares no option {name!r}")

    def float_option(self, name: str) -> float:
        value = self.option(name)
        try:
            return float(value) if value is not None else 0.0
        except ValueError:
            from kaic.errors import UsageError

            raise UsageError(f"--{name} must be a number, got {value!r}") from None

    # -- logging and evidence ------------------------------------------------------------
    def log(self, message: str) -> None:
        self.log_lines.append(message)
        if self.on_log:
            self.on_log(message)

    def shared_read(self, key: str, what: str, read: Callable[[], T]) -> T:
        """``read()``, or the same read another check of the run made (``SharedReads``);
        logs which, naming ``what`` was read. The value must not be changed."""
        me = self.requirement.id
        got = self.shared.get(key, read, me, self.check_cancelled)
        if (got.read_by != me or self.shared.age(got) >= 1.0) and key not in self.shared_logged:
            self.shared_logged.add(key)
            self.log(
                f"{what}: the run's shared read by {got.read_by}, {self.shared.age(got):.0f} s old"
            )
        return got.value

    def evidence(self, name: str, content: str, media_type: str = "text/plain") -> None:
        """Keep a piece of evidence (written to ``evidence/<requirement>/<name>``)."""
        self.evidence_items.append(Evidence(name=name, content=content, media_type=media_type))

    def sample(
        self,
        chart: str,
        series: str,
        value: float,
        *,
        unit: str = "",
        target: float | None = None,
    ) -> None:
        """Record one observation of a quantity that changes while the check runs (a
        pool's node count, replicas, a metric), timed from the check's start. Series of
        one ``chart`` share its axis; the samples end up in ``run.json`` and in the
        evidence file ``samples.json``, and the report draws them."""
        if not math.isfinite(value):
            return
        key = (chart, series)
        if key not in self.samples:
            self.samples[key] = _Sampled(unit=unit, target=target)
        sampled = self.samples[key]
        if target is not None:
            sampled.target = target
        point = (round(time.monotonic() - self.started, 3), float(value))
        pts = sampled.points
        # NOTE: a value that holds keeps only its first and latest sample (watches
        # repeat unchanged values on every event), so a step line stays exact.
        if len(pts) >= 2 and pts[-1][1] == pts[-2][1] == point[1]:
            pts[-1] = point
        else:
            pts.append(point)

    def series(self) -> tuple[Series, ...]:
        """What ``sample`` recorded, one ``Series`` per chart and name, in first-seen order."""
        return tuple(
            Series(
                name=name,
                chart=chart,
                unit=s.unit,
                points=tuple(s.points),
                target=s.target,
            )
            for (chart, name), s in self.samples.items()
        )

    # -- sub-tests -------------------------------------------------------------------------
    @contextmanager
    def subtest(self, name: str) -> Iterator[Subtest]:
        """Run one named sub-test; it passes unless it ends otherwise or raises."""
        t = Subtest(name=name, ctx=self)
        start = time.monotonic()
        outcome, reason = Outcome.PASS, ""
        try:
            yield t
        except SubtestEnded as e:
            outcome, reason = e.outcome, e.reason
        except (CheckEnded, Cancelled):
            self._record(
                SubResult(
                    name,
                    Outcome.ERROR,
                    "check ended during this sub-test",
                    time.monotonic() - start,
                    tuple(t.log_lines),
                    start_s=start - self.started,
                )
            )
            raise
        except KaicError as e:
            outcome, reason = Outcome.ERROR, str(e)
        self._record(
            SubResult(
                name,
                outcome,
                reason,
                time.monotonic() - start,
                tuple(t.log_lines),
                start_s=start - self.started,
            )
        )

    def step(
        self, name: str, func: Callable[[Subtest], None], *, needs: Iterable[str] = ()
    ) -> bool:
        """Run ``func`` as sub-test ``name`` when every sub-test named in ``needs`` has
        passed; otherwise record ``name`` as SKIP with the step it needed. Returns whether
        the step passed."""
        for need in needs:
            done = self.result_of(need)
            if done is None or done.outcome is not Outcome.PASS:
                how = "did not run" if done is None else _ENDED_AS[done.outcome]
                self._record(
                    SubResult(
                        name,
                        Outcome.SKIP,
                        f"needs {need}, which {how}",
                        start_s=time.monotonic() - self.started,
                    )
                )
                return False
        with self.subtest(name) as t:
            func(t)
        return self.passed(name)

    def result_of(self, name: str) -> SubResult | None:
        """The newest recorded result of sub-test ``name``, if it ran."""
        return next((s for s in reversed(self.subresults) if s.name == name), None)

    def passed(self, name: str) -> bool:
        """Whether sub-test ``name`` ran and passed."""
        done = self.result_of(name)
        return done is not None and done.outcome is Outcome.PASS

    def _record(self, sub: SubResult) -> None:
        self.subresults.append(sub)
        self.log(f"{sub.name}: {sub.outcome.value}" + (f" ({sub.reason})" if sub.reason else ""))
        if self.on_subtest:
            self.on_subtest(sub)

    # -- ending the whole check ------------------------------------------------------------
    def fail(self, reason: str) -> NoReturn:
        raise CheckEnded(Outcome.FAIL, reason)

    def skip(self, reason: str) -> NoReturn:
        raise CheckEnded(Outcome.SKIP, reason)

    def not_applicable(self, reason: str) -> NoReturn:
        """The requirement does not apply to this platform (checklist: N/A with reason)."""
        raise CheckEnded(Outcome.SKIP, reason, not_applicable=True)

    def manual(self, reason: str) -> NoReturn:
        raise CheckEnded(Outcome.MANUAL, reason)

    def error(self, reason: str) -> NoReturn:
        raise CheckEnded(Outcome.ERROR, reason)


def fold(subresults: list[SubResult]) -> tuple[Outcome, str]:
    """One outcome from sub-test outcomes: any FAIL, else any ERROR, else PASS if any
    passed, else SKIP; no sub-test at all is an ERROR (a check never passes by default)."""
    if not subresults:
        return Outcome.ERROR, "the check recorded no sub-test result"
    for wanted in (Outcome.FAIL, Outcome.ERROR):
        bad = [s for s in subresults if s.outcome is wanted]
        if bad:
            return wanted, "; ".join(f"{s.name}: {s.reason}" for s in bad)
    if any(s.outcome is Outcome.PASS for s in subresults):
        return Outcome.PASS, ""
    return Outcome.SKIP, "; ".join(f"{s.name}: {s.reason}" for s in subresults)


def run_check(ctx: CheckContext) -> CheckResult:
    """Call the check and fold what it recorded into a ``CheckResult``.

    A ``CheckEnded`` sets the outcome; a ``Cancelled`` or any other exception is an ERROR
    with the reason (the runner adds the traceback to the log). Never raises.
    """
    spec = ctx.spec
    not_applicable = False
    try:
        spec.func(ctx)
        outcome, reason = fold(ctx.subresults)
    except CheckEnded as e:
        outcome, reason, not_applicable = e.outcome, e.reason, e.not_applicable
        if outcome is Outcome.SKIP and any(s.outcome is Outcome.FAIL for s in ctx.subresults):
            outcome, reason = fold(ctx.subresults)
    except Cancelled as e:
        outcome, reason = Outcome.ERROR, str(e)
    except KaicError as e:
        outcome, reason = Outcome.ERROR, str(e)
    except Exception as e:
        import traceback

        ctx.log("".join(traceback.format_exception(e)))
        outcome, reason = Outcome.ERROR, f"internal error in check: {type(e).__name__}: {e}"
    series = ctx.series()
    evidence = tuple(ctx.evidence_items)
    if series:
        evidence += (Evidence(SAMPLES_EVIDENCE, samples_json(series), "application/json"),)
    return CheckResult(
        requirement_id=spec.requirement_id,
        test_name=spec.test_name,
        outcome=outcome,
        reason="" if outcome is Outcome.PASS else (reason or outcome.value.lower()),
        subresults=tuple(ctx.subresults),
        evidence=evidence,
        duration_s=time.monotonic() - ctx.started,
        log=tuple(ctx.log_lines),
        not_applicable=not_applicable and outcome is Outcome.SKIP,
        series=series,
    )


SAMPLES_EVIDENCE = "samples.json"
"""The evidence file that holds every series a check sampled."""


def samples_json(series: Iterable[Series]) -> str:
    """The evidence text of sampled series: one object per series, points as
    ``[seconds after the check started, value]``."""
    return (
        json.dumps(
            [
                {
                    "chart": s.chart,
                    "name": s.name,
                    "unit": s.unit,
                    "target": s.target,
                    "points": [list(p) for p in s.points],
                }
                for s in series
            ],
            indent=2,
        )
        + "\n"
    )
