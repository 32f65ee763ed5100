"""The lab's node autoscaler: Karpenter (sigs.k8s.io/karpenter) with its kwok cloud
provider, scaling the GPU pool.

Owns: Karpenter's CRDs, its KWOKNodeClass, the ``kaic-gpu`` NodePool (new nodes carry
the GPU pool label, the autoscaled pool's label ``kaic.io/autoscaled-pool=true`` and its
taint, and one simulated ``nvidia.com/gpu``), the instance-type file and the process.
Off by default (``kaic lab up --with node-autoscaler``). With it, the lab's last GPU
node joins the autoscaled pool (label and taint, ``nodes.autoscaled_node``), and only a
Pending pod that tolerates the taint makes the pool grow.

Karpenter is program ``karpenter`` of ``programs.toml`` (built by ``kaic lab build``) and
runs as a ``GoController`` without leader election and without webhooks.
kubernetes/autoscaler's cluster-autoscaler is not
served by the module proxy this project can reach, so the lab uses Karpenter, the
other upstream node autoscaler with a kwok provider (docs/lab.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kaic.lab.component import register
from kaic.lab.components.nodes import (
    AUTOSCALED_LABEL,
    AUTOSCALED_TAINT,
    GPU_RESOURCE,
    POOL_LABEL,
    PRODUCT_LABEL,
)
from kaic.lab.context import LabContext
from kaic.lab.controller import GoController

NODEPOOL = "kaic-gpu"
NODECLASS = "default"
INSTANCE_TYPE = "kaic-lab-h100x1"
DEFAULT_GPU_LIMIT = 4
"""Most GPUs (= nodes, one GPU each) the NodePool may add; patch ``spec.limits`` of
NodePool ``kaic-gpu`` to change it at run time (``0`` = the pool cannot grow)."""


def instance_types() -> list[dict[str, Any]]:
    """One instance type: a node with one simulated H100 (as upstream's test expects:
    exactly one accelerator per autoscaled node)."""
    return [
        {
            "name": INSTANCE_TYPE,
            "architecture": "amd64",
            "operatingSystems": ["linux"],
            "resources": {
                "cpu": "16",
                "memory": "128Gi",
                "pods": "110",
                "ephemeral-storage": "500Gi",
                GPU_RESOURCE: "1",
            },
            "offerings": [
                {
                    "Price": 2.5,
                    "Available": True,
                    "Requirements": [
                        {
                            "key": "karpenter.sh/capacity-type",
                            "operator": "In",
                            "values": ["on-demand"],
                        },
                        {
                            "key": "topology.kubernetes.io/zone",
                            "operator": "In",
                            "values": ["kaic-lab-zone-a"],
                        },
                    ],
                }
            ],
        }
    ]


def nodepool(gpu_limit: int = DEFAULT_GPU_LIMIT) -> dict[str, Any]:
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": NODEPOOL},
        "spec": {
            "template": {
                "metadata": {
                    "labels": {
                        POOL_LABEL: "gpu",
                        AUTOSCALED_LABEL: "true",
                        "nvidia.com/gpu.present": "true",
                        "nvidia.com/gpu.product": PRODUCT_LABEL,
                        "nvidia.com/gpu.count": "1",
                    }
                },
                "spec": {
                    "nodeClassRef": {
                        "group": "karpenter.kwok.sh",
                        "kind": "KWOKNodeClass",
                        "name": NODECLASS,
                    },
                    "taints": [dict(AUTOSCALED_TAINT)],
                    "requirements": [
                        {
                            "key": "node.kubernetes.io/instance-type",
                            "operator": "In",
                            "values": [INSTANCE_TYPE],
                        }
                    ],
                    "expireAfter": "Never",
                },
            },
            # NOTE: fast scale-down: an empty node goes after 5 s, all at once.
            "disruption": {
                "consolidationPolicy": "WhenEmpty",
                "consolidateAfter": "5s",
                "budgets": [{"nodes": "100%"}],
            },
            "limits": {GPU_RESOURCE: str(gpu_limit)},
        },
    }


@register
class NodeAutoscaler(GoController):
    name = "node-autoscaler"
    description = (
        "Karpenter with its kwok provider: grows the autoscaled GPU pool (label and "
        f"taint {AUTOSCALED_LABEL}=true) by 1-GPU nodes for pending GPU pods that "
        "tolerate the taint, removes empty ones after 5 s"
    )
    order = 120
    optional = True
    default = False
    program = "karpenter"
    crds = "crds"

    def data_dir(self, ctx: LabContext) -> Path:
        return ctx.dir(self.name)

    def prepare(self, ctx: LabContext) -> None:
        d = self.data_dir(ctx)
        (d / "instance-types.json").write_text(json.dumps(instance_types(), indent=2))
        ctx.apply(
            [
                {
                    "apiVersion": "karpenter.kwok.sh/v1alpha1",
                    "kind": "KWOKNodeClass",
                    "metadata": {"name": NODECLASS},
                }
            ]
        )
        # NOTE: the kwok provider has no controller for its node class's status; in a
        # real cloud the provider marks it Ready. The lab is the cloud here.
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ctx.request(
            "PATCH",
            f"/apis/karpenter.kwok.sh/v1alpha1/kwoknodeclasses/{NODECLASS}/status",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Ready",
                            "message": "",
                            "lastTransitionTime": now,
                            "observedGeneration": 1,
                        }
                    ]
                }
            },
            content_type="application/merge-patch+json",
        )
        if not ctx.exists(f"/apis/karpenter.sh/v1/nodepools/{NODEPOOL}"):
            ctx.apply([nodepool()])

    def env(self, ctx: LabContext) -> dict[str, str]:
        return {
            "KUBECONFIG": str(ctx.kubeconfig),
            "DISABLE_LEADER_ELECTION": "true",
            "METRICS_PORT": str(self.port_of(ctx, "metrics")),
            "HEALTH_PROBE_PORT": str(self.port_of(ctx, "health")),
            "INSTANCE_TYPES_FILE_PATH": str(self.data_dir(ctx) / "instance-types.json"),
            "SYSTEM_NAMESPACE": "kube-system",
            "BATCH_IDLE_DURATION": "1s",
            "BATCH_MAX_DURATION": "3s",
            "LOG_LEVEL": "info",
        }
