"""kube-controller-manager: all default controllers, HPA synced every 2 s, the
ResourceClaim controller.

Owns: its flags. Must not create workload objects (it waits for the ``default``
ServiceAccount its controllers create).
"""

from __future__ import annotations

from kaic.lab.component import register
from kaic.lab.components._kube import KubeController
from kaic.lab.context import LabContext


@register
class KubeControllerManager(KubeController):
    name = "kube-controller-manager"
    description = (
        "kube-controller-manager: all default controllers, HPA synced every 2 s, "
        "ResourceClaim controller"
    )
    order = 30
    optional = False
    binaries = ("kube-controller-manager",)
    binary_name = "kube-controller-manager"

    def argv(self, ctx: LabContext) -> list[str]:
        p = ctx.pki
        return [
            *self.common(ctx),
            f"--root-ca-file={p.ca_crt}",
            f"--service-account-private-key-file={p.sa_key}",
            f"--cluster-signing-cert-file={p.ca_crt}",
            f"--cluster-signing-key-file={p.ca_key}",
            f"--cluster-name=kaic-lab-{ctx.name}",
            f"--service-cluster-ip-range={ctx.net.service_cidr}",
            "--horizontal-pod-autoscaler-sync-period=2s",
            "--horizontal-pod-autoscaler-downscale-stabilization=10s",
            "--horizontal-pod-autoscaler-initial-readiness-delay=5s",
            "--horizontal-pod-autoscaler-cpu-initialization-period=10s",
            f"--node-monitor-grace-period={ctx.options.node_grace_s}s",
        ]

    def after_start(self, ctx: LabContext) -> None:
        # Pods are refused until the ServiceAccount admission plugin finds `default`.
        ctx.wait(
            "the default ServiceAccount",
            lambda: ctx.exists("/api/v1/namespaces/default/serviceaccounts/default"),
            timeout=60,
            alive=self.name,
        )
