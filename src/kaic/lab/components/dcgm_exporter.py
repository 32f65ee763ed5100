"""A simulated NVIDIA DCGM exporter for every GPU node (``kaic.lab.sims.dcgm``; **simulated
metrics**), represented in the cluster like NVIDIA's GPU operator does it.

A DaemonSet ``gpu-operator/nvidia-dcgm-exporter`` (labels ``app=nvidia-dcgm-exporter``,
``app.kubernetes.io/name=dcgm-exporter``, port 9400 ``metrics``) places one pod on each of
the lab's GPU nodes, and a Service ``nvidia-dcgm-exporter`` (port ``gpu-metrics``)
selects them. One simulator process, inside the lab's network namespace, listens at
every exporter pod's IP, port 9400, serving DCGM-style text for exactly the simulated
GPUs of the pod's node, and gives each pod a kwok ``PortForward`` (named like it, owned
by it) to that address. A port-forward to the pod (apiserver, kwok, the lab's veth), a
Prometheus scraping the Service's endpoints, or any client of the lab network reaches
the simulator at the pod's IP.

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
from kaic.lab.components.network import netns_kubeconfig
from kaic.lab.components.nodes import (
    LAB_NODE_LABEL,
    POOL_LABEL,
    PRODUCT,
    gpu_node_name,
    gpu_uuid,
)
from kaic.lab.context import LabContext
from kaic.lab.objects import LAB_LABELS, namespace
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
this many spread over them (one process serves them all; every pod's PortForward is
checked)."""


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


def dcgm_service() -> dict[str, Any]:
    """The Service in front of the exporter pods; its annotations ask the lab's
    Prometheus (its Service-endpoints job) to scrape their endpoints, as the GPU operator's
    ServiceMonitor does."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "nvidia-dcgm-exporter",
            "namespace": DCGM_NAMESPACE,
            "labels": {**LAB_LABELS, "app": "nvidia-dcgm-exporter"},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(DCGM_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "selector": {"app": "nvidia-dcgm-exporter"},
            "ports": [{"name": "gpu-metrics", "port": DCGM_PORT, "targetPort": DCGM_PORT}],
        },
    }


def pod_address(ctx: LabContext, pod: dict[str, Any] | None) -> str | None:
    """The exporter pod's IP where the simulator serves it (None: none in the pod range)."""
    return None if pod is None else dcgm.pod_ip(pod, ctx.net.layout.pod_cidr)


def _every_pod_addressed(ctx: LabContext, nodes: Sequence[str]) -> bool:
    pods = exporter_pods(ctx)
    return all(
        n in pods
        and (pods[n].get("status") or {}).get("phase") == "Running"
        and pod_address(ctx, pods[n]) is not None
        for n in nodes
    )


def _served(ctx: LabContext, nodes: Sequence[str]) -> bool:
    pods = exporter_pods(ctx)
    forwards = ctx.get(f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{DCGM_NAMESPACE}/portforwards")
    targets = {
        pf["metadata"]["name"]: (pf.get("spec", {}).get("forwards") or [{}])[0].get("target")
        for pf in forwards["items"]
    }
    for n in nodes:
        ip = pod_address(ctx, pods.get(n))
        name = pods[n]["metadata"]["name"] if n in pods else None
        if ip is None or targets.get(name) != {"address": ip, "port": DCGM_PORT}:
            return False
    return all(
        ip is not None and probe(f"http://{ip}:{DCGM_PORT}/metrics")
        for ip in sample([pod_address(ctx, pods[n]) for n in nodes])
    )


@register
class DcgmExporter(Component):
    name = "dcgm-exporter"
    description = (
        "simulated NVIDIA DCGM exporter (made-up metrics) for every GPU node, "
        "run as the DaemonSet gpu-operator/nvidia-dcgm-exporter, served at its pods' IPs "
        "in the lab network and reached by port-forward to them"
    )
    order = 110
    after = ("nodes", "kube-controller-manager", "network")
    optional = True
    default = True
    process: ClassVar[str] = "dcgm-exporter"

    def start(self, ctx: LabContext) -> None:
        nodes = gpu_nodes(ctx)
        if not nodes:
            return
        spec = ctx.dir(self.name) / "exporters.json"
        dcgm.write_spec(spec, [dcgm.NodeExporter(n, lab_gpus(ctx, n)) for n in nodes])
        ctx.apply([namespace(DCGM_NAMESPACE)])
        ctx.apply([dcgm_daemonset(), dcgm_service()])
        if ctx.pid(self.process) is None:
            # NOTE: inside the lab namespace, where every pod IP is local: the simulator
            # listens at each exporter pod's IP (and reaches the apiserver by the relay).
            ctx.spawn(
                self.process,
                ctx.net.in_netns(
                    [
                        sys.executable,
                        "-m",
                        "kaic.lab.sims.dcgm",
                        f"--spec={spec}",
                        f"--fault-file={dcgm_fault_file(ctx)}",
                        f"--kubeconfig={netns_kubeconfig(ctx)}",
                        f"--namespace={DCGM_NAMESPACE}",
                        f"--pod-cidr={ctx.net.pod_cidr}",
                    ]
                ),
                exe=sys.executable,
            )
            # NOTE: recorded as the program ``ip netns exec`` execs, once it has.
            pid = int(ctx.pid_path(self.process).read_text().split()[0])
            ctx.wait(
                "the DCGM simulator to start",
                lambda: proc.command(pid) == sys.executable or not proc.alive(pid),
                timeout=15,
            )
            if proc.command(pid) != sys.executable:
                raise LabError(
                    f"{self.name} did not start; last log lines:\n" + ctx.log_tail(self.process)
                )
            ctx.pid_path(self.process).write_text(f"{pid}\n{sys.executable}\n")
        ctx.wait(
            "the DCGM exporter DaemonSet to place a pod on every GPU node",
            lambda: set(nodes) <= set(exporter_pods(ctx)),
            timeout=60 + len(nodes) / 10,  # the DaemonSet controller creates pods in batches
            alive=self.process,
        )
        ctx.wait(
            "DCGM exporter pods to run with an IP of the lab's pod range",
            lambda: _every_pod_addressed(ctx, nodes),
            timeout=60 + len(nodes) / 10,  # kwok runs some 10-18 pods a second here
            alive=self.process,
        )
        ctx.wait(
            "the DCGM simulator to serve every exporter pod at its IP, with its PortForward",
            lambda: _served(ctx, nodes),
            timeout=60 + len(nodes) / 10,  # a listener and a PortForward per pod
            alive=self.process,
        )

    def stop(self, ctx: LabContext) -> None:
        proc.stop(ctx.pid_path(self.process))

    def healthy(self, ctx: LabContext) -> bool:
        nodes = gpu_nodes(ctx)
        if not nodes:
            return True
        if ctx.pid(self.process) is None:
            return False
        pods = exporter_pods(ctx)
        return all(
            probe(f"http://{ip}:{DCGM_PORT}/metrics")
            for ip in sample([pod_address(ctx, pods.get(n)) for n in nodes])
        )

    def pids(self, ctx: LabContext) -> list[int]:
        pid = ctx.pid(self.process)
        return [] if pid is None else [pid]
