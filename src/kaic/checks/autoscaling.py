"""Checks for the two scaling MUSTs: cluster_autoscaling and pod_autoscaling.

Owns: ``TestAcceleratorClusterAutoscaling`` (a node pool of accelerator nodes grows
for a pending accelerator pod and shrinks back when it is gone) and
``TestAcceleratorHorizontalPodAutoscaling`` (an HPA scales accelerator pods up and
down on a custom metric served through custom.metrics.k8s.io). Must not import the
Kubernetes client or know how the lab simulates anything: it talks to the cluster
only through ``ClusterAPI``.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kaic.checks.base import CheckContext, CheckOption, Permission, Subtest, check
from kaic.cluster.api import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    RUN_ID_LABEL,
    KubeList,
    KubeObject,
    condition,
    has_condition,
    name_of,
)
from kaic.errors import KaicError, UsageError, WaitTimeoutError

DEFAULT_RESOURCE = "nvidia.com/gpu"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
METRIC_IMAGE = "docker.io/library/busybox:1.37"


# ---------------------------------------------------------------------------------
# helpers shared by both checks
# ---------------------------------------------------------------------------------
def _labels(ctx: CheckContext, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, RUN_ID_LABEL: ctx.run_id, **(extra or {})}


def _quantity(value: Any) -> float:
    """A Kubernetes quantity (``"2"``, ``"500m"``, ``"1k"``) as a number."""
    s = str(value).strip()
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3, "Ti": 1024.0**4}
    for suf in sorted(suffixes, key=len, reverse=True):
        if s.endswith(suf):
            return float(s[: -len(suf)]) * suffixes[suf]
    return float(s)


def _node_ready(node: KubeObject) -> bool:
    return has_condition(node, "Ready")


def _pod_running(pod: KubeObject | None) -> bool:
    return pod is not None and pod.get("status", {}).get("phase") == "Running"


def _pod_unschedulable(pod: KubeObject | None) -> bool:
    c = condition(pod, "PodScheduled")
    return c is not None and c.get("status") == "False" and c.get("reason") == "Unschedulable"


def _tolerations(resource: str) -> list[KubeObject]:
    # NOTE: accelerator pools are commonly tainted with the resource name as key
    # (nvidia.com/gpu:NoSchedule); the upstream test tolerates that taint too.
    return [{"key": resource, "operator": "Exists", "effect": "NoSchedule"}]


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


@dataclass
class _Phases:
    """Measured duration of every timed phase, written as evidence ``phases.json``."""

    items: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def timed(self, name: str, timeout_s: float) -> Iterator[dict[str, Any]]:
        entry: dict[str, Any] = {"phase": name, "timeout_s": timeout_s}
        start = time.monotonic()
        try:
            yield entry
        finally:
            entry["duration_s"] = round(time.monotonic() - start, 3)
            self.items.append(entry)


# ---------------------------------------------------------------------------------
# cluster_autoscaling
# ---------------------------------------------------------------------------------
CA_OPTIONS = (
    CheckOption("autoscaler-node-pool-label",
                "key=value selecting the autoscaled accelerator node pool; without it the "
                "requirement is reported not applicable"),
    CheckOption("autoscaler-resource",
                "extended resource of the pool's accelerators", DEFAULT_RESOURCE),
    CheckOption("autoscaler-baseline-timeout",
                "seconds to wait for a stable, Ready baseline pool", "300"),
    CheckOption("autoscaler-pending-timeout",
                "seconds for the trigger pod to become Unschedulable", "120"),
    CheckOption("autoscaler-scale-up-timeout",
                "seconds for the pool to grow and the trigger pod to run on a new node",
                "1200"),
    CheckOption("autoscaler-scale-down-timeout",
                "seconds for the pool to return to its baseline size", "1800"),
    CheckOption("autoscaler-stability-window",
                "seconds the pool size must stay unchanged (baseline and after scale-down)",
                "30"),
    CheckOption("autoscaler-pod-image",
                "image of the filler and trigger pods (they only sleep)", PAUSE_IMAGE),
)


def parse_pool_label(value: str) -> tuple[str, str]:
    """``key=value`` → (key, value); a clear usage error otherwise."""
    key, sep, val = value.partition("=")
    if not sep or not key.strip() or "," in value:
        raise UsageError(f"--autoscaler-node-pool-label must be key=value, got {value!r}")
    return key.strip(), val.strip()


def _requested(pods: KubeList, resource: str) -> dict[str, float]:
    """Accelerators requested by non-terminated pods, per node."""
    used: dict[str, float] = {}
    for pod in pods:
        node = pod.get("spec", {}).get("nodeName")
        if not node or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for c in pod.get("spec", {}).get("containers", []):
            req = (c.get("resources", {}).get("requests") or {}).get(resource) \
                or (c.get("resources", {}).get("limits") or {}).get(resource)
            if req is not None:
                used[node] = used.get(node, 0.0) + _quantity(req)
    return used


@check(
    "cluster_autoscaling",
    test="TestAcceleratorClusterAutoscaling",
    options=CA_OPTIONS,
    permissions=(
        Permission("list", "nodes", namespaced=False),
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
            "not required to pass this check")
    key, value = parse_pool_label(raw)
    _ClusterAutoscaling(ctx, f"{key}={value}").run()


class _ClusterAutoscaling:
    def __init__(self, ctx: CheckContext, selector: str) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.selector = selector
        self.resource = ctx.option("autoscaler-resource") or DEFAULT_RESOURCE
        self.image = ctx.option("autoscaler-pod-image") or PAUSE_IMAGE
        self.window = ctx.float_option("autoscaler-stability-window")
        self.phases = _Phases()
        self.baseline: list[str] = []
        self.trigger = "kaic-ca-trigger"
        self.fillers: list[str] = []
        self.new_node = ""
        self.allocatable: dict[str, float] = {}
        self.trigger_created = 0.0
        self.fillers_ok = self.trigger_pending_ok = False

    # -- plumbing ------------------------------------------------------------------
    def pool(self) -> KubeList:
        return self.c.list("v1", "Node", label_selector=self.selector)

    def names(self, nodes: KubeList) -> list[str]:
        return sorted(name_of(n) for n in nodes)

    def timeout(self, option: str) -> float:
        return self.ctx.budget(self.ctx.float_option(option))

    def run(self) -> None:
        ctx = self.ctx
        try:
            with ctx.subtest("StableBaseline") as t:
                self.stable_baseline(t)
            if not self.baseline:
                return
            with ctx.subtest("PinBaselineWorkload") as t:
                self.pin_baseline(t)
            if not self.fillers_ok:
                return
            with ctx.subtest("TriggerPodUnschedulable") as t:
                self.trigger_pending(t)
            if not self.trigger_pending_ok:
                return
            with ctx.subtest("ScaleUp") as t:
                self.scale_up(t)
            if not self.new_node:
                return
            with ctx.subtest("ScaleDown") as t:
                self.scale_down(t)
        finally:
            self.cleanup()
            ctx.evidence("phases.json", _json(self.phases.items), "application/json")

    # -- phases --------------------------------------------------------------------
    def stable_baseline(self, t: Subtest) -> None:
        timeout = self.timeout("autoscaler-baseline-timeout")
        with self.phases.timed("baseline", timeout) as ph:
            nodes = self.pool()
            if not nodes:
                t.fail(f"no node carries the pool label {self.selector}")
            stable = self._wait_stable(timeout, lambda ns: bool(ns) and all(
                _node_ready(n) for n in ns))
            if stable is None:
                t.fail(f"the pool {self.selector} did not keep a constant size of Ready "
                       f"nodes for {self.window:.0f}s within {timeout:.0f}s")
            ph["nodes"] = self.names(stable)
        no_acc = [name_of(n) for n in stable
                  if _quantity(n.get("status", {}).get("allocatable", {})
                               .get(self.resource, 0)) < 1]
        self.ctx.evidence("baseline-nodes.json", _json(stable), "application/json")
        if no_acc:
            t.fail(f"pool nodes without allocatable {self.resource}: {', '.join(no_acc)}")
        self.baseline = self.names(stable)
        self.allocatable = {name_of(n): _quantity(n["status"]["allocatable"][self.resource])
                            for n in stable}
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
            for current in self.c.watch_list("v1", "Node", None, timeout=self.window,
                                             label_selector=self.selector):
                if first is None:
                    first = self.names(current)
                if self.names(current) != first or not ok(current):
                    steady = False
                    break
            if steady and first is not None:
                return current
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def pin_baseline(self, t: Subtest) -> None:
        """Fill every baseline node's free accelerators with one pinned pod each."""
        pods = self.c.list("v1", "Pod", None)
        used = _requested(pods, self.resource)
        app = {"app.kubernetes.io/name": "kaic-ca-filler"}
        self.c.create({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "kaic-ca-fillers", "namespace": self.ctx.namespace,
                         "labels": _labels(self.ctx)},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": app}}})
        for i, node in enumerate(self.baseline):
            free = int(self.allocatable[node] - used.get(node, 0.0))
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
                self.c.wait_list("v1", "Pod", self.ctx.namespace,
                                 lambda ps: all(_pod_running(p) for p in ps
                                                if name_of(p) in self.fillers),
                                 timeout=timeout, what="the filler pods to run",
                                 label_selector="app.kubernetes.io/name=kaic-ca-filler")
            except WaitTimeoutError:
                t.error(f"the filler pods pinned to the baseline nodes were not all Running "
                        f"within {timeout:.0f}s; the pool is not idle or not schedulable")
        self.fillers_ok = True

    def pod(self, name: str, count: int, labels: dict[str, str],
            pin: str | None = None) -> KubeObject:
        key, _, value = self.selector.partition("=")
        spec: KubeObject = {
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {key: value},
            "tolerations": _tolerations(self.resource),
            "containers": [{"name": "main", "image": self.image, "resources": {
                "requests": {self.resource: str(count)},
                "limits": {self.resource: str(count)}}}]}
        if pin:
            spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [pin]}]}]}}}
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": self.ctx.namespace,
                             "labels": _labels(self.ctx, labels),
                             # NOTE: cluster-autoscaler must not evict the fillers when
                             # it looks for removable nodes.
                             "annotations": {
                                 "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
                                 "karpenter.sh/do-not-disrupt": "true"}},
                "spec": spec}

    def trigger_pending(self, t: Subtest) -> None:
        self.c.create(self.pod(self.trigger, 1,
                               {"app.kubernetes.io/name": "kaic-ca-trigger"}))
        self.trigger_created = time.monotonic()
        timeout = self.timeout("autoscaler-pending-timeout")
        with self.phases.timed("trigger-unschedulable", timeout) as ph:
            try:
                pod = self.c.wait_for("v1", "Pod", self.trigger, self.ctx.namespace,
                                      lambda p: _pod_unschedulable(p)
                                      or bool(p and p.get("spec", {}).get("nodeName")),
                                      timeout=timeout,
                                      what="the trigger pod to become Unschedulable")
            except WaitTimeoutError:
                t.fail(f"the trigger pod did not become Unschedulable within {timeout:.0f}s")
            node = (pod or {}).get("spec", {}).get("nodeName")
            if node and node in self.baseline:
                t.error(f"the trigger pod was scheduled on baseline node {node}: the pool "
                        f"had a free {self.resource}, so the test cannot force a scale-up")
            ph["message"] = (condition(pod, "PodScheduled") or {}).get("message", "")
        self.trigger_pending_ok = True
        t.log(f"trigger pod Unschedulable: {ph['message']}")

    def scale_up(self, t: Subtest) -> None:
        timeout = self.timeout("autoscaler-scale-up-timeout")
        n = len(self.baseline)
        state: dict[str, Any] = {"nodes": self.baseline}

        def grown(pods: KubeList) -> bool:
            trig = next((p for p in pods if name_of(p) == self.trigger), None)
            node = (trig or {}).get("spec", {}).get("nodeName")
            state["trigger"] = trig
            if not (_pod_running(trig) and node and node not in self.baseline):
                return False
            state["nodes"] = self.names(self.pool())
            return len(state["nodes"]) >= n + 1 and node in state["nodes"]

        with self.phases.timed("scale-up", timeout) as ph:
            try:
                self.c.wait_list("v1", "Pod", self.ctx.namespace, grown, timeout=timeout,
                                 what="the pool to grow",
                                 label_selector="app.kubernetes.io/name=kaic-ca-trigger")
            except WaitTimeoutError:
                nodes = self.names(self.pool())
                msg = (condition(state.get("trigger"), "PodScheduled") or {}).get("message")
                self.evidence_events("trigger-events.json")
                t.fail(f"the pool did not scale up within {timeout:.0f}s: it has "
                       f"{len(nodes)} node(s) (baseline {n}) and the trigger pod is "
                       f"{self.describe(state.get('trigger'))}"
                       + (f" ({msg})" if msg else ""))
            self.new_node = state["trigger"]["spec"]["nodeName"]
            ph["new_node"] = self.new_node
            ph["nodes"] = state["nodes"]
            ph["since_trigger_created_s"] = round(time.monotonic() - self.trigger_created, 3)
        self.evidence_events("trigger-events.json")
        t.log(f"pool grew to {len(state['nodes'])} node(s); the trigger pod runs on new "
              f"node {self.new_node}")

    def describe(self, pod: KubeObject | None) -> str:
        if not pod:
            return "gone"
        node = pod.get("spec", {}).get("nodeName")
        phase = pod.get("status", {}).get("phase", "Pending")
        return f"{phase}" + (f" on {node}" if node else "")

    def scale_down(self, t: Subtest) -> None:
        self.c.delete("v1", "Pod", self.trigger, self.ctx.namespace,
                      wait_timeout=self.ctx.budget(120.0))
        timeout = self.timeout("autoscaler-scale-down-timeout")
        n = len(self.baseline)
        with self.phases.timed("scale-down", timeout) as ph:
            try:
                nodes = self.c.wait_list("v1", "Node", None, lambda ns: len(ns) <= n,
                                         timeout=timeout, what="the pool to shrink",
                                         label_selector=self.selector)
            except WaitTimeoutError:
                left = self.names(self.pool())
                t.fail(f"the pool did not scale down within {timeout:.0f}s: it still has "
                       f"{len(left)} node(s) (baseline {n}): {', '.join(left)}")
            ph["nodes"] = self.names(nodes)
        if len(nodes) < n:
            t.fail(f"the pool shrank below its baseline: {len(nodes)} node(s), baseline {n}")
        window = self.window
        with self.phases.timed("stability-window", window) as ph:
            changed: list[str] | None = None
            for current in self.c.watch_list("v1", "Node", None,
                                             timeout=self.ctx.budget(window),
                                             label_selector=self.selector):
                if len(current) != n:
                    changed = self.names(current)
                    break
            if changed is not None:
                ph["changed_to"] = changed
                t.fail(f"the pool did not stay at {n} node(s) for {window:.0f}s after "
                       f"scaling down: {len(changed)} node(s)")
        t.log(f"pool back to {n} node(s) and stable for {window:.0f}s")

    def evidence_events(self, name: str) -> None:
        try:
            events = self.c.events(self.ctx.namespace, self.trigger)
        except KaicError:
            return
        self.ctx.evidence(name, _json([{k: e.get(k) for k in
                                        ("type", "reason", "message", "source",
                                         "reportingComponent", "firstTimestamp", "eventTime")}
                                       for e in events]), "application/json")

    def cleanup(self) -> None:
        for name in [self.trigger, *self.fillers]:
            try:
                self.c.delete("v1", "Pod", name, self.ctx.namespace)
            except KaicError as e:
                self.ctx.log(f"cleanup of pod {name}: {e}")
        try:
            self.c.delete("policy/v1", "PodDisruptionBudget", "kaic-ca-fillers",
                          self.ctx.namespace)
        except KaicError as e:
            self.ctx.log(f"cleanup of the PodDisruptionBudget: {e}")


