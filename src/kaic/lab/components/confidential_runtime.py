"""A simulated confidential-computing runtime (``--with confidential-runtime``), for
ext_confidential_computing.

Owns: RuntimeClass ``kata-qemu-tdx`` (handler ``kata-qemu-tdx``, as kata-deploy names
Kata's Intel TDX shim, its scheduling restricted to TDX nodes) and the Node Feature
Discovery label ``feature.node.kubernetes.io/cpu-security.tdx.enabled=true`` on one node
(the first GPU node, else the first CPU node). **The TEE is simulated**: there is no TDX
hardware, no Kata and no guest VM; pods of this RuntimeClass run like any other lab pod
(kwok or the stand-in container runtime). What is real: the RuntimeClass admission that
adds its nodeSelector to the pod, and the scheduler placing the pod on the labelled node.
Every object carries ``kaic.io/simulated-tee`` so it is never mistaken for hardware. Must
not start processes.
"""

from __future__ import annotations

from typing import Any

from kaic.lab.component import Component, register
from kaic.lab.components.nodes import cpu_node_name, gpu_node_name
from kaic.lab.context import LabContext

RUNTIME_CLASS = "kata-qemu-tdx"
TDX_LABEL = "feature.node.kubernetes.io/cpu-security.tdx.enabled"
SIMULATED = "kaic.io/simulated-tee"


def tee_node(ctx: LabContext) -> str | None:
    """The node that gets the simulated TEE label."""
    if ctx.options.nodes:
        return gpu_node_name(0)
    if ctx.options.cpu_nodes:
        return cpu_node_name(0)
    return None


def runtime_class() -> dict[str, Any]:
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {
            "name": RUNTIME_CLASS,
            "labels": {"app.kubernetes.io/managed-by": "kaic-lab", SIMULATED: "tdx"},
        },
        "handler": RUNTIME_CLASS,
        "scheduling": {"nodeSelector": {TDX_LABEL: "true"}},
    }


@register
class ConfidentialRuntime(Component):
    name = "confidential-runtime"
    description = (
        "simulated confidential containers: RuntimeClass kata-qemu-tdx and the NFD TDX label"
        " on one node (no TEE hardware, no Kata), for ext_confidential_computing"
    )
    order = 72
    after = ("nodes",)
    optional = True
    default = False

    def start(self, ctx: LabContext) -> None:
        ctx.apply([runtime_class()])
        node = tee_node(ctx)
        if node is not None:
            ctx.request(
                "PATCH",
                f"/api/v1/nodes/{node}",
                {"metadata": {"labels": {TDX_LABEL: "true", SIMULATED: "tdx"}}},
                content_type="application/merge-patch+json",
            )

    def healthy(self, ctx: LabContext) -> bool:
        if not ctx.exists(f"/apis/node.k8s.io/v1/runtimeclasses/{RUNTIME_CLASS}"):
            return False
        node = tee_node(ctx)
        if node is None:
            return True
        labels = ctx.get(f"/api/v1/nodes/{node}").get("metadata", {}).get("labels") or {}
        return bool(labels.get(TDX_LABEL) == "true")
