"""The real Kueue controller (gang scheduling, an AI operator with admission webhooks).

Kueue is program ``kueue`` of ``programs.toml`` (built by ``kaic lab build``) and runs as
a ``GoController``: a local process with the lab's admin kubeconfig, its webhook server
on 127.0.0.1 with a serving certificate from the lab CA, and the lab's own copies of
Kueue's Mutating/ValidatingWebhookConfigurations (from the module's
``config/components/webhook/manifests.yaml``) with ``clientConfig.url:
https://127.0.0.1:<port>/<path>`` and the CA as ``caBundle``, so the apiserver dials only
loopback. Kueue's own certificate rotation is off, its visibility API server is off,
health and metrics listen on 127.0.0.1. Leader election is on, so its Lease
``kueue-system/c1f6bfd2.kueue.x-k8s.io`` shows it is alive.

After it is ready the lab adds a ResourceFlavor ``kaic-gpu-pool`` (nodes labelled
``kaic.io/accelerator-pool=gpu``; all nodes when the lab has no GPU pool), a ClusterQueue
``kaic-lab`` whose quota is exactly the pool's allocatable CPU, memory and GPUs (without
the autoscaled pool's tainted node, ``nodes.AUTOSCALED_LABEL``), and a
LocalQueue ``lab`` in namespace ``default``.

Owns: Kueue's configuration, webhook selection and queues. Must not build anything (the
binary comes from the cache).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from kaic.cluster import parse_quantity
from kaic.errors import LabError
from kaic.lab import programs
from kaic.lab.component import register
from kaic.lab.components.nodes import AUTOSCALED_LABEL, POOL_LABEL
from kaic.lab.context import LabContext
from kaic.lab.controller import GoController, Webhook, controller_labels, loopback_webhooks

KUEUE_VERSION = programs.version("kueue")
NAMESPACE = "kueue-system"
LEASE = "c1f6bfd2.kueue.x-k8s.io"
CLUSTER_QUEUE = "kaic-lab"
FLAVOR = "kaic-gpu-pool"
LOCAL_QUEUE = "lab"
WEBHOOK_GROUPS = frozenset({"kueue.x-k8s.io", "batch"})
"""Webhooks the lab registers: Kueue's own kinds and batch/v1 Jobs (the only integration
enabled)."""
LABELS = controller_labels("kueue")
KUEUE_API = "kueue.x-k8s.io/v1beta2"


def binary(kube_version: str) -> Path:
    """Where ``kaic lab build`` puts the controller for this lab version."""
    return programs.binary_of("kueue", kube_version)


def _system_jobs_excluded(webhook: Webhook, groups: set[str]) -> Webhook:
    if "batch" in groups:
        # NOTE: as Kueue's kustomize config does: never intercept system Jobs.
        webhook["namespaceSelector"] = {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": ["kube-system", NAMESPACE],
                }
            ]
        }
    return webhook


def webhook_configurations(port: int, ca_pem: bytes, *, files: list[Path]) -> list[dict[str, Any]]:
    """Kueue's webhook configurations (``files``: the module's webhook manifests),
    pointed at ``https://127.0.0.1:port``."""
    return loopback_webhooks(
        files,
        port,
        ca_pem,
        groups=WEBHOOK_GROUPS,
        prefix="kueue-",
        labels=LABELS,
        adjust=_system_jobs_excluded,
    )


def config(ctx: LabContext, cert_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ctx.port('kueue-health')}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ctx.port('kueue-metrics')}"},
        "webhook": {
            "port": ctx.port("kueue-webhook"),
            "host": "127.0.0.1",
            "certDir": str(cert_dir),
        },
        "leaderElection": {
            "leaderElect": True,
            "resourceName": LEASE,
            "resourceNamespace": NAMESPACE,
            "leaseDuration": "15s",
            "renewDeadline": "10s",
            "retryPeriod": "2s",
        },
        "internalCertManagement": {"enable": False},
        "integrations": {"frameworks": ["batch/job"]},
        "featureGates": {"VisibilityOnDemand": False},
    }


