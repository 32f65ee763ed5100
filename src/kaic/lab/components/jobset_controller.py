"""The real JobSet controller (``sigs.k8s.io/jobset``): JobSets become Jobs and pods.

JobSet is program ``jobset`` of ``programs.toml`` (built by ``kaic lab build``) and runs
as a ``GoController``: a local process with the lab's admin kubeconfig, leader election
in ``jobset-system`` (Lease ``6d4f6a47.jobset.x-k8s.io``), health, metrics and webhook
ports on 127.0.0.1, its own certificate management off (the webhook and metrics serving
certificate comes from the lab CA), and the lab's copies of its webhook configurations
pointed at ``https://127.0.0.1:<port>``. Its pod webhooks see only pods of JobSets
(``jobset.sigs.k8s.io/jobset-name`` exists), as the module's kustomize patches say.

Owns: JobSet's configuration and webhook selection. Must not build anything.
"""

from __future__ import annotations

from typing import Any

import yaml

from kaic.lab import programs
from kaic.lab.component import register
from kaic.lab.context import LabContext
from kaic.lab.controller import GoController, Webhook

NAMESPACE = "jobset-system"
LEASE = "6d4f6a47.jobset.x-k8s.io"
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"


def only_jobset_pods(webhook: Webhook, groups: set[str]) -> Webhook:
    """Pod webhooks for pods of JobSets only (the module's kustomize patch)."""
    if groups == {""}:
        webhook["objectSelector"] = {
            "matchExpressions": [{"key": JOBSET_LABEL, "operator": "Exists"}]
        }
    return webhook


def config(health: int, metrics: int, webhook: int, cert_dir: str) -> dict[str, Any]:
    return {
        "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics}", "certDir": cert_dir},
        "webhook": {"port": webhook, "host": "127.0.0.1", "certDir": cert_dir},
        "leaderElection": {
            "leaderElect": True,
            "resourceName": LEASE,
            "resourceNamespace": NAMESPACE,
            "leaseDuration": "15s",
            "renewDeadline": "10s",
            "retryPeriod": "2s",
        },
        "internalCertManagement": {"enable": False},
    }


@register
class JobSetController(GoController):
    name = "jobset-controller"
    description = (
        f"the real JobSet {programs.version('jobset')} controller (built from its module), "
        "webhooks on 127.0.0.1"
    )
    order = 112
    after = ("jobset",)
    needs = ("jobset",)
    program = "jobset"
    webhooks = "webhooks"
    namespace = NAMESPACE
    lease = LEASE

    def adjust_webhook(self, webhook: Webhook, groups: set[str]) -> Webhook:
        return only_jobset_pods(webhook, groups)

    def prepare(self, ctx: LabContext) -> None:
        doc = config(
            self.port_of(ctx, "health"),
            self.port_of(ctx, "metrics"),
            self.port_of(ctx, "webhook"),
            str(self.cert_dir(ctx)),
        )
        (self.data_dir(ctx) / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def args(self, ctx: LabContext) -> list[str]:
        return [
            f"--config={self.data_dir(ctx) / 'config.yaml'}",
            f"--kubeconfig={ctx.kubeconfig}",
            "--zap-log-level=info",
        ]
