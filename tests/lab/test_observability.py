"""accelerator_metrics and ai_service_metrics on the lab, through the real cluster adapter.

accelerator_metrics: the lab's simulated DCGM exporter (component ``dcgm-exporter``) is
found and scraped by port-forward through the apiserver and kwok; PASS, and FAIL naming
the GPU when the exporter leaves out one GPU's memory series.

ai_service_metrics: a real Prometheus (component ``prometheus``, built from its Go
module) discovers the sample pod through the apiserver and scrapes it at its loopback
pod IP (served by the ``porter`` component); PASS, and FAIL when Prometheus collects
nothing or when the lab has no monitoring system at all.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from labtools import MONITORING_LAB, require_program, run_check_on_lab, sub, wait_for

from kaic.lab.components import prometheus as prom
from kaic.lab.sims import dcgm
from kaic.model import CheckResult, Outcome

try:
    from kaic.lab import Lab
    from kaic.lab.components.dcgm_exporter import dcgm_fault_file
    from kaic.lab.components.nodes import gpu_uuid
    from kaic.lab.components.prometheus import set_prometheus_scraping
except ImportError:  # pragma: no cover - the lab package without its cluster code
    pytest.skip("kaic.lab.Lab is not available", allow_module_level=True)

pytestmark = pytest.mark.lab


def run(lab: Lab, requirement: str, timeout: float = 240, **options: str) -> CheckResult:
    return run_check_on_lab(lab, requirement, timeout=timeout, options=options)


# -- accelerator_metrics -------------------------------------------------------------------


@pytest.fixture
def dcgm_faults(lab: Lab) -> Iterator[Any]:
    path = dcgm_fault_file(lab.ctx)
    yield lambda *gpus: dcgm.write_faults(path, omit_memory=gpus)
    dcgm.write_faults(path)


def test_accelerator_metrics_passes_with_the_simulated_dcgm_exporter(lab: Lab) -> None:
    result = run(lab, "accelerator_metrics")
    assert result.outcome is Outcome.PASS, result.reason
    expected = lab.options.nodes * lab.options.gpus_per_node
    assert f"all {expected} accelerators" in " ".join(sub(result, "PerAcceleratorMemoryMetric").log)
    endpoints = next(e for e in result.evidence if e.name == "endpoints.txt").content
    assert endpoints.count("gpu-operator/nvidia-dcgm-exporter-") == lab.options.nodes, endpoints
    assert ":9400/metrics" in endpoints


def test_the_dcgm_exporter_listens_at_its_pods_ips_in_the_lab_network(lab: Lab) -> None:
    pods = lab.ctx.get("/api/v1/namespaces/gpu-operator/pods")["items"]
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == lab.options.nodes
    assert all(ipaddress.ip_address(ip) in lab.ctx.net.layout.pod_cidr for ip in ips), ips
    assert set(lab.listening()["dcgm-exporter"]) == {(ip, dcgm.PORT) for ip in ips}
    # the host reaches them through the lab's veth, as kwok's port-forward does
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for p in pods:
        with opener.open(f"http://{p['status']['podIP']}:{dcgm.PORT}/metrics", timeout=10) as r:
            assert f'Hostname="{p["spec"]["nodeName"]}"' in r.read().decode()


def test_accelerator_metrics_fails_naming_the_gpu_without_memory_metrics(
    lab: Lab, dcgm_faults: Any
) -> None:
    dcgm_faults("kaic-gpu-1/3")
    result = run(lab, "accelerator_metrics")
    assert result.outcome is Outcome.FAIL
    mem = sub(result, "PerAcceleratorMemoryMetric")
    total = lab.options.nodes * lab.options.gpus_per_node
    assert f"1 of {total} accelerators have none" in mem.reason
    assert "kaic-gpu-1/" in mem.reason and "index 3" in mem.reason
    if lab.options.dra:
        assert gpu_uuid(lab.name, "kaic-gpu-1", 3) in mem.reason
    assert sub(result, "PerAcceleratorUtilizationMetric").outcome is Outcome.PASS


# -- ai_service_metrics ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus_lab(lab_factory: Any) -> Lab:
    require_program("prometheus")
    require_program("prometheus-adapter")
    lab: Lab = lab_factory(**MONITORING_LAB)
    return lab


def _prom_api(lab: Lab, path: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://127.0.0.1:{lab.ctx.port('prometheus')}{path}"
    with opener.open(url, timeout=10) as r:
        return json.loads(r.read())["data"]


def test_ai_service_metrics_passes_with_the_lab_prometheus(prometheus_lab: Lab) -> None:
    result = run(prometheus_lab, "ai_service_metrics")
    assert result.outcome is Outcome.PASS, result.reason
    log = " ".join(sub(result, "DetectMonitoringSystem").log)
    assert "Prometheus server monitoring/prometheus-0" in log and "3.16.0" in log
    ev = json.loads(next(e for e in result.evidence if e.name == "query-results.json").content)
    assert ev["expected"] == ev["queried"]


def test_lab_prometheus_is_a_statefulset_pod_off_the_gpu_pool(prometheus_lab: Lab) -> None:
    pod = prometheus_lab.ctx.get("/api/v1/namespaces/monitoring/pods/prometheus-0")
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    assert pod["spec"]["nodeName"].startswith("kaic-cpu-")


def test_lab_prometheus_scrapes_only_loopback_and_lab_network_targets(prometheus_lab: Lab) -> None:
    run(prometheus_lab, "ai_service_metrics")  # leaves at least one target behind in SD
    data = _prom_api(prometheus_lab, "/api/v1/targets?state=any")
    net = prometheus_lab.ctx.net
    hosts = []
    for t in data["activeTargets"]:
        host = urllib.parse.urlsplit(t["scrapeUrl"]).hostname
        assert host and (ipaddress.ip_address(host).is_loopback or net.contains(host)), t
        hosts.append(host)
    assert any(net.contains(h) for h in hosts), hosts  # the sample pod, at its pod IP
    cfg = _prom_api(prometheus_lab, "/api/v1/status/config")["yaml"]
    assert prom.LOOPBACK_ADDRESS in cfg and net.address_regex() in cfg


def test_ai_service_metrics_fails_when_prometheus_collects_nothing(prometheus_lab: Lab) -> None:
    set_prometheus_scraping(prometheus_lab.ctx, False)
    try:
        result = run(prometheus_lab, "ai_service_metrics", **{"service-metrics-timeout": "10"})
    finally:
        set_prometheus_scraping(prometheus_lab.ctx, True)
    assert result.outcome is Outcome.FAIL
    reason = sub(result, "MetricsCollected").reason
    assert "not collected within 10s" in reason and "no active scrape target" in reason


def test_ai_service_metrics_fails_on_a_lab_without_a_monitoring_system(lab: Lab) -> None:
    assert "prometheus" not in lab.ctx.enabled
    result = run(lab, "ai_service_metrics")
    assert result.outcome is Outcome.FAIL
    assert "no monitoring system found" in sub(result, "DetectMonitoringSystem").reason


SERVICE_ENDPOINTS = {"service-metrics-collection": "service-endpoints"}


def test_ai_service_metrics_passes_through_the_services_endpointslices(
    prometheus_lab: Lab,
) -> None:
    result = run(prometheus_lab, "ai_service_metrics", **SERVICE_ENDPOINTS)
    assert result.outcome is Outcome.PASS, result.reason
    slices = json.loads(next(e for e in result.evidence if e.name == "endpointslices.json").content)
    ips = [a for sl in slices for ep in sl["endpoints"] for a in ep["addresses"]]
    assert ips and all(prometheus_lab.ctx.net.contains(ip) for ip in ips), ips
    # the real endpointslice controller of kube-controller-manager made the slice
    assert all(
        sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
        == "endpointslice-controller.k8s.io"
        for sl in slices
    )
    collected = " ".join(sub(result, "MetricsCollected").log)
    assert "through EndpointSlice kaic-sample-" in collected and f":{8080}/metrics" in collected


def test_ai_service_metrics_fails_when_the_services_endpoints_are_not_scraped(
    prometheus_lab: Lab,
) -> None:
    set_prometheus_scraping(prometheus_lab.ctx, True, endpoints=False)
    try:
        result = run(
            prometheus_lab,
            "ai_service_metrics",
            **SERVICE_ENDPOINTS,
            **{"service-metrics-timeout": "10"},
        )
        pods_only = run(prometheus_lab, "ai_service_metrics")  # annotated pods still are
    finally:
        set_prometheus_scraping(prometheus_lab.ctx, True)
    assert result.outcome is Outcome.FAIL
    assert "not collected within 10s" in sub(result, "MetricsCollected").reason
    assert pods_only.outcome is Outcome.PASS, pods_only.reason


def test_lab_prometheus_scrapes_the_dcgm_exporters_at_their_pod_ips(prometheus_lab: Lab) -> None:
    pods = prometheus_lab.ctx.get("/api/v1/namespaces/gpu-operator/pods")["items"]
    want = {f"{p['status']['podIP']}:{dcgm.PORT}" for p in pods}
    q = urllib.parse.quote("count by (instance, job) (DCGM_FI_DEV_GPU_UTIL)", safe="")

    def scraped() -> set[str] | None:
        got = {
            r["metric"]["instance"]
            for r in _prom_api(prometheus_lab, f"/api/v1/query?query={q}")["result"]
        }
        return got if got == want else None

    assert want and wait_for(scraped, timeout=60, what="DCGM series in Prometheus") == want
    result = _prom_api(prometheus_lab, f"/api/v1/query?query={q}")["result"]
    assert {r["metric"]["job"] for r in result} == {prom.SERVICE_ENDPOINTS_JOB}
