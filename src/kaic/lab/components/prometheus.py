"""The lab's real Prometheus server (``--with prometheus``; the binary is program
``prometheus`` of ``programs.toml``, built by ``kaic lab build``).

Prometheus runs as a local process on the host's 127.0.0.1. It discovers targets
through the lab's apiserver (``kubernetes_sd_configs`` with the lab's admin kubeconfig)
and keeps the usual annotation convention (``prometheus.io/scrape``,
``prometheus.io/port``, ``prometheus.io/path``) in two jobs: ``kubernetes-pods`` (role
``pod``: annotated pods) and ``kubernetes-service-endpoints`` (role ``endpointslice``: the
endpoints of annotated Services, as the EndpointSlice controller lists them; the
discovery a ServiceMonitor makes the Prometheus Operator configure, which the lab does
not run).

Network rule: the last relabel step keeps only targets whose ``__address__`` is a
127.0.0.0/8 address or one of the lab's own block of 198.18.0.0/15 (``kaic.lab.network``),
so Prometheus never dials anything else, whatever a pod's IP. kwok hands out pod IPs
from the lab's pod range; the host reaches them through the lab's veth, and
``kaic.lab.sims.porter`` serves the sample workload at its pod IP. In the cluster it is
represented by a StatefulSet ``monitoring/prometheus`` whose one pod ``prometheus-0``
(``app.kubernetes.io/name=prometheus``, port 9090 ``web``) has a kwok ``PortForward`` to
it, and a Service ``prometheus``.

Owns: the configuration text, the command line, the process and those API objects.
Must not decide pass/fail.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import yaml

from kaic.errors import LabError
from kaic.lab import programs
from kaic.lab.apiserver import probe
from kaic.lab.component import ProcessComponent, register
from kaic.lab.components.nodes import POOL_LABEL
from kaic.lab.context import LabContext
from kaic.lab.objects import LAB_LABELS, namespace, pods_running, port_forward

PROM_NAMESPACE = "monitoring"
PROM_NAME = "prometheus"
PROM_POD = f"{PROM_NAME}-0"
"""The StatefulSet's one pod."""
PROM_PORT = 9090
SCRAPE_INTERVAL = "2s"
PODS_JOB = "kubernetes-pods"
SERVICE_ENDPOINTS_JOB = "kubernetes-service-endpoints"
LOOPBACK_ADDRESS = r"127(\.[0-9]{1,3}){3}:[0-9]+"
"""Relabel regex (anchored by Prometheus) a target address must match to be scraped."""


def target_regex(lab_addresses: str | None) -> str:
    """The relabel regex for target addresses: loopback, or the lab's own block."""
    return LOOPBACK_ADDRESS if lab_addresses is None else f"{LOOPBACK_ADDRESS}|{lab_addresses}"


def _network_rule(lab_addresses: str | None) -> list[dict[str, object]]:
    # NOTE: the network rule; must stay the last address-changing step of every job.
    return [
        {"source_labels": ["__address__"], "action": "keep", "regex": target_regex(lab_addresses)}
    ]


def _job(
    name: str, role: str, kubeconfig: Path, relabel: list[dict[str, object]]
) -> dict[str, object]:
    return {
        "job_name": name,
        "scrape_interval": SCRAPE_INTERVAL,
        "scrape_timeout": SCRAPE_INTERVAL,
        "fallback_scrape_protocol": "PrometheusText0.0.4",
        "kubernetes_sd_configs": [{"role": role, "kubeconfig_file": str(kubeconfig)}],
        "relabel_configs": relabel,
    }


def pods_job(kubeconfig: Path, lab_addresses: str | None = None) -> dict[str, object]:
    """Annotated pods (``prometheus.io/scrape`` on the pod), discovered as pods."""
    relabel: list[dict[str, object]] = [
        {
            "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
            "action": "keep",
            "regex": "true",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
            "action": "replace",
            "target_label": "__metrics_path__",
            "regex": "(.+)",
        },
        {
            "source_labels": [
                "__meta_kubernetes_pod_ip",
                "__meta_kubernetes_pod_annotation_prometheus_io_port",
            ],
            "action": "replace",
            "regex": r"(.+);([0-9]+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
        },
        *_network_rule(lab_addresses),
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
    ]
    return _job(PODS_JOB, "pod", kubeconfig, relabel)


def service_endpoints_job(kubeconfig: Path, lab_addresses: str | None = None) -> dict[str, object]:
    """The endpoints of annotated Services (``prometheus.io/scrape`` on the Service),
    discovered from their EndpointSlices (role ``endpointslice``): the Prometheus
    community chart's ``kubernetes-service-endpoints`` job, and the discovery a
    ServiceMonitor makes the Prometheus Operator configure (which selects Services by
    labels instead of annotations)."""
    relabel: list[dict[str, object]] = [
        {
            "source_labels": ["__meta_kubernetes_service_annotation_prometheus_io_scrape"],
            "action": "keep",
            "regex": "true",
        },
        {
            "source_labels": ["__meta_kubernetes_service_annotation_prometheus_io_path"],
            "action": "replace",
            "target_label": "__metrics_path__",
            "regex": "(.+)",
        },
        {
            "source_labels": [
                "__address__",
                "__meta_kubernetes_service_annotation_prometheus_io_port",
            ],
            "action": "replace",
            "regex": r"(.+?)(?::[0-9]+)?;([0-9]+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
        },
        *_network_rule(lab_addresses),
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
    ]
    return _job(SERVICE_ENDPOINTS_JOB, "endpointslice", kubeconfig, relabel)