# ---------------------------------------------------------------------------------
# pod_autoscaling
# ---------------------------------------------------------------------------------
CUSTOM_METRICS = ("v1beta2.custom.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io")
EXTERNAL_METRICS = ("v1beta1.external.metrics.k8s.io",)
METRIC_PORT = 8080
METRIC_ROOT = "kaic-metrics"
"""Directory, relative to the metric container's working directory, that holds
``<namespace>/<pod>/metrics``; the container serves that file as ``/metrics``."""

HPA_OPTIONS = (
    CheckOption("hpa-custom-metric-name",
                "name of the per-pod custom metric the test workload exposes and the HPA "
                "scales on", "kaic_hpa_test_metric"),
    CheckOption("hpa-resource", "extended resource each test pod requests (one)",
                DEFAULT_RESOURCE),
    CheckOption("hpa-target-value", "the HPA's target average value of the metric", "10"),
    CheckOption("hpa-max-replicas", "the HPA's maxReplicas (scale-up goes to this)", "2"),
    CheckOption("hpa-image",
                "image of the test workload (needs sh and busybox httpd)", METRIC_IMAGE),
    CheckOption("hpa-ready-timeout", "seconds for the test Deployment to be ready", "300"),
    CheckOption("hpa-metric-timeout",
                "seconds for the metric to appear in custom.metrics.k8s.io and for the "
                "HPA to find it", "300"),
    CheckOption("hpa-scale-up-timeout", "seconds for the HPA to scale up", "300"),
    CheckOption("hpa-scale-down-timeout", "seconds for the HPA to scale down", "600"),
    CheckOption("hpa-scale-down-stabilization",
                "the HPA's scaleDown stabilizationWindowSeconds", "15"),
)

