"""A simulated NVIDIA DCGM exporter for every GPU node (``kaic.lab.sims.dcgm``; **simulated
metrics**), represented in the cluster like NVIDIA's GPU operator does it.

One loopback listener per GPU node serves DCGM-style text for exactly that node's
simulated GPUs. Each GPU node has a pod ``gpu-operator/nvidia-dcgm-exporter-<node>``
(labels ``app=nvidia-dcgm-exporter``, ``app.kubernetes.io/name=dcgm-exporter``, port
9400 ``metrics``) with a kwok ``PortForward`` from its port 9400 to the node's listener,
and a Service ``nvidia-dcgm-exporter`` (port ``gpu-metrics``). A port-forward to the pod,
through the apiserver and kwok, reaches the simulator.

Owns: the simulator process, its spec and fault file, and those API objects. Must not
decide pass/fail.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from kaic.errors import LabError
from kaic.lab import proc
from kaic.lab.apiserver import probe
from kaic.lab.component import Component, register
from kaic.lab.components.nodes import PRODUCT, gpu_node_name, gpu_uuid
from kaic.lab.context import LabContext
from kaic.lab.objects import LAB_LABELS, namespace, pods_running, port_forward
from kaic.lab.sims import dcgm

DCGM_NAMESPACE = "gpu-operator"
DCGM_PORT = 9400
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


def dcgm_pod(node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"nvidia-dcgm-exporter-{node}",
            "namespace": DCGM_NAMESPACE,
            "labels": {
                **LAB_LABELS,
                "app": "nvidia-dcgm-exporter",
                "app.kubernetes.io/name": "dcgm-exporter",
            },
            "annotations": {"prometheus.io/scrape": "false"},
        },
        "spec": {
            "nodeName": node,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "nvidia-dcgm-exporter",
                    "image": DCGM_IMAGE,
                    "ports": [{"name": "metrics", "containerPort": DCGM_PORT}],
                }
            ],
        },
    }


@register
class DcgmExporter(Component):
    name = "dcgm-exporter"
    description = (
        "simulated NVIDIA DCGM exporter (made-up metrics) for every GPU node, "
        "reached by port-forward to gpu-operator/nvidia-dcgm-exporter-<node>"
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
                ],
            )
        ctx.wait(
            "the DCGM simulator to serve",
            lambda: all(probe(f"http://127.0.0.1:{e.port}/metrics") for e in exporters),
            timeout=30,
            alive=self.process,
        )
        pods = [dcgm_pod(n) for n in nodes]
        ctx.apply([namespace(DCGM_NAMESPACE)])
        ctx.apply(
            [
                port_forward(DCGM_NAMESPACE, p["metadata"]["name"], DCGM_PORT, e.port)
                for p, e in zip(pods, exporters, strict=True)
            ]
        )
        ctx.apply(
            [
                *pods,
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
        names = [p["metadata"]["name"] for p in pods]
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
            and all(probe(f"http://127.0.0.1:{ctx.port(f'dcgm-{n}')}/metrics") for n in nodes)
        )

    def pids(self, ctx: LabContext) -> list[int]:
        pid = ctx.pid(self.process)
        return [] if pid is None else [pid]
