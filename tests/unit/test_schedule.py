"""The resource-lock scheduler: the schedule alone (``kaic.runner.schedule``), and the
runner with fake checks that declare locks: never two holders of an exclusive resource at
once, plan order, the ``--parallel`` cap, interruption of running and waiting checks."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from kaic import catalog
from kaic.checks.base import (
    RUNS_ALONE,
    CheckContext,
    Lock,
    Registry,
    Resource,
    check,
    effective_locks,
    exclusive,
    shared,
)
from kaic.model import Outcome
from kaic.runner import CleanupDone, Event, RunRequest, execute, make_plan
from kaic.runner.schedule import Schedule
from tests.fakes import FakeCluster

CLUSTER_SHARED = Lock(Resource.CLUSTER, shared=True)


# -- the declarations ----------------------------------------------------------------------


def test_a_check_that_declares_nothing_holds_the_whole_cluster_exclusively() -> None:
    assert effective_locks(None) == RUNS_ALONE == (Lock("cluster"),)
    reg = Registry()
    check("gpu_sharing", test="TestGPUSharing", registry=reg)(lambda ctx: None)
    (spec,) = reg.all()
    assert spec.locks == RUNS_ALONE


def test_declared_locks_add_the_cluster_shared_and_exclusive_wins_over_shared() -> None:
    locks = effective_locks((*shared("gpus", "nodes"), *exclusive("gpus")))
    assert locks == (CLUSTER_SHARED, Lock("gpus"), Lock("nodes", shared=True))
    assert effective_locks(()) == (CLUSTER_SHARED,)
    assert [str(x) for x in locks] == ["cluster (shared)", "gpus", "nodes (shared)"]


def test_sharing_the_node_pool_shares_the_autoscaled_pool_too() -> None:
    pool = Lock(Resource.AUTOSCALED_POOL, shared=True)
    assert pool in effective_locks(shared(Resource.NODE_POOL))
    # holding the set of nodes exclusively says nothing about the autoscaled pool ...
    assert all(
        lk.resource != pool.resource for lk in effective_locks(exclusive(Resource.NODE_POOL))
    )
    # ... and a lock a check declares on it is kept as declared
    mine = effective_locks((*shared(Resource.NODE_POOL), *exclusive(Resource.AUTOSCALED_POOL)))
    assert Lock(Resource.AUTOSCALED_POOL) in mine and pool not in mine


def test_a_check_may_hold_other_locks_when_the_runs_options_say_so() -> None:
    reg = Registry()

    def by_options(options: Mapping[str, str]) -> tuple[Lock, ...] | None:
        return shared("gpus") if options.get("light") else None

    check(
        "gpu_sharing",
        test="TestGPUSharing",
        locks=exclusive("gpus"),
        option_locks=by_options,
        registry=reg,
    )(lambda ctx: None)
    (spec,) = reg.all()
    assert spec.held({}) == spec.locks == (CLUSTER_SHARED, Lock("gpus"))
    assert spec.held({"light": "1"}) == (CLUSTER_SHARED, Lock("gpus", shared=True))


def test_a_resource_name_must_be_lower_case_with_dashes() -> None:
    with pytest.raises(ValueError, match="lower-case-with-dashes"):
        Lock("Node Pool")


def test_two_locks_conflict_unless_both_are_shared() -> None:
    assert Lock("a").conflicts(Lock("a"))
    assert Lock("a").conflicts(Lock("a", shared=True))
    assert Lock("a", shared=True).conflicts(Lock("a"))
    assert not Lock("a", shared=True).conflicts(Lock("a", shared=True))
    assert not Lock("a").conflicts(Lock("b"))


def test_the_builtin_checks_that_share_the_accelerators_or_the_pool_never_run_together() -> None:
    from kaic.checks import load_builtin_checks

    specs = {s.requirement_id: s for s in load_builtin_checks().all()}
    ca = specs["cluster_autoscaling"]
    for other in ("pod_autoscaling", "secure_accelerator_access", "gang_scheduling"):
        assert ca.conflicts(specs[other]), other
    assert specs["gang_scheduling"].conflicts(specs["robust_controller"])
    assert specs["gang_scheduling"].conflicts(specs["ai_inference"])
    for other in ("ai_inference", "ai_service_metrics", "robust_controller"):
        assert not ca.conflicts(specs[other]), other
    alone = sorted(rid for rid, s in specs.items() if s.locks == RUNS_ALONE)
    assert alone == ["ext_failed_device_detection"]


# -- the schedule alone --------------------------------------------------------------------


def _locks(*locks: Lock) -> tuple[Lock, ...]:
    return effective_locks(locks)


def test_checks_that_conflict_wait_and_the_rest_start_in_plan_order() -> None:
    s = Schedule(
        [
            ("a", _locks(*exclusive("gpus"))),
            ("b", _locks(*exclusive("gpus"))),
            ("c", _locks(*shared("nodes"))),
            ("d", _locks(*exclusive("nodes"))),
            ("e", _locks()),
        ]
    )
    assert s.start() == ["a", "c", "e"]
    assert s.blockers("b") == ["a"] and s.blockers("d") == ["c"]
    assert s.start() == []
    s.release("c")
    assert s.start() == ["d"]
    s.release("a")
    assert s.start() == ["b"]
    for x in ("b", "d", "e"):
        s.release(x)
    assert s.finished and s.done == ["c", "a", "b", "d", "e"]


def test_a_check_that_runs_alone_waits_for_all_and_holds_back_all() -> None:
    s = Schedule([("a", _locks()), ("alone", RUNS_ALONE), ("b", _locks())])
    assert s.start() == ["a", "b"]
    s.release("a")
    assert s.start() == []
    s.release("b")
    assert s.start() == ["alone"]
    assert s.start() == []


def test_a_cap_of_one_runs_every_check_alone_in_plan_order() -> None:
    ids = [f"c{i}" for i in range(6)]
    s = Schedule([(i, _locks()) for i in ids], cap=1)
    order = []
    while not s.finished:
        started = s.start()
        assert len(started) == 1
        order += started
        s.release(started[0])
    assert order == ids


def test_the_cap_bounds_how_many_run_at_once() -> None:
    s = Schedule([(f"c{i}", _locks()) for i in range(5)], cap=2)
    assert s.start() == ["c0", "c1"]
    s.release("c1")
    assert s.start() == ["c2"]
    assert len(s.running) == 2


def test_dropping_the_waiting_checks_leaves_the_running_ones() -> None:
    s = Schedule([("a", _locks(*exclusive("x"))), ("b", _locks(*exclusive("x")))])
    assert s.start() == ["a"]
    assert s.drop_waiting() == ["b"]
    s.release("a")
    assert s.finished and s.start() == []


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Schedule([], cap=0)
    with pytest.raises(ValueError, match="twice"):
        Schedule([("a", ()), ("a", ())])
    with pytest.raises(ValueError, match="not running"):
        Schedule([("a", ())]).release("a")


def test_random_schedules_never_give_an_exclusive_resource_two_holders() -> None:
    rng = random.Random(7)
    names = ["r1", "r2", "r3"]
    for _ in range(200):
        checks = []
        for i in range(rng.randint(1, 8)):
            locks = [Lock(n, shared=rng.random() < 0.5) for n in names if rng.random() < 0.5]
            checks.append((f"c{i}", RUNS_ALONE if rng.random() < 0.1 else _locks(*locks)))
        cap = rng.choice([None, 1, 2, 3])
        s = Schedule(checks, cap=cap)
        started_order: list[str] = []
        while not s.finished:
            started_order += s.start()
            assert s.running, "nothing runs although checks wait"
            assert cap is None or len(s.running) <= cap
            for x in s.running:
                for y in s.running:
                    if x != y:
                        assert not any(a.conflicts(b) for a in s.locks[x] for b in s.locks[y])
            s.release(rng.choice(s.running))
        assert sorted(started_order) == sorted(c for c, _ in checks)
        if cap == 1:
            assert started_order == [c for c, _ in checks]


# -- the runner with fake checks -------------------------------------------------------------

IDS = ("ai_inference", "gang_scheduling", "cluster_autoscaling", "pod_autoscaling")
TESTS = {
    "ai_inference": "TestGatewayAPIInference",
    "gang_scheduling": "TestGangScheduling",
    "cluster_autoscaling": "TestAcceleratorClusterAutoscaling",
    "pod_autoscaling": "TestAcceleratorHorizontalPodAutoscaling",
}


class Holders:
    """Who holds which resource right now, as the fake checks see it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: dict[str, list[tuple[str, bool]]] = {}
        self.overlaps: list[str] = []
        self.starts: list[str] = []
        self.peak = 0
        self.running = 0

    def check(self, rid: str, locks: tuple[Lock, ...], seconds: float) -> Any:
        def func(ctx: CheckContext) -> None:
            with self.lock:
                self.starts.append(rid)
                self.running += 1
                self.peak = max(self.peak, self.running)
                for lk in locks:
                    for other, other_shared in self.now.get(lk.resource, []):
                        if not (lk.shared and other_shared):
                            self.overlaps.append(f"{rid} and {other} on {lk.resource}")
                    self.now.setdefault(lk.resource, []).append((rid, lk.shared))
            try:
                with ctx.subtest("Works"):
                    ctx.sleep(seconds)
            finally:
                with self.lock:
                    self.running -= 1
                    for lk in locks:
                        self.now[lk.resource].remove((rid, lk.shared))

        return func


