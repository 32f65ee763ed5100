"""A simulated NVIDIA DCGM exporter for every GPU node (``kaic.lab.sims.dcgm``; **simulated
metrics**), represented in the cluster like NVIDIA's GPU operator does it.

One loopback listener per GPU node serves DCGM-style text for exactly that node's
simulated GPUs. A DaemonSet ``gpu-operator/nvidia-dcgm-exporter`` (labels
``app=nvidia-dcgm-exporter``, ``app.kubernetes.io/name=dcgm-exporter``, port 9400
``metrics``) places one pod on each of the lab's GPU nodes; each pod has a kwok
``PortForward`` (named like it, owned by it) from its port 9400 to its node's listener,
and a Service ``nvidia-dcgm-exporter`` (port ``gpu-metrics``) selects them. A
port-forward to the pod, through the apiserver and kwok, reaches the simulator.

Owns: the simulator process, its spec and fault file, and those API objects. Must not
decide pass/fail.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from kaic.errors import LabError
from kaic.lab import proc
from kaic.lab.apiserver import probe
from kaic.lab.component import Component, register
from kaic.lab.components.nodes import (
    BULK_WORKERS,
    LAB_NODE_LABEL,
    POOL_LABEL,
    PRODUCT,
    gpu_node_name,
    gpu_uuid,
)
from kaic.lab.context import LabContext
from kaic.lab.objects import LAB_LABELS, namespace, pods_running
from kaic.lab.sims import dcgm

T = TypeVar("T")
DCGM_NAMESPACE = "gpu-operator"
DCGM_PORT = dcgm.PORT
DCGM_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04"


def gpu_nodes(ctx: LabContext) -> list[str]:
    if ctx.options.accelerators == "none":
        return []
    return [gpu_node_name(i) for i in range(ctx.options.nodes)]


def lab_gpus(ctx: LabContext, node: str) -> tuple[dcgm.Gpu, ...]:
    """The node's simulated GPUs, with the UUIDs its ResourceSlice publishes."""
    return tuple(
        dcgm.Gpu(
            i, gpu_uuid(ctx.name, node, i), PRODUCT, f"00000000:{0x18 + i * 0x10 % 0x100:02X}:00.0"
        )
        for i in range(ctx.options.gpus_per_node)
    )


def dcgm_fault_file(ctx: LabContext) -> Path:
    """Write faults here with ``kaic.lab.sims.dcgm.write_faults`` (read on every scrape)."""
    return ctx.dir("dcgm-exporter") / "faults.json"


PROBES = 16
"""Readiness probes the lab sends to the simulator: all its listeners up to this many, else
this many spread over them (one process serves them all)."""


def sample(items: Sequence[T]) -> Sequence[T]:
    """``items``, or ``PROBES`` of them spread evenly (first and last included)."""
    if len(items) <= PROBES:
        return items
    step = (len(items) - 1) / (PROBES - 1)
    return [items[round(i * step)] for i in range(PROBES)]


DCGM_LABELS = {"app": "nvidia-dcgm-exporter", "app.kubernetes.io/name": "dcgm-exporter"}


def dcgm_daemonset() -> dict[str, Any]:
    """The exporter's DaemonSet, placed on the lab's own GPU nodes (those the simulator
    has a listener for), as the GPU operator runs it on every GPU node."""
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "nvidia-dcgm-exporter",
            "namespace": DCGM_NAMESPACE,
            "labels": {**LAB_LABELS, **DCGM_LABELS},
        },
        "spec": {
            "selector": {"matchLabels": {"app": "nvidia-dcgm-exporter"}},
            "template": {
                "metadata": {
                    "labels": {**LAB_LABELS, **DCGM_LABELS},
                    "annotations": {"prometheus.io/scrape": "false"},
                },
                "spec": {
                    "tolerations": [{"operator": "Exists"}],
                    # NOTE: only the lab's own GPU nodes (a node the autoscaler adds
                    # has no simulator listener).
                    "nodeSelector": {LAB_NODE_LABEL: "true", POOL_LABEL: "gpu"},
                    "containers": [
                        {
                            "name": "nvidia-dcgm-exporter",
                            "image": DCGM_IMAGE,
                            "ports": [{"name": "metrics", "containerPort": DCGM_PORT}],
                        }
                    ],
                },
            },
        },
    }


