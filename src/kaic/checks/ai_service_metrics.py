"""ai_service_metrics (TestAIServiceMetrics): the platform's monitoring system discovers
and collects the Prometheus-format metrics of a workload.

Owns: detecting the monitoring system (Prometheus Operator, Google managed Prometheus,
a Prometheus server, an OpenTelemetry collector; or the ``--prometheus-url`` /
``--prometheus-service`` given), the sample workload with run-unique values and its
collection config (PodMonitor, ServiceMonitor, PodMonitoring or scrape annotations), and
querying the values back. Must not import the Kubernetes client, and never dials a pod
IP: the query API is reached through ``ClusterAPI.http_get`` (a port-forward through
the apiserver); only a ``--prometheus-url`` that the user gives is dialled directly.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from kaic.checks.base import CheckContext, CheckOption, Permission, Resource, Subtest, check, shared
from kaic.checks.endpoints import container_ports, http_get_url, pod_words, service_pods
from kaic.checks.pods import restricted_pod
from kaic.checks.predicates import pod_running
from kaic.cluster.api import KubeObject, name_of, namespace_of
from kaic.errors import ClusterError, KaicError, UsageError

SAMPLE_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
SAMPLE_PORT = 8080
SAMPLE_LABEL = "kaic.io/sample-metrics"
PROM_OPERATOR = "monitoring.coreos.com/v1"
GMP = "monitoring.googleapis.com/v1"
OTEL_OPERATOR = "opentelemetry.io/v1beta1"
METHODS = (
    "auto",
    "podmonitor",
    "servicemonitor",
    "podmonitoring",
    "annotations",
    "service-endpoints",
    "none",
)
SERVICE_METHODS = ("servicemonitor", "service-endpoints")
"""Methods that collect through the sample Service's endpoints (its EndpointSlices)."""


@dataclass
class Monitoring:
    """The monitoring system found: what it is, how to query it, how to configure it."""

    system: str
    method: str
    query_url: str | None = None
    query_pod: tuple[str, str, int] | None = None
    monitor_namespace: str | None = None
    monitor_labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def describe_query(self) -> str:
        if self.query_url:
            return self.query_url
        if self.query_pod:
            ns, pod, port = self.query_pod
            return f"pod {ns}/{pod}:{port} (port-forward)"
        return "nowhere"


def _served(ctx: CheckContext, api_version: str, kind: str) -> bool:
    return any(r.kind == kind for r in ctx.cluster.api_resources(api_version))


def _web_port(pod: KubeObject, default: int = 9090) -> int:
    ports = container_ports(pod)
    for p in ports:
        if p.get("name") in ("web", "http", "http-web"):
            return int(p["containerPort"])
    for p in ports:
        if p.get("containerPort") == default:
            return default
    return default


def _find_prometheus_pods(
    ctx: CheckContext,
    namespace: str | None = None,
    selectors: tuple[str, ...] = ("app.kubernetes.io/name=prometheus", "app=prometheus"),
) -> list[KubeObject]:
    seen: dict[tuple[str | None, str], KubeObject] = {}
    for sel in selectors:
        for pod in ctx.cluster.list("v1", "Pod", namespace, label_selector=sel):
            if pod_running(pod):
                seen.setdefault((namespace_of(pod), name_of(pod)), pod)
    return sorted(seen.values(), key=lambda p: (namespace_of(p) or "", name_of(p)))


def _service_pod(ctx: CheckContext, value: str) -> tuple[str, str, int]:
    m = re.match(
        r"^(?:service/|svc/)?(?P<ns>[a-z0-9][-a-z0-9.]*)/(?P<name>[a-z0-9][-a-z0-9.]*)"
        r":(?P<port>[-a-z0-9]+)$",
        value,
    )
    if not m:
        raise UsageError(f"--prometheus-service {value!r}: expected NAMESPACE/NAME:PORT")
    ns = m.group("ns")
    pods = [
        (pod, port)
        for pod, port in service_pods(
            ctx.cluster, ns, m.group("name"), m.group("port"), option="--prometheus-service"
        )
        if port
    ]
    if not pods:
        raise ClusterError(f"--prometheus-service {value}: no Running pod behind the Service")
    pod, port = pods[0]
    assert port is not None
    return ns, name_of(pod), port


