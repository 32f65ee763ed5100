"""Fake nodes and simulated accelerators.

Owns: the lab's Node objects (a GPU pool and a CPU pool, run by kwok), their
``nvidia.com/gpu`` capacity (device-plugin mode) and the simulated DRA driver's
DeviceClass and per-node ResourceSlices (DRA mode). Must not start processes.

Only the hardware is simulated: the nodes, their GPUs and the GPU driver's published
attributes. Scheduling, claim allocation and pod lifecycle are done by the real
kube-scheduler, kube-controller-manager and kwok.
"""

from __future__ import annotations

import uuid
from typing import Any

from kaic.lab.component import Component, register
from kaic.lab.components.kwok import KWOK_NODE_ANNOTATION, NODE_IP
from kaic.lab.context import LabContext
from kaic.lab.sims.device_health import INJECTION_ANNOTATION, INJECTION_METHOD

DRIVER = "gpu.nvidia.com"
DEVICE_CLASS = "gpu.nvidia.com"
POOL_LABEL = "kaic.io/accelerator-pool"
LAB_NODE_LABEL = "kaic.io/lab-node"
"""``true`` on the nodes the lab creates (not on those the node autoscaler adds)."""
GPU_RESOURCE = "nvidia.com/gpu"
AUTOSCALER_COMPONENT = "node-autoscaler"
AUTOSCALED_LABEL = "kaic.io/autoscaled-pool"
"""``true`` on the nodes of the autoscaled GPU pool: with the node autoscaler, the last
GPU node of the lab (when it has two or more) and every node the autoscaler adds."""
AUTOSCALED_TAINT = {"key": AUTOSCALED_LABEL, "value": "true", "effect": "NoSchedule"}
"""The autoscaled pool's taint: only pods that tolerate it (cluster_autoscaling's, given
``--autoscaler-pool-taint kaic.io/autoscaled-pool=true:NoSchedule``) land on the pool or
make it grow, so the rest of the lab's GPUs are the other checks'."""
AUTOSCALED_POOL_OPTIONS = {
    "autoscaler-node-pool-label": f"{AUTOSCALED_LABEL}=true",
    "autoscaler-pool-taint": f"{AUTOSCALED_LABEL}=true:NoSchedule",
}
"""The check options of ``kaic run`` that name the lab's autoscaled pool and its taint."""
PRODUCT = "NVIDIA H100 80GB HBM3"
PRODUCT_LABEL = "NVIDIA-H100-80GB-HBM3"
DRIVER_VERSION = "580.82.7"
"""The simulated driver as NVIDIA's DRA driver publishes it (a semantic version); the
device visibility agent's ``nvidia-smi`` reports the installed one, ``580.82.07``."""
CUDA_DRIVER_VERSION = "13.0.0"
GFD_DRIVER_VERSION = "580.82.07"
"""The same driver as GPU Feature Discovery labels it (the version nvidia-smi prints)."""
GFD_CUDA_VERSION = "13.0"
UNPUBLISHED_COMPONENT = "driver-unpublished"
"""With this component the simulated driver publishes no versions (no DRA attributes, no
node labels): the negative case of driver_runtime_management."""
GPU_MEMORY = "80Gi"
GPUS_PER_PCIE_ROOT = 2
BULK_WORKERS = 8
"""Requests at a time when a lab creates its nodes and slices (thousands in a large lab)."""


def gpu_node_name(i: int) -> str:
    return f"kaic-gpu-{i}"


def cpu_node_name(i: int) -> str:
    return f"kaic-cpu-{i}"


def gpu_uuid(lab: str, node: str, index: int) -> str:
    """A stable, realistic-looking GPU UUID (``GPU-xxxxxxxx-…``)."""
    return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"kaic-lab/{lab}/{node}/{index}"))


def autoscaled_node(ctx: LabContext) -> str | None:
    """The lab's own node of the autoscaled pool, if the lab has one."""
    if AUTOSCALER_COMPONENT not in ctx.enabled or ctx.options.accelerators == "none":
        return None
    return gpu_node_name(ctx.options.nodes - 1) if ctx.options.nodes >= 2 else None


