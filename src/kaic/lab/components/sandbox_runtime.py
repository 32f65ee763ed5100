"""The lab's namespace sandbox as a RuntimeClass (``sandbox-runtime``, on by default), for
workload_sandboxing.

Owns: RuntimeClass ``sandboxed-namespaces`` (handler ``kaic-unshare``). Must not start
processes: the device visibility agent gives every pod of this RuntimeClass a kwok
``Exec`` rule whose commands run in new PID, network, mount, UTS and IPC namespaces with
a private root (``kaic.lab.sims.devices``). The isolation is real (kernel namespaces);
the kernel is the host's: a namespace sandbox cannot give a pod its own kernel, which is
what gVisor or Kata add.
"""

from __future__ import annotations

from kaic.lab.component import Component, register
from kaic.lab.context import LabContext
from kaic.lab.sims import devices

RUNTIME_CLASS = "sandboxed-namespaces"


@register
class SandboxRuntime(Component):
    name = "sandbox-runtime"
    description = (
        "RuntimeClass sandboxed-namespaces: exec in its pods runs in new PID, network, "
        "mount, UTS and IPC namespaces with a private root (the host's kernel)"
    )
    order = 76
    after = ("device-visibility",)
    optional = True
    default = True

    def start(self, ctx: LabContext) -> None:
        ctx.apply(
            [
                {
                    "apiVersion": "node.k8s.io/v1",
                    "kind": "RuntimeClass",
                    "metadata": {
                        "name": RUNTIME_CLASS,
                        "labels": {"app.kubernetes.io/managed-by": "kaic-lab"},
                    },
                    "handler": devices.SANDBOX_HANDLER,
                }
            ]
        )

    def healthy(self, ctx: LabContext) -> bool:
        return bool(ctx.exists(f"/apis/node.k8s.io/v1/runtimeclasses/{RUNTIME_CLASS}"))
