"""The reads a run's checks share: made once while fresh, one at a time, never kept
when they fail, and what the runner hands every check of one run."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kaic import catalog
from kaic.checks.accelerators import (
    ACCELERATORS,
    accelerator_inventory,
    any_accelerator,
    cluster_nodes,
)
from kaic.checks.base import (
    Cancelled,
    CheckContext,
    Registry,
    Resource,
    SharedReads,
    check,
    exclusive,
    shared,
)
from kaic.runner import RunRequest, execute, make_plan
from tests.fakes import FakeCluster, gpu_slice


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _never() -> None:
    raise AssertionError("nobody else was reading")


def test_a_fresh_read_is_handed_out_again_and_an_old_one_is_read_anew() -> None:
    clock = Clock()
    shared = SharedReads(max_age_s=60, clock=clock)
    reads: list[int] = []

    def read() -> int:
        reads.append(1)
        return len(reads)

    first = shared.get("k", read, "a", _never)
    clock.now += 60
    again = shared.get("k", read, "b", _never)
    assert (first.value, first.read_by) == (again.value, again.read_by) == (1, "a")
    clock.now += 0.5
    late = shared.get("k", read, "b", _never)
    assert (late.value, late.read_by, len(reads)) == (2, "b", 2)
    assert shared.get("other", lambda: "x", "c", _never).value == "x"


def test_a_failed_read_is_not_kept() -> None:
    shared = SharedReads()

    def broken() -> int:
        raise RuntimeError("apiserver said no")

    with pytest.raises(RuntimeError):
        shared.get("k", broken, "a", _never)
    assert shared.get("k", lambda: 7, "b", _never).value == 7


def test_clear_forgets_what_was_kept_and_a_read_under_way_when_it_came() -> None:
    shared = SharedReads()
    assert shared.get("k", lambda: 1, "a", _never).value == 1
    shared.clear()
    assert shared.get("k", lambda: 2, "b", _never).value == 2
    shared.clear()

    def cleared_meanwhile() -> int:
        shared.clear()  # as the runner does when a node-changing check ends
        return 3

    assert shared.get("k", cleared_meanwhile, "c", _never).value == 3  # its caller has it
    assert shared.get("k", lambda: 4, "d", _never).value == 4  # but it was not kept


def test_a_second_asker_waits_for_the_read_under_way_instead_of_reading() -> None:
    shared = SharedReads()
    started, release = threading.Event(), threading.Event()
    reads: list[str] = []
    got: dict[str, Any] = {}

    def slow() -> str:
        reads.append("slow")
        started.set()
        assert release.wait(5)
        return "nodes"

    def fast() -> str:
        reads.append("fast")
        return "other"

    def ask(who: str, read: Any) -> None:
        got[who] = shared.get("k", read, who, lambda: None)

    a = threading.Thread(target=ask, args=("a", slow))
    a.start()
    assert started.wait(5)
    b = threading.Thread(target=ask, args=("b", fast))
    b.start()
    b.join(0.6)
    assert b.is_alive(), "b did not wait for a's read"
    release.set()
    a.join(5)
    b.join(5)
    assert reads == ["slow"]
    assert got["a"].value == got["b"].value == "nodes"
    assert got["b"].read_by == "a"


def test_a_cancelled_check_stops_waiting_for_another_checks_read() -> None:
    shared = SharedReads()
    started, release = threading.Event(), threading.Event()

    def slow() -> int:
        started.set()
        assert release.wait(5)
        return 1

    t = threading.Thread(target=shared.get, args=("k", slow, "a", lambda: None))
    t.start()
    assert started.wait(5)

    def cancelled() -> None:
        raise Cancelled("interrupted")

    with pytest.raises(Cancelled):
        shared.get("k", lambda: 2, "b", cancelled)
    release.set()
    t.join(5)


def _gpu_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"allocatable": {"nvidia.com/gpu": "8"}},
    }


class CountingCluster(FakeCluster):
    def __init__(self) -> None:
        super().__init__()
        self.lists: list[str] = []

    def list(self, api_version: str, kind: str, *args: Any, **kw: Any) -> list[Any]:
        self.lists.append(kind)
        return super().list(api_version, kind, *args, **kw)


def test_the_checks_of_one_run_read_nodes_and_slices_once() -> None:
    fake = CountingCluster()
    fake.serve("resource.k8s.io/v1", ("resourceslices", "ResourceSlice", False))
    for n in ("gpu-a", "gpu-b"):
        fake.add(_gpu_node(n))
        fake.add(gpu_slice(n, 2))
    seen: dict[str, Any] = {}

    def inventory(ctx: CheckContext) -> None:
        with ctx.subtest("Inventory"):
            nodes = cluster_nodes(ctx)
            found, _ = accelerator_inventory(ctx).accelerators(ACCELERATORS["nvidia"], nodes)
            seen[ctx.requirement.id] = (
                sorted(found),
                [a.index for a in found["gpu-a"]],
                [line for line in ctx.log_lines if "shared read" in line],
            )

    reg = Registry()
    for rid, test in (
        ("ai_inference", "TestGatewayAPIInference"),
        ("gpu_sharing", "TestGPUSharing"),
    ):
        check(rid, test=test, registry=reg, timeout_s=30.0, locks=shared(Resource.NODE_POOL))(
            inventory
        )
    plan = make_plan(catalog.load("1.36"), reg, focus="^(ai_inference|gpu_sharing)$")
    execute(fake, plan, run_id="r1", request=RunRequest(parallel=1))

    assert fake.lists.count("Node") == 1
    # one list per accelerator driver kaic knows (a field selector each), once
    assert fake.lists.count("ResourceSlice") == len(set(any_accelerator().drivers))
    assert seen["ai_inference"][:2] == seen["gpu_sharing"][:2] == (["gpu-a", "gpu-b"], [0, 1])
    # the check that came second says whose read it used
    first, second = sorted(seen, key=lambda rid: len(seen[rid][2]))
    assert seen[first][2] == []
    assert len(seen[second][2]) == 2
    assert all(f"by {first}" in line for line in seen[second][2])


def test_a_check_that_may_change_the_nodes_makes_the_checks_after_it_read_again() -> None:
    fake = CountingCluster()
    fake.add(_gpu_node("gpu-a"))
    counted: list[int] = []

    def inventory(ctx: CheckContext) -> None:
        with ctx.subtest("Inventory"):
            counted.append(len(cluster_nodes(ctx)))

    def grows(ctx: CheckContext) -> None:
        with ctx.subtest("Grows"):
            fake.add(_gpu_node("gpu-new"))  # what an autoscaler's new node looks like

    reg = Registry()
    ids = (
        ("gpu_sharing", "TestGPUSharing", inventory, shared(Resource.NODE_POOL)),
        ("ai_inference", "TestGatewayAPIInference", grows, exclusive(Resource.NODE_POOL)),
        ("gang_scheduling", "TestGangScheduling", inventory, shared(Resource.NODE_POOL)),
    )
    for rid, test, func, locks in ids:
        check(rid, test=test, registry=reg, timeout_s=30.0, locks=locks)(func)
    plan = make_plan(
        catalog.load("1.36"), reg, focus="^(ai_inference|gang_scheduling|gpu_sharing)$"
    )
    execute(fake, plan, run_id="r1", request=RunRequest(parallel=1))
    assert [i.id for i in plan.automated] == ["gpu_sharing", "ai_inference", "gang_scheduling"]
    assert fake.lists.count("Node") == 2
    assert counted == [1, 2]  # the check after the one that grew the pool sees its node
