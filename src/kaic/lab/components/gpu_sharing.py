"""Shared GPUs (``--with gpu-sharing``): simulated time-slicing and MIG-like partitions,
for gpu_sharing.

Owns: two extra kwok nodes outside the GPU pool (label ``kaic.io/accelerator-pool=shared``)
and what their simulated hardware publishes. Must not start processes.

* ``kaic-gpu-ts-0``: 2 physical GPUs that the (simulated) NVIDIA device plugin offers
  time-sliced with 4 replicas each: allocatable ``nvidia.com/gpu: 8`` and the labels of
  GPU Feature Discovery for sharing (``nvidia.com/gpu.count=2``,
  ``nvidia.com/gpu.replicas=4``, ``nvidia.com/gpu.sharing-strategy=time-slicing``,
  product ``…-SHARED``). The device visibility agent maps share ``i`` to physical GPU
  ``i // 4`` (``/dev/nvidia<i//4>`` and its UUID).
* ``kaic-gpu-mig-0``: 1 physical GPU in MIG mode, published by the simulated DRA driver
  ``gpu.nvidia.com`` as a partitionable pool (KEP-4815): one slice with the counter set
  ``gpu-0-counters`` (``compute: 7``, ``memory: 80Gi``) and one with MIG-like devices of
  type ``mig`` (profiles 1g.10gb ×7, 2g.20gb ×3, 3g.40gb ×2, 7g.80gb ×1, each with
  ``profile``, ``parentUUID``, ``uuid``) that consume those counters; DeviceClass
  ``mig.nvidia.com``. The real scheduler decides which partitions fit.
"""

from __future__ import annotations

import uuid
from typing import Any

from kaic.lab.component import Component, register
from kaic.lab.components.kwok import KWOK_NODE_ANNOTATION
from kaic.lab.components.nodes import (
    DRIVER,
    DRIVER_VERSION,
    GPU_RESOURCE,
    POOL_LABEL,
    PRODUCT,
    PRODUCT_LABEL,
    UNPUBLISHED_COMPONENT,
    driver_labels,
    gpu_uuid,
)
from kaic.lab.context import LabContext

TS_NODE = "kaic-gpu-ts-0"
MIG_NODE = "kaic-gpu-mig-0"
PHYSICAL = 2
REPLICAS = 4
MIG_CLASS = "mig.nvidia.com"
COUNTER_SET = "gpu-0-counters"
PROFILES: tuple[tuple[str, int, int, tuple[int, ...]], ...] = (
    # profile, compute slices, memory GiB, placements
    ("1g.10gb", 1, 10, (0, 1, 2, 3, 4, 5, 6)),
    ("2g.20gb", 2, 20, (0, 2, 4)),
    ("3g.40gb", 3, 40, (0, 4)),
    ("7g.80gb", 7, 80, (0,)),
)


def _node(ctx: LabContext, name: str, labels: dict[str, str]) -> dict[str, Any]:
    base = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        POOL_LABEL: "shared",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.family": "hopper",
    }
    if UNPUBLISHED_COMPONENT not in ctx.enabled:
        base |= driver_labels()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": base | labels,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
    }


def mig_device_class() -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": MIG_CLASS},
        "spec": {
            "selectors": [
                {
                    "cel": {
                        "expression": (
                            f"device.driver == '{DRIVER}' && "
                            f"device.attributes['{DRIVER}'].type == 'mig'"
                        )
                    }
                }
            ]
        },
    }


