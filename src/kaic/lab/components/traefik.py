"""The lab's Gateway API data plane: the real Traefik v3 (program ``traefik`` of
``programs.toml``, built by ``kaic lab build``) with its Kubernetes Gateway provider.

Traefik runs as a local process inside the lab's network namespace, with the lab's admin
kubeconfig for processes there (``KUBECONFIG``, through the lab network's relay). It
watches the Gateway API through the apiserver, accepts the lab's
GatewayClass ``traefik`` (controller ``traefik.io/gateway-controller``), programs
Gateways whose listeners use port 80, writes the status of Gateways and HTTPRoutes, and
routes HTTP itself: entry point ``web`` listens on the lab network's gateway address
(``LabNet.layout.gateway_ip``, local inside the namespace and routed from the host) port
80, and that address is what Gateways get in ``status.addresses``. Backends are the
endpoints of the Services a route names (EndpointSlices), pod IPs of the lab network, as
on a real cluster.

Network rule: every listener is on the gateway address (``web``, and the ``traefik``
entry point with ``/ping``); the release check and usage statistics are off by flag and
their URLs are patched to a closed loopback port in the build (``programs.toml``).
Traefik dials the relay to the apiserver and the endpoints of routed Services, which are
lab pod addresses.

Without the ``gateway-api`` CRD set the component starts nothing. ``--without traefik``
gives a lab that serves the Gateway API with no implementation behind it.

Owns: the command line, the process and the GatewayClass. Must not decide pass/fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaic.lab import programs
from kaic.lab.apiserver import probe
from kaic.lab.component import ProcessComponent, register
from kaic.lab.components.network import netns_kubeconfig
from kaic.lab.context import NETNS_PORT_PREFIX, LabContext
from kaic.lab.objects import LAB_LABELS

TRAEFIK_VERSION = programs.version("traefik")
GATEWAY_CLASS = "traefik"
CONTROLLER_NAME = "traefik.io/gateway-controller"
LISTENER_PORT = 80
"""Port of the ``web`` entry point; Traefik programs Gateway listeners of this port."""
GW = "gateway.networking.k8s.io/v1"
PING_PORT = f"{NETNS_PORT_PREFIX}traefik-ping"


def gateway_class() -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS, "labels": dict(LAB_LABELS)},
        "spec": {
            "controllerName": CONTROLLER_NAME,
            "description": f"Traefik {TRAEFIK_VERSION}, the kaic lab's Gateway data plane",
        },
    }


def command_line(binary: str, gateway_ip: str, ping_port: int) -> list[str]:
    return [
        binary,
        "--global.checknewversion=false",
        "--global.sendanonymoususage=false",
        "--log.level=INFO",
        "--accesslog=false",
        f"--entrypoints.web.address={gateway_ip}:{LISTENER_PORT}",
        f"--entrypoints.traefik.address={gateway_ip}:{ping_port}",
        "--ping=true",
        "--ping.entrypoint=traefik",
        "--providers.kubernetesgateway=true",
        f"--providers.kubernetesgateway.statusaddress.ip={gateway_ip}",
        "--providers.kubernetesgateway.throttleduration=1s",
    ]


def _accepted(ctx: LabContext) -> bool:
    gc = ctx.get(f"/apis/{GW}/gatewayclasses/{GATEWAY_CLASS}")
    return any(
        c.get("type") == "Accepted" and c.get("status") == "True"
        for c in (gc.get("status") or {}).get("conditions") or []
    )


@register
class Traefik(ProcessComponent):
    name = "traefik"
    description = (
        f"the real Traefik {TRAEFIK_VERSION} Gateway API data plane (built from its "
        "module): GatewayClass traefik, Gateways on the lab's gateway address port 80"
    )
    order = 115
    after = ("gateway-api", "kube-controller-manager", "network")
    optional = True
    default = True
    ready_timeout = 60.0

    def _wanted(self, ctx: LabContext) -> bool:
        return "gateway-api" in ctx.enabled

    def port_keys(self) -> tuple[str, ...]:
        return (PING_PORT,)

    def start(self, ctx: LabContext) -> None:
        if self._wanted(ctx):
            super().start(ctx)

    def healthy(self, ctx: LabContext) -> bool:
        return super().healthy(ctx) if self._wanted(ctx) else True

    def before_start(self, ctx: LabContext) -> None:
        programs.require_binary("traefik", ctx.options.version)

    def argv(self, ctx: LabContext) -> list[str]:
        return ctx.net.in_netns(
            command_line(self.exec_path(ctx), str(ctx.net.layout.gateway_ip), ctx.port(PING_PORT))
        )

    def exec_path(self, ctx: LabContext) -> str:
        return str(programs.binary_of("traefik", ctx.options.version))

    def env(self, ctx: LabContext) -> Mapping[str, str] | None:
        return {"KUBECONFIG": str(netns_kubeconfig(ctx))}

    def ready(self, ctx: LabContext) -> bool:
        return probe(f"http://{ctx.net.layout.gateway_ip}:{ctx.port(PING_PORT)}/ping")

    def after_start(self, ctx: LabContext) -> None:
        ctx.apply([gateway_class()])
        ctx.wait(
            f"Traefik to accept GatewayClass {GATEWAY_CLASS}",
            lambda: _accepted(ctx),
            timeout=60,
            alive=self.name,
        )