def _execute(
    holders: Holders, declared: dict[str, tuple[Lock, ...] | None], seconds: float, **kw: Any
) -> Any:
    reg = Registry()
    for rid, locks in declared.items():
        func = holders.check(rid, effective_locks(locks), seconds)
        check(rid, test=TESTS[rid], registry=reg, locks=locks, timeout_s=30)(func)
    plan = make_plan(catalog.load("1.36"), reg, focus="^(" + "|".join(declared) + ")$")
    return execute(FakeCluster(), plan, run_id="r1", request=RunRequest(**kw))


DECLARED: dict[str, tuple[Lock, ...] | None] = {
    "ai_inference": shared("nodes"),
    "gang_scheduling": exclusive("nodes", "queues"),
    "cluster_autoscaling": exclusive("gpus"),
    "pod_autoscaling": exclusive("gpus"),
}


def test_the_runner_never_runs_two_holders_of_one_resource_and_keeps_catalog_order() -> None:
    holders = Holders()
    start = time.monotonic()
    record = _execute(holders, DECLARED, 0.4)
    took = time.monotonic() - start
    assert holders.overlaps == []
    assert [e.id for e in record.results] == list(IDS)
    assert all(e.result.outcome is Outcome.PASS for e in record.results)
    # ai_inference with cluster_autoscaling, then gang_scheduling with pod_autoscaling
    assert holders.starts[:2] == ["ai_inference", "cluster_autoscaling"]
    assert holders.peak == 2
    assert took < 4 * 0.4 + 1.0