def mig_slices(ctx: LabContext, node_uid: str) -> list[dict[str, Any]]:
    """The partitionable pool of ``MIG_NODE``: a counters slice and a devices slice."""
    parent = gpu_uuid(ctx.name, MIG_NODE, 0)
    devices = []
    for profile, compute, mem, placements in PROFILES:
        for start in placements:
            name = f"gpu-0-mig-{profile.replace('.', '')}-{start}"
            attrs: dict[str, Any] = {
                "type": {"string": "mig"},
                "profile": {"string": profile},
                "parentUUID": {"string": parent},
                "parentIndex": {"int": 0},
                "placementStart": {"int": start},
                "uuid": {
                    "string": "MIG-"
                    + str(uuid.uuid5(uuid.NAMESPACE_URL, f"kaic-lab/{ctx.name}/{name}"))
                },
                "productName": {"string": PRODUCT},
            }
            if UNPUBLISHED_COMPONENT not in ctx.enabled:
                attrs["driverVersion"] = {"version": DRIVER_VERSION}
            devices.append(
                {
                    "name": name,
                    "attributes": attrs,
                    "capacity": {"memory": {"value": f"{mem}Gi"}},
                    "consumesCounters": [
                        {
                            "counterSet": COUNTER_SET,
                            "counters": {
                                "compute": {"value": str(compute)},
                                "memory": {"value": f"{mem}Gi"},
                            },
                        }
                    ],
                }
            )
    meta = {
        "labels": {"app.kubernetes.io/managed-by": "kaic-lab"},
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": MIG_NODE, "uid": node_uid}
        ],
    }
    pool = {"name": MIG_NODE, "generation": 1, "resourceSliceCount": 2}
    return [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": f"{MIG_NODE}-counters"} | meta,
            "spec": {
                "driver": DRIVER,
                "nodeName": MIG_NODE,
                "pool": pool,
                "sharedCounters": [
                    {
                        "name": COUNTER_SET,
                        "counters": {"compute": {"value": "7"}, "memory": {"value": "80Gi"}},
                    }
                ],
            },
        },
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": f"{MIG_NODE}-partitions"} | meta,
            "spec": {"driver": DRIVER, "nodeName": MIG_NODE, "pool": pool, "devices": devices},
        },
    ]


@register
class GpuSharing(Component):
    name = "gpu-sharing"
    description = (
        "shared GPUs: a node with time-sliced GPUs (device plugin, 4 replicas) and a node "
        "with a MIG-like partitionable GPU (DRA shared counters), for gpu_sharing"
    )
    order = 71
    after = ("nodes",)
    optional = True
    default = False

    def start(self, ctx: LabContext) -> None:
        ts = _node(
            ctx,
            TS_NODE,
            {
                "nvidia.com/gpu.product": f"{PRODUCT_LABEL}-SHARED",
                "nvidia.com/gpu.count": str(PHYSICAL),
                "nvidia.com/gpu.replicas": str(REPLICAS),
                "nvidia.com/gpu.sharing-strategy": "time-slicing",
                "nvidia.com/gpu.deploy.device-plugin": "true",
            },
        )
        mig = _node(
            ctx,
            MIG_NODE,
            {
                "nvidia.com/gpu.product": PRODUCT_LABEL,
                "nvidia.com/gpu.count": "1",
                "nvidia.com/mig.capable": "true",
                "nvidia.com/gpu.deploy.dra-driver": "true",
            },
        )
        ctx.apply([ts, mig])
        cap = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
        ts_cap = cap | {GPU_RESOURCE: str(PHYSICAL * REPLICAS)}
        ctx.patch_status(f"/api/v1/nodes/{TS_NODE}", {"capacity": ts_cap, "allocatable": ts_cap})
        ctx.patch_status(f"/api/v1/nodes/{MIG_NODE}", {"capacity": cap, "allocatable": cap})
        uid = ctx.get(f"/api/v1/nodes/{MIG_NODE}")["metadata"]["uid"]
        ctx.apply([mig_device_class(), *mig_slices(ctx, uid)])
        ctx.wait(
            "the shared-GPU nodes to be Ready", lambda: self.healthy(ctx), timeout=60, alive="kwok"
        )

    def healthy(self, ctx: LabContext) -> bool:
        items = ctx.get("/api/v1/nodes")["items"]
        ready = {
            n["metadata"]["name"]
            for n in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        }
        return {TS_NODE, MIG_NODE} <= ready
