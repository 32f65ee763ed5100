"""Observability checks: accelerator metrics and AI service metrics.

Owns: ``accelerator_metrics`` (TestAcceleratorPerformanceMetrics) and
``ai_service_metrics`` (TestAIServiceMetrics): finding accelerator metrics exporters and
the platform's monitoring system, scraping and querying them through port-forwards,
deploying the sample workload and its collection config. Must not import the Kubernetes
client, and never dials a pod IP: pods are reached through ``ClusterAPI.http_get``
(a port-forward through the apiserver); only ``--metrics-endpoint``/``--prometheus-url``
URLs that the user gives are dialled directly.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kaic.checks._metric_names import (
    DEVICE_LABELS,
    MUST_CONCEPTS,
    OTEL_NAMES,
    SHOULD_CONCEPTS,
    Concept,
    DeviceId,
    MetricName,
    classify,
    device_of,
    host_of,
    priority,
)
from kaic.checks.base import CheckContext, CheckOption, Permission, Subtest, check
from kaic.cluster.api import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    RUN_ID_LABEL,
    KubeObject,
    labels_of,
    name_of,
    namespace_of,
)
from kaic.errors import ClusterError, KaicError, UsageError
from kaic.model import Outcome

# ---------------------------------------------------------------------------------------
# Accelerators on the nodes
# ---------------------------------------------------------------------------------------

ACCELERATOR_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "habana.ai/gaudi",
                         "gpu.intel.com/i915", "gpu.intel.com/xe", "aws.amazon.com/neuron",
                         "aws.amazon.com/neurondevice", "google.com/tpu")
ACCELERATOR_DRA_DRIVERS = ("gpu.nvidia.com", "gpu.amd.com", "gpu.intel.com",
                           "neuron.aws.com", "tpu.google.com", "gpu.example.com")


@dataclass(frozen=True)
class Accelerator:
    """One accelerator a node advertises (from a ResourceSlice or its allocatable count)."""

    node: str
    name: str
    index: int | None = None
    uuid: str | None = None

    def __str__(self) -> str:
        extra = [f"index {self.index}"] if self.index is not None else []
        if self.uuid:
            extra.append(self.uuid)
        return f"{self.node}/{self.name}" + (f" ({', '.join(extra)})" if extra else "")


def _int_quantity(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _attr(device: KubeObject, name: str) -> Any:
    attrs = device.get("attributes") or {}
    for key in (name, f"resource.kubernetes.io/{name}"):
        a = attrs.get(key)
        if isinstance(a, dict):
            for kind in ("string", "int", "version", "bool"):
                if kind in a:
                    return a[kind]
    return None


def find_accelerators(ctx: CheckContext) -> tuple[dict[str, list[Accelerator]], list[str]]:
    """Accelerators per node of the pool, and how they were counted (for the log).

    A node's devices come from ResourceSlices that name it (DRA: each device with its
    index and UUID) or else from its allocatable count of an accelerator resource."""
    notes: list[str] = []
    resource_opt = ctx.option("metrics-accelerator-resource")
    resources = (resource_opt,) if resource_opt else ACCELERATOR_RESOURCES
    selector = ctx.option("metrics-accelerator-nodes") or None
    nodes = ctx.cluster.list("v1", "Node", label_selector=selector)
    node_names = {name_of(n) for n in nodes}
    pool: dict[str, list[Accelerator]] = {}

    if any(r.kind == "ResourceSlice" for r in ctx.cluster.api_resources("resource.k8s.io/v1")):
        driver_opt = ctx.option("metrics-accelerator-driver")
        drivers = (driver_opt,) if driver_opt else ACCELERATOR_DRA_DRIVERS
        skipped_shared = 0
        for s in ctx.cluster.list("resource.k8s.io/v1", "ResourceSlice"):
            spec = s.get("spec", {})
            if spec.get("driver") not in drivers:
                continue
            node = spec.get("nodeName")
            if not node:
                skipped_shared += 1
                continue
            if node not in node_names:
                continue
            for d in spec.get("devices") or []:
                dtype = _attr(d, "type")
                if dtype not in (None, "gpu", "accelerator", "tpu", "neuron"):
                    continue
                idx = _attr(d, "index")
                if idx is None:
                    idx = _attr(d, "minor")
                uuid = _attr(d, "uuid")
                pool.setdefault(node, []).append(Accelerator(
                    node, str(d.get("name", "")), int(idx) if idx is not None else None,
                    str(uuid) if uuid else None))
        if pool:
            notes.append(f"counted from ResourceSlices of {', '.join(drivers)}: " + ", ".join(
                f"{n}={len(v)}" for n, v in sorted(pool.items())))
        if skipped_shared:
            notes.append(f"{skipped_shared} ResourceSlice(s) with allNodes/nodeSelector were "
                         "not counted (they do not name one node)")

    for n in nodes:
        name = name_of(n)
        if name in pool:
            continue
        alloc = n.get("status", {}).get("allocatable") or {}
        for res in resources:
            count = _int_quantity(alloc.get(res, 0))
            if count > 0:
                pool[name] = [Accelerator(name, f"{res}#{i}", i) for i in range(count)]
                notes.append(f"{name}: {count} from allocatable {res}")
                break
    return pool, notes


# ---------------------------------------------------------------------------------------
# Finding and scraping metrics endpoints
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExporterKind:
    vendor: str
    patterns: tuple[str, ...]
    port: int
    port_names: tuple[str, ...] = ("metrics", "http-metrics")


EXPORTERS = (
    ExporterKind("nvidia-dcgm", ("dcgm-exporter", "dcgm_exporter"), 9400,
                 ("gpu-metrics", "metrics", "http-metrics")),
    ExporterKind("amd", ("device-metrics-exporter", "amd-metrics-exporter",
                         "amdgpu-metrics", "amd-gpu-metrics"), 5000),
    ExporterKind("intel-gaudi", ("habana", "gaudi-metric", "habanalabs"), 41611),
    ExporterKind("intel-xpum", ("xpumanager", "xpumd", "xpum-exporter", "xpum"), 29999),
    ExporterKind("aws-neuron", ("neuron-monitor",), 8000),
    ExporterKind("google-tpu", ("tpu-device-plugin", "tpu-metrics-exporter"), 2112),
    ExporterKind("opentelemetry", ("gpu-metrics", "accelerator-metrics", "hw-metrics",
                                   "otel-gpu", "opentelemetry-gpu"), 8889,
                 ("metrics", "prometheus", "otlp-metrics")),
)
_EXPORTER_PORTS = {e.port: e for e in EXPORTERS}


@dataclass(frozen=True)
class Endpoint:
    """Where accelerator metrics are served: a pod port (reached by port-forward) or a URL."""

    source: str
    vendor: str
    namespace: str | None = None
    pod: str | None = None
    port: int | None = None
    path: str = "/metrics"
    node: str | None = None
    url: str | None = None

    def __str__(self) -> str:
        if self.url:
            return self.url
        on = f" on {self.node}" if self.node else ""
        return f"{self.namespace}/{self.pod}:{self.port}{self.path}{on}"


def _pod_words(pod: KubeObject) -> str:
    md = pod.get("metadata", {})
    words = [md.get("name", "")]
    words += [v for k, v in labels_of(pod).items()
              if k in ("app", "app.kubernetes.io/name", "app.kubernetes.io/component",
                       "app.kubernetes.io/instance", "k8s-app", "name", "component")]
    for c in pod.get("spec", {}).get("containers") or []:
        words += [c.get("name", ""), c.get("image", "")]
    return " ".join(words).lower()


def _container_ports(pod: KubeObject) -> list[dict[str, Any]]:
    return [p for c in pod.get("spec", {}).get("containers") or []
            for p in c.get("ports") or []]


def _pick_port(pod: KubeObject, kind: ExporterKind) -> int:
    ports = _container_ports(pod)
    for p in ports:
        if p.get("containerPort") == kind.port:
            return kind.port
    for p in ports:
        if p.get("name") in kind.port_names:
            return int(p["containerPort"])
    ann = (pod.get("metadata", {}).get("annotations") or {}).get("prometheus.io/port")
    if ann and ann.isdigit():
        return int(ann)
    return kind.port


def _endpoint_for_pod(pod: KubeObject, kind: ExporterKind, source: str,
                      port: int | None = None) -> Endpoint:
    ann = pod.get("metadata", {}).get("annotations") or {}
    return Endpoint(source=source, vendor=kind.vendor, namespace=namespace_of(pod),
                    pod=name_of(pod), port=port or _pick_port(pod, kind),
                    path=ann.get("prometheus.io/path") or "/metrics",
                    node=pod.get("spec", {}).get("nodeName"))


def _running(pod: KubeObject) -> bool:
    return bool(pod.get("status", {}).get("phase") == "Running")


def discover_endpoints(ctx: CheckContext, t: Subtest) -> list[Endpoint]:
    """Exporter pods found by name, labels, image, Services and well-known ports."""
    found: dict[tuple[str | None, str | None, int | None], Endpoint] = {}
    pods = ctx.cluster.list("v1", "Pod")
    by_ns_name = {(namespace_of(p), name_of(p)): p for p in pods}
    not_running: list[str] = []
    for pod in pods:
        words = _pod_words(pod)
        kind = next((k for k in EXPORTERS if any(p in words for p in k.patterns)), None)
        if kind is None:
            continue
        if not _running(pod):
            not_running.append(f"{namespace_of(pod)}/{name_of(pod)}")
            continue
        ep = _endpoint_for_pod(pod, kind, f"pod matched {kind.vendor} exporter by name/labels")
        found.setdefault((ep.namespace, ep.pod, ep.port), ep)

    for svc in ctx.cluster.list("v1", "Service"):
        spec = svc.get("spec", {})
        sel = spec.get("selector") or {}
        if not sel:
            continue
        words = (name_of(svc) + " " + " ".join(labels_of(svc).values())).lower()
        for sp in spec.get("ports") or []:
            kind = next((k for k in EXPORTERS if any(p in words for p in k.patterns)), None)
            if kind is None and sp.get("name") == "gpu-metrics":
                kind = EXPORTERS[0]
            if kind is None and sp.get("port") in _EXPORTER_PORTS and any(
                    w in words for w in ("gpu", "accelerator", "exporter", "metrics")):
                kind = _EXPORTER_PORTS[sp["port"]]
            if kind is None:
                continue
            target = sp.get("targetPort", sp.get("port"))
            for (ns, _), pod in by_ns_name.items():
                if ns != namespace_of(svc) or not _running(pod):
                    continue
                if all(labels_of(pod).get(k) == v for k, v in sel.items()):
                    port = _resolve_target_port(pod, target)
                    ep = _endpoint_for_pod(pod, kind, f"behind Service {ns}/{name_of(svc)}",
                                           port)
                    found.setdefault((ep.namespace, ep.pod, ep.port), ep)
    if not_running:
        t.log(f"exporter pods not Running (not scraped): {', '.join(sorted(not_running))}")
    return sorted(found.values(), key=lambda e: (e.node or "", str(e)))


def _resolve_target_port(pod: KubeObject, target: Any) -> int | None:
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for p in _container_ports(pod):
        if p.get("name") == target:
            return int(p["containerPort"])
    return None


_POD_FORM = re.compile(r"^(?:pod/)?(?P<ns>[a-z0-9][-a-z0-9.]*)/(?P<name>[a-z0-9][-a-z0-9.]*)"
                       r":(?P<port>\d+)(?P<path>/\S*)?$")
_SVC_FORM = re.compile(r"^(?:service|svc)/(?P<ns>[a-z0-9][-a-z0-9.]*)/"
                       r"(?P<name>[a-z0-9][-a-z0-9.]*):(?P<port>[-a-z0-9]+)(?P<path>/\S*)?$")


def parse_endpoint_option(ctx: CheckContext, value: str) -> list[Endpoint]:
    """Endpoints from ``--metrics-endpoint`` (comma-separated):

    * ``http(s)://HOST:PORT/PATH`` — dialled directly by kaic;
    * ``[pod/]NAMESPACE/POD:PORT[/PATH]`` — one pod, through a port-forward;
    * ``service/NAMESPACE/NAME:PORT[/PATH]`` — every Running pod behind a Service
      (PORT is the Service's port number or name), each through a port-forward.
    """
    out: list[Endpoint] = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        if item.startswith(("http://", "https://")):
            out.append(Endpoint(source="--metrics-endpoint", vendor="given", url=item))
            continue
        m = _SVC_FORM.match(item)
        if m:
            out += _service_endpoints(ctx, m.group("ns"), m.group("name"), m.group("port"),
                                      m.group("path") or "/metrics")
            continue
        m = _POD_FORM.match(item)
        if m:
            pod = ctx.cluster.get("v1", "Pod", m.group("name"), m.group("ns"))
            node = pod.get("spec", {}).get("nodeName") if pod else None
            out.append(Endpoint(source="--metrics-endpoint", vendor="given",
                                namespace=m.group("ns"), pod=m.group("name"),
                                port=int(m.group("port")), path=m.group("path") or "/metrics",
                                node=node))
            continue
        raise UsageError(f"--metrics-endpoint {item!r}: expected URL, NAMESPACE/POD:PORT[/PATH] "
                         "or service/NAMESPACE/NAME:PORT[/PATH]")
    return out


def _service_endpoints(ctx: CheckContext, ns: str, name: str, port: str,
                       path: str) -> list[Endpoint]:
    svc = ctx.cluster.get("v1", "Service", name, ns)
    if svc is None:
        raise UsageError(f"--metrics-endpoint: Service {ns}/{name} not found")
    spec = svc.get("spec", {})
    sp = next((p for p in spec.get("ports") or []
               if str(p.get("port")) == port or p.get("name") == port), None)
    if sp is None:
        raise UsageError(f"--metrics-endpoint: Service {ns}/{name} has no port {port}")
    sel = spec.get("selector") or {}
    selector = ",".join(f"{k}={v}" for k, v in sel.items())
    out = []
    for pod in ctx.cluster.list("v1", "Pod", ns, label_selector=selector or None):
        if not _running(pod):
            continue
        target = _resolve_target_port(pod, sp.get("targetPort", sp.get("port")))
        out.append(Endpoint(source=f"--metrics-endpoint service {ns}/{name}", vendor="given",
                            namespace=ns, pod=name_of(pod), port=target, path=path,
                            node=pod.get("spec", {}).get("nodeName")))
    return out


def _http_get_url(url: str, timeout: float) -> str:
    host = urllib.parse.urlsplit(url).hostname or ""
    handlers: list[urllib.request.BaseHandler] = []
    if host in ("localhost", "::1") or host.startswith("127."):
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=timeout) as r:
            body: bytes = r.read()
    except urllib.error.HTTPError as e:
        raise ClusterError(f"GET {url}: HTTP {e.code}") from e
    except (urllib.error.URLError, OSError) as e:
        raise ClusterError(f"GET {url}: {getattr(e, 'reason', e)}") from e
    return body.decode("utf-8", errors="replace")


def scrape(ctx: CheckContext, ep: Endpoint) -> str:
    timeout = ctx.budget(30.0)
    if ep.url:
        return _http_get_url(ep.url, timeout)
    if ep.namespace is None or ep.pod is None or ep.port is None:
        raise ClusterError(f"endpoint {ep} has no port")
    return ctx.cluster.http_get(ep.namespace, ep.pod, ep.port, ep.path, timeout=timeout)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition (prometheus_client's parser)."""
    out = []
    for fam in text_string_to_metric_families(text):
        # NOTE: the parser names counter samples ``<family>_total`` even when the text
        # has no such suffix (DCGM's counters); keep the name as the endpoint exposed it.
        bare = fam.type == "counter" and f"{fam.name}_total" not in text
        for s in fam.samples:
            name = fam.name if bare and s.name == f"{fam.name}_total" else s.name
            out.append(Sample(name, dict(s.labels), float(s.value)))
    return out


# ---------------------------------------------------------------------------------------
# Matching series to accelerators
# ---------------------------------------------------------------------------------------

@dataclass
class ConceptSeries:
    """What was seen for one concept: series per node, unlabelled series, names used."""

    by_node: dict[str | None, dict[str, tuple[DeviceId, float, MetricName]]] = field(
        default_factory=lambda: defaultdict(dict))
    names: set[str] = field(default_factory=set)
    unlabelled: set[str] = field(default_factory=set)

    def uuids(self) -> set[str]:
        return {d.uuid.lower() for devs in self.by_node.values() for d, _, _ in devs.values()
                if d.uuid}


def collect(samples_by_endpoint: Iterable[tuple[Endpoint, list[Sample]]],
            pool_nodes: set[str], *, utilization: str | None,
            memory: str | None) -> dict[Concept, ConceptSeries]:
    seen: dict[Concept, ConceptSeries] = {c: ConceptSeries() for c in Concept}
    for ep, samples in samples_by_endpoint:
        for s in samples:
            m = classify(s.name, utilization=utilization, memory=memory)
            if m is None:
                continue
            cs = seen[m.concept]
            dev = device_of(s.labels)
            if dev is None:
                cs.unlabelled.add(s.name)
                continue
            cs.names.add(s.name)
            host = host_of(s.labels)
            node = host if host in pool_nodes else ep.node
            # NOTE: per device, the series listed first in KNOWN_METRICS wins (GPU_UTIL
            # before GR_ENGINE_ACTIVE, GPU_TEMP before MEMORY_TEMP); all names are kept.
            old = cs.by_node[node].get(dev.key)
            if old is None or priority(m.name) < priority(old[2].name):
                cs.by_node[node][dev.key] = (dev, s.value * m.factor, m)
    return seen


def match_series(pool: dict[str, list[Accelerator]], cs: ConceptSeries
                 ) -> dict[Accelerator, tuple[DeviceId, float, MetricName] | str]:
    """For each accelerator of the pool, its series of this concept, or why there is none.

    By UUID when both sides have UUIDs (they are unique across nodes), else by index on
    the same node, else by count (the n-th device of a node)."""
    all_series = {k: v for devs in cs.by_node.values() for k, v in devs.items()}
    unattributed = cs.by_node.get(None, {})
    out: dict[Accelerator, tuple[DeviceId, float, MetricName] | str] = {}
    for node, accels in sorted(pool.items()):
        series = dict(cs.by_node.get(node, {}))
        if len(pool) == 1:
            series.update(unattributed)
        by_index: dict[int | None, tuple[DeviceId, float, MetricName]] = {
            v[0].index: v for v in series.values() if v[0].index is not None}
        have_uuids = any(v[0].uuid for v in all_series.values())
        if any(a.uuid for a in accels) and have_uuids:
            for a in accels:
                hit = all_series.get(a.uuid.lower()) if a.uuid else None
                out[a] = hit if hit is not None else "no series with its UUID"
        elif by_index and all(a.index is not None for a in accels):
            for a in accels:
                out[a] = by_index.get(a.index, "no series with its index")
        else:
            ordered = [series[k] for k in sorted(series)]
            for i, a in enumerate(accels):
                out[a] = ordered[i] if i < len(ordered) else (
                    f"only {len(ordered)} of {len(accels)} devices on {node} have series")
    return out


def missing_accelerators(pool: dict[str, list[Accelerator]],
                         cs: ConceptSeries) -> list[tuple[Accelerator, str]]:
    """Accelerators of the pool without a series of this concept, with why."""
    return [(a, v) for a, v in match_series(pool, cs).items() if isinstance(v, str)]


def _describe_missing(missing: list[tuple[Accelerator, str]], total: int) -> str:
    names = ", ".join(str(a) for a, _ in missing[:12])
    more = f" and {len(missing) - 12} more" if len(missing) > 12 else ""
    return f"{len(missing)} of {total} accelerators have none: {names}{more}"


def _values_table(pool: dict[str, list[Accelerator]],
                  seen: dict[Concept, ConceptSeries]) -> str:
    matched = {c: match_series(pool, seen[c]) for c in Concept}
    lines = ["| node | accelerator | " + " | ".join(f"{c.value} ({c.unit})" for c in Concept)
             + " |", "|---|---|" + "---|" * len(Concept)]
    for node, accels in sorted(pool.items()):
        for a in accels:
            cells = []
            for c in Concept:
                hit = matched[c].get(a)
                cells.append(f"{hit[1]:.4g} ({hit[2].name})" if isinstance(hit, tuple)
                             else "—")
            lines.append(f"| {node} | {a.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _last_passed(ctx: CheckContext) -> bool:
    """Whether the sub-test just recorded passed (later ones depend on it)."""
    return bool(ctx.subresults) and ctx.subresults[-1].outcome is Outcome.PASS


def _must_subtest(ctx: CheckContext, name: str, concept: Concept,
                  pool: dict[str, list[Accelerator]], seen: dict[Concept, ConceptSeries],
                  total: int) -> None:
    cs = seen[concept]
    with ctx.subtest(name) as t:
        if not cs.names:
            if cs.unlabelled:
                t.fail(f"{concept.value} series {', '.join(sorted(cs.unlabelled))} carry no "
                       f"device label (one of {', '.join(DEVICE_LABELS)})")
            t.fail(f"no per-accelerator {concept.value} series in the scraped metrics")
        t.log(f"{concept.value} series: {', '.join(sorted(cs.names))}")
        missing = missing_accelerators(pool, cs)
        if missing:
            t.fail(f"{concept.value}: {_describe_missing(missing, total)}")
        t.log(f"all {total} accelerators have a {concept.value} series")
        if concept is Concept.UTILIZATION:
            bad = [f"{node}/{d}={v:.3g}" for node, devs in cs.by_node.items()
                   for d, v, _ in devs.values() if not -1e-9 <= v <= 1.0 + 1e-9]
            if bad:
                t.log(f"WARNING: utilization outside 0..1 after unit normalisation: "
                      f"{', '.join(bad[:8])}")


@check(
    "accelerator_metrics",
    test="TestAcceleratorPerformanceMetrics",
    options=(
        CheckOption("metrics-endpoint",
                    "accelerator metrics endpoint(s), comma-separated: URL, "
                    "[pod/]NAMESPACE/POD:PORT[/PATH] or service/NAMESPACE/NAME:PORT[/PATH] "
                    "(default: discover DCGM, AMD, Gaudi, XPU, Neuron, TPU and "
                    "OpenTelemetry exporters)"),
        CheckOption("metrics-utilization-metric",
                    "exact name of the per-accelerator utilization metric"),
        CheckOption("metrics-memory-metric", "exact name of the per-accelerator memory metric"),
        CheckOption("metrics-accelerator-resource",
                    "extended resource that counts accelerators (default: nvidia.com/gpu, "
                    "amd.com/gpu, habana.ai/gaudi, gpu.intel.com/*, aws.amazon.com/neuron, "
                    "google.com/tpu)"),
        CheckOption("metrics-accelerator-driver",
                    "DRA driver whose ResourceSlices list the accelerators "
                    "(default: known GPU/TPU/Neuron drivers)"),
        CheckOption("metrics-accelerator-nodes",
                    "label selector of the accelerator nodes to check"),
    ),
    permissions=(
        Permission("list", "nodes", namespaced=False),
        Permission("list", "pods", namespaced=False),
        Permission("list", "services", namespaced=False),
        Permission("list", "resourceslices", group="resource.k8s.io", namespaced=False),
        Permission("create", "pods", subresource="portforward", namespaced=False),
    ),
    timeout_s=300.0,
)
def accelerator_metrics(ctx: CheckContext) -> None:
    """Every accelerator on the platform's nodes has per-device utilization and memory series
    on a Prometheus-format metrics endpoint."""
    pool, notes = find_accelerators(ctx)
    for n in notes:
        ctx.log(n)
    total = sum(len(v) for v in pool.values())
    if not pool:
        ctx.not_applicable("no node advertises accelerators (no accelerator resource in "
                           "allocatable, no ResourceSlice of an accelerator driver)")
    ctx.evidence("accelerators.json", json.dumps(
        {n: [a.__dict__ for a in v] for n, v in sorted(pool.items())}, indent=2),
        "application/json")

    scraped: list[tuple[Endpoint, list[Sample]]] = []
    given = ctx.option("metrics-endpoint")
    endpoints = parse_endpoint_option(ctx, given) if given else []
    with ctx.subtest("MetricsEndpointReachable") as t:
        if not given:
            endpoints = discover_endpoints(ctx, t)
        if not endpoints:
            t.fail("no accelerator metrics endpoint found (looked for DCGM, AMD, Gaudi, XPU "
                   "Manager, Neuron, TPU and OpenTelemetry exporter pods and Services); "
                   "give one with --metrics-endpoint")
        errors: list[str] = []
        lines = []
        for ep in endpoints:
            try:
                text = scrape(ctx, ep)
            except KaicError as e:
                errors.append(f"{ep}: {e}")
                lines.append(f"{ep}\tvia {ep.source}\tERROR {e}")
                continue
            try:
                samples = parse_samples(text)
            except ValueError as e:
                errors.append(f"{ep}: not Prometheus text format: {e}")
                lines.append(f"{ep}\tvia {ep.source}\tunparseable")
                continue
            accel = [s for s in samples if classify(
                s.name, utilization=ctx.option("metrics-utilization-metric"),
                memory=ctx.option("metrics-memory-metric")) is not None]
            lines.append(f"{ep}\tvia {ep.source}\t{len(samples)} samples, "
                         f"{len(accel)} accelerator samples")
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(ep).split(" on ")[0]).strip("_")
            ctx.evidence(f"scrape-{safe}.txt", text[:500_000])
            if accel:
                scraped.append((ep, samples))
        ctx.evidence("endpoints.txt", "\n".join(lines) + "\n")
        for err in errors:
            t.log(f"scrape failed: {err}")
        if not scraped:
            t.fail("no endpoint served accelerator metrics: "
                   + ("; ".join(errors) if errors else
                      f"{len(endpoints)} endpoint(s) scraped, none with accelerator series"))
        t.log(f"{len(scraped)} of {len(endpoints)} endpoint(s) serve accelerator metrics: "
              + ", ".join(str(ep) for ep, _ in scraped))

    if not _last_passed(ctx):
        return
    seen = collect(scraped, set(pool), utilization=ctx.option("metrics-utilization-metric"),
                   memory=ctx.option("metrics-memory-metric"))
    ctx.evidence("per-accelerator.md", _values_table(pool, seen), "text/markdown")
    _must_subtest(ctx, "PerAcceleratorUtilizationMetric", Concept.UTILIZATION, pool, seen,
                  total)
    _must_subtest(ctx, "PerAcceleratorMemoryMetric", Concept.MEMORY_USED, pool, seen, total)

    # SHOULD part: never a FAIL; PASS when present for every accelerator, else SKIP + why.
    with ctx.subtest("OptionalMetrics") as t:
        absent = []
        for c in SHOULD_CONCEPTS:
            cs = seen[c]
            if not cs.names:
                absent.append(f"{c.value}: not exposed")
                continue
            missing = missing_accelerators(pool, cs)
            if missing:
                absent.append(f"{c.value}: {_describe_missing(missing, total)}")
            else:
                t.log(f"{c.value}: {', '.join(sorted(cs.names))} for all {total} "
                      "accelerators")
        if absent:
            t.skip("SHOULD metrics incomplete: " + "; ".join(absent))

    with ctx.subtest("OpenTelemetryNaming") as t:
        names = {n: c for c in Concept for n in seen[c].names}
        otel = sorted(n for n in names if n.startswith("hw_"))
        if otel:
            t.log(f"OpenTelemetry hardware names in use: {', '.join(otel)}")
        vendor = {c: sorted(n for n in seen[c].names if not n.startswith("hw_"))
                  for c in (*MUST_CONCEPTS, *SHOULD_CONCEPTS)}
        must_otel = all(any(n.startswith("hw_") for n in seen[c].names) for c in MUST_CONCEPTS)
        if not must_otel:
            hints = "; ".join(f"{', '.join(vendor[c])} ↔ {OTEL_NAMES[c][0]} "
                              f"({OTEL_NAMES[c][1]})" for c in MUST_CONCEPTS if vendor[c])
            t.skip(f"vendor-specific metric names, not the OpenTelemetry hardware "
                   f"conventions (SHOULD): {hints}")


# ---------------------------------------------------------------------------------------
# ai_service_metrics
# ---------------------------------------------------------------------------------------

SAMPLE_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
SAMPLE_PORT = 8080
SAMPLE_LABEL = "kaic.io/sample-metrics"
PROM_OPERATOR = "monitoring.coreos.com/v1"
GMP = "monitoring.googleapis.com/v1"
OTEL_OPERATOR = "opentelemetry.io/v1beta1"
METHODS = ("auto", "podmonitor", "servicemonitor", "podmonitoring", "annotations", "none")


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
    ports = _container_ports(pod)
    for p in ports:
        if p.get("name") in ("web", "http", "http-web"):
            return int(p["containerPort"])
    for p in ports:
        if p.get("containerPort") == default:
            return default
    return default


def _find_prometheus_pods(ctx: CheckContext, namespace: str | None = None,
                          selectors: tuple[str, ...] = ("app.kubernetes.io/name=prometheus",
                                                        "app=prometheus")) -> list[KubeObject]:
    seen: dict[tuple[str | None, str], KubeObject] = {}
    for sel in selectors:
        for pod in ctx.cluster.list("v1", "Pod", namespace, label_selector=sel):
            if _running(pod):
                seen.setdefault((namespace_of(pod), name_of(pod)), pod)
    return sorted(seen.values(), key=lambda p: (namespace_of(p) or "", name_of(p)))


def _service_pod(ctx: CheckContext, value: str) -> tuple[str, str, int]:
    m = re.match(r"^(?:service/|svc/)?(?P<ns>[a-z0-9][-a-z0-9.]*)/(?P<name>[a-z0-9][-a-z0-9.]*)"
                 r":(?P<port>[-a-z0-9]+)$", value)
    if not m:
        raise UsageError(f"--prometheus-service {value!r}: expected NAMESPACE/NAME:PORT")
    eps = _service_endpoints(ctx, m.group("ns"), m.group("name"), m.group("port"), "/")
    eps = [e for e in eps if e.port]
    if not eps:
        raise ClusterError(f"--prometheus-service {value}: no Running pod behind the Service")
    first = eps[0]
    assert first.namespace and first.pod and first.port
    return first.namespace, first.pod, first.port


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
        raise UsageError(f"--service-metrics-collection {method!r}: choose one of "
                         + ", ".join(METHODS))
    url = ctx.option("prometheus-url")
    svc = ctx.option("prometheus-service")
    mon: Monitoring | None = None

    if _served(ctx, PROM_OPERATOR, "PodMonitor") and method in ("auto", "podmonitor",
                                                                  "servicemonitor"):
        proms = ctx.cluster.list(PROM_OPERATOR, "Prometheus") if _served(
            ctx, PROM_OPERATOR, "Prometheus") else []
        t.log(f"Prometheus Operator CRDs served; Prometheus objects: "
              f"{', '.join(f'{namespace_of(p)}/{name_of(p)}' for p in proms) or 'none'}")
        for prom in proms:
            ns, name = namespace_of(prom), name_of(prom)
            spec = prom.get("spec", {})
            notes: list[str] = []
            pm = _selector_labels(spec.get("podMonitorSelector"), "podMonitorSelector", notes)
            sm = _selector_labels(spec.get("serviceMonitorSelector"),
                                  "serviceMonitorSelector", notes)
            chosen = method
            if chosen == "auto":
                chosen = "podmonitor" if pm is not None else (
                    "servicemonitor" if sm is not None else "")
            labels = pm if chosen == "podmonitor" else sm
            if not chosen or labels is None:
                what = chosen or "PodMonitors or ServiceMonitors"
                t.log(f"Prometheus {ns}/{name} selects no {what} (selector unset)")
                continue
            nsel_key = ("podMonitorNamespaceSelector" if chosen == "podmonitor"
                        else "serviceMonitorNamespaceSelector")
            nsel = spec.get(nsel_key)
            mon = Monitoring(system=f"Prometheus Operator (Prometheus {ns}/{name})",
                             method=chosen, monitor_labels=labels, notes=notes)
            if nsel is None:
                mon.monitor_namespace = ns  # NOTE: unset selector = its own namespace only
            else:
                mon.namespace_labels = _selector_labels(nsel, nsel_key, notes) or {}
            pods = _find_prometheus_pods(ctx, ns, (f"operator.prometheus.io/name={name}",
                                                   f"prometheus={name}"))
            if pods:
                mon.query_pod = (ns or "", name_of(pods[0]), _web_port(pods[0]))
            break

    if mon is None and _served(ctx, GMP, "PodMonitoring") and method in ("auto",
                                                                         "podmonitoring"):
        mon = Monitoring(system="Google Cloud Managed Service for Prometheus",
                         method="podmonitoring")
        for sel in ("app=managed-prometheus-frontend", "app.kubernetes.io/name=frontend"):
            pods = [p for p in ctx.cluster.list("v1", "Pod", label_selector=sel) if _running(p)]
            if pods:
                mon.query_pod = (namespace_of(pods[0]) or "", name_of(pods[0]),
                                 _web_port(pods[0]))
                break

    if mon is None and method in ("auto", "annotations", "none"):
        pods = _find_prometheus_pods(ctx)
        if pods:
            p = pods[0]
            mon = Monitoring(system=f"Prometheus server {namespace_of(p)}/{name_of(p)}",
                             method="annotations" if method == "auto" else method,
                             query_pod=(namespace_of(p) or "", name_of(p), _web_port(p)))

    if mon is None and method in ("auto", "annotations", "none"):
        otel = _served(ctx, OTEL_OPERATOR, "OpenTelemetryCollector") or any(
            "opentelemetry-collector" in _pod_words(p) or "otel-collector" in _pod_words(p)
            for p in ctx.cluster.list("v1", "Pod") if _running(p))
        if otel:
            mon = Monitoring(system="OpenTelemetry collector",
                             method="annotations" if method == "auto" else method)
            mon.notes.append("an OpenTelemetry collector scrapes annotated pods (prometheus "
                             "receiver); its backend must be queried with --prometheus-url "
                             "or --prometheus-service")

    if mon is None and (url or svc):
        mon = Monitoring(system="given Prometheus-compatible API",
                         method="annotations" if method == "auto" else method)
    if mon is None:
        t.fail("no monitoring system found: no Prometheus Operator (monitoring.coreos.com) "
               "Prometheus, no Google managed PodMonitoring, no Prometheus server pods "
               "(app.kubernetes.io/name=prometheus or app=prometheus), no OpenTelemetry "
               "collector; give one with --prometheus-url or --prometheus-service")
    if url:
        mon.query_url, mon.query_pod = url.rstrip("/"), None
    elif svc:
        mon.query_pod = _service_pod(ctx, svc)
    if mon.query_url is None and mon.query_pod is None:
        t.error(f"found {mon.system} but no way to query it; give --prometheus-url or "
                "--prometheus-service")
    return mon


def prom_get(ctx: CheckContext, mon: Monitoring, path: str, timeout: float = 15.0) -> Any:
    """GET a Prometheus HTTP API path; returns its ``data`` (raises ClusterError)."""
    timeout = ctx.budget(timeout)
    if mon.query_url:
        body = _http_get_url(mon.query_url + path, timeout)
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
        return cls(token=f"{run_id}-{secrets.token_hex(3)}", requests=1000 + r(900_000),
                   queue_depth=1 + r(500), duration_count=10 + r(5000),
                   duration_sum=round(1 + r(100_000) / 100, 2))

    def expected(self) -> dict[str, float]:
        return {"kaic_sample_inference_requests_total": float(self.requests),
                "kaic_sample_queue_depth": float(self.queue_depth),
                "kaic_sample_request_duration_seconds_count": float(self.duration_count)}

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
            f"kaic_sample_request_duration_seconds_count{{{lbl}}} {self.duration_count}\n")


