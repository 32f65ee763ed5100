"""The kwok controller: plays the kubelet for the lab's fake nodes (lifecycle stages, exec,
logs, port-forward, metrics), with its CRDs, fast stages and the default ClusterExec.

Owns: kwok's flags, CRDs, stages and the ``kaic-lab-local`` ClusterExec (``kubectl exec``
runs commands as local processes). Must not create nodes (the ``nodes`` component does).
"""

from __future__ import annotations

import os
from typing import Any

from kaic.errors import LabError
from kaic.lab.apiserver import probe
from kaic.lab.binaries import manifests
from kaic.lab.component import ProcessComponent, register
from kaic.lab.context import LabContext
from kaic.lab.crds import apply_all, wait_established
from kaic.lab.sims import runtime

KWOK_CRDS = (
    "Stage",
    "Exec",
    "ClusterExec",
    "PortForward",
    "ClusterPortForward",
    "Logs",
    "ClusterLogs",
    "Attach",
    "ClusterAttach",
    "Metric",
    "ResourceUsage",
    "ClusterResourceUsage",
)
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODE_IP = "127.0.0.1"
"""Every node's InternalIP: kwok serves exec, logs and port-forward for all of them there."""
EXEC_BIN = "exec-bin"
"""Data directory put first on kwok's PATH (see ``Kwok.env``)."""
COMPLETE_AFTER_ANNOTATION = "kaic.io/complete-after"
"""On a pod owned by a Job: how long it stays Running before it Succeeds (e.g. ``30s``)."""
RUNTIME_COMPONENT = "container-runtime"


ADDRESSES_START = "{{ $hasInternalIP := false }}"
ADDRESSES_END = "{{ with NodePort }}"
NODE_ADDRESSES = """addresses:
- address: {{ NodeIP | Quote }}
  type: InternalIP
- address: {{ .metadata.name | Quote }}
  type: Hostname

"""


def node_addresses_always(template: str) -> str:
    """kwok's ``node-initialize`` status template, writing both node addresses every time.

    Upstream writes ``addresses`` only when InternalIP or Hostname is missing, and then
    only the missing one, taking the Hostname from ``NodeName``, which is empty for
    nodes in this kwok version. A node that went NotReady (seen under load) and was initialised
    again with its InternalIP present therefore got ``addresses:`` with nothing under it:
    the list was cleared, and every exec and port-forward to it failed ("no preferred
    addresses found; known addresses: []"). The lab writes both, InternalIP (kwok's
    ``--node-ip``) and Hostname (the node's name), on every initialisation.
    """
    start, end = template.find(ADDRESSES_START), template.find(ADDRESSES_END)
    if start < 0 or end < start:
        raise LabError(
            "kwok's node-initialize stage changed (its addresses block was not found); "
            "update kaic.lab.components.kwok.node_addresses_always"
        )
    return template[:start] + NODE_ADDRESSES + template[end:]


def kwok_stages(ctx: LabContext) -> list[dict[str, Any]]:
    """kwok's fast node and pod stages; Job pods may stay Running for a while; a large
    lab's node status heartbeats further apart (``LabOptions.node_status_scale``).

    Upstream's ``pod-complete`` stage makes a Job's pod Succeed at once. The lab adds a
    delay read from the pod annotation ``kaic.io/complete-after`` (a Go duration such as
    ``30s``, or an RFC 3339 time), so gang-scheduled or long-running Jobs can be
    observed while Running; without the annotation they still complete immediately.

    With the ``container-runtime`` component, only pods it marked ``kaic.io/runtime:
    kwok`` (it runs no process for them) are completed by this stage; the others end
    when their processes do.
    """
    docs = manifests("kwok", "stages", ctx.options.version)
    for d in docs:
        if d["metadata"]["name"] == "node-initialize":
            next_ = d["spec"]["next"]
            next_["statusTemplate"] = node_addresses_always(next_["statusTemplate"])
        if d["metadata"]["name"] == "node-heartbeat-with-lease":
            scale = ctx.options.node_status_scale
            delay = d["spec"]["delay"]
            for k in ("durationMilliseconds", "jitterDurationMilliseconds"):
                delay[k] = int(delay[k]) * scale
        if d["metadata"]["name"] == "pod-complete":
            if RUNTIME_COMPONENT in ctx.enabled:
                d["spec"]["selector"]["matchExpressions"].append(
                    {
                        "key": f'.metadata.annotations["{runtime.RUNTIME_ANNOTATION}"]',
                        "operator": "In",
                        "values": [runtime.KWOK],
                    }
                )
            d["spec"]["delay"] = {
                "durationMilliseconds": 0,
                "durationFrom": {
                    "expressionFrom": f'.metadata.annotations["{COMPLETE_AFTER_ANNOTATION}"]'
                },
            }
    return docs


@register
class Kwok(ProcessComponent):
    name = "kwok"
    description = (
        "kwok controller: plays the kubelet for fake nodes (lifecycle stages, "
        "exec, logs, port-forward, metrics) with its CRDs enabled"
    )
    order = 50
    after = ("kube-apiserver",)
    optional = False
    binaries = ("kwok",)

    def port_keys(self) -> tuple[str, ...]:
        return ("kwok",)

    def before_start(self, ctx: LabContext) -> None:
        crds = manifests("kwok", "crds", ctx.options.version)
        apply_all(ctx, crds, streams=4)
        wait_established(ctx, crds)
        ctx.apply(kwok_stages(ctx))
        ctx.apply([default_cluster_exec(ctx)])
        # NOTE: an explicit KwokConfiguration is not defaulted by kwok (zero parallelism
        # stops its controllers), so the file is empty and flags carry the options; it
        # only keeps kwok from reading ~/.kwok/kwok.yaml.
        (ctx.dir("kwok") / "kwok.yaml").write_text("# options are passed as flags\n")

    def argv(self, ctx: LabContext) -> list[str]:
        port = ctx.port("kwok")
        return [
            str(ctx.binary("kwok")),
            f"--kubeconfig={ctx.kubeconfig}",
            f"--config={ctx.dir('kwok') / 'kwok.yaml'}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--node-ip={NODE_IP}",
            f"--node-port={port}",
            f"--server-address=127.0.0.1:{port}",
            f"--cidr={ctx.net.pod_cidr}",
            f"--node-lease-duration-seconds={ctx.options.node_lease_s}",
            f"--enable-crds={','.join(KWOK_CRDS)}",
        ]

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
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ClusterExec",
        "metadata": {"name": "kaic-lab-local"},
        "spec": {
            "execs": [
                {
                    "local": {
                        "workDir": str(workdir),
                        "envs": [{"name": "KAIC_LAB", "value": ctx.name}],
                    }
                }
            ]
        },
    }
