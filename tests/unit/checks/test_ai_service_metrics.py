"""ai_service_metrics against a fake cluster."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kaic.checks import ai_service_metrics as m
from kaic.checks.base import CheckContext, run_check
from kaic.cluster.api import KubeObject
from kaic.errors import ClusterError
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, fake_check_context


def _ctx(
    fc: FakeCluster, req: str, options: dict[str, str | None] | None = None, timeout: float = 30.0
) -> CheckContext:
    return fake_check_context(
        fc, req, options=options, timeout=timeout, run_id="run1", namespace="kaic-test"
    )


def _sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


class FakePrometheus:
    """A Prometheus query API over the fake cluster: it 'scrapes' sample pods when
    ``collects(pod)`` says the monitoring config covers them."""

    def __init__(self, fc: FakeCluster, collects: Any) -> None:
        self.fc, self.collects = fc, collects
        self.queries: list[str] = []

    def handle(self, path: str) -> str:
        url = urllib.parse.urlsplit(path)
        if url.path == "/api/v1/status/buildinfo":
            return json.dumps({"status": "success", "data": {"version": "3.16.0"}})
        if url.path == "/api/v1/status/config":
            return json.dumps({"status": "success", "data": {"yaml": "scrape_configs: []"}})
        if url.path == "/api/v1/targets":
            return json.dumps(
                {"status": "success", "data": {"activeTargets": [], "droppedTargets": []}}
            )
        assert url.path == "/api/v1/query", path
        q = urllib.parse.parse_qs(url.query)["query"][0]
        if q == "vector(1)":
            return json.dumps(
                {
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [{"metric": {}, "value": [1.0, "1"]}],
                    },
                }
            )
        self.queries.append(q)
        metric, token = q.split("{")[0], q.split('"')[1]
        for pod in self.fc.list("v1", "Pod"):
            if pod["status"].get("phase") != "Running" or not self.collects(pod):
                continue
            env = pod["spec"]["containers"][0]["env"][0]["value"]
            for line in env.splitlines():
                if line.startswith(metric + "{") and token in line and 'le="' not in line:
                    return json.dumps(
                        {
                            "status": "success",
                            "data": {
                                "resultType": "vector",
                                "result": [
                                    {
                                        "metric": {"__name__": metric},
                                        "value": [1.0, line.rsplit(" ", 1)[1]],
                                    }
                                ],
                            },
                        }
                    )
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})


def _run_pods(fc: FakeCluster) -> None:
    for (_, kind, _, _), obj in list(fc.store.items()):
        if kind == "Pod" and not obj.get("status", {}).get("phase"):
            obj["status"] = {"phase": "Running", "podIP": "127.64.0.77"}


def _annotated(pod: KubeObject) -> bool:
    return (pod["metadata"].get("annotations") or {}).get("prometheus.io/scrape") == "true"


def _prom_cluster(collects: Any = _annotated) -> tuple[FakeCluster, FakePrometheus]:
    fc = FakeCluster()
    fc.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "prometheus-0",
                "namespace": "monitoring",
                "labels": {"app.kubernetes.io/name": "prometheus"},
            },
            "spec": {
                "containers": [
                    {"name": "prometheus", "ports": [{"name": "web", "containerPort": 9090}]}
                ]
            },
            "status": {"phase": "Running", "podIP": "127.64.0.2"},
        }
    )
    prom = FakePrometheus(fc, collects)
    fc.controllers.append(_run_pods)

    def http(ns: str, pod: str, port: int, path: str) -> str:
        assert (ns, pod, port) == ("monitoring", "prometheus-0", 9090)
        return prom.handle(path)

    fc.http_handler = http
    return fc, prom


def test_ai_service_metrics_passes_when_annotation_based_prometheus_collects_the_sample() -> None:
    fc, prom = _prom_cluster()
    result = run_check(_ctx(fc, "ai_service_metrics"))
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.name for s in result.subresults] == [
        "DetectMonitoringSystem",
        "DeploySampleWorkload",
        "MetricsCollected",
    ]
    assert any("kaic_sample_inference_requests_total" in q for q in prom.queries)
    # the sample pod and its Service were created with scrape annotations, then removed
    created = [c[1] for c in fc.calls if c[0] == "create"]
    assert {k for k, _, _ in created} == {"Pod", "Service"}
    assert not [k for k in fc.store if k[1] in ("Pod", "Service") and k[2] == "kaic-test"]
    ev = json.loads(next(e for e in result.evidence if e.name == "query-results.json").content)
    assert ev["expected"] == ev["queried"]


def test_ai_service_metrics_fails_when_nothing_collects_the_sample() -> None:
    fc, _ = _prom_cluster(collects=lambda pod: False)
    result = run_check(_ctx(fc, "ai_service_metrics", {"service-metrics-timeout": "3"}))
    assert result.outcome is Outcome.FAIL
    reason = _sub(result, "MetricsCollected").reason
    assert "not collected within 3s" in reason and "no active scrape target" in reason
    assert not [k for k in fc.store if k[1] == "Pod" and k[2] == "kaic-test"]


def test_ai_service_metrics_fails_when_no_monitoring_system_exists() -> None:
    result = run_check(_ctx(FakeCluster(), "ai_service_metrics"))
    assert result.outcome is Outcome.FAIL
    assert "no monitoring system found" in result.reason


def test_ai_service_metrics_fails_when_collected_values_differ() -> None:
    fc, prom = _prom_cluster()
    orig = prom.handle

    def wrong(path: str) -> str:
        out = orig(path)
        return out.replace('"value": [1.0, "', '"value": [1.0, "9')

    prom.handle = wrong  # type: ignore[method-assign]
    result = run_check(_ctx(fc, "ai_service_metrics"))
    assert result.outcome is Outcome.FAIL
    assert "differ from what the sample served" in result.reason


def _operator_cluster() -> tuple[FakeCluster, FakePrometheus]:
    fc = FakeCluster()
    fc.serve(
        m.PROM_OPERATOR,
        ("podmonitors", "PodMonitor", True),
        ("servicemonitors", "ServiceMonitor", True),
        ("prometheuses", "Prometheus", True),
    )
    fc.add(
        {
            "apiVersion": m.PROM_OPERATOR,
            "kind": "Prometheus",
            "metadata": {"name": "k8s", "namespace": "monitoring"},
            "spec": {
                "podMonitorSelector": {"matchLabels": {"release": "kps"}},
                "podMonitorNamespaceSelector": {},
            },
        }
    )
    fc.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "prometheus-k8s-0",
                "namespace": "monitoring",
                "labels": {"operator.prometheus.io/name": "k8s"},
            },
            "spec": {
                "containers": [
                    {"name": "prometheus", "ports": [{"name": "web", "containerPort": 9090}]}
                ]
            },
            "status": {"phase": "Running"},
        }
    )

    def selected(pod: KubeObject) -> bool:
        for pm in fc.list(m.PROM_OPERATOR, "PodMonitor"):
            if pm["metadata"]["labels"].get("release") != "kps":
                continue
            sel = pm["spec"]["selector"]["matchLabels"]
            if all(pod["metadata"]["labels"].get(k) == v for k, v in sel.items()):
                return True
        return False

    prom = FakePrometheus(fc, selected)
    fc.controllers.append(_run_pods)
    _with_endpointslices(fc)
    fc.http_handler = lambda ns, pod, port, path: prom.handle(path)
    return fc, prom


def _endpointslices(fc: FakeCluster) -> None:
    """The endpointslice controller: one slice per Service, listing its Running pods."""
    for svc in fc.list("v1", "Service"):
        sel = svc["spec"].get("selector") or {}
        ns, name = svc["metadata"].get("namespace"), svc["metadata"]["name"]
        pods = [
            p
            for p in fc.list("v1", "Pod", ns)
            if sel
            and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())
            and p.get("status", {}).get("podIP")
        ]
        fc.add(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-abcde",
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": [p["status"]["podIP"]],
                        "conditions": {"ready": True},
                        "targetRef": {"kind": "Pod", "name": p["metadata"]["name"]},
                    }
                    for p in pods
                ],
                "ports": [{"name": "metrics", "port": m.SAMPLE_PORT}],
            }
        )


def _with_endpointslices(fc: FakeCluster) -> None:
    fc.serve("discovery.k8s.io/v1", ("endpointslices", "EndpointSlice", True))
    fc.controllers.append(_endpointslices)


def test_ai_service_metrics_uses_a_podmonitor_the_operator_selects() -> None:
    fc, _ = _operator_cluster()
    result = run_check(_ctx(fc, "ai_service_metrics"))
    assert result.outcome is Outcome.PASS, result.reason
    created = [c[1][0] for c in fc.calls if c[0] == "create"]
    assert created == ["Pod", "PodMonitor"]
    assert (
        "delete",
        (
            "PodMonitor",
            created
            and next(c[1][1] for c in fc.calls if c[0] == "create" and c[1][0] == "PodMonitor"),
            "kaic-test",
        ),
    ) in fc.calls


@pytest.fixture
def local_prometheus() -> Iterator[tuple[str, FakePrometheus, FakeCluster]]:
    fc = FakeCluster()
    fc.controllers.append(_run_pods)
    prom = FakePrometheus(fc, _annotated)

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = prom.handle(self.path).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", prom, fc
    finally:
        srv.shutdown()


def test_ai_service_metrics_queries_a_given_loopback_prometheus_url(
    local_prometheus: tuple[str, FakePrometheus, FakeCluster],
) -> None:
    url, prom, fc = local_prometheus
    result = run_check(_ctx(fc, "ai_service_metrics", {"prometheus-url": url}))
    assert result.outcome is Outcome.PASS, result.reason
    assert prom.queries


def test_ai_service_metrics_rejects_an_unknown_collection_method() -> None:
    fc, _ = _prom_cluster()
    result = run_check(
        _ctx(fc, "ai_service_metrics", {"service-metrics-collection": "carrier-pigeon"})
    )
    assert result.outcome is Outcome.ERROR
    assert "--service-metrics-collection" in result.reason


def test_ai_service_metrics_is_an_error_when_the_query_api_does_not_answer() -> None:
    fc, _ = _prom_cluster()

    def down(ns: str, pod: str, port: int, path: str) -> str:
        raise ClusterError("port-forward failed: connection refused")

    fc.http_handler = down
    result = run_check(_ctx(fc, "ai_service_metrics"))
    assert result.outcome is Outcome.ERROR
    assert "does not answer" in result.reason
    assert [c for c in fc.calls if c[0] == "create"] == []


def test_ai_service_metrics_uses_a_servicemonitor_in_the_prometheus_namespace() -> None:
    fc, _ = _operator_cluster()
    prom = fc.get(m.PROM_OPERATOR, "Prometheus", "k8s", "monitoring")
    assert prom is not None
    # only ServiceMonitors are selected, and only from the Prometheus' own namespace
    prom["spec"] = {"serviceMonitorSelector": {"matchLabels": {"team": "ml"}}}
    fc.add(prom)

    def selected(pod: KubeObject) -> bool:
        for sm in fc.list(m.PROM_OPERATOR, "ServiceMonitor", "monitoring"):
            if sm["metadata"]["labels"].get("team") == "ml" and sm["spec"]["namespaceSelector"] == {
                "matchNames": [pod["metadata"]["namespace"]]
            }:
                return True
        return False

    fc.http_handler = lambda ns, pod, port, path: FakePrometheus(fc, selected).handle(path)
    result = run_check(_ctx(fc, "ai_service_metrics"))
    assert result.outcome is Outcome.PASS, result.reason
    kinds = [c[1][0] for c in fc.calls if c[0] == "create"]
    assert kinds == ["Pod", "Service", "ServiceMonitor"]
    assert fc.list(m.PROM_OPERATOR, "ServiceMonitor") == []  # cleaned up


def _service_annotated(fc: FakeCluster) -> Any:
    """What a Prometheus with a role-endpointslice job collects: pods that an annotated
    Service's EndpointSlice lists."""

    def collects(pod: KubeObject) -> bool:
        for sl in fc.list("discovery.k8s.io/v1", "EndpointSlice", pod["metadata"]["namespace"]):
            svc = fc.get(
                "v1",
                "Service",
                sl["metadata"]["labels"]["kubernetes.io/service-name"],
                sl["metadata"]["namespace"],
            )
            if not svc or not _annotated(svc):
                continue
            if any(
                (ep.get("targetRef") or {}).get("name") == pod["metadata"]["name"]
                for ep in sl["endpoints"]
            ):
                return True
        return False

    return collects