def config(
    kubeconfig: Path,
    *,
    scrape_pods: bool = True,
    scrape_endpoints: bool | None = None,
    lab_addresses: str | None = None,
) -> dict[str, object]:
    """The lab Prometheus configuration; ``scrape_pods=False`` leaves out annotated pods,
    ``scrape_endpoints=False`` the endpoints of annotated Services (default: as
    ``scrape_pods``); both off collects nothing (faults).
    ``lab_addresses``: the regex of the lab network's ``host:port`` targets."""
    endpoints = scrape_pods if scrape_endpoints is None else scrape_endpoints
    jobs = [pods_job(kubeconfig, lab_addresses)] if scrape_pods else []
    if endpoints:
        jobs.append(service_endpoints_job(kubeconfig, lab_addresses))
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "15s"},
        "scrape_configs": jobs,
    }


def config_text(
    ctx: LabContext, *, scrape_pods: bool = True, scrape_endpoints: bool | None = None
) -> str:
    cfg = config(
        ctx.kubeconfig,
        scrape_pods=scrape_pods,
        scrape_endpoints=scrape_endpoints,
        lab_addresses=ctx.net.address_regex(),
    )
    return yaml.safe_dump(cfg, sort_keys=False)


def command_line(binary_path: Path, config_file: Path, data_dir: Path, port: int) -> list[str]:
    return [
        str(binary_path),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=2h",
        "--log.level=info",
    ]


def prometheus_config_file(ctx: LabContext) -> Path:
    return ctx.dir("prometheus") / "prometheus.yml"


def set_prometheus_scraping(
    ctx: LabContext, enabled: bool, *, endpoints: bool | None = None
) -> None:
    """Switch the lab Prometheus between collecting annotated pods and Services'
    endpoints and collecting nothing (a fault for negative tests); ``endpoints`` (default:
    ``enabled``) switches the Service-endpoints job alone. Reloads it through its
    lifecycle API."""
    text = config_text(ctx, scrape_pods=enabled, scrape_endpoints=endpoints)
    prometheus_config_file(ctx).write_text(text)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(
        f"http://127.0.0.1:{ctx.port('prometheus')}/-/reload", method="POST"
    )
    with opener.open(req, timeout=30) as r:
        if r.status != 200:
            raise LabError(f"Prometheus reload answered {r.status}")


@register
class Prometheus(ProcessComponent):
    name = "prometheus"
    description = (
        "real Prometheus (built from its Go module) discovering pods and Service "
        "endpoints through the apiserver, scraping only loopback and lab-network targets"
    )
    order = 120
    optional = True
    default = False
    ready_timeout = 90.0

    def port_keys(self) -> tuple[str, ...]:
        return ("prometheus",)

    def before_start(self, ctx: LabContext) -> None:
        programs.require_binary("prometheus", ctx.options.version)
        cfg = prometheus_config_file(ctx)
        if not cfg.exists():
            cfg.write_text(config_text(ctx))

    def argv(self, ctx: LabContext) -> list[str]:
        return command_line(
            programs.binary_of("prometheus", ctx.options.version),
            prometheus_config_file(ctx),
            ctx.dir("prometheus") / "data",
            ctx.port("prometheus"),
        )

    def ready(self, ctx: LabContext) -> bool:
        return probe(f"http://127.0.0.1:{ctx.port('prometheus')}/-/ready")

    def after_start(self, ctx: LabContext) -> None:
        ctx.apply(
            [
                namespace(PROM_NAMESPACE),
                port_forward(PROM_NAMESPACE, PROM_POD, PROM_PORT, ctx.port("prometheus")),
            ]
        )
        labels = {
            **LAB_LABELS,
            "app.kubernetes.io/name": "prometheus",
            "app.kubernetes.io/component": "server",
        }
        # NOTE: a StatefulSet of one, as Prometheus is run on a real platform; its pod
        # keeps the name prometheus-0, which the PortForward above is named after. It is
        # kept off the GPU pool (on the CPU nodes when the lab has some).
        placement = {POOL_LABEL: "cpu"} if ctx.options.cpu_nodes else {}
        ctx.apply(
            [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "metadata": {
                        "name": PROM_NAME,
                        "namespace": PROM_NAMESPACE,
                        "labels": dict(labels),
                    },
                    "spec": {
                        "replicas": 1,
                        "serviceName": PROM_NAME,
                        "selector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                        "template": {
                            "metadata": {"labels": dict(labels)},
                            "spec": {
                                "nodeSelector": placement,
                                "containers": [
                                    {
                                        "name": "prometheus",
                                        "image": "quay.io/prometheus/prometheus:v3.16.0",
                                        "ports": [{"name": "web", "containerPort": PROM_PORT}],
                                    }
                                ],
                            },
                        },
                    },
                },
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {
                        "name": "prometheus",
                        "namespace": PROM_NAMESPACE,
                        "labels": dict(labels),
                    },
                    "spec": {
                        "selector": {"app.kubernetes.io/name": "prometheus"},
                        "ports": [{"name": "web", "port": PROM_PORT, "targetPort": "web"}],
                    },
                },
            ]
        )
        ctx.wait(
            "the Prometheus pod to run",
            lambda: pods_running(ctx, PROM_NAMESPACE, [PROM_POD]),
            timeout=60,
        )
