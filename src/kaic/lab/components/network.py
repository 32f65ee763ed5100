"""The lab network (``kaic.lab.network``): the lab's own network namespace with its pod
and Service ranges, a veth to the host, and the relay that lets processes inside reach
the apiserver.

Owns: creating the namespace before the control plane starts (the apiserver's Service
range and kwok's pod range are the block's), the relay process, the kubeconfig for
processes inside the namespace, and removing all of it on ``down``. Must not create API
objects.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kaic.errors import LabError
from kaic.lab import network, proc
from kaic.lab.component import ProcessComponent, register
from kaic.lab.context import NET_FILE, NETNS_PORT_PREFIX, LabContext
from kaic.lab.pki import write_kubeconfig

RELAY_PORT = f"{NETNS_PORT_PREFIX}relay"


def netns_server(ctx: LabContext) -> str:
    """The apiserver's address for a process inside the lab namespace (the relay)."""
    return f"https://127.0.0.1:{ctx.port(RELAY_PORT)}"


def netns_kubeconfig(ctx: LabContext) -> Path:
    """An admin kubeconfig for processes inside the lab namespace (through the relay)."""
    path = ctx.dir("network") / "kubeconfig"
    if not path.is_file():
        write_kubeconfig(path, ctx.pki, netns_server(ctx), f"kaic-lab-{ctx.name}")
    return path


@register
class Network(ProcessComponent):
    name = "network"
    description = (
        "the lab's network namespace (pod and Service ranges of 198.18.0.0/15, a veth "
        "to the host) and the relay from inside it to the apiserver"
    )
    order = 15
    after = ()
    optional = False

    def before_start(self, ctx: LabContext) -> None:
        missing = network.missing_prerequisites()
        if missing:
            raise LabError("the lab network needs " + ", ".join(missing))
        net = ctx.net
        if not network.pids_in(net):
            # Nothing runs inside: whatever is there is a crashed lab's leftover (stale
            # nftables rules, addresses); start from a clean namespace, and a relay
            # listening in the old one must go too (it is started again below).
            proc.stop(ctx.pid_path(self.name))
            network.remove(net)
        network.create(net)
        netns_kubeconfig(ctx)

    def argv(self, ctx: LabContext) -> list[str]:
        return [
            sys.executable,
            "-m",
            "kaic.lab.sims.relay",
            f"--netns={ctx.net.netns}",
            f"--listen-port={ctx.port(RELAY_PORT)}",
            f"--to=127.0.0.1:{ctx.port('kube-apiserver')}",
        ]

    def ready(self, ctx: LabContext) -> bool:
        try:
            return "relay running" in ctx.log_path(self.name).read_text()
        except OSError:
            return False

    def healthy(self, ctx: LabContext) -> bool:
        return super().healthy(ctx) and not _missing_objects(ctx)

    def stop(self, ctx: LabContext) -> None:
        proc.stop(ctx.pid_path(self.name))
        net = network.load(ctx.state / NET_FILE)
        if net is None:
            return
        network.remove(net)
        left = network.leftovers(net)
        if left:
            raise LabError(f"lab network not removed: {', '.join(left)}")
        network.release(net)


def _missing_objects(ctx: LabContext) -> bool:
    net = network.load(ctx.state / NET_FILE)  # never allocates (status is read-only)
    return (
        net is None
        or net.netns not in network.netns_names()
        or not network.link_exists(net.host_if)
    )
