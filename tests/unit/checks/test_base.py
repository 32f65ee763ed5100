"""How sub-tests fold into a check result, and that a check never passes by default."""

from __future__ import annotations

from kaic import catalog
from kaic.checks.base import CheckContext, CheckOption, Registry, check, run_check
from kaic.model import Outcome
from tests.fakes import FakeCluster


def _run(func, options=None):  # type: ignore[no-untyped-def]
    reg = Registry()
    check(
        "gang_scheduling",
        test="TestGangScheduling",
        registry=reg,
        options=(CheckOption("gang-solution", "which", default="auto"),),
    )(func)
    spec = reg.find("gang_scheduling", "1.36")
    assert spec is not None
    ctx = CheckContext(
        cluster=FakeCluster(),
        requirement=catalog.load("1.36").get("gang_scheduling"),
        spec=spec,
        catalog_version="1.36",
        run_id="r1",
        namespace="ns",
        options=options or {},
    )
    return run_check(ctx)


def test_a_check_that_records_nothing_is_an_error_not_a_pass() -> None:
    result = _run(lambda ctx: None)
    assert result.outcome is Outcome.ERROR
    assert "no sub-test" in result.reason


def test_one_failing_subtest_fails_the_check_with_its_reason() -> None:
    def body(ctx: CheckContext) -> None:
        with ctx.subtest("A"):
            pass
        with ctx.subtest("B") as t:
            t.fail("saw 2 devices")

    result = _run(body)
    assert result.outcome is Outcome.FAIL
    assert result.reason == "B: saw 2 devices"
    assert [s.outcome for s in result.subresults] == [Outcome.PASS, Outcome.FAIL]


def test_all_subtests_passing_passes() -> None:
    def body(ctx: CheckContext) -> None:
        with ctx.subtest("A"):
            pass

    assert _run(body).outcome is Outcome.PASS


def test_not_applicable_is_a_skip_marked_not_applicable() -> None:
    def body(ctx: CheckContext) -> None:
        ctx.not_applicable("no autoscaled pool given")

    result = _run(body)
    assert result.outcome is Outcome.SKIP and result.not_applicable
    assert result.reason == "no autoscaled pool given"


def test_a_crashing_check_is_an_error_with_the_exception_named() -> None:
    def body(ctx: CheckContext) -> None:
        raise RuntimeError("boom")

    result = _run(body)
    assert result.outcome is Outcome.ERROR and "RuntimeError: boom" in result.reason


def test_option_falls_back_to_its_default() -> None:
    seen = []

    def body(ctx: CheckContext) -> None:
        seen.append(ctx.option("gang-solution"))
        with ctx.subtest("A"):
            pass

    _run(body)
    _run(body, {"gang-solution": "kueue"})
    assert seen == ["auto", "kueue"]


def test_a_step_whose_needed_step_failed_is_skipped_naming_it() -> None:
    ran: list[str] = []

    def body(ctx: CheckContext) -> None:
        ctx.step("First", lambda t: t.fail("no baseline"))
        ctx.step("Second", lambda t: ran.append("Second"), needs=("First",))
        ctx.step("Third", lambda t: ran.append("Third"), needs=("Second",))

    result = _run(body)
    assert ran == []
    assert result.outcome is Outcome.FAIL and result.reason == "First: no baseline"
    assert [(s.name, s.outcome, s.reason) for s in result.subresults] == [
        ("First", Outcome.FAIL, "no baseline"),
        ("Second", Outcome.SKIP, "needs First, which failed"),
        ("Third", Outcome.SKIP, "needs Second, which was skipped"),
    ]


def test_steps_whose_needs_passed_run_in_order() -> None:
    ran: list[str] = []

    def body(ctx: CheckContext) -> None:
        assert ctx.step("First", lambda t: ran.append("First"))
        assert ctx.step("Second", lambda t: ran.append("Second"), needs=("First",))

    result = _run(body)
    assert result.outcome is Outcome.PASS and ran == ["First", "Second"]


def test_a_step_needing_one_that_never_ran_is_skipped() -> None:
    result = _run(lambda ctx: ctx.step("Late", lambda t: None, needs=("Never",)))
    assert result.outcome is Outcome.SKIP
    assert result.reason == "Late: needs Never, which did not run"


def test_sleep_ends_at_once_when_the_run_is_cancelled() -> None:
    import threading
    import time

    def body(ctx: CheckContext) -> None:
        threading.Timer(0.05, ctx.cancel_event.set).start()
        start = time.monotonic()
        with ctx.subtest("Poll"):
            ctx.sleep(30.0)
        raise AssertionError(f"sleep returned after {time.monotonic() - start:.1f}s")

    started = time.monotonic()
    result = _run(body)
    assert time.monotonic() - started < 5
    assert result.outcome is Outcome.ERROR and result.reason == "interrupted"