def _selector_labels(sel: Any, what: str, notes: list[str]) -> dict[str, str] | None:
    """matchLabels of a label selector; None when the selector is absent (selects none)."""
    if sel is None:
        return None
    if sel.get("matchExpressions"):
        notes.append(f"{what} has matchExpressions; only its matchLabels are honoured")
    return dict(sel.get("matchLabels") or {})


def detect_monitoring(ctx: CheckContext, t: Subtest) -> Monitoring:
    """The platform's monitoring system and how to make it collect the sample."""
    method = (ctx.option("service-metrics-collection") or "auto").lower()
    if method not in METHODS:
        raise UsageError(
            f"--service-metrics-collection {method!r}: choose one of " + ", ".join(METHODS)
        )
    url = ctx.option("prometheus-url")
    svc = ctx.option("prometheus-service")
    mon: Monitoring | None = None

    if _served(ctx, PROM_OPERATOR, "PodMonitor") and method in (
        "auto",
        "podmonitor",
        "servicemonitor",
    ):
        proms = (
            ctx.cluster.list(PROM_OPERATOR, "Prometheus")
            if _served(ctx, PROM_OPERATOR, "Prometheus")
            else []
        )
        t.log(
            f"Prometheus Operator CRDs served; Prometheus objects: "
            f"{', '.join(f'{namespace_of(p)}/{name_of(p)}' for p in proms) or 'none'}"
        )
        for prom in proms:
            ns, name = namespace_of(prom), name_of(prom)
            spec = prom.get("spec", {})
            notes: list[str] = []
            pm = _selector_labels(spec.get("podMonitorSelector"), "podMonitorSelector", notes)
            sm = _selector_labels(
                spec.get("serviceMonitorSelector"), "serviceMonitorSelector", notes
            )
            chosen = method
            if chosen == "auto":
                chosen = (
                    "podmonitor" if pm is not None else ("servicemonitor" if sm is not None else "")
                )
            labels = pm if chosen == "podmonitor" else sm
            if not chosen or labels is None:
                what = chosen or "PodMonitors or ServiceMonitors"
                t.log(f"Prometheus {ns}/{name} selects no {what} (selector unset)")
                continue
            nsel_key = (
                "podMonitorNamespaceSelector"
                if chosen == "podmonitor"
                else "serviceMonitorNamespaceSelector"
            )
            nsel = spec.get(nsel_key)
            mon = Monitoring(
                system=f"Prometheus Operator (Prometheus {ns}/{name})",
                method=chosen,
                monitor_labels=labels,
                notes=notes,
            )
            if nsel is None:
                mon.monitor_namespace = ns  # NOTE: unset selector = its own namespace only
            else:
                mon.namespace_labels = _selector_labels(nsel, nsel_key, notes) or {}
            pods = _find_prometheus_pods(
                ctx, ns, (f"operator.prometheus.io/name={name}", f"prometheus={name}")
            )
            if pods:
                mon.query_pod = (ns or "", name_of(pods[0]), _web_port(pods[0]))
            break

    if mon is None and _served(ctx, GMP, "PodMonitoring") and method in ("auto", "podmonitoring"):
        mon = Monitoring(
            system="Google Cloud Managed Service for Prometheus", method="podmonitoring"
        )
        for sel in ("app=managed-prometheus-frontend", "app.kubernetes.io/name=frontend"):
            pods = [p for p in ctx.cluster.list("v1", "Pod", label_selector=sel) if pod_running(p)]
            if pods:
                mon.query_pod = (namespace_of(pods[0]) or "", name_of(pods[0]), _web_port(pods[0]))
                break

    if mon is None and method in ("auto", "annotations", "service-endpoints", "none"):
        pods = _find_prometheus_pods(ctx)
        if pods:
            p = pods[0]
            mon = Monitoring(
                system=f"Prometheus server {namespace_of(p)}/{name_of(p)}",
                method="annotations" if method == "auto" else method,
                query_pod=(namespace_of(p) or "", name_of(p), _web_port(p)),
            )

    if mon is None and method in ("auto", "annotations", "service-endpoints", "none"):
        otel = _served(ctx, OTEL_OPERATOR, "OpenTelemetryCollector") or any(
            "opentelemetry-collector" in pod_words(p) or "otel-collector" in pod_words(p)
            for p in ctx.cluster.list("v1", "Pod")
            if pod_running(p)
        )
        if otel:
            mon = Monitoring(
                system="OpenTelemetry collector",
                method="annotations" if method == "auto" else method,
            )
            mon.notes.append(
                "an OpenTelemetry collector scrapes annotated pods (prometheus "
                "receiver); its backend must be queried with --prometheus-url "
                "or --prometheus-service"
            )

    if mon is None and (url or svc):
        mon = Monitoring(
            system="given Prometheus-compatible API",
            method="annotations" if method == "auto" else method,
        )
    if mon is None:
        t.fail(
            "no monitoring system found: no Prometheus Operator (monitoring.coreos.com) "
            "Prometheus, no Google managed PodMonitoring, no Prometheus server pods "
            "(app.kubernetes.io/name=prometheus or app=prometheus), no OpenTelemetry "
            "collector; give one with --prometheus-url or --prometheus-service"
        )
    if url:
        mon.query_url, mon.query_pod = url.rstrip("/"), None
    elif svc:
        mon.query_pod = _service_pod(ctx, svc)
    if mon.query_url is None and mon.query_pod is None:
        t.error(
            f"found {mon.system} but no way to query it; give --prometheus-url or "
            "--prometheus-service"
        )
    return mon


