"""The real local-path-provisioner (``github.com/rancher/local-path-provisioner``) in its
shared-filesystem mode: a dynamic provisioner of ReadWriteMany volumes.

The provisioner is program ``local-path-provisioner`` of ``programs.toml`` (built by
``kaic lab build``), run as a local process with the lab's admin kubeconfig, reading its
configuration from the ConfigMap ``local-path-storage/local-path-config`` as upstream's
deployment does. Its ``config.json`` sets ``sharedFileSystemPath``: one directory that
every node sees (a filesystem shared by all nodes, here ``<state>/data/
local-path-provisioner/shared``), so it provisions volumes of any access mode, without
node affinity, for StorageClass ``SHARED_CLASS``. It creates and removes each volume's
directory with a helper pod (``helperPod.yaml`` of the ConfigMap, image
``HELPER_IMAGE``) that the lab's container runtime really runs; ``setupCommand`` and
``teardownCommand`` name the helper's program, which the lab writes (``helper_script``),
since the lab's containers have no image filesystem to carry upstream's ``/script``.
The PersistentVolumes it creates are ``hostPath`` volumes the container runtime binds
into pods (only below the lab's data directory).

Owns: that configuration, the StorageClass, the provisioner's ServiceAccount and
namespace. Must not build anything, and must not mount volumes (``container-runtime``
does).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from kaic.lab import programs
from kaic.lab.component import register
from kaic.lab.context import LabContext
from kaic.lab.controller import GoController

NAMESPACE = "local-path-storage"
CONFIG_MAP = "local-path-config"
SERVICE_ACCOUNT = "local-path-provisioner-service-account"
PROVISIONER = "rancher.io/local-path"
SHARED_CLASS = "kaic-shared-rwx"
"""The lab's ReadWriteMany StorageClass."""
HELPER_IMAGE = "docker.io/library/debian:12-slim"
"""The helper pod's image: one the lab's container runtime runs."""
READY_LINE = "Started provisioner controller"
"""What sig-storage-lib-external-provisioner logs once its informers run."""


def shared_dir(ctx: LabContext) -> Path:
    """The directory every node of the lab sees, where volumes are created."""
    return ctx.dir("local-path-provisioner") / "shared"


def helper_script(shared: Path) -> str:
    """The helper pod's program (``-p PATH -s SIZE -m MODE -a create|delete``, as the
    provisioner passes them): creates or removes one volume directory, only inside
    ``shared``."""
    root = shlex.quote(str(shared))
    return f"""#!/bin/sh
# kaic lab: local-path-provisioner's helper program (its setupCommand and teardownCommand).
set -eu
path="" action=""
while [ $# -gt 0 ]; do
  case "$1" in
    -p) path=$2; shift 2 ;;
    -a) action=$2; shift 2 ;;
    -s|-m) shift 2 ;;
    *) shift ;;
  esac
done
case "$path" in
  {root}/?*) ;;
  *) echo "refusing volume path $path: not inside {root}" >&2; exit 2 ;;
esac
case "$action" in
  create) mkdir -m 0777 -p "$path"; echo "created $path" ;;
  delete) rm -rf "$path"; echo "deleted $path" ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
"""


def config_json(shared: Path, helper: Path) -> dict[str, Any]:
    return {
        "sharedFileSystemPath": str(shared),
        "setupCommand": str(helper),
        "teardownCommand": str(helper),
        "cmdTimeoutSeconds": 120,
    }


def helper_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "helper-pod",
                    "image": HELPER_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
        },
    }


def storage_class() -> dict[str, Any]:
    """ReadWriteMany volumes on the shared directory, bound as soon as they are claimed."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": SHARED_CLASS,
            "annotations": {
                "kaic.io/description": (
                    "local-path-provisioner, shared-filesystem mode: ReadWriteMany volumes "
                    "on a directory every lab node sees"
                )
            },
            "labels": {"app.kubernetes.io/managed-by": "kaic-lab"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


@register
class LocalPathProvisioner(GoController):
    name = "local-path-provisioner"
    description = (
        f"the real local-path-provisioner {programs.version('local-path-provisioner')} "
        f"(built from its module), shared-filesystem mode: StorageClass {SHARED_CLASS} "
        "provisions ReadWriteMany volumes"
    )
    order = 112
    after = ("kube-apiserver", "container-runtime")
    needs = ("container-runtime",)
    program = "local-path-provisioner"
    namespace = NAMESPACE
    ready_timeout = 60.0

    def port_keys(self) -> tuple[str, ...]:
        return ()  # it serves nothing

    def prepare(self, ctx: LabContext) -> None:
        shared = shared_dir(ctx)
        shared.mkdir(parents=True, exist_ok=True)
        helper = self.data_dir(ctx) / "helper" / "volume"
        helper.parent.mkdir(parents=True, exist_ok=True)
        helper.write_text(helper_script(shared))
        helper.chmod(0o755)
        labels = self.labels()
        ctx.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE, "labels": labels},
                },
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": CONFIG_MAP, "namespace": NAMESPACE, "labels": labels},
                    "data": {
                        "config.json": json.dumps(config_json(shared, helper), indent=2),
                        "helperPod.yaml": yaml.safe_dump(helper_pod(), sort_keys=False),
                    },
                },
                storage_class(),
            ]
        )

    def args(self, ctx: LabContext) -> list[str]:
        return [
            "--debug",
            "start",
            f"--kubeconfig={ctx.kubeconfig}",
            f"--namespace={NAMESPACE}",
            f"--configmap-name={CONFIG_MAP}",
            f"--service-account-name={SERVICE_ACCOUNT}",
            f"--provisioner-name={PROVISIONER}",
            f"--helper-image={HELPER_IMAGE}",
        ]

    def ready(self, ctx: LabContext) -> bool:
        try:
            return READY_LINE in ctx.log_path(self.name).read_text(errors="replace")
        except OSError:
            return False
