"""accelerator_metrics (TestAcceleratorPerformanceMetrics): every accelerator has
per-device utilization and memory series on a Prometheus-format metrics endpoint.

Owns: finding accelerator metrics exporters (``EXPORTERS``: DCGM, AMD, Gaudi, XPU
Manager, Neuron, TPU, OpenTelemetry; or the ``--metrics-endpoint`` given), scraping them,
and matching their series to the accelerators of the one inventory
(``kaic.checks.accelerators``) by UUID, index or count; metric names live in
``_metric_names``. Must not import the Kubernetes client, and never dials a pod IP: pods
are reached through ``ClusterAPI.http_get`` (a port-forward through the apiserver); only
``--metrics-endpoint`` URLs that the user gives are dialled directly.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
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
from kaic.checks.accelerators import (
    Accelerator,
    accelerator_inventory,
    any_accelerator,
    cluster_nodes,
    node_accelerators,
)
from kaic.checks.base import CheckContext, CheckOption, Permission, Resource, Subtest, check, shared
from kaic.checks.endpoints import (
    container_ports,
    http_get_url,
    pod_words,
    resolve_target_port,
    service_pods,
)
from kaic.checks.predicates import pod_running
from kaic.checks.sampling import limit_option, spread
from kaic.cluster.api import KubeObject, labels_of, name_of, namespace_of
from kaic.errors import ClusterError, KaicError, UsageError


def find_accelerators(ctx: CheckContext) -> tuple[dict[str, list[Accelerator]], list[str]]:
    """Accelerators per node of the pool (``--metrics-accelerator-nodes``), and how they
    were counted (for the log), from the one inventory of ``kaic.checks.accelerators``."""
    acc = any_accelerator(
        ctx.option("metrics-accelerator-resource") or None,
        ctx.option("metrics-accelerator-driver") or None,
    )
    selector = ctx.option("metrics-accelerator-nodes") or None
    if selector is None and set(acc.drivers) <= set(any_accelerator().drivers):
        nodes = cluster_nodes(ctx)
        return accelerator_inventory(ctx).accelerators(acc, nodes)
    nodes = ctx.cluster.list("v1", "Node", label_selector=selector)
    return node_accelerators(ctx.cluster, acc, nodes)


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
    ExporterKind(
        "nvidia-dcgm",
        ("dcgm-exporter", "dcgm_exporter"),
        9400,
        ("gpu-metrics", "metrics", "http-metrics"),
    ),
    ExporterKind(
        "amd",
        ("device-metrics-exporter", "amd-metrics-exporter", "amdgpu-metrics", "amd-gpu-metrics"),
        5000,
    ),
    ExporterKind("intel-gaudi", ("habana", "gaudi-metric", "habanalabs"), 41611),
    ExporterKind("intel-xpum", ("xpumanager", "xpumd", "xpum-exporter", "xpum"), 29999),
    ExporterKind("aws-neuron", ("neuron-monitor",), 8000),
    ExporterKind("google-tpu", ("tpu-device-plugin", "tpu-metrics-exporter"), 2112),
    ExporterKind(
        "opentelemetry",
        ("gpu-metrics", "accelerator-metrics", "hw-metrics", "otel-gpu", "opentelemetry-gpu"),
        8889,
        ("metrics", "prometheus", "otlp-metrics"),
    ),
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


def _pick_port(pod: KubeObject, kind: ExporterKind) -> int:
    ports = container_ports(pod)
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


def _endpoint_for_pod(
    pod: KubeObject, kind: ExporterKind, source: str, port: int | None = None
) -> Endpoint:
    ann = pod.get("metadata", {}).get("annotations") or {}
    return Endpoint(
        source=source,
        vendor=kind.vendor,
        namespace=namespace_of(pod),
        pod=name_of(pod),
        port=port or _pick_port(pod, kind),
        path=ann.get("prometheus.io/path") or "/metrics",
        node=pod.get("spec", {}).get("nodeName"),
    )


@dataclass(frozen=True)
class _ExporterService:
    """A Service port that looks like an exporter's: the pods it selects serve metrics."""

    namespace: str | None
    name: str
    selector: Mapping[str, str]
    kind: ExporterKind
    target: Any

    def selects(self, pod: KubeObject) -> bool:
        labels = labels_of(pod)
        return namespace_of(pod) == self.namespace and all(
            labels.get(k) == v for k, v in self.selector.items()
        )