def test_parallel_one_runs_the_checks_one_after_another_in_catalog_order() -> None:
    holders = Holders()
    record = _execute(holders, dict.fromkeys(DECLARED, ()), 0.05, parallel=1)
    assert holders.starts == list(IDS) and holders.peak == 1
    assert record.options["parallel"] == 1


def test_the_cap_bounds_checks_that_do_not_conflict() -> None:
    holders = Holders()
    _execute(holders, dict.fromkeys(DECLARED, ()), 0.3, parallel=3)
    assert holders.peak == 3


def test_by_default_every_check_that_conflicts_with_none_runs_at_once() -> None:
    holders = Holders()
    record = _execute(holders, dict.fromkeys(DECLARED, ()), 0.3)
    assert holders.peak == 4 and record.options["parallel"] is None


def test_a_check_that_declares_nothing_runs_alone() -> None:
    holders = Holders()
    declared = dict.fromkeys(DECLARED, ())
    declared["gang_scheduling"] = None
    _execute(holders, declared, 0.3)
    assert holders.overlaps == []
    # the three that share the cluster start together (their threads in any order), the
    # one that holds it exclusively after they are done
    assert sorted(holders.starts[:3]) == ["ai_inference", "cluster_autoscaling", "pod_autoscaling"]
    assert holders.starts[3:] == ["gang_scheduling"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_stops_running_checks_and_never_starts_waiting_ones(
    sig: int, sigint_raises: None
) -> None:
    holders = Holders()
    fake = FakeCluster()
    reg = Registry()
    started = threading.Event()

    def long(ctx: CheckContext) -> None:
        started.set()
        with ctx.subtest("Works"):
            ctx.sleep(30)

    def after(ctx: CheckContext) -> None:
        holders.starts.append("pod_autoscaling")

    check(
        "cluster_autoscaling",
        test=TESTS["cluster_autoscaling"],
        registry=reg,
        locks=exclusive("gpus"),
    )(long)
    check("pod_autoscaling", test=TESTS["pod_autoscaling"], registry=reg, locks=exclusive("gpus"))(
        after
    )
    plan = make_plan(catalog.load("1.36"), reg, focus="^(cluster|pod)_autoscaling$")
    threading.Timer(0.5, lambda: started.wait(5) and os.kill(os.getpid(), sig)).start()
    begin = time.monotonic()
    events: list[Event] = []
    record = execute(fake, plan, run_id="r1", observers=[events.append])
    assert time.monotonic() - begin < 10
    assert record.interrupted and holders.starts == []
    cleaned = [e.item.id for e in events if isinstance(e, CleanupDone) and e.item]
    assert cleaned == ["cluster_autoscaling"]
    res = {e.id: e.result for e in record.results}
    assert res["cluster_autoscaling"].outcome is Outcome.ERROR
    assert "interrupted" in res["cluster_autoscaling"].reason
    assert res["pod_autoscaling"].outcome is Outcome.ERROR
    assert res["pod_autoscaling"].reason == "not run: the run was interrupted"
    assert not any(k[1] == "Namespace" for k in fake.store)


def test_a_check_past_its_timeout_frees_its_locks_for_the_next() -> None:
    reg = Registry()
    ran = []

    def stuck(ctx: CheckContext) -> None:
        with ctx.subtest("Works"):
            time.sleep(0.2)
            ctx.sleep(60)

    def next_one(ctx: CheckContext) -> None:
        ran.append(time.monotonic())
        with ctx.subtest("Works"):
            pass

    check(
        "cluster_autoscaling",
        test=TESTS["cluster_autoscaling"],
        registry=reg,
        locks=exclusive("gpus"),
        timeout_s=0.5,
    )(stuck)
    check("pod_autoscaling", test=TESTS["pod_autoscaling"], registry=reg, locks=exclusive("gpus"))(
        next_one
    )
    plan = make_plan(catalog.load("1.36"), reg, focus="^(cluster|pod)_autoscaling$")
    record = execute(FakeCluster(), plan, run_id="r1")
    res = {e.id: e.result for e in record.results}
    assert res["cluster_autoscaling"].outcome is Outcome.ERROR
    assert "timed out" in res["cluster_autoscaling"].reason
    assert res["pod_autoscaling"].outcome is Outcome.PASS and len(ran) == 1