def node_object(ctx: LabContext, name: str, gpu: bool) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        LAB_NODE_LABEL: "true",
        POOL_LABEL: "gpu" if gpu and ctx.options.accelerators != "none" else "cpu",
        "node.kubernetes.io/instance-type": "kaic-lab-h100x8" if gpu else "kaic-lab-cpu",
    }
    annotations = {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"}
    if gpu and ctx.options.accelerators != "none":
        # NOTE: the fault contract's annotation from the start, so that the device health
        # reporter (kaic.lab.sims.device_health) writes no node of a new lab.
        annotations[INJECTION_ANNOTATION] = INJECTION_METHOD
        g = ctx.options.gpus_per_node
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": PRODUCT_LABEL,
            "nvidia.com/gpu.count": str(g),
            "nvidia.com/gpu.memory": "81559",
            "nvidia.com/gpu.family": "hopper",
            "nvidia.com/gpu.deploy.device-plugin": str(ctx.options.device_plugin).lower(),
            "nvidia.com/gpu.deploy.dra-driver": str(ctx.options.dra).lower(),
        }
        if UNPUBLISHED_COMPONENT not in ctx.enabled:
            labels |= driver_labels()
    spec: dict[str, Any] = {}
    if name == autoscaled_node(ctx):
        labels[AUTOSCALED_LABEL] = "true"
        spec["taints"] = [dict(AUTOSCALED_TAINT)]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }


def driver_labels() -> dict[str, str]:
    """The driver and CUDA version labels of GPU Feature Discovery (new and old names)."""
    major, minor, rev = GFD_DRIVER_VERSION.split(".")
    cmajor, cminor = GFD_CUDA_VERSION.split(".")
    return {
        "nvidia.com/cuda.driver-version.full": GFD_DRIVER_VERSION,
        "nvidia.com/cuda.driver-version.major": major,
        "nvidia.com/cuda.driver-version.minor": minor,
        "nvidia.com/cuda.driver-version.revision": rev,
        "nvidia.com/cuda.driver.major": major,
        "nvidia.com/cuda.driver.minor": minor,
        "nvidia.com/cuda.driver.rev": rev,
        "nvidia.com/cuda.runtime-version.full": GFD_CUDA_VERSION,
        "nvidia.com/cuda.runtime-version.major": cmajor,
        "nvidia.com/cuda.runtime-version.minor": cminor,
        "nvidia.com/cuda.runtime.major": cmajor,
        "nvidia.com/cuda.runtime.minor": cminor,
    }


def node_capacity(ctx: LabContext, gpu: bool) -> dict[str, str]:
    cap = (
        {"cpu": "96", "memory": "1536Gi", "pods": "110", "ephemeral-storage": "3Ti"}
        if gpu
        else {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "500Gi"}
    )
    if gpu and ctx.options.device_plugin and ctx.options.accelerators != "none":
        cap[GPU_RESOURCE] = str(ctx.options.gpus_per_node)
    return cap


def device_class() -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": DEVICE_CLASS},
        "spec": {
            "selectors": [
                {
                    "cel": {
                        "expression": (
                            f"device.driver == '{DRIVER}' && "
                            f"device.attributes['{DRIVER}'].type == 'gpu'"
                        )
                    }
                }
            ]
        },
    }