@register
class KueueController(GoController):
    name = "kueue-controller"
    description = (
        f"the real Kueue {KUEUE_VERSION} controller (built from its module), webhooks "
        "on 127.0.0.1, a ClusterQueue for the GPU pool"
    )
    order = 110
    optional = True
    default = False
    program = "kueue"
    webhooks = "webhooks"
    webhook_groups = WEBHOOK_GROUPS
    namespace = NAMESPACE
    lease = LEASE

    def adjust_webhook(self, webhook: Webhook, groups: set[str]) -> Webhook:
        return _system_jobs_excluded(webhook, groups)

    def prepare(self, ctx: LabContext) -> None:
        if "kueue" not in ctx.enabled:
            raise LabError("kueue-controller needs the kueue CRDs; do not leave out kueue")
        (self.data_dir(ctx) / "config.yaml").write_text(
            yaml.safe_dump(config(ctx, self.cert_dir(ctx)), sort_keys=False)
        )

    def args(self, ctx: LabContext) -> list[str]:
        return [
            f"--config={self.data_dir(ctx) / 'config.yaml'}",
            f"--kubeconfig={ctx.kubeconfig}",
            "--zap-log-level=info",
        ]

    def argv(self, ctx: LabContext) -> list[str]:
        # NOTE: with its own certificate rotation off, Kueue reads its metrics serving
        # certificate from the fixed path /etc/kueue/metrics/certs. The lab does not
        # write to the host's /etc: Kueue runs in a private mount namespace where /etc
        # is an overlay whose writable layer lives in the lab's state directory.
        d = self.data_dir(ctx)
        (d / "etc-upper").mkdir(exist_ok=True)
        (d / "etc-work").mkdir(exist_ok=True)
        certs = self.cert_dir(ctx)
        script = (
            f"mount -t overlay kaic-kueue-etc -o lowerdir=/etc,upperdir={d}/etc-upper,"
            f"workdir={d}/etc-work /etc && mkdir -p /etc/kueue/metrics/certs && "
            f"cp {certs}/tls.crt {certs}/tls.key /etc/kueue/metrics/certs/ && "
            'exec "$@"'
        )
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            script,
            "kueue-in-namespace",
            *super().argv(ctx),
        ]

    def exec_path(self, ctx: LabContext) -> str:
        return str(self.binary(ctx))

    def configure(self, ctx: LabContext) -> None:
        ctx.apply(queues(ctx))


def queues(ctx: LabContext) -> list[dict[str, Any]]:
    """ResourceFlavor, ClusterQueue (quota = the pool's allocatable) and LocalQueue."""
    nodes = ctx.get("/api/v1/nodes").get("items") or []
    # NOTE: the autoscaled pool's nodes are tainted for cluster_autoscaling alone; the
    # queue's workloads never run there, so their capacity is no quota.
    nodes = [n for n in nodes if n["metadata"].get("labels", {}).get(AUTOSCALED_LABEL) != "true"]
    pool = [n for n in nodes if n["metadata"].get("labels", {}).get(POOL_LABEL) == "gpu"]
    flavor: dict[str, Any] = {
        "apiVersion": KUEUE_API,
        "kind": "ResourceFlavor",
        "metadata": {"name": FLAVOR, "labels": LABELS},
        "spec": {},
    }
    if pool:
        flavor["spec"]["nodeLabels"] = {POOL_LABEL: "gpu"}
    else:
        pool = nodes
    totals: dict[str, Decimal] = {}
    for node in pool:
        for res, value in (node.get("status", {}).get("allocatable") or {}).items():
            if res in ("cpu", "memory", "nvidia.com/gpu"):
                totals[res] = totals.get(res, Decimal(0)) + parse_quantity(str(value))
    covered = sorted(totals)
    resources = [{"name": r, "nominalQuota": _format(r, totals[r])} for r in covered]
    cq = {
        "apiVersion": KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": {"name": CLUSTER_QUEUE, "labels": LABELS},
        "spec": {
            "namespaceSelector": {},
            "resourceGroups": [
                {"coveredResources": covered, "flavors": [{"name": FLAVOR, "resources": resources}]}
            ],
        },
    }
    lq = {
        "apiVersion": KUEUE_API,
        "kind": "LocalQueue",
        "metadata": {"name": LOCAL_QUEUE, "namespace": "default", "labels": LABELS},
        "spec": {"clusterQueue": CLUSTER_QUEUE},
    }
    return [flavor, cq, lq]


def _format(resource: str, value: Decimal) -> str:
    if resource == "memory":
        return f"{int(value // 2**20)}Mi"
    if resource == "cpu":
        return f"{int(value * 1000)}m"
    return str(int(value))