def prom_get(ctx: CheckContext, mon: Monitoring, path: str, timeout: float = 15.0) -> Any:
    """GET a Prometheus HTTP API path; returns its ``data`` (raises ClusterError)."""
    timeout = ctx.budget(timeout)
    if mon.query_url:
        body = http_get_url(mon.query_url + path, timeout)
    else:
        assert mon.query_pod is not None
        ns, pod, port = mon.query_pod
        body = ctx.cluster.http_get(ns, pod, port, path, timeout=timeout)
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as e:
        raise ClusterError(f"GET {path}: not a Prometheus API response: {body[:200]!r}") from e
    if doc.get("status") != "success":
        raise ClusterError(f"GET {path}: {doc.get('errorType')}: {doc.get('error')}")
    return doc.get("data")


@dataclass(frozen=True)
class SampleMetrics:
    """The metrics the sample workload serves, unique to this run."""

    token: str
    requests: int
    queue_depth: int
    duration_count: int
    duration_sum: float

    @classmethod
    def new(cls, run_id: str) -> SampleMetrics:
        r = secrets.randbelow
        return cls(
            token=f"{run_id}-{secrets.token_hex(3)}",
            requests=1000 + r(900_000),
            queue_depth=1 + r(500),
            duration_count=10 + r(5000),
            duration_sum=round(1 + r(100_000) / 100, 2),
        )

    def expected(self) -> dict[str, float]:
        return {
            "kaic_sample_inference_requests_total": float(self.requests),
            "kaic_sample_queue_depth": float(self.queue_depth),
            "kaic_sample_request_duration_seconds_count": float(self.duration_count),
        }

    def text(self) -> str:
        lbl = f'kaic_run="{self.token}"'
        fast = self.duration_count // 2
        return (
            "# HELP kaic_sample_inference_requests_total Requests served by the kaic "
            "sample inference workload.\n"
            "# TYPE kaic_sample_inference_requests_total counter\n"
            f"kaic_sample_inference_requests_total{{{lbl}}} {self.requests}\n"
            "# HELP kaic_sample_queue_depth Requests waiting in the sample's queue.\n"
            "# TYPE kaic_sample_queue_depth gauge\n"
            f"kaic_sample_queue_depth{{{lbl}}} {self.queue_depth}\n"
            "# HELP kaic_sample_request_duration_seconds Request latency.\n"
            "# TYPE kaic_sample_request_duration_seconds histogram\n"
            f'kaic_sample_request_duration_seconds_bucket{{{lbl},le="0.1"}} {fast}\n'
            f'kaic_sample_request_duration_seconds_bucket{{{lbl},le="1"}} {self.duration_count}\n'
            f'kaic_sample_request_duration_seconds_bucket{{{lbl},le="+Inf"}} '
            f"{self.duration_count}\n"
            f"kaic_sample_request_duration_seconds_sum{{{lbl}}} {self.duration_sum}\n"
            f"kaic_sample_request_duration_seconds_count{{{lbl}}} {self.duration_count}\n"
        )


def sample_objects(
    ctx: CheckContext, sample: SampleMetrics, mon: Monitoring, name: str
) -> list[KubeObject]:
    """The sample Pod, and the Service and monitor object the method needs."""
    ns = ctx.namespace
    sel = {SAMPLE_LABEL: name}
    scrape = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(SAMPLE_PORT),
        "prometheus.io/path": "/metrics",
    }
    # NOTE: service-endpoints annotates the Service only: what is collected then comes
    # through its endpoints, never from the pod's own discovery.
    annotations = scrape if mon.method == "annotations" else {}
    service_annotations = scrape if mon.method in ("annotations", "service-endpoints") else {}
    image = ctx.option("service-metrics-image") or SAMPLE_IMAGE
    pod = restricted_pod(
        name,
        ns,
        {
            "name": "sample",
            "image": image,
            "args": ["porter"],
            "env": [{"name": f"SERVE_PORT_{SAMPLE_PORT}", "value": sample.text()}],
            "ports": [{"name": "metrics", "containerPort": SAMPLE_PORT}],
        },
        labels={**sel, "app.kubernetes.io/name": "kaic-sample"},
        annotations=annotations,
    )
    objs = [pod]
    if mon.method in ("servicemonitor", "annotations", "service-endpoints"):
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": dict(sel),
                    "annotations": service_annotations,
                },
                "spec": {
                    "selector": sel,
                    "ports": [{"name": "metrics", "port": SAMPLE_PORT, "targetPort": "metrics"}],
                },
            }
        )
    mon_ns = mon.monitor_namespace or ns
    if mon.method == "podmonitor":
        objs.append(
            {
                "apiVersion": PROM_OPERATOR,
                "kind": "PodMonitor",
                "metadata": {"name": name, "namespace": mon_ns, "labels": dict(mon.monitor_labels)},
                "spec": {
                    "selector": {"matchLabels": sel},
                    "namespaceSelector": {"matchNames": [ns]},
                    "podMetricsEndpoints": [
                        {"port": "metrics", "path": "/metrics", "interval": "5s"}
                    ],
                },
            }
        )
    elif mon.method == "servicemonitor":
        objs.append(
            {
                "apiVersion": PROM_OPERATOR,
                "kind": "ServiceMonitor",
                "metadata": {"name": name, "namespace": mon_ns, "labels": dict(mon.monitor_labels)},
                "spec": {
                    "selector": {"matchLabels": sel},
                    "namespaceSelector": {"matchNames": [ns]},
                    "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "5s"}],
                },
            }
        )
    elif mon.method == "podmonitoring":
        objs.append(
            {
                "apiVersion": GMP,
                "kind": "PodMonitoring",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "selector": {"matchLabels": sel},
                    "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "5s"}],
                },
            }
        )
    return objs


def _query_value(ctx: CheckContext, mon: Monitoring, metric: str, token: str) -> float | None:
    q = urllib.parse.quote(f'{metric}{{kaic_run="{token}"}}', safe="")
    data = prom_get(ctx, mon, f"/api/v1/query?query={q}")
    result = (data or {}).get("result") or []
    if not result:
        return None
    return float(result[0]["value"][1])


