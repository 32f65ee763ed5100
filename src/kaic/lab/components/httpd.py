"""The busybox ``httpd`` stand-in (``kaic.lab.sims.httpd``): serves pods whose container
runs ``httpd -p PORT -h DIR`` at their pod IPs (inside the lab's network namespace), from
the lab's exec directory,
so that the lab's Prometheus scrapes what a workload writes there through ``exec``.

Owns: the simulator process. Must not create API objects.
"""

from __future__ import annotations

import sys

from kaic.lab.component import ProcessComponent, register
from kaic.lab.components.network import netns_server
from kaic.lab.context import LabContext


@register
class Httpd(ProcessComponent):
    name = "httpd"
    description = (
        "serves pods running busybox `httpd` at their pod IPs in the lab network, from the "
        "directory `kubectl exec` writes to (stands in for that container)"
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
                "kaic.lab.sims.httpd",
                f"--server={netns_server(ctx)}",
                f"--ca={p.ca_crt}",
                f"--cert={p.admin_crt}",
                f"--key={p.admin_key}",
                f"--root={ctx.dir('exec')}",
                f"--pod-cidr={ctx.net.pod_cidr}",
            ]
        )

    def exec_path(self, ctx: LabContext) -> str:
        return sys.executable

    def ready(self, ctx: LabContext) -> bool:
        try:
            return "httpd simulator running" in ctx.log_path(self.name).read_text()
        except OSError:
            return False
