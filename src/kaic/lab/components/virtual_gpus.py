"""Virtual GPUs (``--with virtual-gpus``): simulated vGPUs published through DRA, for
virtualized_accelerator.

Owns: one extra kwok node outside the GPU pool, ``kaic-gpu-vgpu-0``
(``kaic.io/accelerator-pool=virtual``), whose simulated DRA driver ``gpu.nvidia.com``
publishes 4 vGPUs of profile ``H100-20C`` carved from one physical H100 (devices of type
``vgpu`` with ``profile``, ``virtual``, ``parentUUID``, ``uuid``, ``index``/``minor``), and
the DeviceClass ``vgpu.nvidia.com``. Must not start processes. The device visibility agent
shows a container the vGPUs allocated to it like physical GPUs (``/dev/nvidia<N>``,
``nvidia-smi -L``), so isolation is probed the same way.
"""

from __future__ import annotations

from typing import Any

from kaic.lab.component import Component, register
from kaic.lab.components.kwok import KWOK_NODE_ANNOTATION
from kaic.lab.components.nodes import (
    DRIVER,
    DRIVER_VERSION,
    POOL_LABEL,
    UNPUBLISHED_COMPONENT,
    driver_labels,
    gpu_uuid,
    node_slice,
)
from kaic.lab.context import LabContext

VGPU_NODE = "kaic-gpu-vgpu-0"
VGPU_CLASS = "vgpu.nvidia.com"
VGPU_PROFILE = "H100-20C"
VGPUS = 4


def vgpu_device_class() -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": VGPU_CLASS},
        "spec": {
            "selectors": [
                {
                    "cel": {
                        "expression": (
                            f"device.driver == '{DRIVER}' && "
                            f"device.attributes['{DRIVER}'].type == 'vgpu'"
                        )
                    }
                }
            ]
        },
    }


def vgpu_slice(ctx: LabContext, node_uid: str) -> dict[str, Any]:
    parent = gpu_uuid(ctx.name, VGPU_NODE, 100)
    devices = []
    for i in range(VGPUS):
        attrs: dict[str, Any] = {
            "type": {"string": "vgpu"},
            "virtual": {"bool": True},
            "profile": {"string": VGPU_PROFILE},
            "index": {"int": i},
            "minor": {"int": i},
            "uuid": {"string": gpu_uuid(ctx.name, VGPU_NODE, i)},
            "parentUUID": {"string": parent},
            "productName": {"string": f"NVIDIA {VGPU_PROFILE}"},
        }
        if UNPUBLISHED_COMPONENT not in ctx.enabled:
            attrs["driverVersion"] = {"version": DRIVER_VERSION}
        devices.append(
            {"name": f"vgpu-{i}", "attributes": attrs, "capacity": {"memory": {"value": "20Gi"}}}
        )
    return node_slice(VGPU_NODE, node_uid, DRIVER, devices)


@register
class VirtualGpus(Component):
    name = "virtual-gpus"
    description = (
        "virtual GPUs: a node whose simulated DRA driver publishes 4 vGPUs (type vgpu, "
        "profile H100-20C), for virtualized_accelerator"
    )
    order = 71
    after = ("nodes",)
    optional = True
    default = False

    def start(self, ctx: LabContext) -> None:
        labels = {
            "kubernetes.io/hostname": VGPU_NODE,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            POOL_LABEL: "virtual",
            "nvidia.com/gpu.present": "true",
            "nvidia.com/vgpu.present": "true",
            "nvidia.com/gpu.deploy.dra-driver": "true",
        }
        if UNPUBLISHED_COMPONENT not in ctx.enabled:
            labels |= driver_labels()
        ctx.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": VGPU_NODE,
                        "labels": labels,
                        "annotations": {
                            KWOK_NODE_ANNOTATION: "fake",
                            "node.alpha.kubernetes.io/ttl": "0",
                        },
                    },
                    "spec": {},
                }
            ]
        )
        cap = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
        ctx.patch_status(f"/api/v1/nodes/{VGPU_NODE}", {"capacity": cap, "allocatable": cap})
        uid = ctx.get(f"/api/v1/nodes/{VGPU_NODE}")["metadata"]["uid"]
        ctx.apply([vgpu_device_class(), vgpu_slice(ctx, uid)])
        ctx.wait("the vGPU node to be Ready", lambda: self.healthy(ctx), timeout=60, alive="kwok")

    def healthy(self, ctx: LabContext) -> bool:
        node = ctx.get(f"/api/v1/nodes/{VGPU_NODE}")
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )
