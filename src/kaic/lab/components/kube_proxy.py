"""kube-proxy (nftables mode), the real one from the lab's Kubernetes version, inside the
lab's network namespace: a Service's ClusterIP reaches its endpoints there.

Owns: kube-proxy's flags. Its nftables tables (``ip kube-proxy``, ``ip6 kube-proxy``)
live in the lab's namespace and vanish with it; it reaches the apiserver through the
network component's relay. Must not create API objects.
"""

from __future__ import annotations

import urllib.request

from kaic.lab.component import ProcessComponent, register
from kaic.lab.components.network import netns_kubeconfig
from kaic.lab.components.nodes import cpu_node_name, gpu_node_name
from kaic.lab.context import NETNS_PORT_PREFIX, LabContext

HEALTH_PORT = f"{NETNS_PORT_PREFIX}kube-proxy-healthz"
METRICS_PORT = f"{NETNS_PORT_PREFIX}kube-proxy-metrics"


def proxy_node(ctx: LabContext) -> str:
    """The node kube-proxy takes for its own (``--hostname-override``): one kube-proxy
    serves every node of the lab, and it waits up to 30 s for its Node to exist."""
    if ctx.options.cpu_nodes:
        return cpu_node_name(0)
    return gpu_node_name(0) if ctx.options.nodes else "kaic-lab-proxy"


@register
class KubeProxy(ProcessComponent):
    name = "kube-proxy"
    description = (
        "kube-proxy in nftables mode inside the lab's network namespace: ClusterIPs "
        "reach their endpoints"
    )
    order = 75
    after = ("nodes", "network")
    optional = False
    binaries = ("kube-proxy",)

    def argv(self, ctx: LabContext) -> list[str]:
        net = ctx.net
        health = f"{net.layout.ns_addr}:{ctx.port(HEALTH_PORT)}"
        return net.in_netns(
            [
                str(ctx.binary("kube-proxy")),
                f"--kubeconfig={netns_kubeconfig(ctx)}",
                "--proxy-mode=nftables",
                f"--hostname-override={proxy_node(ctx)}",
                f"--bind-address={net.layout.ns_addr}",
                f"--healthz-bind-address={health}",
                f"--metrics-bind-address=127.0.0.1:{ctx.port(METRICS_PORT)}",
                "--detect-local-mode=ClusterCIDR",
                f"--cluster-cidr={net.layout.network}",
                "--nodeport-addresses=primary",
                # NOTE: conntrack limits are machine-wide sysctls; leave them alone.
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--v=1",
            ]
        )

    def exec_path(self, ctx: LabContext) -> str:
        return str(ctx.binary("kube-proxy"))

    def ready(self, ctx: LabContext) -> bool:
        url = f"http://{ctx.net.layout.ns_addr}:{ctx.port(HEALTH_PORT)}/livez"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False
