"""What kube-controller-manager and kube-scheduler share (no component of its own).

Owns: their common serving and client flags and the health probe.
"""

from __future__ import annotations

from typing import ClassVar

from kaic.lab.apiserver import probe
from kaic.lab.component import ProcessComponent
from kaic.lab.context import LabContext


class KubeController(ProcessComponent):
    """kube-controller-manager and kube-scheduler share their serving flags."""

    binary_name: ClassVar[str] = ""

    def port_keys(self) -> tuple[str, ...]:
        return (self.name,)

    def common(self, ctx: LabContext) -> list[str]:
        kc = str(ctx.kubeconfig)
        return [
            str(ctx.binary(self.binary_name)),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ctx.port(self.name)}",
            f"--cert-dir={ctx.dir(self.name)}",
            "--leader-elect=false",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ]

    def ready(self, ctx: LabContext) -> bool:
        return probe(f"https://127.0.0.1:{ctx.port(self.name)}/healthz")
