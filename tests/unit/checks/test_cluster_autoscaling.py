"""cluster_autoscaling against a fake cluster whose scheduler and node autoscaler are
small simulations (the real ones are exercised in tests/lab/)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kaic.checks.cluster_autoscaling import parse_pool_label
from kaic.cluster.api import KubeObject
from kaic.errors import UsageError
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

POOL = "kaic.io/accelerator-pool"
GPU = "nvidia.com/gpu"


def run(requirement: str, cluster: FakeCluster, options: dict[str, str | None]) -> CheckResult:
    return run_fake_check(cluster, requirement, options=options, run_id="run1")


def node(name: str, gpus: int = 1, pool: str = "gpu") -> KubeObject:
    cap = {"cpu": "8", "memory": "64Gi", GPU: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {POOL: pool}},
        "status": {
            "capacity": cap,
            "allocatable": cap,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def requested(pod: KubeObject) -> int:
    return sum(
        int((c.get("resources", {}).get("requests") or {}).get(GPU, 0))
        for c in pod["spec"]["containers"]
    )


class FakeNodeAutoscaler:
    """A scheduler that binds pods to pool nodes with free GPUs, plus a node autoscaler
    that adds a node for an Unschedulable pod (up to ``max_size``) and removes empty
    added nodes (when ``scale_down``)."""

    def __init__(self, max_size: int = 10, scale_down: bool = True, delay: int = 3) -> None:
        self.max_size = max_size
        self.scale_down = scale_down
        self.delay = delay
        self.pending_for = 0
        self.empty_for: dict[str, int] = {}
        self.added = 0

    def __call__(self, fc: FakeCluster) -> None:
        nodes = fc.list("v1", "Node", label_selector=f"{POOL}=gpu")
        pods = fc.list("v1", "Pod")
        used: dict[str, int] = {}
        for p in pods:
            if p["spec"].get("nodeName"):
                used[p["spec"]["nodeName"]] = used.get(p["spec"]["nodeName"], 0) + requested(p)
        unschedulable = False
        for p in pods:
            if p["spec"].get("nodeName"):
                continue
            pin = None
            aff = p["spec"].get("affinity")
            if aff:
                term = aff["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                pin = term["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
            fits = [
                n["metadata"]["name"]
                for n in nodes
                if (pin is None or n["metadata"]["name"] == pin)
                and int(n["status"]["allocatable"][GPU]) - used.get(n["metadata"]["name"], 0)
                >= requested(p)
            ]
            ns, name = p["metadata"]["namespace"], p["metadata"]["name"]
            if fits:
                fc.patch(
                    "v1",
                    "Pod",
                    name,
                    {
                        "spec": {"nodeName": fits[0]},
                        "status": {
                            "phase": "Running",
                            "conditions": [{"type": "PodScheduled", "status": "True"}],
                        },
                    },
                    ns,
                )
                used[fits[0]] = used.get(fits[0], 0) + requested(p)
            else:
                unschedulable = True
                fc.patch(
                    "v1",
                    "Pod",
                    name,
                    {
                        "status": {
                            "phase": "Pending",
                            "conditions": [
                                {
                                    "type": "PodScheduled",
                                    "status": "False",
                                    "reason": "Unschedulable",
                                    "message": f"0/{len(nodes)} nodes are available: "
                                    f"insufficient {GPU}",
                                }
                            ],
                        }
                    },
                    ns,
                )
        self.pending_for = self.pending_for + 1 if unschedulable else 0
        if self.pending_for > self.delay and len(nodes) < self.max_size:
            self.added += 1
            fc.add(node(f"gpu-added-{self.added}"))
            self.pending_for = 0
        if self.scale_down:
            for n in nodes:
                name = n["metadata"]["name"]
                if not name.startswith("gpu-added-") or used.get(name):
                    self.empty_for.pop(name, None)
                    continue
                self.empty_for[name] = self.empty_for.get(name, 0) + 1
                if self.empty_for[name] > self.delay:
                    fc.delete("v1", "Node", name)


def ca_cluster(nodes: int = 2, gpus: int = 1, **kw: Any) -> FakeCluster:
    fc = FakeCluster()
    fc.serve("policy/v1", ("poddisruptionbudgets", "PodDisruptionBudget", True))
    for i in range(nodes):
        fc.add(node(f"gpu-{i}", gpus))
    fc.add(node("cpu-0", 0, pool="cpu"))
    fc.controllers.append(FakeNodeAutoscaler(**kw))
    return fc


FAST = {
    "autoscaler-node-pool-label": f"{POOL}=gpu",
    "autoscaler-stability-window": "0.2",
    "autoscaler-baseline-timeout": "5",
    "autoscaler-pending-timeout": "5",
    "autoscaler-scale-up-timeout": "5",
    "autoscaler-scale-down-timeout": "5",
}


def test_cluster_autoscaling_is_not_applicable_without_a_pool_label() -> None:
    result = run("cluster_autoscaling", ca_cluster(), {})
    assert result.outcome is Outcome.SKIP and result.not_applicable
    assert "--autoscaler-node-pool-label" in result.reason


def test_cluster_autoscaling_rejects_a_pool_label_that_is_not_key_value() -> None:
    with pytest.raises(UsageError, match="key=value"):
        parse_pool_label("gpu")
    result = run("cluster_autoscaling", ca_cluster(), {**FAST, "autoscaler-node-pool-label": "gpu"})
    assert result.outcome is Outcome.ERROR and "key=value" in result.reason


def test_cluster_autoscaling_passes_when_the_pool_grows_and_shrinks_back() -> None:
    fc = ca_cluster(nodes=2)
    result = run("cluster_autoscaling", fc, FAST)
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.name for s in result.subresults] == [
        "StableBaseline",
        "PinBaselineWorkload",
        "TriggerPodUnschedulable",
        "ScaleUp",
        "ScaleDown",
    ]
    phases = json.loads(next(e.content for e in result.evidence if e.name == "phases.json"))
    assert [p["phase"] for p in phases] == [
        "baseline",
        "pin-baseline",
        "trigger-unschedulable",
        "scale-up",
        "scale-down",
        "stability-window",
    ]
    assert all("duration_s" in p and "timeout_s" in p for p in phases)
    scale_up = next(p for p in phases if p["phase"] == "scale-up")
    assert scale_up["new_node"] == "gpu-added-1"
    # every test pod and the PDB are gone afterwards
    assert not fc.list("v1", "Pod", "kaic-t")
    assert not fc.list("policy/v1", "PodDisruptionBudget", "kaic-t")


def test_cluster_autoscaling_fills_nodes_with_several_accelerators() -> None:
    fc = ca_cluster(nodes=1, gpus=8)
    result = run("cluster_autoscaling", fc, FAST)
    assert result.outcome is Outcome.PASS, result.reason
    fillers = [c for c in fc.calls if c[0] == "create" and c[1][0] == "Pod"]
    assert ("Pod", "kaic-ca-filler-0", False) in [c[1] for c in fillers]


def test_cluster_autoscaling_fails_when_the_pool_is_at_its_maximum() -> None:
    result = run(
        "cluster_autoscaling",
        ca_cluster(nodes=2, max_size=2),
        {**FAST, "autoscaler-scale-up-timeout": "1"},
    )
    assert result.outcome is Outcome.FAIL
    assert "ScaleUp: the pool did not scale up within 1s" in result.reason
    assert "2 node(s) (baseline 2)" in result.reason
    assert "insufficient nvidia.com/gpu" in result.reason


def test_cluster_autoscaling_fails_when_the_new_node_is_never_removed() -> None:
    result = run(
        "cluster_autoscaling",
        ca_cluster(nodes=1, scale_down=False),
        {**FAST, "autoscaler-scale-down-timeout": "1"},
    )
    assert result.outcome is Outcome.FAIL
    assert "ScaleDown: the pool did not scale down within 1s" in result.reason
    assert "gpu-added-1" in result.reason


def test_cluster_autoscaling_fails_when_no_node_has_the_pool_label() -> None:
    result = run(
        "cluster_autoscaling", ca_cluster(), {**FAST, "autoscaler-node-pool-label": "pool=none"}
    )
    assert result.outcome is Outcome.FAIL
    assert "no node carries the pool label pool=none" in result.reason


def test_cluster_autoscaling_fails_when_pool_nodes_have_no_accelerator() -> None:
    result = run(
        "cluster_autoscaling", ca_cluster(), {**FAST, "autoscaler-node-pool-label": f"{POOL}=cpu"}
    )
    assert result.outcome is Outcome.FAIL
    assert "without allocatable nvidia.com/gpu: cpu-0" in result.reason


def _changes(points: tuple[tuple[float, float], ...]) -> list[float]:
    out: list[float] = []
    for _, v in points:
        if not out or out[-1] != v:
            out.append(v)
    return out


def test_cluster_autoscaling_samples_the_pool_size_going_up_and_back_down() -> None:
    result = run("cluster_autoscaling", ca_cluster(nodes=2), FAST)
    assert result.outcome is Outcome.PASS, result.reason
    (pool,) = result.series
    assert (pool.chart, pool.unit, pool.target) == ("node pool size", "nodes", 2.0)
    assert _changes(pool.points) == [2.0, 3.0, 2.0]
    times = [t for t, _ in pool.points]
    assert times == sorted(times) and times[-1] <= result.duration_s + 0.001
    # the same samples are evidence
    samples = json.loads(next(e.content for e in result.evidence if e.name == "samples.json"))
    assert samples[0]["name"] == "nodes in the pool"
    assert [p[1] for p in samples[0]["points"]] == [v for _, v in pool.points]


def test_cluster_autoscaling_samples_show_a_pool_that_never_shrinks() -> None:
    result = run(
        "cluster_autoscaling",
        ca_cluster(nodes=1, scale_down=False),
        {**FAST, "autoscaler-scale-down-timeout": "1"},
    )
    assert result.outcome is Outcome.FAIL
    assert _changes(result.series[0].points) == [1.0, 2.0]
