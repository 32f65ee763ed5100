"""cluster_autoscaling (TestAcceleratorClusterAutoscaling): a node pool of accelerator
nodes grows for a pending accelerator pod and shrinks back when it is gone.

Owns: the procedure (a stable, Ready baseline pool; filler pods pinned to every
baseline node's free accelerators; a trigger pod that cannot fit; the pool growing by a
node it then runs on; the pool returning to its baseline size and staying there), its
options, what it holds (the autoscaled pool alone when ``--autoscaler-pool-taint`` says
the pool is dedicated: its pods then tolerate that taint and every baseline node must
carry it), the ``phases.json`` evidence and the pool's size sampled whenever the check
lists or watches it (charted by the report). Must not import the Kubernetes client or know
how the lab simulates anything: it talks to the cluster only through ``ClusterAPI``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from kaic.checks.accelerators import (
    ACCELERATORS,
    POOL_TAINT_OPTION,
    accelerator_taint_tolerations,
    parse_taint,
)
from kaic.checks.base import (
    CheckContext,
    CheckOption,
    Lock,
    Permission,
    Resource,
    Subtest,
    check,
    exclusive,
)
from kaic.checks.predicates import (
    BLOCKING_TAINT_EFFECTS,
    node_has_taint,
    node_ready,
    pod_running,
    pod_unschedulable,
    tolerates,
    toleration_of,
)
from kaic.checks.resources import allocatable, requests_by_node
from kaic.checks.waits import Phases, dump
from kaic.cluster.api import KubeList, KubeObject, condition, name_of
from kaic.errors import KaicError, UsageError, WaitTimeoutError

DEFAULT_RESOURCE = ACCELERATORS["nvidia"].extended_resource
POOL_CHART = "node pool size"
"""The chart of the pool's node count over the check (its target: the baseline size)."""
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


def taint_text(taint: Mapping[str, Any]) -> str:
    """``key[=value]:Effect``, as ``kubectl taint`` writes it."""
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key')}{value}:{taint.get('effect')}"


def parse_pool_label(value: str) -> tuple[str, str]:
    """``key=value`` → (key, value); a clear usage error otherwise."""
    key, sep, val = value.partition("=")
    if not sep or not key.strip() or "," in value:
        raise UsageError(f"--autoscaler-node-pool-label must be key=value, got {value!r}")
    return key.strip(), val.strip()


CA_OPTIONS = (
    CheckOption(
        "autoscaler-node-pool-label",
        "key=value selecting the autoscaled accelerator node pool; without it the "
        "requirement is reported not applicable",
        parse=parse_pool_label,
    ),
    CheckOption(
        POOL_TAINT_OPTION,
        "key[=value]:NoSchedule|NoExecute taint that every node of the pool carries and "
        "that only this check's pods tolerate: the pool is dedicated, so this check runs "
        "beside the checks that use other accelerators",
        parse=parse_taint,
    ),
    CheckOption(
        "autoscaler-resource", "extended resource of the pool's accelerators", DEFAULT_RESOURCE
    ),
    CheckOption(
        "autoscaler-baseline-timeout", "seconds to wait for a stable, Ready baseline pool", "300"
    ),
    CheckOption(
        "autoscaler-pending-timeout", "seconds for the trigger pod to become Unschedulable", "120"
    ),
    CheckOption(
        "autoscaler-scale-up-timeout",
        "seconds for the pool to grow and the trigger pod to run on a new node",
        "1200",
    ),
    CheckOption(
        "autoscaler-scale-down-timeout",
        "seconds for the pool to return to its baseline size",
        "1800",
    ),
    CheckOption(
        "autoscaler-stability-window",
        "seconds the pool size must stay unchanged (baseline and after scale-down)",
        "30",
    ),
    CheckOption(
        "autoscaler-pod-image",
        "image of the filler and trigger pods (they only sleep)",
        PAUSE_IMAGE,
    ),
)


CA_LOCKS = exclusive(Resource.ACCELERATORS, Resource.NODE_POOL, Resource.AUTOSCALED_POOL)
"""What the check holds when the pool may be shared with other checks' pods."""


