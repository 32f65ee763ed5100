"""kube-apiserver on 127.0.0.1: RBAC, default admission plugins, service-account tokens,
the front-proxy for aggregated APIs; the resource.k8s.io groups unless ``--without dra-api``.

Owns: its flags, the admin kubeconfig and the readiness probe. Must not create workload
objects.
"""

from __future__ import annotations

from kaic.lab.component import ProcessComponent, register
from kaic.lab.context import LabContext
from kaic.lab.pki import write_kubeconfig


@register
class KubeApiserver(ProcessComponent):
    name = "kube-apiserver"
    description = "kube-apiserver: RBAC, default admission plugins, service-account tokens"
    order = 20
    optional = False
    binaries = ("kube-apiserver",)

    def port_keys(self) -> tuple[str, ...]:
        return ("kube-apiserver",)

    def before_start(self, ctx: LabContext) -> None:
        write_kubeconfig(ctx.kubeconfig, ctx.pki, ctx.server, f"kaic-lab-{ctx.name}")

    def argv(self, ctx: LabContext) -> list[str]:
        p = ctx.pki
        return [
            str(ctx.binary("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{ctx.port('etcd')}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ctx.port('kube-apiserver')}",
            f"--cert-dir={ctx.dir('kube-apiserver')}",
            f"--tls-cert-file={p.apiserver_crt}",
            f"--tls-private-key-file={p.apiserver_key}",
            f"--client-ca-file={p.ca_crt}",
            f"--authorization-mode={authorization_modes(ctx)}",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            f"--service-cluster-ip-range={ctx.net.service_cidr}",
            "--endpoint-reconciler-type=none",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--requestheader-client-ca-file={p.front_proxy_ca_crt}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p.front_proxy_client_crt}",
            f"--proxy-client-key-file={p.front_proxy_client_key}",
            "--enable-aggregator-routing=false",
            "--profiling=false",
            "--v=1",
            *dra_api_flags(ctx),
            *admission_flags(ctx),
        ]

    def ready(self, ctx: LabContext) -> bool:
        return bool(ctx.request("GET", "/readyz", timeout=3) == "ok")


def authorization_modes(ctx: LabContext) -> str:
    """Node,RBAC; only RBAC without the DRA API, since the Node authorizer's graph waits
    for ResourceSlices (and the lab's kwok nodes use no node credentials)."""
    return "RBAC" if "dra-api" in ctx.options.without else "Node,RBAC"


def dra_api_flags(ctx: LabContext) -> list[str]:
    """Turn the DRA API groups off when the lab is started ``--without dra-api``."""
    if "dra-api" not in ctx.options.without:
        return []
    return [
        "--runtime-config=resource.k8s.io/v1=false,resource.k8s.io/v1beta1=false,"
        "resource.k8s.io/v1beta2=false"
    ]


def admission_flags(ctx: LabContext) -> list[str]:
    """Disable ValidatingAdmissionPolicy enforcement when the lab is started ``--without
    admission-policy`` (the API stays served)."""
    if "admission-policy" not in ctx.options.without:
        return []
    return ["--disable-admission-plugins=ValidatingAdmissionPolicy"]