def _target_diagnosis(ctx: CheckContext, mon: Monitoring, pod: str) -> str:
    """What the monitoring system says about the sample's scrape target, if anything."""
    try:
        data = prom_get(ctx, mon, "/api/v1/targets?state=any", timeout=10.0)
    except KaicError as e:
        return f"its targets could not be read ({e})"
    for tgt in (data or {}).get("activeTargets") or []:
        labels = {**(tgt.get("discoveredLabels") or {}), **(tgt.get("labels") or {})}
        if pod in labels.values() or any(pod in str(v) for v in labels.values()):
            return f"target {tgt.get('scrapeUrl')} is {tgt.get('health')}" + (
                f": {tgt.get('lastError')}" if tgt.get("lastError") else ""
            )
    dropped = len((data or {}).get("droppedTargets") or [])
    return f"no active scrape target for pod {pod} ({dropped} dropped targets)"


ENDPOINT_ROLE_LABELS = (
    "__meta_kubernetes_endpointslice_name",
    "__meta_kubernetes_endpoints_name",
)
"""Discovered labels of a target found through a Service's EndpointSlices or Endpoints
(Prometheus kubernetes_sd roles ``endpointslice`` and ``endpoints``)."""


def sample_targets(ctx: CheckContext, mon: Monitoring, pod: str) -> list[dict[str, Any]] | None:
    """The monitoring system's active scrape targets of the sample pod (None: its targets
    API could not be read)."""
    try:
        data = prom_get(ctx, mon, "/api/v1/targets?state=active", timeout=10.0)
    except KaicError:
        return None
    out = []
    for tgt in (data or {}).get("activeTargets") or []:
        labels = {**(tgt.get("discoveredLabels") or {}), **(tgt.get("labels") or {})}
        if pod in (labels.get("__meta_kubernetes_pod_name"), labels.get("pod")):
            out.append(tgt)
    return out


def via_endpoints(target: dict[str, Any]) -> str | None:
    """How a target was found through a Service's endpoints ("EndpointSlice NAME of
    Service NS/NAME"), or None if it was not."""
    d = target.get("discoveredLabels") or {}
    for key, kind in zip(ENDPOINT_ROLE_LABELS, ("EndpointSlice", "Endpoints"), strict=True):
        if d.get(key):
            svc = d.get("__meta_kubernetes_service_name", "?")
            return f"{kind} {d[key]} of Service {d.get('__meta_kubernetes_namespace', '?')}/{svc}"
    return None


def ready_endpoint_ips(slices: list[KubeObject]) -> set[str]:
    """Addresses of the ready endpoints of ``slices`` (EndpointSlices of one Service)."""
    return {
        a
        for sl in slices
        for ep in sl.get("endpoints") or []
        if (ep.get("conditions") or {}).get("ready", True) is not False
        for a in ep.get("addresses") or []
    }


