"""The lab's control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and the kwok controller, all real upstream binaries on 127.0.0.1.

Owns: their flags and readiness probes. Must not create workload objects.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from kaic.lab.binaries import manifests
from kaic.lab.component import ProcessComponent, register
from kaic.lab.context import LabContext, probe
from kaic.lab.pki import write_kubeconfig

KWOK_CRDS = ("Stage", "Exec", "ClusterExec", "PortForward", "ClusterPortForward", "Logs",
             "ClusterLogs", "Attach", "ClusterAttach", "Metric", "ResourceUsage",
             "ClusterResourceUsage")
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
EXEC_BIN = "exec-bin"
"""Data directory put first on kwok's PATH (see ``Kwok.env``)."""
COMPLETE_AFTER_ANNOTATION = "kaic.io/complete-after"
"""On a pod owned by a Job: how long it stays Running before it Succeeds (e.g. ``30s``)."""


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
        return [str(ctx.binary("etcd")), "--name=lab", f"--data-dir={ctx.dir('etcd')}",
                f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=lab={peer}", "--unsafe-no-fsync=true",
                "--log-level=warn", "--quota-backend-bytes=4294967296"]

    def ready(self, ctx: LabContext) -> bool:
        return probe(f"http://127.0.0.1:{ctx.port('etcd')}/health")


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
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={ctx.port('kube-apiserver')}",
            f"--cert-dir={ctx.dir('kube-apiserver')}",
            f"--tls-cert-file={p.apiserver_crt}", f"--tls-private-key-file={p.apiserver_key}",
            f"--client-ca-file={p.ca_crt}",
            f"--authorization-mode={authorization_modes(ctx)}", "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            f"--service-cluster-ip-range={ctx.options.service_cidr}",
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
            "--profiling=false", "--v=1",
            *dra_api_flags(ctx),
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
    return ["--runtime-config=resource.k8s.io/v1=false,resource.k8s.io/v1beta1=false,"
            "resource.k8s.io/v1beta2=false"]


class _Controller(ProcessComponent):
    """kube-controller-manager and kube-scheduler share their serving flags."""

    binary_name: ClassVar[str] = ""

    def port_keys(self) -> tuple[str, ...]:
        return (self.name,)

    def common(self, ctx: LabContext) -> list[str]:
        kc = str(ctx.kubeconfig)
        return [str(ctx.binary(self.binary_name)), f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1", f"--secure-port={ctx.port(self.name)}",
                f"--cert-dir={ctx.dir(self.name)}", "--leader-elect=false",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                "--kube-api-qps=200", "--kube-api-burst=400", "--v=1"]

    def ready(self, ctx: LabContext) -> bool:
        return probe(f"https://127.0.0.1:{ctx.port(self.name)}/healthz")


@register
class KubeControllerManager(_Controller):
    name = "kube-controller-manager"
    description = ("kube-controller-manager: all default controllers, HPA synced every 2 s, "
                   "ResourceClaim controller")
    order = 30
    optional = False
    binaries = ("kube-controller-manager",)
    binary_name = "kube-controller-manager"

    def argv(self, ctx: LabContext) -> list[str]:
        p = ctx.pki
        return [*self.common(ctx), f"--root-ca-file={p.ca_crt}",
                f"--service-account-private-key-file={p.sa_key}",
                f"--cluster-signing-cert-file={p.ca_crt}",
                f"--cluster-signing-key-file={p.ca_key}",
                f"--cluster-name=kaic-lab-{ctx.name}",
                f"--service-cluster-ip-range={ctx.options.service_cidr}",
                "--horizontal-pod-autoscaler-sync-period=2s",
                "--horizontal-pod-autoscaler-downscale-stabilization=10s",
                "--horizontal-pod-autoscaler-initial-readiness-delay=5s",
                "--horizontal-pod-autoscaler-cpu-initialization-period=10s",
                "--node-monitor-grace-period=60s"]

    def after_start(self, ctx: LabContext) -> None:
        # Pods are refused until the ServiceAccount admission plugin finds `default`.
        ctx.wait("the default ServiceAccount", lambda: ctx.exists(
            "/api/v1/namespaces/default/serviceaccounts/default"), timeout=60,
            alive=self.name)