def _targets(fc: FakeCluster, role: str) -> str:
    active = []
    for pod in fc.list("v1", "Pod", "kaic-test"):
        d = {"__meta_kubernetes_pod_name": pod["metadata"]["name"]}
        if role == "endpointslice":
            d |= {
                "__meta_kubernetes_endpointslice_name": f"{pod['metadata']['name']}-abcde",
                "__meta_kubernetes_service_name": pod["metadata"]["name"],
                "__meta_kubernetes_namespace": "kaic-test",
            }
        active.append(
            {
                "discoveredLabels": d,
                "labels": {"pod": pod["metadata"]["name"]},
                "scrapeUrl": f"http://{pod['status'].get('podIP')}:8080/metrics",
                "health": "up",
            }
        )
    return json.dumps({"status": "success", "data": {"activeTargets": active}})


def _endpoints_prometheus(role: str, collects: Any = None) -> FakeCluster:
    fc, _ = _prom_cluster()
    _with_endpointslices(fc)
    prom = FakePrometheus(fc, collects or _service_annotated(fc))

    def http(ns: str, pod: str, port: int, path: str) -> str:
        if path.startswith("/api/v1/targets"):
            return _targets(fc, role)
        return prom.handle(path)

    fc.http_handler = http
    return fc


SERVICE_ENDPOINTS = {"service-metrics-collection": "service-endpoints"}