def _exporter_services(services: Iterable[KubeObject]) -> list[_ExporterService]:
    out = []
    for svc in services:
        spec = svc.get("spec", {})
        sel = spec.get("selector") or {}
        if not sel:
            continue
        words = (name_of(svc) + " " + " ".join(labels_of(svc).values())).lower()
        for sp in spec.get("ports") or []:
            kind = next((k for k in EXPORTERS if any(p in words for p in k.patterns)), None)
            if kind is None and sp.get("name") == "gpu-metrics":
                kind = EXPORTERS[0]
            if (
                kind is None
                and sp.get("port") in _EXPORTER_PORTS
                and any(w in words for w in ("gpu", "accelerator", "exporter", "metrics"))
            ):
                kind = _EXPORTER_PORTS[sp["port"]]
            if kind is not None:
                target = sp.get("targetPort", sp.get("port"))
                out.append(_ExporterService(namespace_of(svc), name_of(svc), sel, kind, target))
    return out


def discover_endpoints(ctx: CheckContext, t: Subtest) -> list[Endpoint]:
    """Exporter pods found by name, labels, image, Services and well-known ports.

    The Services are listed first; the pods are then read one page at a time, and only
    the endpoints of exporter pods are kept (a large cluster has many pods)."""
    found: dict[tuple[str | None, str | None, int | None], Endpoint] = {}
    services = _exporter_services(ctx.cluster.list("v1", "Service"))
    not_running: list[str] = []
    for pod in ctx.cluster.iterate("v1", "Pod"):
        words = pod_words(pod)
        kind = next((k for k in EXPORTERS if any(p in words for p in k.patterns)), None)
        running = pod_running(pod)
        if kind is not None:
            if running:
                ep = _endpoint_for_pod(
                    pod, kind, f"pod matched {kind.vendor} exporter by name/labels"
                )
                found.setdefault((ep.namespace, ep.pod, ep.port), ep)
            else:
                not_running.append(f"{namespace_of(pod)}/{name_of(pod)}")
        if not running:
            continue
        for svc in services:
            if svc.selects(pod):
                port = resolve_target_port(pod, svc.target)
                behind = f"behind Service {svc.namespace}/{svc.name}"
                ep = _endpoint_for_pod(pod, svc.kind, behind, port)
                found.setdefault((ep.namespace, ep.pod, ep.port), ep)
    if not_running:
        t.log(f"exporter pods not Running (not scraped): {', '.join(sorted(not_running))}")
    return sorted(found.values(), key=lambda e: (e.node or "", str(e)))


_POD_FORM = re.compile(
    r"^(?:pod/)?(?P<ns>[a-z0-9][-a-z0-9.]*)/(?P<name>[a-z0-9][-a-z0-9.]*)"
    r":(?P<port>\d+)(?P<path>/\S*)?$"
)
_SVC_FORM = re.compile(
    r"^(?:service|svc)/(?P<ns>[a-z0-9][-a-z0-9.]*)/"
    r"(?P<name>[a-z0-9][-a-z0-9.]*):(?P<port>[-a-z0-9]+)(?P<path>/\S*)?$"
)


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
            out += _service_endpoints(
                ctx, m.group("ns"), m.group("name"), m.group("port"), m.group("path") or "/metrics"
            )
            continue
        m = _POD_FORM.match(item)
        if m:
            pod = ctx.cluster.get("v1", "Pod", m.group("name"), m.group("ns"))
            node = pod.get("spec", {}).get("nodeName") if pod else None
            out.append(
                Endpoint(
                    source="--metrics-endpoint",
                    vendor="given",
                    namespace=m.group("ns"),
                    pod=m.group("name"),
                    port=int(m.group("port")),
                    path=m.group("path") or "/metrics",
                    node=node,
                )
            )
            continue
        raise UsageError(
            f"--metrics-endpoint {item!r}: expected URL, NAMESPACE/POD:PORT[/PATH] "
            "or service/NAMESPACE/NAME:PORT[/PATH]"
        )
    return out


