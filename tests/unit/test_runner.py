"""The runner against the fake cluster: plan selection, namespaces and cleanup,
timeouts, crashes, interruption, preflight and exit codes."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from kaic import catalog
from kaic.checks.base import CheckContext, Permission, Registry, check
from kaic.cluster.api import RUN_ID_LABEL
from kaic.errors import ExitCode, UsageError
from kaic.model import Level, Outcome
from kaic.runner import (
    CheckDone,
    CleanupDone,
    Event,
    RunFinished,
    RunRequest,
    RunStarted,
    execute,
    exit_code,
    make_plan,
    preflight,
)
from tests.fakes import FakeCluster


def _registry(**checks: Any) -> Registry:
    reg = Registry()
    names = {
        "ai_inference": "TestGatewayAPIInference",
        "gpu_sharing": "TestGPUSharing",
        "gang_scheduling": "TestGangScheduling",
    }
    for rid, func in checks.items():
        perms = getattr(func, "perms", ())
        check(
            rid,
            test=names[rid],
            registry=reg,
            timeout_s=getattr(func, "timeout", 30.0),
            permissions=perms,
            locks=getattr(func, "locks", None),
        )(func)
    return reg


def _passing(ctx: CheckContext) -> None:
    with ctx.subtest("Works"):
        ctx.cluster.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "probe", "namespace": ctx.namespace},
            }
        )


def _failing(ctx: CheckContext) -> None:
    with ctx.subtest("Works") as t:
        t.fail("it does not")


def _plan(reg: Registry, **kw: Any) -> Any:
    return make_plan(catalog.load("1.36"), reg, **kw)


def _run(
    reg: Registry, fake: FakeCluster | None = None, events: list[Event] | None = None, **kw: Any
) -> Any:
    plan = _plan(reg, focus=kw.pop("focus", "^(ai_inference|gpu_sharing|gang_scheduling)$"))
    sink = events if events is not None else []
    return execute(
        fake or FakeCluster(), plan, run_id="r1", observers=[sink.append], request=RunRequest(**kw)
    )


def _result(record: Any, rid: str) -> Any:
    return {e.id: e.result for e in record.results}[rid]


# -- plan -------------------------------------------------------------------------------


def test_plan_keeps_catalog_order_and_marks_requirements_without_check_manual() -> None:
    plan = _plan(_registry(ai_inference=_passing))
    ids = [i.id for i in plan.items]
    assert ids == list(catalog.load("1.36").ids())
    assert [i.id for i in plan.automated] == ["ai_inference"]


@pytest.mark.parametrize(
    ("kw", "want"),
    [
        ({"level": "must", "focus": "^ai_inference$|gpu"}, ["ai_inference"]),
        ({"level": "should", "focus": "^ai_inference$|gpu"}, ["gpu_sharing"]),
        ({"focus": "TestGPUSharing"}, ["gpu_sharing"]),
        ({"focus": "^ai_inference$|gpu", "skip": "Sharing"}, ["ai_inference"]),
    ],
)
def test_focus_and_skip_match_the_id_or_the_test_name(kw: dict[str, Any], want: list[str]) -> None:
    assert [i.id for i in _plan(_registry(), **kw).items] == want


def test_a_bad_regex_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--focus"):
        _plan(_registry(), focus="(")


# -- execution -----------------------------------------------------------------------------


def test_each_check_gets_a_labelled_namespace_that_is_deleted_afterwards() -> None:
    fake = FakeCluster()
    seen: list[str] = []

    def body(ctx: CheckContext) -> None:
        seen.append(ctx.namespace)
        ns = fake.get("v1", "Namespace", ctx.namespace)
        assert ns is not None and ns["metadata"]["labels"][RUN_ID_LABEL] == "r1"
        _passing(ctx)

    record = _run(_registry(ai_inference=body), fake)
    assert seen and seen[0].startswith("kaic-ai-inference-")
    assert _result(record, "ai_inference").outcome is Outcome.PASS
    assert not any(k[1] in ("Namespace", "ConfigMap") for k in fake.store)


def test_keep_resources_leaves_the_objects() -> None:
    fake = FakeCluster()
    _run(_registry(ai_inference=_passing), fake, keep_resources=True)
    assert any(k[1] == "ConfigMap" for k in fake.store)


def test_requirements_without_check_are_manual_with_a_reason() -> None:
    record = _run(_registry(ai_inference=_passing))
    manual = {e.id: e.result for e in record.results if e.result.outcome is Outcome.MANUAL}
    assert set(manual) == {"gpu_sharing", "gang_scheduling"}
    assert "no automated check for gpu_sharing in catalog v1.36" in manual["gpu_sharing"].reason


def test_a_manual_requirement_says_what_evidence_to_attach() -> None:
    plan = make_plan(catalog.load("1.37"), Registry(), focus="^disaggregated_inference$")
    record = execute(FakeCluster(), plan, run_id="r1", request=RunRequest())
    (entry,) = record.results
    assert entry.result.outcome is Outcome.MANUAL
    assert entry.result.reason.startswith(
        "kaic has no automated check for disaggregated_inference in catalog v1.37; "
        "provide evidence by hand: the framework's objects"
    )


def test_a_crashing_check_is_an_error_and_still_cleaned_up() -> None:
    fake = FakeCluster()

    def crash(ctx: CheckContext) -> None:
        _passing(ctx)
        raise RuntimeError("boom")

    record = _run(_registry(ai_inference=crash), fake)
    r = _result(record, "ai_inference")
    assert r.outcome is Outcome.ERROR and "RuntimeError: boom" in r.reason
    assert not any(k[1] == "ConfigMap" for k in fake.store)


def test_a_check_past_its_timeout_is_an_error_and_cleaned_up() -> None:
    fake = FakeCluster()

    def slow(ctx: CheckContext) -> None:
        _passing(ctx)
        ctx.cluster.wait_for(
            "v1",
            "ConfigMap",
            "never",
            ctx.namespace,
            lambda o: o is not None,
            timeout=60,
            what="a ConfigMap",
        )

    slow.timeout = 0.5  # type: ignore[attr-defined]
    start = time.monotonic()
    record = _run(_registry(ai_inference=slow), fake)
    assert time.monotonic() - start < 8
    r = _result(record, "ai_inference")
    assert r.outcome is Outcome.ERROR and "timed out after" in r.reason
    assert not any(k[1] == "ConfigMap" for k in fake.store)


def test_checks_run_in_parallel_up_to_the_limit() -> None:
    active, peak = [0], [0]
    lock = threading.Lock()

    def busy(ctx: CheckContext) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)
        with lock:
            active[0] -= 1
        _passing(ctx)

    busy.locks = ()  # type: ignore[attr-defined]
    record = _run(_registry(ai_inference=busy, gpu_sharing=busy, gang_scheduling=busy), parallel=2)
    assert peak[0] == 2
    assert all(e.result.outcome is Outcome.PASS for e in record.results)


def test_events_arrive_in_order_and_the_record_is_in_catalog_order() -> None:
    events: list[Event] = []
    record = _run(
        _registry(ai_inference=_passing, gang_scheduling=_failing), events=events, parallel=2
    )
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert sum(isinstance(e, CheckDone) for e in events) == 3
    assert sum(isinstance(e, CleanupDone) for e in events) == 2
    assert [e.id for e in record.results] == ["gpu_sharing", "ai_inference", "gang_scheduling"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_middle_of_a_check_interrupts_and_cleans_up(
    sig: int, sigint_raises: None
) -> None:
    fake = FakeCluster()

    def interrupted(ctx: CheckContext) -> None:
        _passing(ctx)
        os.kill(os.getpid(), sig)
        ctx.cluster.wait_for(
            "v1",
            "ConfigMap",
            "never",
            ctx.namespace,
            lambda o: o is not None,
            timeout=30,
            what="a ConfigMap",
        )

    start = time.monotonic()
    record = _run(_registry(ai_inference=interrupted, gang_scheduling=_passing), fake)
    assert time.monotonic() - start < 10
    assert record.interrupted and exit_code(record) is ExitCode.INTERRUPTED
    r = {e.id: e.result for e in record.results}["ai_inference"]
    assert r.outcome is Outcome.ERROR and "interrupted" in r.reason
    assert not any(k[1] in ("Namespace", "ConfigMap") for k in fake.store)


# -- preflight -------------------------------------------------------------------------------


def test_preflight_names_each_missing_permission_and_the_check_needing_it() -> None:
    fake = FakeCluster()
    fake.denied.add(("create", "httproutes", "gateway.networking.k8s.io"))
    fake.denied.add(("create", "namespaces", ""))
    _passing.perms = (
        Permission("create", "httproutes", "gateway.networking.k8s.io"),  # type: ignore[attr-defined]
        Permission("list", "pods"),
    )
    try:
        pre = preflight(fake, _plan(_registry(ai_inference=_passing), focus="inference"))
    finally:
        del _passing.perms  # type: ignore[attr-defined]
    assert not pre.ok
    assert [(m.requirement_id, str(m.permission)) for m in pre.missing] == [
        ("(runner)", "create namespaces"),
        ("ai_inference", "create httproutes.gateway.networking.k8s.io"),
    ]


# -- exit codes -------------------------------------------------------------------------------


def test_exit_code_is_not_met_when_a_must_fails_and_ok_when_only_a_should_fails() -> None:
    both = "^(ai_inference|gpu_sharing)$"
    must_fails = _run(_registry(ai_inference=_failing, gpu_sharing=_passing), focus=both)
    assert exit_code(must_fails) is ExitCode.NOT_MET
    should_fails = _run(_registry(ai_inference=_passing, gpu_sharing=_failing), focus=both)
    assert exit_code(should_fails) is ExitCode.OK


def test_exit_code_counts_a_must_without_check_as_not_met_but_not_applicable_as_met() -> None:
    manual_must = _run(_registry(ai_inference=_passing), focus="^(ai_inference|gang_scheduling)$")
    assert exit_code(manual_must) is ExitCode.NOT_MET

    def na(ctx: CheckContext) -> None:
        ctx.not_applicable("no gang scheduler offered")

    both = _run(
        _registry(ai_inference=_passing, gang_scheduling=na),
        focus="^(ai_inference|gang_scheduling)$",
    )
    assert exit_code(both) is ExitCode.OK
    assert all(e.level is Level.MUST for e in both.results)


# -- the sweep after a run that went wrong ---------------------------------------------------


def _lost_answer(fake: FakeCluster) -> Any:
    """A check whose create reached the server but whose answer was lost (the apiserver
    restarted): the object exists with the run's labels, the tracker never saw it."""

    def body(ctx: CheckContext) -> None:
        with ctx.subtest("Creates"):
            fake.add(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": "lost",
                        "namespace": "default",
                        "labels": {
                            "app.kubernetes.io/managed-by": "kaic",
                            RUN_ID_LABEL: "r1",
                        },
                    },
                }
            )
            from kaic.errors import ClusterUnreachableError

            raise ClusterUnreachableError("creating ConfigMap default/lost: connection reset")

    return body


def test_what_a_lost_answer_left_behind_is_swept_after_an_error() -> None:
    fake = FakeCluster()
    events: list[Event] = []
    record = _run(_registry(ai_inference=_lost_answer(fake)), fake, events)
    assert _result(record, "ai_inference").outcome is Outcome.ERROR
    assert not any(k[1] == "ConfigMap" for k in fake.store)
    swept = [e for e in events if isinstance(e, CleanupDone) and e.item is None]
    assert [str(r) for r in swept[0].report.deleted] == ["ConfigMap default/lost"]
    assert record.cleanup == ()


def test_a_run_that_went_well_is_not_swept() -> None:
    events: list[Event] = []
    _run(_registry(ai_inference=_passing), None, events)
    assert not [e for e in events if isinstance(e, CleanupDone) and e.item is None]


def test_with_keep_resources_nothing_is_swept() -> None:
    fake = FakeCluster()
    _run(_registry(ai_inference=_lost_answer(fake)), fake, keep_resources=True)
    assert any(k[1] == "ConfigMap" for k in fake.store)