def test_service_endpoints_passes_when_the_services_endpointslice_is_scraped() -> None:
    fc = _endpoints_prometheus("endpointslice")
    result = run_check(_ctx(fc, "ai_service_metrics", SERVICE_ENDPOINTS))
    assert result.outcome is Outcome.PASS, result.reason
    created = {c[1][0]: c for c in fc.calls if c[0] == "create"}
    assert set(created) == {"Pod", "Service"}
    deploy = " ".join(_sub(result, "DeploySampleWorkload").log)
    assert "EndpointSlice kaic-sample-" in deploy and "lists the pod IP 127.64.0.77" in deploy
    collected = " ".join(_sub(result, "MetricsCollected").log)
    assert "through EndpointSlice kaic-sample-" in collected
    assert any(e.name == "endpointslices.json" for e in result.evidence)


def test_service_endpoints_annotates_the_service_and_not_the_pod() -> None:
    fc = _endpoints_prometheus("endpointslice")
    seen: list[KubeObject] = []
    fc.on_create.append(lambda obj, _dry: seen.append(obj))
    run_check(_ctx(fc, "ai_service_metrics", SERVICE_ENDPOINTS))
    pod = next(o for o in seen if o["kind"] == "Pod")
    svc = next(o for o in seen if o["kind"] == "Service")
    assert not _annotated(pod)
    assert svc["metadata"]["annotations"]["prometheus.io/port"] == str(m.SAMPLE_PORT)


