"""Simulated device visibility as a lab component (the agent is ``kaic.lab.sims.devices``).

Owns: starting the device visibility agent, the ``exec-bin`` programs kwok resolves for
``kubectl exec``, and the visibility mode ConfigMap (isolated unless the ``device-leak``
component is enabled). Must not decide what a container sees (the agent does, from the
cluster's allocations).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from kaic.lab.component import ProcessComponent, register
from kaic.lab.components.kwok import EXEC_BIN, default_cluster_exec
from kaic.lab.context import LabContext
from kaic.lab.sims import devices

LEAK_COMPONENT = "device-leak"


def exec_bin(ctx: LabContext) -> Path:
    """Directory first on kwok's PATH: what ``kubectl exec`` commands resolve to first."""
    return ctx.dir(EXEC_BIN)


def mode_configmap(mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": devices.CONFIGMAP_NAME,
            "namespace": devices.CONFIGMAP_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "kaic-lab"},
        },
        "data": {"mode": mode},
    }


@register
class DeviceVisibility(ProcessComponent):
    name = "device-visibility"
    description = (
        "simulated device visibility for `kubectl exec`: each container sees "
        "exactly the GPUs the scheduler allocated to it (agent + kwok Exec rules)"
    )
    order = 75
    after = ("kwok",)
    optional = True
    default = True
    ready_timeout = 30.0

    def root(self, ctx: LabContext) -> Path:
        return ctx.dir("devices")

    def before_start(self, ctx: LabContext) -> None:
        devices.install_programs(self.root(ctx), exec_bin(ctx))
        # NOTE: an exec kwok matches to no per-pod rule (a pod the agent has not seen yet)
        # must fail, not run with the host's view of /dev.
        ctx.apply([devices.with_no_rule_marker(default_cluster_exec(ctx), self.root(ctx))])
        if LEAK_COMPONENT not in ctx.enabled:
            ctx.apply([mode_configmap("isolated")])

    def argv(self, ctx: LabContext) -> list[str]:
        return [
            sys.executable,
            "-m",
            "kaic.lab.sims.devices",
            f"--kubeconfig={ctx.kubeconfig}",
            f"--root={self.root(ctx)}",
            f"--exec-bin={exec_bin(ctx)}",
            f"--lab={ctx.name}",
        ]

    def ready(self, ctx: LabContext) -> bool:
        try:
            age = time.time() - (self.root(ctx) / devices.ALIVE_FILE).stat().st_mtime
        except OSError:
            return False
        return age < 15
