"""cluster_autoscaling and pod_autoscaling on the lab, against the real controllers:
Karpenter (kwok provider) grows and shrinks the GPU pool; kube-controller-manager's HPA
controller scales on a per-pod metric that the real Prometheus scrapes from the test
pods and the real prometheus-adapter serves through the aggregator.

PASS where the mechanism works; FAIL "did not scale up" when the NodePool may not grow;
not applicable without a pool label; FAIL when no custom-metrics adapter is installed,
when the adapter is down, and when Prometheus has not collected the metric.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from labtools import MONITORING_LAB, require_program, run_check_on_lab, sub

from kaic.lab import proc as lab_proc
from kaic.model import CheckResult, Outcome

try:
    from kaic.lab import Lab
    from kaic.lab.components import node_autoscaler as autoscaler
    from kaic.lab.components import prometheus_adapter
    from kaic.lab.components.nodes import AUTOSCALED_POOL_OPTIONS
    from kaic.lab.components.prometheus import set_prometheus_scraping
except ImportError:  # pragma: no cover - the lab package without these components
    pytest.skip("the lab's autoscaling components are not available", allow_module_level=True)

pytestmark = pytest.mark.lab


def run(lab: Lab, requirement: str, **options: str) -> CheckResult:
    return run_check_on_lab(lab, requirement, timeout=600, options=options)


@pytest.fixture(scope="module")
def scaling_lab(lab_factory: Any) -> Lab:
    """2 GPU nodes with 1 GPU each (the second one the autoscaled pool's, tainted),
    Karpenter on, no custom-metrics adapter."""
    require_program("karpenter")
    lab: Lab = lab_factory(
        nodes=2,
        gpus_per_node=1,
        cpu_nodes=1,
        accelerators="device-plugin",
        with_={"node-autoscaler"},
    )
    return lab


@pytest.fixture
def pool_limited_to_baseline(scaling_lab: Lab) -> Iterator[Lab]:
    """The NodePool may add no node while the test runs (max size = baseline N)."""
    path = f"/apis/karpenter.sh/v1/nodepools/{autoscaler.NODEPOOL}"
    patch = {"spec": {"limits": {autoscaler.GPU_RESOURCE: "0"}}}
    scaling_lab.ctx.request("PATCH", path, patch, content_type="application/merge-patch+json")
    try:
        yield scaling_lab
    finally:
        scaling_lab.ctx.request(
            "PATCH",
            path,
            {"spec": {"limits": {autoscaler.GPU_RESOURCE: str(autoscaler.DEFAULT_GPU_LIMIT)}}},
            content_type="application/merge-patch+json",
        )


FAST_CA = {
    **AUTOSCALED_POOL_OPTIONS,
    "autoscaler-stability-window": "10",
    "autoscaler-pending-timeout": "60",
    "autoscaler-scale-up-timeout": "120",
    "autoscaler-scale-down-timeout": "180",
}


def test_cluster_autoscaling_passes_with_karpenter_scaling_the_gpu_pool(scaling_lab: Lab) -> None:
    result = run(scaling_lab, "cluster_autoscaling", **FAST_CA)
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.outcome for s in result.subresults] == [Outcome.PASS] * 5
    # the report's phase chart: the pool's size went N -> N+1 -> N
    (pool,) = result.series
    n = pool.target
    assert n is not None and _changes(pool.points) == [n, n + 1, n]
    # Karpenter's node carried the NodePool's taint: the pool stayed dedicated
    phases = json.loads(next(e.content for e in result.evidence if e.name == "phases.json"))
    assert next(p for p in phases if p["phase"] == "scale-up")["new_node_tainted"] is True


def test_cluster_autoscaling_names_the_taint_option_when_the_pool_is_tainted(
    scaling_lab: Lab,
) -> None:
    options = {k: v for k, v in FAST_CA.items() if k != "autoscaler-pool-taint"}
    result = run(scaling_lab, "cluster_autoscaling", **options)
    assert result.outcome is Outcome.ERROR
    assert "kaic-gpu-1 (kaic.io/autoscaled-pool=true:NoSchedule)" in result.reason
    assert "--autoscaler-pool-taint" in result.reason


def test_cluster_autoscaling_fails_when_the_pool_may_not_grow(
    pool_limited_to_baseline: Lab,
) -> None:
    result = run(
        pool_limited_to_baseline,
        "cluster_autoscaling",
        # NOTE: Karpenter adds a node within seconds where the pool may grow (the
        # test before); 15 s without one is a pool that did not grow
        **{**FAST_CA, "autoscaler-scale-up-timeout": "15"},
    )
    assert result.outcome is Outcome.FAIL
    assert "ScaleUp: the pool did not scale up within 15s" in result.reason
    assert "1 node(s) (baseline 1)" in result.reason
    assert _changes(result.series[0].points) == [1.0]


def test_cluster_autoscaling_is_not_applicable_without_a_pool_label(scaling_lab: Lab) -> None:
    result = run(scaling_lab, "cluster_autoscaling")
    assert result.outcome is Outcome.SKIP and result.not_applicable
    assert "--autoscaler-node-pool-label" in result.reason


@pytest.fixture(scope="module")
def metrics_lab(lab_factory: Any) -> Lab:
    """The real Prometheus and prometheus-adapter on a small GPU lab."""
    require_program("prometheus")
    require_program("prometheus-adapter")
    lab: Lab = lab_factory(**MONITORING_LAB)
    return lab


HPA_FAST = {"hpa-metric-timeout": "120"}


def test_pod_autoscaling_passes_through_prometheus_and_prometheus_adapter(
    metrics_lab: Lab,
) -> None:
    result = run(metrics_lab, "pod_autoscaling", **HPA_FAST)
    assert result.outcome is Outcome.PASS, result.reason
    apis = next(e.content for e in result.evidence if e.name == "metrics-apiservices.json")
    assert "prometheus-adapter" in apis
    served = next(e.content for e in result.evidence if e.name == "metric-values-initial.json")
    assert '"kaic_hpa_test_metric"' in served and '"kind": "MetricValueList"' in served
    status = next(e.content for e in result.evidence if e.name == "hpa-status.json")
    assert "ValidMetricFound" in status
    assert "scaled up to 2" in sub(result, "ScaleUp").log[-1]
    assert sub(result, "ScaleDown").outcome is Outcome.PASS
    # the report's phase charts: replicas up to 2 and back to 1; the metric above target
    series = {(s.chart, s.name): s for s in result.series}
    desired = [v for v in _changes(series[("replicas", "desiredReplicas")].points) if v]
    assert desired == [1.0, 2.0, 1.0]
    read = series[("custom metric", "average the HPA reads")]
    assert read.target is not None and max(v for _, v in read.points) > read.target


def _changes(points: tuple[tuple[float, float], ...]) -> list[float]:
    """The successive values of a sampled series (``1 → 2 → 1``)."""
    out: list[float] = []
    for _, v in points:
        if not out or out[-1] != v:
            out.append(v)
    return out


def test_pod_autoscaling_fails_without_a_custom_metrics_apiservice(scaling_lab: Lab) -> None:
    result = run(scaling_lab, "pod_autoscaling")
    assert result.outcome is Outcome.FAIL
    assert "no APIService for custom.metrics.k8s.io" in result.reason


@pytest.fixture
def adapter_down(metrics_lab: Lab) -> Iterator[Lab]:
    """The prometheus-adapter process is killed (its APIServices stay registered) until
    the test ends; then ``up`` starts it again."""
    names = [prometheus_adapter.api_service_name(v) for v in prometheus_adapter.VERSIONS]

    def available(n: str) -> str:
        obj = metrics_lab.ctx.get(f"/apis/apiregistration.k8s.io/v1/apiservices/{n}")
        return next(
            (
                c["status"]
                for c in obj.get("status", {}).get("conditions", [])
                if c["type"] == "Available"
            ),
            "Unknown",
        )

    pids = metrics_lab.pids()["prometheus-adapter"]
    assert pids, "prometheus-adapter is not running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    try:
        deadline = time.monotonic() + 90
        while any(available(n) == "True" for n in names) and time.monotonic() < deadline:
            time.sleep(0.5)
        yield metrics_lab
    finally:
        metrics_lab.up()


def test_pod_autoscaling_fails_when_the_adapter_is_down(adapter_down: Lab) -> None:
    result = run(adapter_down, "pod_autoscaling")
    assert result.outcome is Outcome.FAIL
    assert "APIService v1beta2.custom.metrics.k8s.io is not Available" in result.reason
    assert "its adapter, prometheus-adapter behind Service monitoring/prometheus-adapter" in (
        result.reason
    )
    assert "prometheus-adapter" in next(
        e.content for e in result.evidence if e.name == "metrics-apiservices.json"
    )


def test_pod_autoscaling_fails_when_prometheus_collects_nothing(metrics_lab: Lab) -> None:
    """The adapter serves only what Prometheus scraped: no scrape, no metric."""
    set_prometheus_scraping(metrics_lab.ctx, False)
    try:
        result = run(metrics_lab, "pod_autoscaling", **{"hpa-metric-timeout": "30"})
    finally:
        set_prometheus_scraping(metrics_lab.ctx, True)
    assert result.outcome is Outcome.FAIL
    assert "did not serve metric kaic_hpa_test_metric for the test pods within 30s" in (
        sub(result, "CustomMetricServed").reason
    )


def test_karpenter_and_the_metrics_chain_listen_on_and_dial_loopback_only(
    scaling_lab: Lab, metrics_lab: Lab
) -> None:
    sockets = {**metrics_lab.listening(), **scaling_lab.listening()}
    assert sockets.get("node-autoscaler"), "Karpenter's sockets were not found"
    assert sockets.get("prometheus-adapter"), "prometheus-adapter's sockets were not found"
    for component in ("node-autoscaler", "prometheus-adapter", "prometheus", "httpd"):
        for addr, port in sockets.get(component, []):
            assert addr.startswith("127.") or addr == "::1", f"{component} listens on {addr}:{port}"
    pids = metrics_lab.pids()
    dialled = 0
    for component in ("prometheus-adapter", "prometheus", "httpd"):
        for pid in pids[component]:
            for _local, remote in lab_proc.connections(pid):
                dialled += 1
                assert remote[0].startswith("127.") or remote[0] == "::1", (
                    f"{component} is connected to {remote}"
                )
    assert dialled, "no connection of the metrics chain was found"
