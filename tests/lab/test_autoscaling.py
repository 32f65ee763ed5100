"""cluster_autoscaling and pod_autoscaling on the lab, against the real controllers:
Karpenter (kwok provider) grows and shrinks the GPU pool, kube-controller-manager's HPA
controller scales on custom metrics served by the lab's adapter through the aggregator.

PASS where the mechanism works; FAIL "did not scale up" when the NodePool may not grow;
not applicable without a pool label; FAIL when the custom-metrics APIService is missing
or unavailable.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from labtools import require_program, run_check_on_lab

from kaic.model import CheckResult, Outcome

try:
    from kaic.lab import Lab
    from kaic.lab.components import metrics_adapter
    from kaic.lab.components import node_autoscaler as autoscaler
except ImportError:  # pragma: no cover - the lab package without these components
    pytest.skip("the lab's autoscaling components are not available", allow_module_level=True)

pytestmark = pytest.mark.lab

POOL = "kaic.io/accelerator-pool=gpu"


def run(lab: Lab, requirement: str, **options: str) -> CheckResult:
    return run_check_on_lab(lab, requirement, timeout=600, options=options)


@pytest.fixture(scope="module")
def scaling_lab(lab_factory: Any) -> Lab:
    """2 GPU nodes with 1 GPU each, Karpenter on, no custom-metrics adapter."""
    require_program("karpenter")
    lab: Lab = lab_factory(
        nodes=2,
        gpus_per_node=1,
        cpu_nodes=1,
        accelerators="device-plugin",
        with_={"node-autoscaler"},
        without={"metrics-adapter"},
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
    "autoscaler-node-pool-label": POOL,
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


def test_cluster_autoscaling_fails_when_the_pool_may_not_grow(
    pool_limited_to_baseline: Lab,
) -> None:
    result = run(
        pool_limited_to_baseline,
        "cluster_autoscaling",
        **{**FAST_CA, "autoscaler-scale-up-timeout": "30"},
    )
    assert result.outcome is Outcome.FAIL
    assert "ScaleUp: the pool did not scale up within 30s" in result.reason
    assert "2 node(s) (baseline 2)" in result.reason
    assert _changes(result.series[0].points) == [2.0]


def test_cluster_autoscaling_is_not_applicable_without_a_pool_label(scaling_lab: Lab) -> None:
    result = run(scaling_lab, "cluster_autoscaling")
    assert result.outcome is Outcome.SKIP and result.not_applicable
    assert "--autoscaler-node-pool-label" in result.reason


def test_pod_autoscaling_passes_with_the_hpa_controller_and_the_metrics_adapter(lab: Lab) -> None:
    result = run(lab, "pod_autoscaling", **{"hpa-metric-timeout": "90"})
    assert result.outcome is Outcome.PASS, result.reason
    apis = next(e.content for e in result.evidence if e.name == "metrics-apiservices.json")
    assert "kaic lab metrics adapter" in apis
    status = next(e.content for e in result.evidence if e.name == "hpa-status.json")
    assert "ValidMetricFound" in status
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
def adapter_unreachable(lab: Lab) -> Iterator[Lab]:
    """The APIServices point at a port where nothing listens, until the test ends."""
    names = [metrics_adapter.api_service_name(v) for v in metrics_adapter.VERSIONS]
    port = lab.ctx.port("metrics-adapter")

    def set_port(p: int) -> None:
        for n in names:
            lab.ctx.request(
                "PATCH",
                f"/apis/apiregistration.k8s.io/v1/apiservices/{n}",
                {"spec": {"service": {"port": p}}},
                content_type="application/merge-patch+json",
            )

    def available(n: str) -> str:
        obj = lab.ctx.get(f"/apis/apiregistration.k8s.io/v1/apiservices/{n}")
        return next(
            (
                c["status"]
                for c in obj.get("status", {}).get("conditions", [])
                if c["type"] == "Available"
            ),
            "Unknown",
        )

    set_port(1)
    try:
        deadline = time.monotonic() + 60
        while any(available(n) == "True" for n in names) and time.monotonic() < deadline:
            time.sleep(0.5)
        yield lab
    finally:
        set_port(port)
        deadline = time.monotonic() + 60
        while any(available(n) != "True" for n in names) and time.monotonic() < deadline:
            time.sleep(0.5)


def test_pod_autoscaling_fails_when_the_apiservice_is_unavailable(adapter_unreachable: Lab) -> None:
    result = run(adapter_unreachable, "pod_autoscaling")
    assert result.outcome is Outcome.FAIL
    assert "custom.metrics.k8s.io is not Available" in result.reason


def test_karpenter_and_the_metrics_adapter_listen_on_loopback_only(
    scaling_lab: Lab, lab: Lab
) -> None:
    sockets = {**lab.listening(), **scaling_lab.listening()}
    assert sockets.get("node-autoscaler"), "Karpenter's sockets were not found"
    assert sockets.get("metrics-adapter"), "the adapter's sockets were not found"
    for component in ("node-autoscaler", "metrics-adapter"):
        for addr, port in sockets[component]:
            assert addr.startswith("127.") or addr == "::1", f"{component} listens on {addr}:{port}"
