"""The lab's stand-in container runtime (``kaic.lab.sims.runtime``): containers whose image
the lab understands run their command as local processes; ``kubectl logs`` serves their
output and their exit codes decide the pods' phases.

Owns: starting and stopping the runtime process and every container process it started
(also those left behind by a runtime that was killed). Must not decide what a container
sees (``device-visibility``) or which pods kwok completes (``kwok``'s stages read the
runtime's pod annotation).
"""

from __future__ import annotations

import sys
from pathlib import Path

from kaic.lab import proc
from kaic.lab.component import ProcessComponent, register
from kaic.lab.components import rdma_nics
from kaic.lab.components.kwok import EXEC_BIN, RUNTIME_COMPONENT
from kaic.lab.context import LabContext
from kaic.lab.sims import runtime

DEVICES_COMPONENT = "device-visibility"


def runtime_root(ctx: LabContext) -> Path:
    return ctx.dir("runtime")


def container_pids(ctx: LabContext) -> list[int]:
    """Every live process of the containers the runtime started."""
    return runtime.recorded_pids(runtime_root(ctx) / "procs")


@register
class ContainerRuntime(ProcessComponent):
    name = RUNTIME_COMPONENT
    description = (
        "runs the command of containers whose image the lab understands (busybox, "
        "ubuntu, debian, python, cuda) as local processes: logs, exit codes, restarts"
    )
    order = 80
    after = ("kwok", DEVICES_COMPONENT, rdma_nics.NAME)
    optional = True
    default = True
    ready_timeout = 30.0

    def argv(self, ctx: LabContext) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "kaic.lab.sims.runtime",
            f"--kubeconfig={ctx.kubeconfig}",
            f"--root={runtime_root(ctx)}",
            # NOTE: where `kubectl exec` commands run too (the kwok ClusterExec's workDir):
            # the lab has no container filesystems, so a container and an exec into it
            # share this directory.
            f"--workdir={ctx.dir('exec')}",
            # NOTE: hostPath volumes and hostPath/local PersistentVolumes are bound into a
            # container only below the lab's data directory (the provisioner's volumes).
            f"--host-path-root={ctx.state / 'data'}",
        ]
        argv += rdma_nics.runtime_args(ctx)
        if DEVICES_COMPONENT in ctx.enabled:
            argv += [f"--devices-root={ctx.dir('devices')}", f"--exec-bin={ctx.dir(EXEC_BIN)}"]
        return argv

    def ready(self, ctx: LabContext) -> bool:
        try:
            return "container runtime running" in ctx.log_path(self.name).read_text()
        except OSError:
            return False

    def stop(self, ctx: LabContext) -> None:
        proc.stop(ctx.pid_path(self.name))
        runtime.kill_recorded(runtime_root(ctx) / "procs")