@register
class KubeScheduler(_Controller):
    name = "kube-scheduler"
    description = "kube-scheduler with its default plugins (incl. DynamicResources)"
    order = 30
    optional = False
    binaries = ("kube-scheduler",)
    binary_name = "kube-scheduler"

    def argv(self, ctx: LabContext) -> list[str]:
        return self.common(ctx)


def kwok_stages(ctx: LabContext) -> list[dict[str, Any]]:
    """kwok's fast node and pod stages; Job pods may stay Running for a while.

    Upstream's ``pod-complete`` stage makes a Job's pod Succeed at once. The lab adds a
    delay read from the pod annotation ``kaic.io/complete-after`` (a Go duration such as
    ``30s``, or an RFC 3339 time), so gang-scheduled or long-running Jobs can be
    observed while Running; without the annotation they still complete immediately.
    """
    docs = manifests("kwok", "stages", ctx.options.version)
    for d in docs:
        if d["metadata"]["name"] == "pod-complete":
            d["spec"]["delay"] = {
                "durationMilliseconds": 0,
                "durationFrom": {"expressionFrom":
                                 f'.metadata.annotations["{COMPLETE_AFTER_ANNOTATION}"]'},
            }
    return docs


@register
class Kwok(ProcessComponent):
    name = "kwok"
    description = ("kwok controller: plays the kubelet for fake nodes (lifecycle stages, "
                   "exec, logs, port-forward, metrics) with its CRDs enabled")
    order = 50
    optional = False
    binaries = ("kwok",)

    def port_keys(self) -> tuple[str, ...]:
        return ("kwok",)

    def before_start(self, ctx: LabContext) -> None:
        crds = manifests("kwok", "crds", ctx.options.version)
        ctx.apply(crds)
        wait_established(ctx, [c["metadata"]["name"] for c in crds])
        ctx.apply(kwok_stages(ctx))
        ctx.apply([default_cluster_exec(ctx)])
        # NOTE: an explicit KwokConfiguration is not defaulted by kwok (zero parallelism
        # stops its controllers), so the file is empty and flags carry the options; it
        # only keeps kwok from reading ~/.kwok/kwok.yaml.
        (ctx.dir("kwok") / "kwok.yaml").write_text("# options are passed as flags\n")

    def argv(self, ctx: LabContext) -> list[str]:
        port = ctx.port("kwok")
        return [str(ctx.binary("kwok")), f"--kubeconfig={ctx.kubeconfig}",
                f"--config={ctx.dir('kwok') / 'kwok.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--node-ip=127.0.0.1", f"--node-port={port}",
                f"--server-address=127.0.0.1:{port}", f"--cidr={ctx.options.pod_cidr}",
                "--node-lease-duration-seconds=40",
                f"--enable-crds={','.join(KWOK_CRDS)}"]

    def env(self, ctx: LabContext) -> dict[str, str]:
        # NOTE: kwok resolves argv[0] of `kubectl exec` commands with its own PATH;
        # components put programs into exec-bin to stand in for them (e.g. the `sh` of
        # simulated device visibility, docs/lab.md).
        path = os.environ.get("PATH", os.defpath)
        return {"PATH": f"{ctx.dir(EXEC_BIN)}{os.pathsep}{path}"}

    def ready(self, ctx: LabContext) -> bool:
        return probe(f"http://127.0.0.1:{ctx.port('kwok')}/healthz")


def default_cluster_exec(ctx: LabContext) -> dict[str, Any]:
    """``kubectl exec`` into any lab pod runs the command as a local process.

    The working directory is ``<state>/data/exec``; ``KAIC_LAB`` names the lab. More
    specific ``Exec`` objects (per pod) take precedence and may set other env vars.
    """
    workdir = ctx.dir("exec")
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterExec",
            "metadata": {"name": "kaic-lab-local"},
            "spec": {"execs": [{"local": {
                "workDir": str(workdir),
                "envs": [{"name": "KAIC_LAB", "value": ctx.name}]}}]}}


def wait_established(ctx: LabContext, names: list[str], timeout: float = 60.0) -> None:
    """Wait until every CRD in ``names`` is Established."""
    pending = set(names)

    def done() -> bool:
        for n in sorted(pending):
            crd = ctx.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}")
            conds = {c["type"]: c["status"]
                     for c in (crd.get("status") or {}).get("conditions") or []}
            if conds.get("Established") != "True":
                return False
            pending.discard(n)
        return True

    ctx.wait(f"CRDs to be established ({len(names)})", done, timeout=timeout)
