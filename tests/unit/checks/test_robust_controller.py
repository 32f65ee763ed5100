"""robust_controller against a fake cluster with a simulated Kueue operator."""

from __future__ import annotations

import json

from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check
from tests.unit.kueue_sim import VERSION, Sim, make_cluster

FAST = {"operator-reconcile-timeout": "2", "operator-lease-window": "0.3"}
SUBTESTS = [
    "OperatorPodsRunning",
    "CRDRegistered",
    "WebhookOperational",
    "WebhookRejectsInvalidCR",
    "ControllerReconcilesCR",
]


def run(cluster: FakeCluster, **options: str) -> CheckResult:
    return run_fake_check(cluster, "robust_controller", options={**FAST, **options})


def sub(result: CheckResult, name: str) -> tuple[Outcome, str]:
    s = next(s for s in result.subresults if s.name == name)
    return s.outcome, s.reason


def test_robust_controller_passes_with_a_running_kueue_and_its_webhook() -> None:
    cluster = make_cluster()
    result = run(cluster)
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.name for s in result.subresults] == SUBTESTS
    evidence = {e.name: e.content for e in result.evidence}
    assert json.loads(evidence["operator.json"])["version"] == VERSION
    log = "\n".join(result.log)
    assert "denied by Kueue's webhook vclusterqueue.kb.io" in log
    assert "Active=False/FlavorNotFound" in log
    # the invalid object was only dry-run; the valid ones were removed again
    assert ("create", ("ClusterQueue", "kaic-invalid-run12345", True)) in cluster.calls
    assert not [
        k
        for k, o in cluster.store.items()
        if o.get("metadata", {}).get("labels", {}).get("kaic.io/run-id")
    ]


def test_robust_controller_fails_when_the_webhook_is_down() -> None:
    result = run(make_cluster(Sim(webhook="down")))
    assert result.outcome is Outcome.FAIL
    outcome, reason = sub(result, "WebhookRejectsInvalidCR")
    assert outcome is Outcome.FAIL
    assert "could not call the webhook vclusterqueue.kb.io" in reason
    outcome, reason = sub(result, "ControllerReconcilesCR")
    assert outcome is Outcome.FAIL and "could not be created (unreachable" in reason


def test_robust_controller_fails_when_no_webhook_is_configured() -> None:
    result = run(make_cluster(Sim(webhook="absent")))
    assert sub(result, "WebhookOperational")[0] is Outcome.FAIL
    outcome, reason = sub(result, "WebhookRejectsInvalidCR")
    assert outcome is Outcome.FAIL and "was accepted" in reason


def test_a_webhook_without_ca_bundle_is_not_operational() -> None:
    outcome, reason = sub(run(make_cluster(Sim(ca_bundle=False))), "WebhookOperational")
    assert outcome is Outcome.FAIL and "no caBundle" in reason


def test_robust_controller_fails_when_the_controller_is_not_running() -> None:
    result = run(make_cluster(Sim(controller=False)))
    assert result.outcome is Outcome.FAIL
    outcome, reason = sub(result, "OperatorPodsRunning")
    assert outcome is Outcome.FAIL and "no controller pods" in reason
    outcome, reason = sub(result, "ControllerReconcilesCR")
    assert outcome is Outcome.FAIL and "not reconciled within" in reason


def test_a_controller_outside_pods_counts_when_its_lease_is_renewed() -> None:
    cluster = make_cluster(Sim(controller=False))
    from tests.unit.kueue_sim import _kueue_controller

    cluster.controllers.append(_kueue_controller)
    lease = cluster.add(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "c1f6bfd2.kueue.x-k8s.io", "namespace": "kueue-system"},
            "spec": {"holderIdentity": "host_1", "renewTime": "t0"},
        }
    )
    ticks = iter(range(10**6))

    def renew(c: FakeCluster) -> None:
        lease["spec"]["renewTime"] = f"t{next(ticks)}"
        c.store[("coordination.k8s.io/v1", "Lease", "kueue-system", lease["metadata"]["name"])] = (
            lease
        )

    cluster.controllers.append(renew)
    result = run(cluster)
    assert result.outcome is Outcome.PASS, result.reason
    assert "Lease kueue-system/c1f6bfd2.kueue.x-k8s.io held by host_1 is renewed" in "\n".join(
        result.log
    )


def test_a_stale_lease_does_not_count_as_a_running_controller() -> None:
    cluster = make_cluster(Sim(controller=False))
    cluster.add(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "c1f6bfd2.kueue.x-k8s.io", "namespace": "kueue-system"},
            "spec": {"holderIdentity": "host_1", "renewTime": "t0"},
        }
    )
    outcome, reason = sub(run(cluster), "OperatorPodsRunning")
    assert outcome is Outcome.FAIL and "was not renewed" in reason


def test_robust_controller_fails_when_no_operator_is_installed() -> None:
    result = run(make_cluster(kueue=False))
    assert result.outcome is Outcome.FAIL
    assert "no AI operator that kaic can test is installed" in result.reason


def test_an_operator_without_a_procedure_is_an_error_when_asked_for() -> None:
    cluster = make_cluster()
    cluster.add(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "rayclusters.ray.io"},
        }
    )
    result = run(cluster, operator="kuberay")
    assert result.outcome is Outcome.ERROR and "no automated procedure for KubeRay" in result.reason


def test_a_crd_that_is_not_established_fails_crd_registered() -> None:
    cluster = make_cluster()
    crd = cluster.store[
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, "workloads.kueue.x-k8s.io")
    ]
    crd["status"]["conditions"] = [{"type": "Established", "status": "False", "message": "not yet"}]
    outcome, reason = sub(run(cluster), "CRDRegistered")
    assert outcome is Outcome.FAIL and "workloads.kueue.x-k8s.io not Established" in reason