def _managed(ctx: CheckContext, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_ID_LABEL: ctx.run_id, **(extra or {})}


def sample_objects(ctx: CheckContext, sample: SampleMetrics, mon: Monitoring,
                   name: str) -> list[KubeObject]:
    """The sample Pod, and the Service and monitor object the method needs."""
    ns = ctx.namespace
    sel = {SAMPLE_LABEL: name}
    annotations = ({"prometheus.io/scrape": "true", "prometheus.io/port": str(SAMPLE_PORT),
                    "prometheus.io/path": "/metrics"} if mon.method == "annotations" else {})
    image = ctx.option("service-metrics-image") or SAMPLE_IMAGE
    pod: KubeObject = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns,
                     "labels": _managed(ctx, {**sel, "app.kubernetes.io/name": "kaic-sample"}),
                     "annotations": annotations},
        "spec": {
            "containers": [{
                "name": "sample", "image": image, "args": ["porter"],
                "env": [{"name": f"SERVE_PORT_{SAMPLE_PORT}", "value": sample.text()}],
                "ports": [{"name": "metrics", "containerPort": SAMPLE_PORT}],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                              "limits": {"memory": "64Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                    "runAsNonRoot": True, "runAsUser": 65534},
            }],
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "terminationGracePeriodSeconds": 1,
        },
    }
    objs = [pod]
    if mon.method in ("servicemonitor", "annotations"):
        objs.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": _managed(ctx, sel),
                         "annotations": annotations},
            "spec": {"selector": sel, "ports": [{"name": "metrics", "port": SAMPLE_PORT,
                                                 "targetPort": "metrics"}]},
        })
    mon_ns = mon.monitor_namespace or ns
    if mon.method == "podmonitor":
        objs.append({
            "apiVersion": PROM_OPERATOR, "kind": "PodMonitor",
            "metadata": {"name": name, "namespace": mon_ns,
                         "labels": _managed(ctx, mon.monitor_labels)},
            "spec": {"selector": {"matchLabels": sel},
                     "namespaceSelector": {"matchNames": [ns]},
                     "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics",
                                              "interval": "5s"}]},
        })
    elif mon.method == "servicemonitor":
        objs.append({
            "apiVersion": PROM_OPERATOR, "kind": "ServiceMonitor",
            "metadata": {"name": name, "namespace": mon_ns,
                         "labels": _managed(ctx, mon.monitor_labels)},
            "spec": {"selector": {"matchLabels": sel},
                     "namespaceSelector": {"matchNames": [ns]},
                     "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "5s"}]},
        })
    elif mon.method == "podmonitoring":
        objs.append({
            "apiVersion": GMP, "kind": "PodMonitoring",
            "metadata": {"name": name, "namespace": ns, "labels": _managed(ctx)},
            "spec": {"selector": {"matchLabels": sel},
                     "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "5s"}]},
        })
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
            return (f"target {tgt.get('scrapeUrl')} is {tgt.get('health')}"
                    + (f": {tgt.get('lastError')}" if tgt.get("lastError") else ""))
    dropped = len((data or {}).get("droppedTargets") or [])
    return f"no active scrape target for pod {pod} ({dropped} dropped targets)"


@check(
    "ai_service_metrics",
    test="TestAIServiceMetrics",
    options=(
        CheckOption("prometheus-url",
                    "base URL of a Prometheus-compatible query API, dialled directly "
                    "(default: port-forward to the detected Prometheus)"),
        CheckOption("prometheus-service",
                    "NAMESPACE/NAME:PORT of a Service in front of the query API "
                    "(reached by port-forward to one of its pods)"),
        CheckOption("service-metrics-collection",
                    "how to configure collection: " + "|".join(METHODS), default="auto"),
        CheckOption("service-metrics-timeout",
                    "seconds to wait for the sample metrics to be collected", default="300"),
        CheckOption("service-metrics-image",
                    "image of the sample workload (must behave like agnhost porter)",
                    default=SAMPLE_IMAGE),
    ),
    permissions=(
        Permission("create", "pods"),
        Permission("create", "services"),
        Permission("list", "pods", namespaced=False),
        Permission("create", "pods", subresource="portforward", namespaced=False),
        Permission("list", "customresourcedefinitions", group="apiextensions.k8s.io",
                   namespaced=False),
    ),
    timeout_s=420.0,
)
def ai_service_metrics(ctx: CheckContext) -> None:
    """The platform's monitoring system discovers a workload exposing Prometheus-format
    metrics and collects them (the sample's run-unique values can be queried back)."""
    with ctx.subtest("DetectMonitoringSystem") as t:
        mon = detect_monitoring(ctx, t)
        for n in mon.notes:
            t.log(n)
        t.log(f"{mon.system}; collection by {mon.method}; queried at {mon.describe_query()}")
        try:
            prom_get(ctx, mon, "/api/v1/query?query=vector%281%29", timeout=15.0)
        except KaicError as e:
            t.error(f"{mon.system} found, but its query API at {mon.describe_query()} does "
                    f"not answer: {e}")
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

    if not _last_passed(ctx):
        return
    sample = SampleMetrics.new(ctx.run_id)
    name = f"kaic-sample-{sample.token.rsplit('-', 1)[-1]}"
    created: list[KubeObject] = []
    try:
        with ctx.subtest("DeploySampleWorkload") as t:
            if mon.namespace_labels:
                ctx.cluster.patch("v1", "Namespace", ctx.namespace,
                                  {"metadata": {"labels": mon.namespace_labels}})
                t.log(f"labelled namespace {ctx.namespace} with {mon.namespace_labels}")
            for obj in sample_objects(ctx, sample, mon, name):
                created.append(ctx.cluster.create(obj))
                t.log(f"created {obj['kind']} {namespace_of(obj)}/{name_of(obj)}")
            ctx.evidence("sample-metrics.txt", sample.text())
            ctx.evidence("sample-objects.json", json.dumps(created, indent=2, default=str),
                         "application/json")
            pod = ctx.cluster.wait_for(
                "v1", "Pod", name, ctx.namespace,
                lambda p: bool(p and _running(p) and p.get("status", {}).get("podIP")),
                timeout=ctx.budget(120.0), what=f"sample pod {name} to run")
            t.log(f"sample pod running on {pod and pod['spec'].get('nodeName')} "
                  f"(pod IP {pod and pod['status'].get('podIP')})")

        if not _last_passed(ctx):
            return
        with ctx.subtest("MetricsCollected") as t:
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
                    why = _target_diagnosis(ctx, mon, name)
                    found = [m for m, v in got.items() if v is not None]
                    t.fail(f"the sample's metrics were not collected within {wanted:.0f}s "
                           f"(found {len(found)} of {len(expected)}); {why}"
                           + (f"; last query error: {last_error}" if last_error else ""))
                time.sleep(2.0)
            ctx.evidence("query-results.json", json.dumps(
                {"kaic_run": sample.token, "expected": expected, "queried": got}, indent=2),
                "application/json")
            wrong = [f"{m}={got[m]} (served {v})" for m, v in expected.items() if got[m] != v]
            if wrong:
                t.fail("collected values differ from what the sample served: "
                       + ", ".join(wrong))
            t.log(f"queried back {len(expected)} series with kaic_run={sample.token} and the "
                  "served values")
    finally:
        for obj in reversed(created):
            try:
                ctx.cluster.delete(obj["apiVersion"], obj["kind"], name_of(obj),
                                   namespace_of(obj))
            except KaicError as e:
                ctx.log(f"cleanup of {obj['kind']} {name_of(obj)} failed: {e}")
