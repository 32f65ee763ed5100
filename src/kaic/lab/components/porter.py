"""The ``agnhost porter`` stand-in (``kaic.lab.sims.porter``): serves pods running
``agnhost porter`` at their (loopback) pod IPs, so that a monitoring system can scrape
workloads.

Owns: the simulator process. Must not create API objects.
"""

from __future__ import annotations

import sys

from kaic.lab.component import ProcessComponent, register
from kaic.lab.context import LabContext


@register
class Porter(ProcessComponent):
    name = "porter"
    description = (
        "serves pods running `agnhost porter` or `agnhost netexec` at their loopback pod IPs "
        "(stands in for that container)"
    )
    order = 110
    after = ("kube-apiserver",)
    optional = True
    default = True

    def argv(self, ctx: LabContext) -> list[str]:
        p = ctx.pki
        return [
            sys.executable,
            "-m",
            "kaic.lab.sims.porter",
            f"--server={ctx.server}",
            f"--ca={p.ca_crt}",
            f"--cert={p.admin_crt}",
            f"--key={p.admin_key}",
        ]

    def ready(self, ctx: LabContext) -> bool:
        try:
            return "porter simulator running" in ctx.log_path(self.name).read_text()
        except OSError:
            return False
