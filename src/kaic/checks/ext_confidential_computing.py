"""ext_confidential_computing (extended profile, TestExtConfidentialComputing):
confidential containers can run in hardware trusted execution environments (TEEs): a
confidential RuntimeClass, TEE-capable nodes, and a pod of that RuntimeClass placed on
one; remote attestation is MANUAL.

Owns: which RuntimeClass handlers and names count as confidential (Kata's TEE shims,
peer pods, vendors' equivalents), which node labels mark a TEE-capable node (Node
Feature Discovery, Intel's and NVIDIA's labels, GKE confidential nodes), the pod placed
with that RuntimeClass, and the evidence a reviewer needs for attestation. Must not claim
attestation: kaic cannot verify a TEE quote, so a run that gets that far ends MANUAL.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kaic.checks.base import CheckContext, CheckOption, Permission, Resource, Subtest, check, shared
from kaic.checks.pods import RESTRICTED, SECCOMP
from kaic.checks.predicates import node_selector_matches, pod_bound, pod_phase
from kaic.checks.waits import last_warning
from kaic.cluster.api import KubeObject, labels_of, name_of
from kaic.errors import ClusterError, PermissionDeniedError

NODE_API = "node.k8s.io/v1"
POD = "kaic-confidential-pod"
IMAGE = "registry.k8s.io/pause:3.10"

OPTIONS = (
    CheckOption(
        "confidential-runtime-class",
        "the confidential RuntimeClass to use (default: the first one detected)",
        "",
    ),
    CheckOption(
        "confidential-node-label",
        "a node label `key=value` that marks TEE-capable nodes, besides the known ones",
        "",
    ),
    CheckOption("confidential-image", "image of the test pod", IMAGE),
    CheckOption(
        "confidential-schedule-timeout", "seconds for the test pod to be bound to a node", "60"
    ),
)

_TEE_TOKENS = {"tdx", "snp", "sev", "se", "coco", "cc"}
"""Name parts of confidential runtimes: Kata's ``qemu-tdx``, ``qemu-snp``, ``qemu-se``,
``qemu-coco-dev``, ``qemu-nvidia-gpu-tdx``…, AKS's ``kata-cc-isolation``, ``enclave-cc``."""

TEE_NODE_LABELS: tuple[tuple[str, str | None, str], ...] = (
    ("feature.node.kubernetes.io/cpu-security.tdx.enabled", "true", "Intel TDX (NFD)"),
    ("feature.node.kubernetes.io/cpu-security.sev.snp.enabled", "true", "AMD SEV-SNP (NFD)"),
    ("feature.node.kubernetes.io/cpu-security.sev.enabled", "true", "AMD SEV (NFD)"),
    ("feature.node.kubernetes.io/cpu-security.se.enabled", "true", "IBM Secure Execution (NFD)"),
    ("intel.feature.node.kubernetes.io/tdx", "true", "Intel TDX (Intel device plugins)"),
    ("nvidia.com/cc.capable", "true", "NVIDIA confidential-computing GPU"),
    (
        "cloud.google.com/gke-confidential-nodes-instance-type",
        None,
        "GKE confidential node",
    ),
)
"""(label, value or None for any, what it means)."""

COCO_GROUPS = {"confidentialcontainers.org": "Confidential Containers operator / Trustee"}


def confidential_runtime(rc: KubeObject) -> bool:
    """Whether a RuntimeClass runs pods in a TEE, judged by its handler and name."""
    for text in (str(rc.get("handler") or ""), name_of(rc)):
        t = text.lower()
        parts = set(re.split(r"[-_.]", t))
        if ("kata" in parts and (parts & _TEE_TOKENS or "remote" in parts)) or t.startswith(
            "enclave-cc"
        ):
            return True
        if parts & (_TEE_TOKENS - {"se", "cc"}):
            return True
    return False