def _service_endpoints(
    ctx: CheckContext, ns: str, name: str, port: str, path: str
) -> list[Endpoint]:
    return [
        Endpoint(
            source=f"--metrics-endpoint service {ns}/{name}",
            vendor="given",
            namespace=ns,
            pod=name_of(pod),
            port=target,
            path=path,
            node=pod.get("spec", {}).get("nodeName"),
        )
        for pod, target in service_pods(ctx.cluster, ns, name, port, option="--metrics-endpoint")
    ]


SHOWN = 20
"""Endpoints named in a log line; the evidence lists all of them."""
SCRAPERS = 8
"""Scrapes at a time (each a port-forward through the apiserver, or a URL)."""
MAX_ENDPOINTS = "200"


def sampled_pool(
    pool: dict[str, list[Accelerator]], endpoints: list[Endpoint], chosen: list[Endpoint]
) -> dict[str, list[Accelerator]]:
    """The accelerators a sample can vouch for: those on the sampled endpoints' nodes, and
    every one on a node that has no exporter endpoint at all (still a failure)."""
    covered = {ep.node for ep in endpoints if ep.node}
    nodes_without_node = any(ep.node is None for ep in chosen)
    if nodes_without_node:  # a Service or URL endpoint may serve any node: keep all
        return pool
    keep = {ep.node for ep in chosen} | (set(pool) - covered)
    return {n: v for n, v in pool.items() if n in keep}


def scrape_all(
    ctx: CheckContext, endpoints: list[Endpoint]
) -> list[tuple[Endpoint, str | KaicError]]:
    """Every endpoint's text (or why not), ``SCRAPERS`` at a time, in the given order."""

    def one(ep: Endpoint) -> str | KaicError:
        try:
            return scrape(ctx, ep)
        except KaicError as e:
            return e

    if len(endpoints) <= 1:
        return [(ep, one(ep)) for ep in endpoints]
    with ThreadPoolExecutor(max_workers=SCRAPERS, thread_name_prefix="kaic-scrape") as pool:
        return list(zip(endpoints, pool.map(one, endpoints), strict=True))


def scrape(ctx: CheckContext, ep: Endpoint) -> str:
    timeout = ctx.budget(30.0)
    if ep.url:
        return http_get_url(ep.url, timeout)
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
        default_factory=lambda: defaultdict(dict)
    )
    names: set[str] = field(default_factory=set)
    unlabelled: set[str] = field(default_factory=set)

    def uuids(self) -> set[str]:
        return {
            d.uuid.lower() for devs in self.by_node.values() for d, _, _ in devs.values() if d.uuid
        }


def collect(
    samples_by_endpoint: Iterable[tuple[Endpoint, list[Sample]]],
    pool_nodes: set[str],
    *,
    utilization: str | None,
    memory: str | None,
) -> dict[Concept, ConceptSeries]:
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


def match_series(
    pool: dict[str, list[Accelerator]], cs: ConceptSeries
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
            v[0].index: v for v in series.values() if v[0].index is not None
        }
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
                out[a] = (
                    ordered[i]
                    if i < len(ordered)
                    else (f"only {len(ordered)} of {len(accels)} devices on {node} have series")
                )
    return out


def missing_accelerators(
    pool: dict[str, list[Accelerator]], cs: ConceptSeries
) -> list[tuple[Accelerator, str]]:
    """Accelerators of the pool without a series of this concept, with why."""
    return [(a, v) for a, v in match_series(pool, cs).items() if isinstance(v, str)]


def _describe_missing(missing: list[tuple[Accelerator, str]], total: int) -> str:
    names = ", ".join(str(a) for a, _ in missing[:12])
    more = f" and {len(missing) - 12} more" if len(missing) > 12 else ""
    return f"{len(missing)} of {total} accelerators have none: {names}{more}"


