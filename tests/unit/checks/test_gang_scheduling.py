"""gang_scheduling against a fake cluster with a simulated Kueue, scheduler and kwok."""

from __future__ import annotations

import json

from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check
from tests.unit.kueue_sim import Sim, make_cluster

FAST = {
    "gang-negative-window": "0.3",
    "gang-admit-timeout": "5",
    "gang-cleanup-timeout": "5",
    "gang-lease-window": "0.2",
}


def run(cluster: FakeCluster, **options: str) -> CheckResult:
    return run_fake_check(cluster, "gang_scheduling", options={**FAST, **options})


def sub(result: CheckResult, name: str) -> tuple[Outcome, str]:
    s = next(s for s in result.subresults if s.name == name)
    return s.outcome, s.reason


def test_gang_scheduling_passes_with_kueue_admitting_whole_gangs_only() -> None:
    result = run(make_cluster())
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.name for s in result.subresults] == [
        "PositiveGangScheduling",
        "NegativeGangScheduling",
        "Cleanup",
    ]
    evidence = {e.name: e.content for e in result.evidence}
    assert "Kueue: active" in evidence["detected-solutions.txt"]
    waits = json.loads(evidence["waits.json"])
    assert any(w["wait"].startswith("positive gang") and w["result"] == "ok" for w in waits)
    assert all("took_s" in w and "timeout_s" in w for w in waits)
    shape = evidence["negative-shape.txt"]
    assert "2 such pods fit; ClusterQueue lab admits 192 CPU (2 such pods)" in shape
    assert shape.rstrip().endswith("the gang has 3") and "note:" not in shape


def test_gang_scheduling_cleans_up_everything_it_created() -> None:
    cluster = make_cluster()
    run(cluster)
    leftovers = [
        k
        for k, o in cluster.store.items()
        if o.get("metadata", {}).get("labels", {}).get("kaic.io/run-id") == "run12345"
    ]
    assert leftovers == []
    assert not [k for k in cluster.store if k[1] in ("Pod", "Workload") and k[2] == "kaic-t"]


def test_gang_scheduling_fails_when_no_solution_installed() -> None:
    result = run(make_cluster(kueue=False))
    assert result.outcome is Outcome.FAIL
    assert "no gang-scheduling solution is running" in result.reason
    assert "Kueue" in result.reason and "Volcano" in result.reason


def test_gang_scheduling_fails_when_kueue_crds_exist_but_its_controller_does_not() -> None:
    result = run(make_cluster(Sim(controller=False, webhook="absent")))
    assert result.outcome is Outcome.FAIL
    assert "found only: Kueue: installed, controller not running" in result.reason


def test_partial_scheduling_of_an_oversized_gang_fails_the_negative_case() -> None:
    # Kueue's quota is larger than the cluster and its Job webhook is missing: the big
    # gang (sized past the quota, 11 pods of 96 CPU) starts pod by pod and two get bound.
    result = run(make_cluster(Sim(webhook="absent", cpu_quota="1000")))
    assert result.outcome is Outcome.FAIL
    outcome, reason = sub(result, "NegativeGangScheduling")
    assert outcome is Outcome.FAIL
    assert "partial scheduling: 2 of 11 pods" in reason
    assert sub(result, "Cleanup")[0] is Outcome.PASS


def test_positive_case_fails_when_kueue_does_not_suspend_jobs_on_creation() -> None:
    outcome, reason = sub(run(make_cluster(Sim(webhook="absent"))), "PositiveGangScheduling")
    assert outcome is Outcome.FAIL and "not suspended when it was created" in reason


def test_positive_case_fails_when_the_gang_never_fits_the_quota() -> None:
    result = run(make_cluster(Sim(cpu_quota="0.1")), **{"gang-admit-timeout": "1"})
    outcome, reason = sub(result, "PositiveGangScheduling")
    assert outcome is Outcome.FAIL
    assert "did not complete within" in reason and "Workload" in reason


def test_asking_for_a_solution_that_is_not_installed_fails_naming_it() -> None:
    result = run(make_cluster(), **{"gang-solution": "volcano"})
    assert result.outcome is Outcome.FAIL
    assert "--gang-solution volcano: Volcano: not installed" in result.reason


def test_an_unknown_solution_name_is_an_error_not_a_fail() -> None:
    result = run(make_cluster(), **{"gang-solution": "slurm"})
    assert result.outcome is Outcome.ERROR and "--gang-solution must be" in result.reason


def test_a_negative_size_the_cluster_can_hold_is_refused() -> None:
    result = run(make_cluster(), **{"gang-negative-size": "2"})
    outcome, reason = sub(result, "NegativeGangScheduling")
    assert outcome is Outcome.ERROR and "not larger than what the cluster can hold" in reason


def test_several_cluster_queues_need_an_explicit_choice() -> None:
    cluster = make_cluster()
    cluster.add(
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": "other"},
            "spec": {"resourceGroups": []},
        }
    )
    result = run(cluster)
    assert result.outcome is Outcome.ERROR
    assert "--gang-cluster-queue" in result.reason
    assert run(cluster, **{"gang-cluster-queue": "lab"}).outcome is Outcome.PASS


def _busy(cluster: FakeCluster, node: str, cpu: str) -> None:
    """A pod outside any queue that holds ``cpu`` of ``node`` (a DaemonSet's, say)."""
    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"daemon-{node}", "namespace": "kube-system"},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "d", "resources": {"requests": {"cpu": cpu}}}],
            },
            "status": {"phase": "Running"},
        }
    )


def test_the_oversized_gang_also_exceeds_kueues_quota_when_the_nodes_are_unevenly_used() -> None:
    # Kueue admits by quota (the nodes' allocatable, 192), not by what is free: with
    # 6 CPU of gpu-0 held by a pod outside the queue, a gang sized only by free CPU
    # (2 pods of 96) fits the quota, is admitted, and gets 1 of 2 pods bound.
    cluster = make_cluster()
    _busy(cluster, "gpu-0", "6")
    result = run(cluster)
    assert result.outcome is Outcome.PASS, result.reason
    shape = {e.name: e.content for e in result.evidence}["negative-shape.txt"]
    assert "1 such pods fit" in shape
    assert "ClusterQueue lab admits 192 CPU (2 such pods)" in shape
    assert "the gang has 3" in shape
    assert "a gang of 2 would be admitted" in shape


def test_a_negative_size_kueues_quota_would_admit_is_refused() -> None:
    cluster = make_cluster()
    _busy(cluster, "gpu-0", "6")
    result = run(cluster, **{"gang-negative-size": "2"})
    outcome, reason = sub(result, "NegativeGangScheduling")
    assert outcome is Outcome.ERROR
    assert "ClusterQueue lab admits 192 CPU" in reason


def test_a_quota_too_large_to_exceed_is_an_error_not_a_pass() -> None:
    result = run(make_cluster(Sim(cpu_quota="200000")))
    outcome, reason = sub(result, "NegativeGangScheduling")
    assert outcome is Outcome.ERROR
    assert "more than 1000 pods" in reason and "--gang-cluster-queue" in reason