def ca_locks(options: Mapping[str, str]) -> Iterable[Lock] | None:
    """Nothing without a pool (the check ends not applicable at once); only the pool
    when it is dedicated (``--autoscaler-pool-taint``: no other check's pod lands on it
    or makes it grow); else ``CA_LOCKS``."""
    if not options.get("autoscaler-node-pool-label"):
        return ()
    if options.get(POOL_TAINT_OPTION):
        return exclusive(Resource.AUTOSCALED_POOL)
    return None


@check(
    "cluster_autoscaling",
    test="TestAcceleratorClusterAutoscaling",
    locks=CA_LOCKS,
    option_locks=ca_locks,
    options=CA_OPTIONS,
    permissions=(
        Permission("list", "nodes", namespaced=False),
        Permission("get", "nodes", namespaced=False),
        Permission("watch", "nodes", namespaced=False),
        Permission("list", "pods", namespaced=False),
        Permission("create", "pods"),
        Permission("delete", "pods"),
        Permission("create", "poddisruptionbudgets", "policy"),
        Permission("delete", "poddisruptionbudgets", "policy"),
        Permission("list", "events"),
    ),
    timeout_s=4500.0,
)
def cluster_autoscaling(ctx: CheckContext) -> None:
    """The accelerator node pool grows by one node for a pending accelerator pod and
    returns to its baseline size once that pod is gone."""
    raw = ctx.option("autoscaler-node-pool-label")
    if not raw:
        ctx.not_applicable(
            "no autoscaled accelerator node pool was named (--autoscaler-node-pool-label "
            "key=value); a platform without a cluster autoscaler for accelerators is "
            "not required to pass this check"
        )
    key, value = parse_pool_label(raw)
    _ClusterAutoscaling(ctx, f"{key}={value}").run()


