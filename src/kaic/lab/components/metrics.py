"""Lab components for observability: a simulated DCGM exporter, the agnhost-porter stand-in
and a real Prometheus.

* ``dcgm-exporter`` (default on): one loopback listener per GPU node serving DCGM-style
  text for exactly that node's simulated GPUs (``kaic.lab.dcgm``; **simulated metrics**),
  represented in the cluster like NVIDIA's GPU operator does it: a pod
  ``gpu-operator/nvidia-dcgm-exporter-<node>`` on each GPU node (labels
  ``app=nvidia-dcgm-exporter``, ``app.kubernetes.io/name=dcgm-exporter``, port 9400
  ``metrics``) with a kwok ``PortForward`` from its port 9400 to the node's listener,
  and a Service ``nvidia-dcgm-exporter`` (port ``gpu-metrics``). A port-forward to the
  pod, through the apiserver and kwok, reaches the simulator.
* ``porter`` (default on): serves pods running ``agnhost porter`` at their (loopback) pod
  IPs (``kaic.lab.porter``), so that a monitoring system can scrape workloads.
* ``prometheus`` (off by default, ``--with prometheus``; needs
  ``kaic lab build``): the real Prometheus server on 127.0.0.1, discovering
  pods through the apiserver and scraping only loopback targets (``kaic.lab.prometheus``),
  represented by a pod ``monitoring/prometheus-0`` (``app.kubernetes.io/name=prometheus``,
  port 9090 ``web``) with a kwok ``PortForward`` to it, and a Service ``prometheus``.

Owns: these three components and their API objects. Must not decide pass/fail.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from kaic.errors import LabError
from kaic.lab import dcgm, proc, programs
from kaic.lab import prometheus as prom
from kaic.lab.component import Component, ProcessComponent, register
from kaic.lab.components.nodes import PRODUCT, gpu_node_name, gpu_uuid
from kaic.lab.context import LabContext, probe

DCGM_NAMESPACE = "gpu-operator"
DCGM_PORT = 9400
DCGM_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04"
PROM_NAMESPACE = "monitoring"
PROM_POD = "prometheus-0"
PROM_PORT = 9090
LAB_LABELS = {"app.kubernetes.io/managed-by": "kaic-lab"}


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(LAB_LABELS)}}


def _port_forward(ns: str, pod: str, port: int, local: int) -> dict[str, Any]:
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward",
            "metadata": {"name": pod, "namespace": ns, "labels": dict(LAB_LABELS)},
            "spec": {"forwards": [{"ports": [port],
                                   "target": {"address": "127.0.0.1", "port": local}}]}}


def _pods_running(ctx: LabContext, ns: str, names: list[str]) -> bool:
    items = ctx.get(f"/api/v1/namespaces/{ns}/pods")["items"]
    running = {p["metadata"]["name"] for p in items
               if p.get("status", {}).get("phase") == "Running"}
    return all(n in running for n in names)


# ---- DCGM exporter ------------------------------------------------------------------------

def gpu_nodes(ctx: LabContext) -> list[str]:
    if ctx.options.accelerators == "none":
        return []
    return [gpu_node_name(i) for i in range(ctx.options.nodes)]


def lab_gpus(ctx: LabContext, node: str) -> tuple[dcgm.Gpu, ...]:
    """The node's simulated GPUs, with the UUIDs its ResourceSlice publishes."""
    return tuple(dcgm.Gpu(i, gpu_uuid(ctx.name, node, i), PRODUCT,
                          f"00000000:{0x18 + i * 0x10 % 0x100:02X}:00.0")
                 for i in range(ctx.options.gpus_per_node))


def dcgm_fault_file(ctx: LabContext) -> Path:
    """Write faults here with ``kaic.lab.dcgm.write_faults`` (read on every scrape)."""
    return ctx.dir("dcgm-exporter") / "faults.json"


def dcgm_pod(node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"nvidia-dcgm-exporter-{node}", "namespace": DCGM_NAMESPACE,
                     "labels": {**LAB_LABELS, "app": "nvidia-dcgm-exporter",
                                "app.kubernetes.io/name": "dcgm-exporter"},
                     "annotations": {"prometheus.io/scrape": "false"}},
        "spec": {"nodeName": node,
                 "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "nvidia-dcgm-exporter", "image": DCGM_IMAGE,
                                 "ports": [{"name": "metrics",
                                            "containerPort": DCGM_PORT}]}]},
    }