@check(
    "ai_service_metrics",
    test="TestAIServiceMetrics",
    locks=shared(Resource.NODE_CAPACITY),
    options=(
        CheckOption(
            "prometheus-url",
            "base URL of a Prometheus-compatible query API, dialled directly "
            "(default: port-forward to the detected Prometheus)",
        ),
        CheckOption(
            "prometheus-service",
            "NAMESPACE/NAME:PORT of a Service in front of the query API "
            "(reached by port-forward to one of its pods)",
        ),
        CheckOption(
            "service-metrics-collection",
            "how to configure collection: " + "|".join(METHODS) + " (service-endpoints: "
            "scrape annotations on the sample's Service only, collected through its "
            "EndpointSlices by a Prometheus without the Prometheus Operator)",
            default="auto",
        ),
        CheckOption(
            "service-metrics-timeout",
            "seconds to wait for the sample metrics to be collected",
            default="300",
        ),
        CheckOption(
            "service-metrics-image",
            "image of the sample workload (must behave like agnhost porter)",
            default=SAMPLE_IMAGE,
        ),
    ),
    permissions=(
        Permission("create", "pods"),
        Permission("create", "services"),
        Permission("list", "pods", namespaced=False),
        Permission("list", "endpointslices", group="discovery.k8s.io"),
        Permission("create", "pods", subresource="portforward", namespaced=False),
        Permission(
            "list", "customresourcedefinitions", group="apiextensions.k8s.io", namespaced=False
        ),
    ),
    timeout_s=420.0,
)
def ai_service_metrics(ctx: CheckContext) -> None:
    """The platform's monitoring system discovers a workload exposing Prometheus-format
    metrics and collects them (the sample's run-unique values can be queried back)."""
    run = _ServiceMetrics(ctx)
    try:
        ctx.step("DetectMonitoringSystem", run.detect)
        ctx.step("DeploySampleWorkload", run.deploy, needs=("DetectMonitoringSystem",))
        ctx.step("MetricsCollected", run.collected, needs=("DeploySampleWorkload",))
    finally:
        run.cleanup()