class _ClusterAutoscaling:
    def __init__(self, ctx: CheckContext, selector: str) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.selector = selector
        self.resource = ctx.option("autoscaler-resource") or DEFAULT_RESOURCE
        self.image = ctx.option("autoscaler-pod-image") or PAUSE_IMAGE
        raw_taint = ctx.option(POOL_TAINT_OPTION)
        self.taint = parse_taint(raw_taint) if raw_taint else None
        self.window = ctx.float_option("autoscaler-stability-window")
        self.phases = Phases()
        self.baseline: list[str] = []
        self.trigger = "kaic-ca-trigger"
        self.fillers: list[str] = []
        self.new_node = ""
        self.allocatable: dict[str, Decimal] = {}
        self.trigger_created = 0.0

    # -- plumbing ------------------------------------------------------------------
    def pool(self) -> KubeList:
        return self.seen(self.c.list("v1", "Node", label_selector=self.selector))

    def seen(self, nodes: KubeList) -> KubeList:
        """``nodes`` (the pool as just listed or watched), its size kept as a sample."""
        baseline = float(len(self.baseline)) if self.baseline else None
        self.ctx.sample(POOL_CHART, "nodes in the pool", len(nodes), unit="nodes", target=baseline)
        return nodes

    def names(self, nodes: KubeList) -> list[str]:
        return sorted(name_of(n) for n in nodes)

    def timeout(self, option: str) -> float:
        return self.ctx.budget(self.ctx.float_option(option))

    def run(self) -> None:
        ctx = self.ctx
        try:
            ctx.step("StableBaseline", self.stable_baseline)
            ctx.step("PinBaselineWorkload", self.pin_baseline, needs=("StableBaseline",))
            ctx.step(
                "TriggerPodUnschedulable", self.trigger_pending, needs=("PinBaselineWorkload",)
            )
            ctx.step("ScaleUp", self.scale_up, needs=("TriggerPodUnschedulable",))
            ctx.step("ScaleDown", self.scale_down, needs=("ScaleUp",))
        finally:
            self.cleanup()
            self.phases.save(ctx)

    # -- phases --------------------------------------------------------------------
    def stable_baseline(self, t: Subtest) -> None:
        timeout = self.timeout("autoscaler-baseline-timeout")
        with self.phases.timed("baseline", timeout) as ph:
            nodes = self.pool()
            if not nodes:
                t.fail(f"no node carries the pool label {self.selector}")
            stable = self._wait_stable(
                timeout, lambda ns: bool(ns) and all(node_ready(n) for n in ns)
            )
            if stable is None:
                t.fail(
                    f"the pool {self.selector} did not keep a constant size of Ready "
                    f"nodes for {self.window:.0f}s within {timeout:.0f}s"
                )
            ph["nodes"] = self.names(stable)
        no_acc = [name_of(n) for n in stable if allocatable(n, self.resource) < 1]
        self.ctx.evidence("baseline-nodes.json", dump(stable), "application/json")
        if no_acc:
            t.fail(f"pool nodes without allocatable {self.resource}: {', '.join(no_acc)}")
        blocked = {
            f"{name_of(n)} ({taint_text(x)})"
            for n in stable
            for x in n.get("spec", {}).get("taints") or []
            if x.get("effect") in BLOCKING_TAINT_EFFECTS and not tolerates(self.tolerations(), x)
        }
        if blocked:
            t.error(
                f"pool nodes carry taints this check's pods do not tolerate: "
                f"{', '.join(sorted(blocked))}; name the pool's taint with "
                f"--{POOL_TAINT_OPTION}"
            )
        if self.taint is not None:
            untainted = [name_of(n) for n in stable if not node_has_taint(n, self.taint)]
            if untainted:
                t.error(
                    f"pool nodes without the taint --{POOL_TAINT_OPTION} {self.taint_text}: "
                    f"{', '.join(untainted)}; the pool is not dedicated (drop the option to "
                    "run this check alone)"
                )
        self.baseline = self.names(stable)
        self.allocatable = {name_of(n): allocatable(n, self.resource) for n in stable}
        t.log(f"baseline: {len(self.baseline)} node(s): {', '.join(self.baseline)}")

    def _wait_stable(self, timeout: float, ok: Callable[[KubeList], bool]) -> KubeList | None:
        """The pool once it kept the same set of nodes (all ``ok``) for a whole window
        (one watch per window, restarted after every change)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left < self.window:
                return None
            first: list[str] | None = None
            current: KubeList = []
            steady = True
            for current in self.c.watch_list(
                "v1", "Node", None, timeout=self.window, label_selector=self.selector
            ):
                self.seen(current)
                if first is None:
                    first = self.names(current)
                if self.names(current) != first or not ok(current):
                    steady = False
                    break
            if steady and first is not None:
                return current
            self.ctx.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def pin_baseline(self, t: Subtest) -> None:
        """Fill every baseline node's free accelerators with one pinned pod each."""
        pods = self.c.list("v1", "Pod", None)
        used = requests_by_node(pods, self.resource)
        app = {"app.kubernetes.io/name": "kaic-ca-filler"}
        self.c.create(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "kaic-ca-fillers", "namespace": self.ctx.namespace},
                "spec": {"maxUnavailable": 0, "selector": {"matchLabels": app}},
            }
        )
        for i, node in enumerate(self.baseline):
            free = int(self.allocatable[node] - used.get(node, Decimal(0)))
            if free <= 0:
                t.log(f"{node}: no free {self.resource} (already used by other pods)")
                continue
            name = f"kaic-ca-filler-{i}"
            self.c.create(self.pod(name, free, app, pin=node))
            self.fillers.append(name)
            t.log(f"{node}: pinned {name} requesting {free} {self.resource}")
        timeout = self.timeout("autoscaler-pending-timeout")
        with self.phases.timed("pin-baseline", timeout):
            try:
                self.c.wait_list(
                    "v1",
                    "Pod",
                    self.ctx.namespace,
                    lambda ps: all(pod_running(p) for p in ps if name_of(p) in self.fillers),
                    timeout=timeout,
                    what="the filler pods to run",
                    label_selector="app.kubernetes.io/name=kaic-ca-filler",
                )
            except WaitTimeoutError:
                t.error(
                    f"the filler pods pinned to the baseline nodes were not all Running "
                    f"within {timeout:.0f}s; the pool is not idle or not schedulable"
                )

    @property
    def taint_text(self) -> str:
        return taint_text(self.taint or {})

    def tolerations(self) -> list[KubeObject]:
        tols = accelerator_taint_tolerations(self.resource)
        if self.taint is not None:
            tols.append(toleration_of(self.taint))
        return tols

    def pod(
        self, name: str, count: int, labels: dict[str, str], pin: str | None = None
    ) -> KubeObject:
        key, _, value = self.selector.partition("=")
        spec: KubeObject = {
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {key: value},
            "tolerations": self.tolerations(),
            "containers": [
                {
                    "name": "main",
                    "image": self.image,
                    "resources": {
                        "requests": {self.resource: str(count)},
                        "limits": {self.resource: str(count)},
                    },
                }
            ],
        }
        if pin:
            spec["affinity"] = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {"key": "metadata.name", "operator": "In", "values": [pin]}
                                ]
                            }
                        ]
                    }
                }
            }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self.ctx.namespace,
                "labels": dict(labels),
                # NOTE: cluster-autoscaler must not evict the fillers when
                # it looks for removable nodes.
                "annotations": {
                    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
                    "karpenter.sh/do-not-disrupt": "true",
                },
            },
            "spec": spec,
        }

    def trigger_pending(self, t: Subtest) -> None:
        self.c.create(self.pod(self.trigger, 1, {"app.kubernetes.io/name": "kaic-ca-trigger"}))
        self.trigger_created = time.monotonic()
        timeout = self.timeout("autoscaler-pending-timeout")
        with self.phases.timed("trigger-unschedulable", timeout) as ph:
            try:
                pod = self.c.wait_for(
                    "v1",
                    "Pod",
                    self.trigger,
                    self.ctx.namespace,
                    lambda p: pod_unschedulable(p) or bool(p and p.get("spec", {}).get("nodeName")),
                    timeout=timeout,
                    what="the trigger pod to become Unschedulable",
                )
            except WaitTimeoutError:
                t.fail(f"the trigger pod did not become Unschedulable within {timeout:.0f}s")
            node = (pod or {}).get("spec", {}).get("nodeName")
            if node and node in self.baseline:
                t.error(
                    f"the trigger pod was scheduled on baseline node {node}: the pool "
                    f"had a free {self.resource}, so the test cannot force a scale-up"
                )
            ph["message"] = (condition(pod, "PodScheduled") or {}).get("message", "")
        t.log(f"trigger pod Unschedulable: {ph['message']}")

    def scale_up(self, t: Subtest) -> None:
        timeout = self.timeout("autoscaler-scale-up-timeout")
        n = len(self.baseline)
        state: dict[str, Any] = {"nodes": self.baseline}

        def grown(pods: KubeList) -> bool:
            trig = next((p for p in pods if name_of(p) == self.trigger), None)
            node = (trig or {}).get("spec", {}).get("nodeName")
            state["trigger"] = trig
            if not (pod_running(trig) and node and node not in self.baseline):
                return False
            state["nodes"] = self.names(self.pool())
            return len(state["nodes"]) >= n + 1 and node in state["nodes"]

        with self.phases.timed("scale-up", timeout) as ph:
            try:
                self.c.wait_list(
                    "v1",
                    "Pod",
                    self.ctx.namespace,
                    grown,
                    timeout=timeout,
                    what="the pool to grow",
                    label_selector="app.kubernetes.io/name=kaic-ca-trigger",
                )
            except WaitTimeoutError:
                nodes = self.names(self.pool())
                msg = (condition(state.get("trigger"), "PodScheduled") or {}).get("message")
                self.evidence_events("trigger-events.json")
                t.fail(
                    f"the pool did not scale up within {timeout:.0f}s: it has "
                    f"{len(nodes)} node(s) (baseline {n}) and the trigger pod is "
                    f"{self.describe(state.get('trigger'))}" + (f" ({msg})" if msg else "")
                )
            self.new_node = state["trigger"]["spec"]["nodeName"]
            ph["new_node"] = self.new_node
            if self.taint is not None:
                ph["new_node_tainted"] = self.new_node_tainted(t)
            ph["nodes"] = state["nodes"]
            ph["since_trigger_created_s"] = round(time.monotonic() - self.trigger_created, 3)
        self.evidence_events("trigger-events.json")
        t.log(
            f"pool grew to {len(state['nodes'])} node(s); the trigger pod runs on new "
            f"node {self.new_node}"
        )

    def new_node_tainted(self, t: Subtest) -> bool:
        """Whether the node the pool grew by carries the dedicated pool's taint (logged
        when not: checks running beside this one may have used it)."""
        node = self.c.get("v1", "Node", self.new_node)
        tainted = node is not None and node_has_taint(node, self.taint or {})
        if not tainted:
            t.log(
                f"warning: new node {self.new_node} does not carry the pool's taint "
                f"{self.taint_text}; the pool's autoscaler does not taint the nodes it "
                "adds, so checks running beside this one could have used it"
            )
        return tainted

    def describe(self, pod: KubeObject | None) -> str:
        if not pod:
            return "gone"
        node = pod.get("spec", {}).get("nodeName")
        phase = pod.get("status", {}).get("phase", "Pending")
        return f"{phase}" + (f" on {node}" if node else "")

    def scale_down(self, t: Subtest) -> None:
        self.c.delete(
            "v1", "Pod", self.trigger, self.ctx.namespace, wait_timeout=self.ctx.budget(120.0)
        )
        timeout = self.timeout("autoscaler-scale-down-timeout")
        n = len(self.baseline)
        with self.phases.timed("scale-down", timeout) as ph:
            try:
                nodes = self.c.wait_list(
                    "v1",
                    "Node",
                    None,
                    lambda ns: len(self.seen(ns)) <= n,
                    timeout=timeout,
                    what="the pool to shrink",
                    label_selector=self.selector,
                )
            except WaitTimeoutError:
                left = self.names(self.pool())
                t.fail(
                    f"the pool did not scale down within {timeout:.0f}s: it still has "
                    f"{len(left)} node(s) (baseline {n}): {', '.join(left)}"
                )
            ph["nodes"] = self.names(nodes)
        if len(nodes) < n:
            t.fail(f"the pool shrank below its baseline: {len(nodes)} node(s), baseline {n}")
        window = self.window
        with self.phases.timed("stability-window", window) as ph:
            changed: list[str] | None = None
            for current in self.c.watch_list(
                "v1", "Node", None, timeout=self.ctx.budget(window), label_selector=self.selector
            ):
                if len(self.seen(current)) != n:
                    changed = self.names(current)
                    break
            if changed is not None:
                ph["changed_to"] = changed
                t.fail(
                    f"the pool did not stay at {n} node(s) for {window:.0f}s after "
                    f"scaling down: {len(changed)} node(s)"
                )
        t.log(f"pool back to {n} node(s) and stable for {window:.0f}s")

    def evidence_events(self, name: str) -> None:
        try:
            events = self.c.events(self.ctx.namespace, self.trigger)
        except KaicError:
            return
        self.ctx.evidence(
            name,
            dump(
                [
                    {
                        k: e.get(k)
                        for k in (
                            "type",
                            "reason",
                            "message",
                            "source",
                            "reportingComponent",
                            "firstTimestamp",
                            "eventTime",
                        )
                    }
                    for e in events
                ]
            ),
            "application/json",
        )

    def cleanup(self) -> None:
        for name in [self.trigger, *self.fillers]:
            try:
                self.c.delete("v1", "Pod", name, self.ctx.namespace)
            except KaicError as e:
                self.ctx.log(f"cleanup of pod {name}: {e}")
        try:
            self.c.delete("policy/v1", "PodDisruptionBudget", "kaic-ca-fillers", self.ctx.namespace)
        except KaicError as e:
            self.ctx.log(f"cleanup of the PodDisruptionBudget: {e}")


__all__ = ["cluster_autoscaling", "parse_pool_label"]
