"""The lab's real Prometheus server: its configuration (the binary is program ``prometheus``
of ``programs.toml``).

Prometheus (built from ``github.com/prometheus/prometheus/cmd/prometheus`` by
``kaic lab build``) runs as a local process on 127.0.0.1. It discovers pods
through the lab's apiserver (``kubernetes_sd_configs``, role ``pod``, with the lab's
admin kubeconfig) and keeps the usual annotation convention (``prometheus.io/scrape``,
``prometheus.io/port``, ``prometheus.io/path``).

Network rule: the last relabel step keeps only targets whose ``__address__`` is a
127.0.0.0/8 address with a port, so Prometheus never dials anything but loopback, even
if a pod had another IP. The lab's kwok hands out pod IPs inside 127.0.0.0/8, and
``kaic.lab.porter`` serves the sample workload at its pod IP.

Owns: the configuration text and the command line. Must not start anything.
"""

from __future__ import annotations

from pathlib import Path

import yaml

SCRAPE_INTERVAL = "2s"
LOOPBACK_ADDRESS = r"127(\.[0-9]{1,3}){3}:[0-9]+"
"""Relabel regex (anchored by Prometheus) a target address must match to be scraped."""


def config(kubeconfig: Path, *, scrape_pods: bool = True) -> dict[str, object]:
    """The lab Prometheus configuration; ``scrape_pods=False`` collects nothing (a fault)."""
    relabel = [
        {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
         "action": "keep", "regex": "true"},
        {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
         "action": "replace", "target_label": "__metrics_path__", "regex": "(.+)"},
        {"source_labels": ["__meta_kubernetes_pod_ip",
                           "__meta_kubernetes_pod_annotation_prometheus_io_port"],
         "action": "replace", "regex": r"(.+);([0-9]+)", "replacement": "$1:$2",
         "target_label": "__address__"},
        # NOTE: the network rule; must stay the last address-changing step.
        {"source_labels": ["__address__"], "action": "keep", "regex": LOOPBACK_ADDRESS},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
    ]
    jobs = [{
        "job_name": "kubernetes-pods",
        "scrape_interval": SCRAPE_INTERVAL,
        "scrape_timeout": SCRAPE_INTERVAL,
        "fallback_scrape_protocol": "PrometheusText0.0.4",
        "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
        "relabel_configs": relabel,
    }] if scrape_pods else []
    return {"global": {"scrape_interval": SCRAPE_INTERVAL,
                       "evaluation_interval": "15s"},
            "scrape_configs": jobs}


def config_text(kubeconfig: Path, *, scrape_pods: bool = True) -> str:
    return yaml.safe_dump(config(kubeconfig, scrape_pods=scrape_pods), sort_keys=False)


def argv(binary_path: Path, config_file: Path, data_dir: Path, port: int) -> list[str]:
    return [str(binary_path), f"--config.file={config_file}",
            f"--storage.tsdb.path={data_dir}", f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle", "--storage.tsdb.retention.time=2h",
            "--log.level=info"]