def _values_table(pool: dict[str, list[Accelerator]], seen: dict[Concept, ConceptSeries]) -> str:
    matched = {c: match_series(pool, seen[c]) for c in Concept}
    lines = [
        "| node | accelerator | " + " | ".join(f"{c.value} ({c.unit})" for c in Concept) + " |",
        "|---|---|" + "---|" * len(Concept),
    ]
    for node, accels in sorted(pool.items()):
        for a in accels:
            cells = []
            for c in Concept:
                hit = matched[c].get(a)
                cells.append(f"{hit[1]:.4g} ({hit[2].name})" if isinstance(hit, tuple) else "—")
            lines.append(f"| {node} | {a.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _must_metric(
    t: Subtest, concept: Concept, pool: dict[str, list[Accelerator]], cs: ConceptSeries, total: int
) -> None:
    """Every accelerator of the pool has a series of ``concept`` (a MUST)."""
    if not cs.names:
        if cs.unlabelled:
            t.fail(
                f"{concept.value} series {', '.join(sorted(cs.unlabelled))} carry no "
                f"device label (one of {', '.join(DEVICE_LABELS)})"
            )
        t.fail(f"no per-accelerator {concept.value} series in the scraped metrics")
    t.log(f"{concept.value} series: {', '.join(sorted(cs.names))}")
    missing = missing_accelerators(pool, cs)
    if missing:
        t.fail(f"{concept.value}: {_describe_missing(missing, total)}")
    t.log(f"all {total} accelerators have a {concept.value} series")
    if concept is Concept.UTILIZATION:
        bad = [
            f"{node}/{d}={v:.3g}"
            for node, devs in cs.by_node.items()
            for d, v, _ in devs.values()
            if not -1e-9 <= v <= 1.0 + 1e-9
        ]
        if bad:
            t.log(
                f"WARNING: utilization outside 0..1 after unit normalisation: {', '.join(bad[:8])}"
            )