class _ServiceMetrics:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.sample = SampleMetrics.new(ctx.run_id)
        self.name = f"kaic-sample-{self.sample.token.rsplit('-', 1)[-1]}"
        self.created: list[KubeObject] = []
        self.mon = Monitoring(system="none", method="none")

    def detect(self, t: Subtest) -> None:
        ctx = self.ctx
        mon = self.mon = detect_monitoring(ctx, t)
        for n in mon.notes:
            t.log(n)
        t.log(f"{mon.system}; collection by {mon.method}; queried at {mon.describe_query()}")
        try:
            prom_get(ctx, mon, "/api/v1/query?query=vector%281%29", timeout=15.0)
        except KaicError as e:
            t.error(
                f"{mon.system} found, but its query API at {mon.describe_query()} does "
                f"not answer: {e}"
            )
        try:
            build = prom_get(ctx, mon, "/api/v1/status/buildinfo", timeout=15.0)
            t.log(f"query API answers: version {(build or {}).get('version', '?')}")
        except KaicError as e:
            t.log(f"query API answers (no build info: {e})")
        try:
            cfg = prom_get(ctx, mon, "/api/v1/status/config", timeout=15.0)
            ctx.evidence("monitoring-config.yaml", str((cfg or {}).get("yaml", "")))
        except KaicError as e:
            t.log(f"configuration not readable: {e}")

    def deploy(self, t: Subtest) -> None:
        ctx, mon, sample, name = self.ctx, self.mon, self.sample, self.name
        if mon.namespace_labels:
            ctx.cluster.patch(
                "v1", "Namespace", ctx.namespace, {"metadata": {"labels": mon.namespace_labels}}
            )
            t.log(f"labelled namespace {ctx.namespace} with {mon.namespace_labels}")
        for obj in sample_objects(ctx, sample, mon, name):
            self.created.append(ctx.cluster.create(obj))
            t.log(f"created {obj['kind']} {namespace_of(obj)}/{name_of(obj)}")
        ctx.evidence("sample-metrics.txt", sample.text())
        ctx.evidence(
            "sample-objects.json",
            json.dumps(self.created, indent=2, default=str),
            "application/json",
        )
        pod = ctx.cluster.wait_for(
            "v1",
            "Pod",
            name,
            ctx.namespace,
            lambda p: bool(p and pod_running(p) and p.get("status", {}).get("podIP")),
            timeout=ctx.budget(120.0),
            what=f"sample pod {name} to run",
        )
        t.log(
            f"sample pod running on {pod and pod['spec'].get('nodeName')} "
            f"(pod IP {pod and pod['status'].get('podIP')})"
        )
        if mon.method in SERVICE_METHODS and pod:
            self._endpoints_listed(t, str(pod["status"]["podIP"]))

    def _endpoints_listed(self, t: Subtest, ip: str) -> None:
        """Wait for the Service's EndpointSlices (the endpointslice controller's) to list
        the sample pod as a ready endpoint."""
        ctx, name = self.ctx, self.name
        deadline = time.monotonic() + ctx.budget(60.0)
        slices: list[KubeObject] = []
        while True:
            slices = ctx.cluster.list(
                "discovery.k8s.io/v1",
                "EndpointSlice",
                ctx.namespace,
                label_selector=f"kubernetes.io/service-name={name}",
            )
            if ip in ready_endpoint_ips(slices):
                break
            if time.monotonic() + 1 > deadline:
                t.fail(
                    f"the EndpointSlices of Service {ctx.namespace}/{name} do not list the "
                    f"sample pod's IP {ip} as a ready endpoint (slices: "
                    f"{', '.join(name_of(sl) for sl in slices) or 'none'})"
                )
            ctx.sleep(1.0)
        ctx.evidence(
            "endpointslices.json", json.dumps(slices, indent=2, default=str), "application/json"
        )
        t.log(
            f"EndpointSlice {', '.join(name_of(sl) for sl in slices)} of Service "
            f"{ctx.namespace}/{name} lists the pod IP {ip} (ready)"
        )

    def collected(self, t: Subtest) -> None:
        ctx, mon, sample = self.ctx, self.mon, self.sample
        wanted = ctx.float_option("service-metrics-timeout") or 300.0
        deadline = time.monotonic() + ctx.budget(wanted)
        expected = sample.expected()
        got: dict[str, float | None] = {}
        last_error = ""
        while True:
            try:
                got = {m: _query_value(ctx, mon, m, sample.token) for m in expected}
                last_error = ""
            except KaicError as e:
                last_error = str(e)
            if got and all(v is not None for v in got.values()):
                break
            if time.monotonic() + 2 > deadline:
                why = _target_diagnosis(ctx, mon, self.name)
                found = [m for m, v in got.items() if v is not None]
                t.fail(
                    f"the sample's metrics were not collected within {wanted:.0f}s "
                    f"(found {len(found)} of {len(expected)}); {why}"
                    + (f"; last query error: {last_error}" if last_error else "")
                )
            ctx.sleep(2.0)
        ctx.evidence(
            "query-results.json",
            json.dumps({"kaic_run": sample.token, "expected": expected, "queried": got}, indent=2),
            "application/json",
        )
        wrong = [f"{m}={got[m]} (served {v})" for m, v in expected.items() if got[m] != v]
        if wrong:
            t.fail("collected values differ from what the sample served: " + ", ".join(wrong))
        t.log(
            f"queried back {len(expected)} series with kaic_run={sample.token} and the "
            "served values"
        )
        if mon.method in SERVICE_METHODS:
            self._through_endpoints(t)

    def _through_endpoints(self, t: Subtest) -> None:
        """The sample was collected through its Service's endpoints (where the targets
        API says how its targets were discovered)."""
        targets = sample_targets(self.ctx, self.mon, self.name)
        if not targets:
            t.log(
                "the monitoring system's targets API does not show the sample's target; "
                "its discovery through the Service's endpoints is not confirmed"
            )
            return
        found = [(tgt, via_endpoints(tgt)) for tgt in targets]
        hits = [f"{tgt.get('scrapeUrl')} through {how}" for tgt, how in found if how]
        if not hits:
            t.fail(
                "the sample was collected, but not through its Service's endpoints: its "
                "targets "
                + ", ".join(str(tgt.get("scrapeUrl")) for tgt in targets)
                + " were not discovered from EndpointSlices or Endpoints"
            )
        t.log("scraped " + "; ".join(hits))

    def cleanup(self) -> None:
        for obj in reversed(self.created):
            try:
                self.ctx.cluster.delete(
                    obj["apiVersion"], obj["kind"], name_of(obj), namespace_of(obj)
                )
            except KaicError as e:
                self.ctx.log(f"cleanup of {obj['kind']} {name_of(obj)} failed: {e}")
