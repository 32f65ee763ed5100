"""etcd, the lab's store: the version k8s.io/kubernetes pins, data in the state directory.

Owns: its flags and readiness probe. Must not be reached by anything but kube-apiserver.
"""

from __future__ import annotations

from kaic.lab.apiserver import probe
from kaic.lab.component import ProcessComponent, register
from kaic.lab.context import LabContext


@register
class Etcd(ProcessComponent):
    name = "etcd"
    description = "etcd 3.6 (the version k8s.io/kubernetes pins), data on disk in the state dir"
    order = 10
    optional = False
    binaries = ("etcd",)

    def port_keys(self) -> tuple[str, ...]:
        return ("etcd", "etcd-peer")

    def argv(self, ctx: LabContext) -> list[str]:
        client = f"http://127.0.0.1:{ctx.port('etcd')}"
        peer = f"http://127.0.0.1:{ctx.port('etcd-peer')}"
        return [
            str(ctx.binary("etcd")),
            "--name=lab",
            f"--data-dir={ctx.dir('etcd')}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=lab={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
            "--quota-backend-bytes=4294967296",
        ]

    def ready(self, ctx: LabContext) -> bool:
        return probe(f"http://127.0.0.1:{ctx.port('etcd')}/health")
