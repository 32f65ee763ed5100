"""The ``agnhost porter`` stand-in (``kaic.lab.sims.porter``): serves pods running
``agnhost porter`` at their pod IPs, inside the lab's network namespace, so that a
monitoring system can scrape workloads and a Service's ClusterIP reaches them.

Owns: the simulator process. Must not create API objects.
"""

from __future__ import annotations

import sys

from kaic.lab.component import ProcessComponent, register
from kaic.lab.components.network import netns_server
from kaic.lab.context import LabContext


@register
class Porter(ProcessComponent):
    name = "porter"
    description = (
        "serves pods running `agnhost porter` or `agnhost netexec` at their pod IPs in the "
        "lab network "
        "(stands in for that container), and simulated prefill/decode model servers"
    )
    order = 110
    after = ("kube-apiserver", "network")
    optional = True
    default = True

    def argv(self, ctx: LabContext) -> list[str]:
        p = ctx.pki
        return ctx.net.in_netns(
            [
                sys.executable,
                "-m",
                "kaic.lab.sims.porter",
                f"--server={netns_server(ctx)}",
                f"--ca={p.ca_crt}",
                f"--cert={p.admin_crt}",
                f"--key={p.admin_key}",
                f"--pod-cidr={ctx.net.pod_cidr}",
                f"--log-dir={ctx.dir('model-servers')}",
            ]
        )

    def exec_path(self, ctx: LabContext) -> str:
        return sys.executable

    def ready(self, ctx: LabContext) -> bool:
        try:
            return "porter simulator running" in ctx.log_path(self.name).read_text()
        except OSError:
            return False