_ADAPTERS = (
    ("prometheus-adapter", ("prometheus-adapter", "custom-metrics-apiserver")),
    ("KEDA", ("keda-metrics-apiserver", "keda-operator-metrics-apiserver", "keda")),
    ("Google Cloud (custom-metrics-stackdriver-adapter)", ("stackdriver",)),
    ("Azure (azure-k8s-metrics-adapter)", ("azure-k8s-metrics-adapter", "azure")),
    ("AWS CloudWatch adapter", ("cloudwatch",)),
    ("Datadog Cluster Agent", ("datadog",)),
    ("kaic lab metrics adapter", ("kaic-lab-metrics-adapter",)),
)


def identify_adapter(api_service: KubeObject, service: KubeObject | None) -> str:
    """Which adapter serves an APIService, from its Service's name, namespace, labels."""
    svc_ref = api_service.get("spec", {}).get("service")
    if not svc_ref:
        return "kube-apiserver (local)"
    hay = " ".join([
        str(svc_ref.get("namespace", "")), str(svc_ref.get("name", "")),
        *(f"{k}={v}" for k, v in ((service or {}).get("metadata", {})
                                  .get("labels") or {}).items()),
        *(f"{k}={v}" for k, v in (api_service.get("metadata", {})
                                  .get("labels") or {}).items()),
    ]).lower()
    for name, needles in _ADAPTERS:
        if any(n in hay for n in needles):
            return name
    return f"other ({svc_ref.get('namespace')}/{svc_ref.get('name')})"