def exporter_pods(ctx: LabContext) -> dict[str, dict[str, Any]]:
    """node name -> the DaemonSet's live pod on it."""
    items = ctx.get(
        f"/api/v1/namespaces/{DCGM_NAMESPACE}/pods?labelSelector=app%3Dnvidia-dcgm-exporter"
    )
    return {
        p["spec"]["nodeName"]: p
        for p in items["items"]
        if p.get("spec", {}).get("nodeName") and not p["metadata"].get("deletionTimestamp")
    }


@register
class DcgmExporter(Component):
    name = "dcgm-exporter"
    description = (
        "simulated NVIDIA DCGM exporter (made-up metrics) for every GPU node, "
        "run as the DaemonSet gpu-operator/nvidia-dcgm-exporter, reached by port-forward "
        "to its pods"
    )
    order = 110
    after = ("nodes", "kube-controller-manager")
    optional = True
    default = True
    process: ClassVar[str] = "dcgm-exporter"

    def start(self, ctx: LabContext) -> None:
        nodes = gpu_nodes(ctx)
        if not nodes:
            return
        exporters = [dcgm.NodeExporter(n, ctx.port(f"dcgm-{n}"), lab_gpus(ctx, n)) for n in nodes]
        spec = ctx.dir(self.name) / "exporters.json"
        dcgm.write_spec(spec, exporters)
        if ctx.pid(self.process) is None:
            for e in exporters:
                if proc.port_in_use(e.port):
                    raise LabError(f"port {e.port} of {self.name} is taken by another process")
            ctx.spawn(
                self.process,
                [
                    sys.executable,
                    "-m",
                    "kaic.lab.sims.dcgm",
                    f"--spec={spec}",
                    f"--fault-file={dcgm_fault_file(ctx)}",
                    f"--kubeconfig={ctx.kubeconfig}",
                    f"--namespace={DCGM_NAMESPACE}",
                ],
            )
        ctx.wait(
            "the DCGM simulator to serve",
            lambda: all(probe(f"http://127.0.0.1:{e.port}/metrics") for e in sample(exporters)),
            timeout=30,
            alive=self.process,
        )
        ctx.apply([namespace(DCGM_NAMESPACE)])
        ctx.apply(
            [
                dcgm_daemonset(),
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {
                        "name": "nvidia-dcgm-exporter",
                        "namespace": DCGM_NAMESPACE,
                        "labels": {**LAB_LABELS, "app": "nvidia-dcgm-exporter"},
                    },
                    "spec": {
                        "selector": {"app": "nvidia-dcgm-exporter"},
                        "ports": [
                            {"name": "gpu-metrics", "port": DCGM_PORT, "targetPort": DCGM_PORT}
                        ],
                    },
                },
            ]
        )
        ctx.wait(
            "the DCGM exporter DaemonSet to place a pod on every GPU node",
            lambda: set(nodes) <= set(exporter_pods(ctx)),
            timeout=60,
        )
        # NOTE: one PortForward per DaemonSet pod, named like it (kwok matches by pod
        # name); written here for the first pods, and by the simulator for pods the
        # DaemonSet recreates later.
        pods = exporter_pods(ctx)
        ctx.apply(
            [dcgm.pod_port_forward(pods[e.node], e.port) for e in exporters if e.node in pods],
            workers=BULK_WORKERS,
        )
        names = [pods[n]["metadata"]["name"] for n in nodes]
        ctx.wait(
            "DCGM exporter pods to run",
            lambda: pods_running(ctx, DCGM_NAMESPACE, names),
            timeout=60,
        )

    def stop(self, ctx: LabContext) -> None:
        proc.stop(ctx.pid_path(self.process))

    def healthy(self, ctx: LabContext) -> bool:
        nodes = gpu_nodes(ctx)
        return not nodes or (
            ctx.pid(self.process) is not None
            and all(
                probe(f"http://127.0.0.1:{ctx.port(f'dcgm-{n}')}/metrics") for n in sample(nodes)
            )
        )

    def pids(self, ctx: LabContext) -> list[int]:
        pid = ctx.pid(self.process)
        return [] if pid is None else [pid]