def tee_labels(node: KubeObject, extra: tuple[str, str] | None) -> list[str]:
    """What TEE the node's labels say it has (empty: none)."""
    labels = labels_of(node)
    found = [
        f"{what} ({key}={labels[key]})"
        for key, value, what in TEE_NODE_LABELS
        if key in labels and (value is None or labels[key].lower() == value)
    ]
    if extra and labels.get(extra[0]) == extra[1]:
        found.append(f"{extra[0]}={extra[1]} (--confidential-node-label)")
    return found


def test_pod(namespace: str, runtime_class: str, image: str, nodes: list[str]) -> KubeObject:
    """A pod of ``runtime_class`` that may only run on one of the TEE ``nodes``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": namespace},
        "spec": {
            "runtimeClassName": runtime_class,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": dict(SECCOMP),
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {"key": "metadata.name", "operator": "In", "values": nodes}
                                ]
                            }
                        ]
                    }
                }
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    "securityContext": dict(RESTRICTED),
                }
            ],
        },
    }


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.runtime_class: KubeObject | None = None
        self.tee_nodes: dict[str, list[str]] = {}
        self.evidence: dict[str, Any] = {}
        self.extra: tuple[str, str] | None = None
        label = (ctx.option("confidential-node-label") or "").strip()
        if label:
            key, sep, value = label.partition("=")
            self.extra = (key.strip(), value.strip()) if sep else (key.strip(), "true")

    def runtime(self, t: Subtest) -> None:
        if not any(r.kind == "RuntimeClass" for r in self.c.api_resources(NODE_API)):
            t.fail(f"the apiserver does not serve RuntimeClass in {NODE_API}")
        classes = self.c.list(NODE_API, "RuntimeClass")
        named = (self.ctx.option("confidential-runtime-class") or "").strip()
        self.evidence["runtime_classes"] = [
            {"name": name_of(rc), "handler": rc.get("handler"), "scheduling": rc.get("scheduling")}
            for rc in classes
        ]
        groups = {v.split("/")[0] for v in self.c.api_versions()}
        self.evidence["confidential_apis"] = [w for g, w in COCO_GROUPS.items() if g in groups]
        if named:
            self.runtime_class = next((rc for rc in classes if name_of(rc) == named), None)
            if self.runtime_class is None:
                t.fail(f"RuntimeClass {named} (--confidential-runtime-class) does not exist")
        else:
            found = sorted((rc for rc in classes if confidential_runtime(rc)), key=name_of)
            self.evidence["confidential_runtime_classes"] = [name_of(rc) for rc in found]
            if not found:
                seen = ", ".join(f"{name_of(rc)} ({rc.get('handler')})" for rc in classes)
                t.fail(
                    "no confidential RuntimeClass (Kata TEE shims such as kata-qemu-tdx,"
                    " kata-qemu-snp, kata-qemu-coco-dev, kata-remote, or a vendor's *-cc"
                    f" runtime) is installed; RuntimeClasses: {seen or 'none'}"
                )
            self.runtime_class = found[0]
        rc = self.runtime_class
        t.log(f"confidential RuntimeClass {name_of(rc)} (handler {rc.get('handler')})")

    def nodes(self, t: Subtest) -> None:
        for node in self.c.list("v1", "Node"):
            found = tee_labels(node, self.extra)
            if found:
                self.tee_nodes[name_of(node)] = found
        self.evidence["tee_nodes"] = self.tee_nodes
        if not self.tee_nodes:
            known = ", ".join(k for k, _, _ in TEE_NODE_LABELS)
            t.fail(
                f"no TEE-capable node: no node carries a TEE label ({known}"
                + (f", {self.extra[0]}={self.extra[1]}" if self.extra else "")
                + ")"
            )
        for name, found in sorted(self.tee_nodes.items()):
            t.log(f"TEE node {name}: {'; '.join(found)}")

    def schedule(self, t: Subtest) -> None:
        assert self.runtime_class is not None
        rc_name = name_of(self.runtime_class)
        selector = (self.runtime_class.get("scheduling") or {}).get("nodeSelector") or {}
        if selector:
            steer = {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": k, "operator": "In", "values": [v]} for k, v in selector.items()
                        ]
                    }
                ]
            }
            outside = [
                name_of(n)
                for n in self.c.list("v1", "Node")
                if node_selector_matches(steer, n) and name_of(n) not in self.tee_nodes
            ]
            if outside:
                t.log(
                    f"RuntimeClass {rc_name}'s nodeSelector also matches nodes without a TEE"
                    f" label: {', '.join(outside)}"
                )
        image = self.ctx.option("confidential-image") or IMAGE
        nodes = sorted(self.tee_nodes)
        try:
            self.c.create(test_pod(self.ctx.namespace, rc_name, image, nodes))
        except PermissionDeniedError:
            raise
        except ClusterError as e:
            t.fail(f"a pod with RuntimeClass {rc_name} was not accepted: {e}")
        timeout = self.ctx.budget(self.ctx.float_option("confidential-schedule-timeout"))
        try:
            pod = self.c.wait_for(
                "v1",
                "Pod",
                POD,
                self.ctx.namespace,
                pod_bound,
                timeout=timeout,
                what=f"pod {POD} to be bound",
            )
        except ClusterError as e:
            t.fail(
                f"pod {POD} with RuntimeClass {rc_name} was not bound to a TEE node"
                f" ({', '.join(nodes)}): {e}{last_warning(self.c, self.ctx.namespace, POD)}"
            )
        assert pod is not None
        node = str(pod.get("spec", {}).get("nodeName"))
        self.evidence["pod"] = {
            "name": POD,
            "runtimeClassName": pod.get("spec", {}).get("runtimeClassName"),
            "node": node,
            "phase": pod_phase(pod),
            "tee": self.tee_nodes.get(node, []),
        }
        if node not in self.tee_nodes:
            t.fail(f"pod {POD} was bound to {node}, which has no TEE label")
        t.log(
            f"pod {POD} (RuntimeClass {rc_name}) bound to TEE node {node}"
            f" ({'; '.join(self.tee_nodes[node])}), phase {pod_phase(pod) or 'unknown'}"
        )

    def keep_evidence(self) -> None:
        self.ctx.evidence(
            "confidential.json",
            json.dumps(self.evidence, indent=2, default=str),
            "application/json",
        )


ATTEST = (
    "remote attestation is not automated: attach the attestation evidence for a pod of this"
    " RuntimeClass (the attestation service's verdict on its TEE evidence, e.g. the"
    " Trustee/KBS log or the cloud attestation report, and the reference values or policy"
    " it was checked against)"
)


@check(
    "ext_confidential_computing",
    test="TestExtConfidentialComputing",
    locks=shared(Resource.NODE_CAPACITY),
    options=OPTIONS,
    permissions=(
        Permission("list", "runtimeclasses", "node.k8s.io", namespaced=False),
        Permission("list", "nodes", namespaced=False),
        Permission("create", "pods"),
        Permission("get", "pods"),
    ),
    timeout_s=180.0,
)
def ext_confidential_computing(ctx: CheckContext) -> None:
    """A confidential RuntimeClass and TEE-capable nodes exist and a pod of that
    RuntimeClass is bound to a TEE node (PASS); attestation is left to a reviewer (its
    sub-test is a SKIP that says what to attach)."""
    run = _Run(ctx)
    try:
        ctx.step("ConfidentialRuntimeClassDetected", run.runtime)
        ctx.step("TEENodesDetected", run.nodes)
        scheduled = ctx.step(
            "PodScheduledOnTEENode",
            run.schedule,
            needs=("ConfidentialRuntimeClassDetected", "TEENodesDetected"),
        )
        with ctx.subtest("RemoteAttestation") as t:
            t.skip(ATTEST)
    finally:
        run.keep_evidence()
    if scheduled:
        pod = run.evidence.get("pod") or {}
        ctx.log(
            f"a pod of confidential RuntimeClass {pod.get('runtimeClassName')} was bound to TEE"
            f" node {pod.get('node')}; {ATTEST}"
        )