def metric_text(metric: str, value: float) -> str:
    """The Prometheus text the test workload serves for one value."""
    return f"# TYPE {metric} gauge\n{metric} {value:g}\n"


def set_metric_command(namespace: str, pod: str, metric: str, value: float) -> list[str]:
    """The command run in a test pod (pods/exec) to change the metric it exposes."""
    d = f"{METRIC_ROOT}/{namespace}/{pod}"
    text = metric_text(metric, value)
    return ["sh", "-c",
            f"mkdir -p {shlex.quote(d)} && printf %s {shlex.quote(text)} > "
            f"{shlex.quote(d)}/metrics.tmp && mv {shlex.quote(d)}/metrics.tmp "
            f"{shlex.quote(d)}/metrics"]


@check(
    "pod_autoscaling",
    test="TestAcceleratorHorizontalPodAutoscaling",
    options=HPA_OPTIONS,
    permissions=(
        Permission("list", "apiservices", "apiregistration.k8s.io", namespaced=False),
        Permission("get", "services"),
        Permission("create", "deployments", "apps"),
        Permission("delete", "deployments", "apps"),
        Permission("create", "horizontalpodautoscalers", "autoscaling"),
        Permission("delete", "horizontalpodautoscalers", "autoscaling"),
        Permission("list", "pods"),
        Permission("create", "pods", subresource="exec"),
        Permission("get", "pods", "custom.metrics.k8s.io"),
        Permission("list", "events"),
    ),
    timeout_s=2400.0,
)
def pod_autoscaling(ctx: CheckContext) -> None:
    """A HorizontalPodAutoscaler scales a Deployment of accelerator pods up and down on
    a per-pod custom metric served through custom.metrics.k8s.io."""
    if not any(r.kind == "HorizontalPodAutoscaler"
               for r in ctx.cluster.api_resources("autoscaling/v2")):
        ctx.not_applicable("the platform does not serve HorizontalPodAutoscaler in "
                           "autoscaling/v2, so it does not support the HPA")
    _PodAutoscaling(ctx).run()