def test_service_endpoints_fails_when_only_annotated_pods_are_scraped() -> None:
    fc = _endpoints_prometheus("pod", collects=_annotated)
    result = run_check(
        _ctx(fc, "ai_service_metrics", {**SERVICE_ENDPOINTS, "service-metrics-timeout": "3"})
    )
    assert result.outcome is Outcome.FAIL
    assert "not collected within 3s" in _sub(result, "MetricsCollected").reason


def test_service_endpoints_fails_when_collected_but_not_through_the_endpoints() -> None:
    fc = _endpoints_prometheus(
        "pod", collects=lambda pod: pod["metadata"]["namespace"] == "kaic-test"
    )
    result = run_check(_ctx(fc, "ai_service_metrics", SERVICE_ENDPOINTS))
    assert result.outcome is Outcome.FAIL
    reason = _sub(result, "MetricsCollected").reason
    assert "not through its Service's endpoints" in reason


def test_service_endpoints_fails_when_the_endpointslice_never_lists_the_pod() -> None:
    fc = _endpoints_prometheus("endpointslice")
    fc.controllers.remove(_endpointslices)
    result = run_check(_ctx(fc, "ai_service_metrics", SERVICE_ENDPOINTS, timeout=5.0))
    assert result.outcome is Outcome.FAIL
    assert "do not list the sample pod's IP" in _sub(result, "DeploySampleWorkload").reason