@register
class DcgmExporter(Component):
    name = "dcgm-exporter"
    description = ("simulated NVIDIA DCGM exporter (made-up metrics) for every GPU node, "
                   "reached by port-forward to gpu-operator/nvidia-dcgm-exporter-<node>")
    order = 110
    optional = True
    default = True
    process: ClassVar[str] = "dcgm-exporter"

    def start(self, ctx: LabContext) -> None:
        nodes = gpu_nodes(ctx)
        if not nodes:
            return
        exporters = [dcgm.NodeExporter(n, ctx.port(f"dcgm-{n}"), lab_gpus(ctx, n))
                     for n in nodes]
        spec = ctx.dir(self.name) / "exporters.json"
        dcgm.write_spec(spec, exporters)
        if ctx.pid(self.process) is None:
            for e in exporters:
                if proc.port_in_use(e.port):
                    raise LabError(f"port {e.port} of {self.name} is taken by another "
                                   "process")
            ctx.spawn(self.process, [sys.executable, "-m", "kaic.lab.dcgm",
                                     f"--spec={spec}", f"--fault-file={dcgm_fault_file(ctx)}"])
        ctx.wait("the DCGM simulator to serve", lambda: all(
            probe(f"http://127.0.0.1:{e.port}/metrics") for e in exporters),
            timeout=30, alive=self.process)
        pods = [dcgm_pod(n) for n in nodes]
        ctx.apply([_namespace(DCGM_NAMESPACE)])
        ctx.apply([_port_forward(DCGM_NAMESPACE, p["metadata"]["name"], DCGM_PORT, e.port)
                   for p, e in zip(pods, exporters, strict=True)])
        ctx.apply([*pods, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "nvidia-dcgm-exporter", "namespace": DCGM_NAMESPACE,
                         "labels": {**LAB_LABELS, "app": "nvidia-dcgm-exporter"}},
            "spec": {"selector": {"app": "nvidia-dcgm-exporter"},
                     "ports": [{"name": "gpu-metrics", "port": DCGM_PORT,
                                "targetPort": DCGM_PORT}]}}])
        names = [p["metadata"]["name"] for p in pods]
        ctx.wait("DCGM exporter pods to run", lambda: _pods_running(ctx, DCGM_NAMESPACE,
                                                                     names), timeout=60)

    def stop(self, ctx: LabContext) -> None:
        proc.stop(ctx.pid_path(self.process))

    def healthy(self, ctx: LabContext) -> bool:
        nodes = gpu_nodes(ctx)
        return not nodes or (ctx.pid(self.process) is not None and all(
            probe(f"http://127.0.0.1:{ctx.port(f'dcgm-{n}')}/metrics") for n in nodes))

    def pids(self, ctx: LabContext) -> list[int]:
        pid = ctx.pid(self.process)
        return [] if pid is None else [pid]


# ---- agnhost porter stand-in --------------------------------------------------------------

@register
class Porter(ProcessComponent):
    name = "porter"
    description = ("serves pods running `agnhost porter` at their loopback pod IPs "
                   "(stands in for that container)")
    order = 110
    optional = True
    default = True

    def argv(self, ctx: LabContext) -> list[str]:
        p = ctx.pki
        return [sys.executable, "-m", "kaic.lab.porter", f"--server={ctx.server}",
                f"--ca={p.ca_crt}", f"--cert={p.admin_crt}", f"--key={p.admin_key}"]

    def ready(self, ctx: LabContext) -> bool:
        try:
            return "porter simulator running" in ctx.log_path(self.name).read_text()
        except OSError:
            return False


# ---- Prometheus ---------------------------------------------------------------------------

def prometheus_config_file(ctx: LabContext) -> Path:
    return ctx.dir("prometheus") / "prometheus.yml"


def set_prometheus_scraping(ctx: LabContext, enabled: bool) -> None:
    """Switch the lab Prometheus between collecting annotated pods and collecting nothing
    (a fault for negative tests); reloads it through its lifecycle API."""
    import urllib.request

    prometheus_config_file(ctx).write_text(prom.config_text(ctx.kubeconfig,
                                                            scrape_pods=enabled))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"http://127.0.0.1:{ctx.port('prometheus')}/-/reload",
                                 method="POST")
    with opener.open(req, timeout=30) as r:
        if r.status != 200:
            raise LabError(f"Prometheus reload answered {r.status}")


@register
class Prometheus(ProcessComponent):
    name = "prometheus"
    description = ("real Prometheus (built from its Go module) discovering pods through the "
                   "apiserver, scraping only loopback targets")
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
            cfg.write_text(prom.config_text(ctx.kubeconfig))

    def argv(self, ctx: LabContext) -> list[str]:
        return prom.argv(programs.binary_of("prometheus", ctx.options.version),
                         prometheus_config_file(ctx),
                         ctx.dir("prometheus") / "data", ctx.port("prometheus"))

    def ready(self, ctx: LabContext) -> bool:
        return probe(f"http://127.0.0.1:{ctx.port('prometheus')}/-/ready")

    def after_start(self, ctx: LabContext) -> None:
        ctx.apply([_namespace(PROM_NAMESPACE),
                   _port_forward(PROM_NAMESPACE, PROM_POD, PROM_PORT, ctx.port("prometheus"))])
        labels = {**LAB_LABELS, "app.kubernetes.io/name": "prometheus",
                  "app.kubernetes.io/component": "server"}
        ctx.apply([{
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": PROM_POD, "namespace": PROM_NAMESPACE, "labels": labels},
            "spec": {"containers": [{"name": "prometheus",
                                     "image": "quay.io/prometheus/prometheus:v3.16.0",
                                     "ports": [{"name": "web",
                                                "containerPort": PROM_PORT}]}]},
        }, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "prometheus", "namespace": PROM_NAMESPACE,
                         "labels": dict(labels)},
            "spec": {"selector": {"app.kubernetes.io/name": "prometheus"},
                     "ports": [{"name": "web", "port": PROM_PORT, "targetPort": "web"}]},
        }])
        ctx.wait("the Prometheus pod to run",
                 lambda: _pods_running(ctx, PROM_NAMESPACE, [PROM_POD]), timeout=60)