@check(
    "accelerator_metrics",
    test="TestAcceleratorPerformanceMetrics",
    locks=shared(Resource.NODE_POOL),
    options=(
        CheckOption(
            "metrics-endpoint",
            "accelerator metrics endpoint(s), comma-separated: URL, "
            "[pod/]NAMESPACE/POD:PORT[/PATH] or service/NAMESPACE/NAME:PORT[/PATH] "
            "(default: discover DCGM, AMD, Gaudi, XPU, Neuron, TPU and "
            "OpenTelemetry exporters)",
        ),
        CheckOption(
            "metrics-utilization-metric", "exact name of the per-accelerator utilization metric"
        ),
        CheckOption("metrics-memory-metric", "exact name of the per-accelerator memory metric"),
        CheckOption(
            "metrics-accelerator-resource",
            "extended resource that counts accelerators (default: nvidia.com/gpu, "
            "amd.com/gpu, habana.ai/gaudi, gpu.intel.com/*, aws.amazon.com/neuron, "
            "google.com/tpu)",
        ),
        CheckOption(
            "metrics-accelerator-driver",
            "DRA driver whose ResourceSlices list the accelerators "
            "(default: known GPU/TPU/Neuron drivers)",
        ),
        CheckOption(
            "metrics-accelerator-nodes", "label selector of the accelerator nodes to check"
        ),
        CheckOption(
            "metrics-max-endpoints",
            "scrape at most this many exporter endpoints, spread over the nodes (a large "
            "cluster is sampled; the evidence names the sample)",
            MAX_ENDPOINTS,
        ),
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
        ctx.not_applicable(
            "no node advertises accelerators (no accelerator resource in "
            "allocatable, no ResourceSlice of an accelerator driver)"
        )
    ctx.evidence(
        "accelerators.json",
        json.dumps({n: [a.__dict__ for a in v] for n, v in sorted(pool.items())}, indent=2),
        "application/json",
    )

    scraped: list[tuple[Endpoint, list[Sample]]] = []
    given = ctx.option("metrics-endpoint")
    endpoints = parse_endpoint_option(ctx, given) if given else []

    def reachable(t: Subtest) -> None:
        nonlocal endpoints, pool, total
        if not given:
            endpoints = discover_endpoints(ctx, t)
        if not endpoints:
            t.fail(
                "no accelerator metrics endpoint found (looked for DCGM, AMD, Gaudi, XPU "
                "Manager, Neuron, TPU and OpenTelemetry exporter pods and Services); "
                "give one with --metrics-endpoint"
            )
        chosen = spread(endpoints, limit_option(ctx, "metrics-max-endpoints"))
        if len(chosen) < len(endpoints):
            pool = sampled_pool(pool, endpoints, chosen)
            total = sum(len(v) for v in pool.values())
            note = (
                f"sampled {len(chosen)} of {len(endpoints)} exporter endpoints, spread over "
                f"the nodes (--metrics-max-endpoints {len(chosen)}); accelerators checked: "
                f"the {total} on the sampled nodes and on "
                "nodes without any exporter"
            )
            t.log(note)
            ctx.evidence("sampled.txt", note + "\n" + "".join(f"{ep}\n" for ep in chosen))
        errors: list[str] = []
        lines = []
        for ep, got in scrape_all(ctx, chosen):
            if isinstance(got, KaicError):
                errors.append(f"{ep}: {got}")
                lines.append(f"{ep}\tvia {ep.source}\tERROR {got}")
                continue
            text = got
            try:
                samples = parse_samples(text)
            except ValueError as e:
                errors.append(f"{ep}: not Prometheus text format: {e}")
                lines.append(f"{ep}\tvia {ep.source}\tunparseable")
                continue
            accel = [
                s
                for s in samples
                if classify(
                    s.name,
                    utilization=ctx.option("metrics-utilization-metric"),
                    memory=ctx.option("metrics-memory-metric"),
                )
                is not None
            ]
            lines.append(
                f"{ep}\tvia {ep.source}\t{len(samples)} samples, {len(accel)} accelerator samples"
            )
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(ep).split(" on ")[0]).strip("_")
            ctx.evidence(f"scrape-{safe}.txt", text[:500_000])
            if accel:
                scraped.append((ep, samples))
        ctx.evidence("endpoints.txt", "\n".join(lines) + "\n")
        for err in errors:
            t.log(f"scrape failed: {err}")
        if not scraped:
            t.fail(
                "no endpoint served accelerator metrics: "
                + (
                    "; ".join(errors)
                    if errors
                    else f"{len(endpoints)} endpoint(s) scraped, none with accelerator series"
                )
            )
        t.log(
            f"{len(scraped)} of {len(chosen)} endpoint(s) scraped serve accelerator metrics: "
            + ", ".join(str(ep) for ep, _ in scraped[:SHOWN])
            + (f" and {len(scraped) - SHOWN} more" if len(scraped) > SHOWN else "")
        )

    seen: dict[Concept, ConceptSeries] = {c: ConceptSeries() for c in Concept}
    if ctx.step("MetricsEndpointReachable", reachable):
        seen = collect(
            scraped,
            set(pool),
            utilization=ctx.option("metrics-utilization-metric"),
            memory=ctx.option("metrics-memory-metric"),
        )
        ctx.evidence("per-accelerator.md", _values_table(pool, seen), "text/markdown")

    def optional(t: Subtest) -> None:
        """The SHOULD part: never a FAIL; PASS when present for every accelerator, else
        SKIP with why."""
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
                t.log(f"{c.value}: {', '.join(sorted(cs.names))} for all {total} accelerators")
        if absent:
            t.skip("SHOULD metrics incomplete: " + "; ".join(absent))

    def otel_naming(t: Subtest) -> None:
        names = {n: c for c in Concept for n in seen[c].names}
        otel = sorted(n for n in names if n.startswith("hw_"))
        if otel:
            t.log(f"OpenTelemetry hardware names in use: {', '.join(otel)}")
        vendor = {
            c: sorted(n for n in seen[c].names if not n.startswith("hw_"))
            for c in (*MUST_CONCEPTS, *SHOULD_CONCEPTS)
        }
        must_otel = all(any(n.startswith("hw_") for n in seen[c].names) for c in MUST_CONCEPTS)
        if not must_otel:
            hints = "; ".join(
                f"{', '.join(vendor[c])} ↔ {OTEL_NAMES[c][0]} ({OTEL_NAMES[c][1]})"
                for c in MUST_CONCEPTS
                if vendor[c]
            )
            t.skip(
                f"vendor-specific metric names, not the OpenTelemetry hardware "
                f"conventions (SHOULD): {hints}"
            )

    reached = ("MetricsEndpointReachable",)
    ctx.step(
        "PerAcceleratorUtilizationMetric",
        lambda t: _must_metric(t, Concept.UTILIZATION, pool, seen[Concept.UTILIZATION], total),
        needs=reached,
    )
    ctx.step(
        "PerAcceleratorMemoryMetric",
        lambda t: _must_metric(t, Concept.MEMORY_USED, pool, seen[Concept.MEMORY_USED], total),
        needs=reached,
    )
    ctx.step("OptionalMetrics", optional, needs=reached)
    ctx.step("OpenTelemetryNaming", otel_naming, needs=reached)
