"""ext_heterogeneous_pools (extended profile, TestExtHeterogeneousPools): accelerator
nodes form a pool that AI workloads select with tolerations and affinity and that other
workloads never land on, and the node autoscaler's pool definition carries the same
constraints.

Owns: finding the accelerator pool (nodes with accelerators, by extended resource or DRA
device) and the label that selects it, the two probe pods (a plain one pinned by
affinity to a pool node, which must stay unschedulable; one with the pool's tolerations
and selector, which must land on the pool), reading Karpenter NodePools, the evidence.
Must not change any node.
"""

from __future__ import annotations

import json
from typing import Any

from kaic.checks.accelerators import (
    accelerator_inventory,
    any_accelerator,
    cluster_nodes,
    dra_version,
)
from kaic.checks.base import (
    CheckContext,
    CheckOption,
    Permission,
    Resource,
    Subtest,
    check,
    exclusive,
    shared,
)
from kaic.checks.predicates import BLOCKING_TAINT_EFFECTS, pod_bound, pod_unschedulable
from kaic.checks.resources import allocatable
from kaic.cluster.api import KubeObject, name_of
from kaic.errors import WaitTimeoutError

IMAGE = "docker.io/library/busybox:1.37"
PLAIN, AI = "kaic-plain", "kaic-ai"
NODEPOOL_API = "karpenter.sh/v1"
IGNORED_LABEL_PREFIXES = ("kubernetes.io/hostname", "node.kubernetes.io/instance-type")

OPTIONS = (
    CheckOption("pools-image", "image of the probe pods", IMAGE),
    CheckOption(
        "pools-negative-window", "seconds the plain pod must stay off the accelerator pool", "10"
    ),
    CheckOption("pools-schedule-timeout", "seconds for the AI pod to be scheduled", "60"),
)


def accelerator_nodes(nodes: list[KubeObject], dra_nodes: set[str]) -> list[KubeObject]:
    resources = any_accelerator().extended_resources
    return [
        n for n in nodes if name_of(n) in dra_nodes or any(allocatable(n, r) > 0 for r in resources)
    ]


def blocking_taints(node: KubeObject) -> list[dict[str, Any]]:
    return [
        t
        for t in node.get("spec", {}).get("taints") or []
        if t.get("effect") in BLOCKING_TAINT_EFFECTS
    ]


def pool_label(pool: list[KubeObject], others: list[KubeObject]) -> tuple[str, str] | None:
    """A label every pool node has with one value and no other node has with it."""
    first = pool[0].get("metadata", {}).get("labels") or {}
    for key, value in sorted(first.items()):
        if key.startswith(IGNORED_LABEL_PREFIXES):
            continue
        if all(
            (n.get("metadata", {}).get("labels") or {}).get(key) == value for n in pool
        ) and not any(
            (n.get("metadata", {}).get("labels") or {}).get(key) == value for n in others
        ):
            return key, value
    return None


def tolerations_for(taints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"key": t["key"], "operator": "Exists", "effect": t["effect"]}
        for t in taints
        if t.get("key")
    ]