class _PodAutoscaling:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.ns = ctx.namespace
        self.metric = ctx.option("hpa-custom-metric-name") or "kaic_hpa_test_metric"
        self.resource = ctx.option("hpa-resource") or DEFAULT_RESOURCE
        self.target = ctx.float_option("hpa-target-value")
        self.max_replicas = int(ctx.float_option("hpa-max-replicas"))
        if self.target <= 0 or self.max_replicas < 2:
            raise UsageError("--hpa-target-value must be > 0 and --hpa-max-replicas >= 2")
        self.name = "kaic-hpa-workload"
        self.selector = f"app.kubernetes.io/name={self.name}"
        self.phases = _Phases()
        self.version = ""
        self.high = self.target * 3
        self.low = 0.0
        self.group_version = ""
        self.last_metrics: KubeObject = {}
        self.last_error = ""
        self.deployed = self.served = self.active = self.scaled_up = False

    def timeout(self, option: str) -> float:
        return self.ctx.budget(self.ctx.float_option(option))

    def run(self) -> None:
        ctx = self.ctx
        try:
            with ctx.subtest("CustomMetricsAPIAvailable") as t:
                self.detect(t)
            if not self.version:
                return
            with ctx.subtest("AcceleratorWorkloadRunning") as t:
                self.deploy(t)
            if not self.deployed:
                return
            with ctx.subtest("CustomMetricServed") as t:
                self.metric_served(t)
            if not self.served:
                return
            with ctx.subtest("ScalingActive") as t:
                self.scaling_active(t)
            if not self.active:
                return
            with ctx.subtest("ScaleUp") as t:
                self.scale_up(t)
            if not self.scaled_up:
                return
            with ctx.subtest("ScaleDown") as t:
                self.scale_down(t)
        finally:
            self.final_evidence()
            self.cleanup()

    # -- detection -----------------------------------------------------------------
    def detect(self, t: Subtest) -> None:
        report: list[dict[str, Any]] = []
        usable: list[str] = []
        problems: list[str] = []
        for name in (*CUSTOM_METRICS, *EXTERNAL_METRICS):
            api = self.c.get("apiregistration.k8s.io/v1", "APIService", name)
            if api is None:
                report.append({"apiService": name, "present": False})
                continue
            svc_ref = api.get("spec", {}).get("service") or {}
            svc = None
            if svc_ref:
                try:
                    svc = self.c.get("v1", "Service", svc_ref["name"], svc_ref["namespace"])
                except KaicError:
                    svc = None
            avail = condition(api, "Available") or {}
            entry: dict[str, Any] = {
                "apiService": name, "present": True, "service": svc_ref or None,
                "adapter": identify_adapter(api, svc),
                "available": avail.get("status"), "reason": avail.get("reason"),
                "message": avail.get("message")}
            if avail.get("status") == "True":
                group_version = f"{api['spec']['group']}/{api['spec']['version']}"
                try:
                    listing = json.loads(self.c.raw_get(f"/apis/{group_version}",
                                                        timeout=self.ctx.budget(30.0)))
                    entry["metrics"] = sorted(r.get("name", "") for r in
                                              listing.get("resources", []))
                except (KaicError, ValueError) as e:
                    entry["listError"] = str(e)
                if name in CUSTOM_METRICS and "listError" not in entry:
                    usable.append(name)
                elif name in CUSTOM_METRICS:
                    problems.append(f"{name} is Available but listing its metrics failed: "
                                    f"{entry['listError']}")
            elif name in CUSTOM_METRICS:
                problems.append(f"APIService {name} is not Available "
                                f"({avail.get('reason') or 'no Available condition'}"
                                + (f": {avail['message']}" if avail.get("message") else "")
                                + ")")
            report.append(entry)
        self.ctx.evidence("metrics-apiservices.json", _json(report), "application/json")
        for item in report:
            if item["present"]:
                t.log(f"{item['apiService']}: Available={item['available']}, adapter: "
                      f"{item['adapter']}, {len(item.get('metrics', []))} metric(s) listed")
        if not any(r["present"] for r in report if r["apiService"] in CUSTOM_METRICS):
            t.fail("no APIService for custom.metrics.k8s.io (v1beta2 or v1beta1) is "
                   "registered: the HPA cannot read custom metrics")
        if not usable:
            t.fail("; ".join(problems))
        self.version = usable[0].split(".", 1)[0]
        self.group_version = f"custom.metrics.k8s.io/{self.version}"
        adapter = next(r["adapter"] for r in report if r["apiService"] == usable[0])
        t.log(f"using {self.group_version} served by {adapter}")

    # -- workload ------------------------------------------------------------------
    def deployment(self) -> KubeObject:
        labels = {"app.kubernetes.io/name": self.name}
        start = (f"d={METRIC_ROOT}/$POD_NAMESPACE/$POD_NAME; mkdir -p $d && "
                 f"printf '# TYPE {self.metric} gauge\\n{self.metric} 0\\n' > $d/metrics && "
                 # NOTE: busybox httpd sends text/plain for .txt only; Prometheus 3 rejects
                 # scrapes without a known Content-Type.
                 f"ln -sf metrics $d/metrics.txt && "
                 f"exec httpd -f -p {METRIC_PORT} -h $d")
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": self.ns,
                         "labels": _labels(self.ctx, labels)},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": _labels(self.ctx, labels),
                        # NOTE: the usual Prometheus pod-scrape annotations, so that a
                        # Prometheus + prometheus-adapter pipeline picks the metric up.
                        "annotations": {"prometheus.io/scrape": "true",
                                        "prometheus.io/port": str(METRIC_PORT),
                                        "prometheus.io/path": "/metrics.txt"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "tolerations": _tolerations(self.resource),
                        "containers": [{
                            "name": "metric", "image": self.ctx.option("hpa-image"),
                            "workingDir": "/kaic",
                            "command": ["sh", "-c", start],
                            "ports": [{"name": "metrics", "containerPort": METRIC_PORT}],
                            "env": [
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {
                                    "fieldPath": "metadata.name"}}},
                                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {
                                    "fieldPath": "metadata.namespace"}}}],
                            "resources": {"requests": {self.resource: "1"},
                                          "limits": {self.resource: "1"}}}]}}}}

    def pods(self) -> KubeList:
        return [p for p in self.c.list("v1", "Pod", self.ns, label_selector=self.selector)
                if not p.get("metadata", {}).get("deletionTimestamp")]

    def wait_replicas(self, count: int, timeout: float, what: str) -> KubeList:
        """Wait until the Deployment has exactly ``count`` ready pods, then return them
        (each Running on a node, so its accelerator request was granted)."""
        deadline = time.monotonic() + timeout

        def ready(dep: KubeObject | None) -> bool:
            st = (dep or {}).get("status", {})
            return (int((dep or {}).get("spec", {}).get("replicas") or 0) == count
                    and int(st.get("replicas") or 0) == count
                    and int(st.get("readyReplicas") or 0) == count)

        self.c.wait_for("apps/v1", "Deployment", self.name, self.ns, ready,
                        timeout=timeout, what=what)
        left = max(deadline - time.monotonic(), 1.0)
        return self.c.wait_list(
            "v1", "Pod", self.ns,
            lambda ps: len([p for p in ps if not p["metadata"].get("deletionTimestamp")])
            == count and all(_pod_running(p) and p["spec"].get("nodeName") for p in ps
                             if not p["metadata"].get("deletionTimestamp")),
            timeout=left, what=what, label_selector=self.selector)

    def deploy(self, t: Subtest) -> None:
        self.c.create(self.deployment())
        timeout = self.timeout("hpa-ready-timeout")
        with self.phases.timed("workload-ready", timeout):
            try:
                pods = self.wait_replicas(1, timeout, "the test Deployment to be ready")
            except WaitTimeoutError:
                pods = self.pods()
                t.error(f"the test Deployment (1 pod requesting 1 {self.resource}) was not "
                        f"ready within {timeout:.0f}s: {self.describe_pods(pods)}")
        t.log(f"pod {name_of(pods[0])} runs on {pods[0]['spec']['nodeName']} with 1 "
              f"{self.resource}")
        self.deployed = True

    def describe_pods(self, pods: KubeList) -> str:
        if not pods:
            return "no pods"
        out = []
        for p in pods:
            sched = condition(p, "PodScheduled") or {}
            out.append(f"{name_of(p)} {p.get('status', {}).get('phase', 'Pending')}"
                       + (f" ({sched.get('message')})" if sched.get("status") == "False"
                          else ""))
        return "; ".join(out)

    def set_metric(self, value: float, pods: KubeList | None = None) -> None:
        for pod in pods if pods is not None else self.pods():
            if not _pod_running(pod):
                continue
            res = self.c.exec(self.ns, name_of(pod),
                              set_metric_command(self.ns, name_of(pod), self.metric, value),
                              container="metric", timeout=self.ctx.budget(60.0))
            if res.exit_code != 0:
                raise _ExecFailed(f"setting the metric in pod {name_of(pod)} failed "
                                  f"(exit {res.exit_code}): {res.stderr.strip()[:200]}")
            self.ctx.log(f"set {self.metric}={value:g} in pod {name_of(pod)}")

    def metric_values(self) -> dict[str, float]:
        path = (f"/apis/{self.group_version}/namespaces/{self.ns}/pods/*/{self.metric}"
                f"?labelSelector={self.selector.replace('/', '%2F')}")
        body = json.loads(self.c.raw_get(path, timeout=self.ctx.budget(30.0)))
        self.last_metrics = body
        out: dict[str, float] = {}
        for item in body.get("items", []):
            name = item.get("describedObject", {}).get("name", "")
            out[name] = _quantity(item.get("value", "0"))
        return out

    def poll(self, timeout: float, probe: Callable[[], bool], interval: float = 2.0) -> bool:
        """Poll ``probe`` (an aggregated API cannot be watched) until it holds."""
        deadline = time.monotonic() + timeout
        while True:
            self.ctx.check_cancelled()
            try:
                if probe():
                    return True
            except (KaicError, ValueError) as e:
                self.last_error = str(e)
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

    def metric_served(self, t: Subtest) -> None:
        pods = self.pods()
        try:
            self.set_metric(self.low, pods)
        except _ExecFailed as e:
            t.error(str(e))
        timeout = self.timeout("hpa-metric-timeout")
        names = {name_of(p) for p in pods}
        with self.phases.timed("metric-served", timeout):
            if not self.poll(timeout, lambda: names <= set(self.metric_values())):
                t.fail(f"{self.group_version} did not serve metric {self.metric} for the "
                       f"test pods within {timeout:.0f}s"
                       + (f" (last error: {self.last_error})" if self.last_error else ""))
        self.ctx.evidence("metric-values-initial.json", _json(self.last_metrics),
                          "application/json")
        t.log(f"{self.group_version} serves {self.metric} for {', '.join(sorted(names))}")
        self.served = True

    # -- HPA -----------------------------------------------------------------------
    def hpa(self) -> KubeObject:
        window = int(self.ctx.float_option("hpa-scale-down-stabilization"))
        return {
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": self.name, "namespace": self.ns,
                         "labels": _labels(self.ctx)},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "name": self.name},
                "minReplicas": 1, "maxReplicas": self.max_replicas,
                "metrics": [{"type": "Pods", "pods": {
                    "metric": {"name": self.metric},
                    "target": {"type": "AverageValue",
                               "averageValue": f"{self.target:g}"}}}],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0},
                    "scaleDown": {"stabilizationWindowSeconds": window}}}}

    def get_hpa(self) -> KubeObject:
        return self.c.get("autoscaling/v2", "HorizontalPodAutoscaler", self.name,
                          self.ns) or {}

    def hpa_summary(self, hpa: KubeObject) -> str:
        st = hpa.get("status", {})
        conds = ", ".join(f"{c.get('type')}={c.get('status')}/{c.get('reason')}"
                          for c in st.get("conditions") or [])
        return (f"currentReplicas={st.get('currentReplicas')}, "
                f"desiredReplicas={st.get('desiredReplicas')}, conditions: {conds or 'none'}")

    def scaling_active(self, t: Subtest) -> None:
        self.c.create(self.hpa())
        timeout = self.timeout("hpa-metric-timeout")
        with self.phases.timed("scaling-active", timeout):
            try:
                hpa = self.c.wait_for("autoscaling/v2", "HorizontalPodAutoscaler", self.name,
                                      self.ns, lambda h: has_condition(h, "ScalingActive"),
                                      timeout=timeout, what="the HPA to be ScalingActive")
            except WaitTimeoutError:
                hpa = self.get_hpa()
                c = condition(hpa, "ScalingActive") or {}
                t.fail(f"the HPA did not become ScalingActive within {timeout:.0f}s"
                       + (f": {c.get('reason')}: {c.get('message')}" if c else ""))
        c = condition(hpa, "ScalingActive") or {}
        self.ctx.evidence("hpa-active.json", _json(hpa), "application/json")
        t.log(f"ScalingActive=True ({c.get('reason')}): {c.get('message', '')}")
        self.active = True

    def scale_up(self, t: Subtest) -> None:
        try:
            self.set_metric(self.high)
        except _ExecFailed as e:
            t.error(str(e))
        timeout = self.timeout("hpa-scale-up-timeout")
        want = self.max_replicas
        deadline = time.monotonic() + timeout
        with self.phases.timed("scale-up", timeout):
            try:
                self.c.wait_for("autoscaling/v2", "HorizontalPodAutoscaler", self.name,
                                self.ns, lambda h: int((h or {}).get("status", {})
                                                       .get("desiredReplicas") or 0) >= want,
                                timeout=timeout, what="the HPA to scale up")
            except WaitTimeoutError:
                t.fail(f"the HPA did not scale up within {timeout:.0f}s after the metric "
                       f"rose to {self.high:g} (target {self.target:g}): "
                       f"{self.hpa_summary(self.get_hpa())}")
            rest = max(self.ctx.budget(deadline - time.monotonic()), 1.0)
            try:
                pods = self.wait_replicas(want, rest, f"{want} test pods to run")
            except WaitTimeoutError:
                t.fail(f"the HPA asked for {want} replicas but they did not all run on "
                       f"accelerator nodes within {timeout:.0f}s: "
                       f"{self.describe_pods(self.pods())}")
        self.ctx.evidence("hpa-scaled-up.json", _json(self.get_hpa()), "application/json")
        t.log(f"scaled up to {want}: " + ", ".join(
            f"{name_of(p)} on {p['spec']['nodeName']}" for p in pods))
        self.scaled_up = True

    def scale_down(self, t: Subtest) -> None:
        try:
            self.set_metric(self.low)
        except _ExecFailed as e:
            t.error(str(e))
        timeout = self.timeout("hpa-scale-down-timeout")
        deadline = time.monotonic() + timeout
        with self.phases.timed("scale-down", timeout):
            try:
                self.c.wait_for("autoscaling/v2", "HorizontalPodAutoscaler", self.name,
                                self.ns, lambda h: int((h or {}).get("status", {})
                                                       .get("desiredReplicas") or 0) == 1,
                                timeout=timeout, what="the HPA to scale down")
                self.wait_replicas(1, max(self.ctx.budget(deadline - time.monotonic()), 1.0),
                                   "the test Deployment to shrink to 1 pod")
            except WaitTimeoutError:
                t.fail(f"the HPA did not scale down to 1 within {timeout:.0f}s after the "
                       f"metric fell to {self.low:g}: {self.hpa_summary(self.get_hpa())}")
        t.log("scaled down to 1")

    # -- evidence and cleanup ------------------------------------------------------
    def final_evidence(self) -> None:
        self.ctx.evidence("phases.json", _json(self.phases.items), "application/json")
        try:
            hpa = self.get_hpa()
            if hpa:
                st = hpa.get("status", {})
                self.ctx.evidence("hpa-status.json", _json({
                    "conditions": st.get("conditions"),
                    "currentMetrics": st.get("currentMetrics"),
                    "currentReplicas": st.get("currentReplicas"),
                    "desiredReplicas": st.get("desiredReplicas"),
                    "lastScaleTime": st.get("lastScaleTime")}), "application/json")
                events = self.c.events(self.ns, self.name)
                self.ctx.evidence("hpa-events.json", _json([
                    {k: e.get(k) for k in ("type", "reason", "message", "count")}
                    for e in events if e.get("involvedObject", {}).get("kind")
                    in (None, "HorizontalPodAutoscaler")]), "application/json")
        except KaicError as e:
            self.ctx.log(f"collecting HPA evidence: {e}")

    def cleanup(self) -> None:
        for api_version, kind in (("autoscaling/v2", "HorizontalPodAutoscaler"),
                                  ("apps/v1", "Deployment")):
            try:
                if self.version:
                    self.c.delete(api_version, kind, self.name, self.ns)
            except KaicError as e:
                self.ctx.log(f"cleanup of {kind} {self.name}: {e}")


class _ExecFailed(Exception):
    """Setting the metric inside a test pod failed."""


__all__ = ["cluster_autoscaling", "identify_adapter", "parse_pool_label", "pod_autoscaling",
           "set_metric_command"]