def node_slice(
    node: str, node_uid: str, driver: str, devices: list[dict[str, Any]]
) -> dict[str, Any]:
    """The one ResourceSlice of ``driver`` on ``node`` (owned by the Node, so it goes with
    it), a pool of its own named like the node."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {
            "name": f"{node}-{driver}",
            "labels": {"app.kubernetes.io/managed-by": "kaic-lab"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}
            ],
        },
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def resource_slice(ctx: LabContext, node: str, node_uid: str) -> dict[str, Any]:
    """One ResourceSlice with every GPU of ``node``, shaped like NVIDIA's DRA driver's."""
    devices: list[dict[str, Any]] = []
    for i in range(ctx.options.gpus_per_node):
        root = pcie_root(i // GPUS_PER_PCIE_ROOT)
        bus = f"0000:{0x18 + i * 0x10 % 0x100:02x}:00.0"
        devices.append(
            {
                "name": f"gpu-{i}",
                "attributes": {
                    "type": {"string": "gpu"},
                    "index": {"int": i},
                    "minor": {"int": i},
                    "uuid": {"string": gpu_uuid(ctx.name, node, i)},
                    "productName": {"string": PRODUCT},
                    "brand": {"string": "Nvidia"},
                    "architecture": {"string": "Hopper"},
                    "cudaComputeCapability": {"version": "9.0.0"},
                    "pcieBusID": {"string": bus},
                    "resource.kubernetes.io/pcieRoot": {"string": root},
                    "resource.kubernetes.io/pciBusID": {"string": bus},
                },
                "capacity": {"memory": {"value": GPU_MEMORY}},
            }
        )
        if UNPUBLISHED_COMPONENT not in ctx.enabled:
            attrs = devices[-1]["attributes"]
            attrs["driverVersion"] = {"version": DRIVER_VERSION}
            attrs["cudaDriverVersion"] = {"version": CUDA_DRIVER_VERSION}
    return node_slice(node, node_uid, DRIVER, devices)


def pcie_root(n: int) -> str:
    """The simulated host's n-th PCIe root complex (two GPUs and one NIC behind each;
    the NICs are ``rdma-nics``')."""
    return f"pci0000:{0x10 + n * 0x20:02x}"


@register
class Nodes(Component):
    name = "nodes"
    description = (
        "kwok nodes: a GPU pool (simulated H100s via device plugin and/or DRA) and a CPU pool"
    )
    order = 70
    after = ("kwok", "dra-api")
    optional = False

    def names(self, ctx: LabContext) -> list[tuple[str, bool]]:
        return [(gpu_node_name(i), True) for i in range(ctx.options.nodes)] + [
            (cpu_node_name(i), False) for i in range(ctx.options.cpu_nodes)
        ]

    def start(self, ctx: LabContext) -> None:
        nodes = self.names(ctx)
        ctx.apply((node_object(ctx, n, gpu) for n, gpu in nodes), workers=BULK_WORKERS)

        def set_status(node: tuple[str, bool]) -> None:
            n, gpu = node
            cap = node_capacity(ctx, gpu)
            addresses = [
                {"type": "InternalIP", "address": NODE_IP},
                {"type": "Hostname", "address": n},
            ]
            ctx.patch_status(
                f"/api/v1/nodes/{n}", {"capacity": cap, "allocatable": cap, "addresses": addresses}
            )

        ctx.each(set_status, nodes, workers=BULK_WORKERS)
        if ctx.options.dra and ctx.options.accelerators != "none":
            ctx.apply([device_class()])
            uids = {
                n["metadata"]["name"]: n["metadata"]["uid"]
                for n in ctx.get(f"/api/v1/nodes?labelSelector={POOL_LABEL}%3Dgpu")["items"]
            }
            slices = []
            for n, gpu in nodes:
                if gpu:
                    slices.append(resource_slice(ctx, n, uids[n]))
            ctx.apply(slices, workers=BULK_WORKERS)
        ctx.wait(
            f"{len(nodes)} nodes to be Ready",
            lambda: self._all_ready(ctx, nodes),
            timeout=60 + len(nodes) // 10,  # kwok readies a few dozen nodes a second
            alive="kwok",
        )

    def _all_ready(self, ctx: LabContext, nodes: list[tuple[str, bool]]) -> bool:
        items = ctx.get("/api/v1/nodes")["items"]
        ready = {
            n["metadata"]["name"]
            for n in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        }
        return all(n in ready for n, _ in nodes)

    def healthy(self, ctx: LabContext) -> bool:
        return self._all_ready(ctx, self.names(ctx))