def probe_pod(namespace: str, name: str, image: str, spec: dict[str, Any]) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": ["sh", "-c", "sleep 3600"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
            **spec,
        },
    }


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.ns = ctx.namespace
        self.image = ctx.option("pools-image") or IMAGE
        self.pool: list[KubeObject] = []
        self.others: list[KubeObject] = []
        self.taints: list[dict[str, Any]] = []
        self.label: tuple[str, str] | None = None
        self.evidence: dict[str, Any] = {}

    def find(self, t: Subtest) -> None:
        nodes = cluster_nodes(self.ctx)
        dra_nodes: set[str] = set()
        if dra_version(self.c, ("ResourceSlice",)) is not None:
            dra_nodes = {
                d.node_name
                for p in accelerator_inventory(self.ctx).pools
                for d in p.devices
                if d.node_name
            }
        self.pool = accelerator_nodes(nodes, dra_nodes)
        names = {name_of(n) for n in self.pool}
        self.others = [n for n in nodes if name_of(n) not in names]
        if not self.pool:
            t.fail("no node has accelerators (extended resources or DRA devices)")
        if not self.others:
            t.skip("every node has accelerators: there is no other pool to keep apart")
        self.label = pool_label(self.pool, self.others)
        self.taints = [
            x
            for x in blocking_taints(self.pool[0])
            if all(
                any(
                    y.get("key") == x.get("key") and y.get("effect") == x.get("effect")
                    for y in blocking_taints(n)
                )
                for n in self.pool
            )
        ]
        self.evidence = {
            "pool": sorted(names),
            "others": sorted(name_of(n) for n in self.others),
            "label": "=".join(self.label) if self.label else None,
            "taints": self.taints,
        }
        t.log(
            f"accelerator pool: {', '.join(sorted(names))}; selected by "
            f"{'='.join(self.label) if self.label else 'no common label'}; taints "
            f"{', '.join(x['key'] + ':' + x['effect'] for x in self.taints) or 'none'}"
        )

    def plain_kept_off(self, t: Subtest) -> None:
        target = name_of(self.pool[0])
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [name_of(n) for n in self.pool],
                                }
                            ]
                        }
                    ]
                }
            }
        }
        self.c.create(probe_pod(self.ns, PLAIN, self.image, {"affinity": affinity}))
        window = self.ctx.budget(self.ctx.float_option("pools-negative-window"))
        for objs in self.c.watch_list("v1", "Pod", self.ns, timeout=window):
            pod = next((p for p in objs if name_of(p) == PLAIN), None)
            if pod_bound(pod):
                assert pod is not None
                t.fail(
                    f"a pod without the pool's tolerations was placed on accelerator node"
                    f" {pod['spec']['nodeName']}: the pool is not kept for AI workloads"
                    + ("" if self.taints else " (its nodes carry no NoSchedule taint)")
                )
        pod = self.c.get("v1", "Pod", PLAIN, self.ns)
        t.log(
            f"a plain pod that may only run on the pool (e.g. {target}) stayed unscheduled for"
            f" {window:.0f}s" + (" (Unschedulable)" if pod_unschedulable(pod) else "")
        )

    def ai_placed(self, t: Subtest) -> None:
        spec: dict[str, Any] = {"tolerations": tolerations_for(self.taints)}
        if self.label:
            spec["nodeSelector"] = {self.label[0]: self.label[1]}
        else:
            t.fail("no label selects exactly the accelerator pool, so AI pods cannot target it")
        self.c.create(probe_pod(self.ns, AI, self.image, spec))
        timeout = self.ctx.budget(self.ctx.float_option("pools-schedule-timeout"))
        try:
            pod = self.c.wait_for(
                "v1", "Pod", AI, self.ns, pod_bound, timeout=timeout, what="the AI pod"
            )
        except WaitTimeoutError:
            t.fail(
                "a pod with the pool's tolerations and selector was not scheduled in"
                f" {timeout:.0f}s"
            )
        node = (pod or {}).get("spec", {}).get("nodeName")
        if node not in {name_of(n) for n in self.pool}:
            t.fail(f"the AI pod landed on {node}, outside the accelerator pool")
        t.log(f"a pod with the pool's tolerations and {'='.join(self.label)} ran on {node}")

    def autoscaler(self, t: Subtest) -> None:
        if not any(r.kind == "NodePool" for r in self.c.api_resources(NODEPOOL_API)):
            t.skip("no node autoscaler pool definition is visible (Karpenter NodePool)")
        pools = self.c.list(NODEPOOL_API, "NodePool")
        matching = []
        for np in pools:
            template = (np.get("spec") or {}).get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            reqs = (template.get("spec") or {}).get("requirements") or []
            selects = self.label is not None and (
                labels.get(self.label[0]) == self.label[1]
                or any(
                    r.get("key") == self.label[0] and self.label[1] in (r.get("values") or [])
                    for r in reqs
                )
            )
            if selects:
                matching.append(np)
        if not matching:
            t.skip("no Karpenter NodePool creates nodes of the accelerator pool")
        self.evidence["nodepools"] = {
            name_of(np): ((np.get("spec") or {}).get("template") or {})
            .get("spec", {})
            .get("taints")
            for np in matching
        }
        for np in matching:
            tpl_taints = ((np.get("spec") or {}).get("template") or {}).get("spec", {}).get(
                "taints"
            ) or []
            missing = [
                x["key"]
                for x in self.taints
                if not any(
                    y.get("key") == x["key"] and y.get("effect") == x["effect"] for y in tpl_taints
                )
            ]
            if missing:
                t.fail(
                    f"NodePool {name_of(np)} creates pool nodes without the pool's taint(s)"
                    f" {', '.join(missing)}: new nodes would take any workload"
                )
        t.log(f"NodePool(s) {', '.join(name_of(n) for n in matching)} carry the pool's taints")

    def keep_evidence(self) -> None:
        self.ctx.evidence("pools.json", json.dumps(self.evidence, indent=2), "application/json")


@check(
    "ext_heterogeneous_pools",
    test="TestExtHeterogeneousPools",
    # NOTE: its pods tolerate the pool's taints, so it may use the autoscaled pool.
    locks=exclusive(Resource.NODE_POOL, Resource.AUTOSCALED_POOL) + shared(Resource.NODE_CAPACITY),
    options=OPTIONS,
    permissions=(
        Permission("list", "nodes", namespaced=False),
        Permission("create", "pods"),
        Permission("list", "pods"),
    ),
    timeout_s=180.0,
)
def ext_heterogeneous_pools(ctx: CheckContext) -> None:
    """A pod without the accelerator pool's tolerations never lands on it, one with them
    and the pool's selector does, and the autoscaler's pool carries the same taints."""
    run = _Run(ctx)
    try:
        ctx.step("AcceleratorPoolFound", run.find)
        ctx.step("PlainPodKeptOff", run.plain_kept_off, needs=("AcceleratorPoolFound",))
        ctx.step("AIPodPlaced", run.ai_placed, needs=("AcceleratorPoolFound",))
        ctx.step("AutoscalerHonoursPool", run.autoscaler, needs=("AcceleratorPoolFound",))
    finally:
        run.keep_evidence()
