"""cluster_autoscaling against a fake cluster whose scheduler and node autoscaler are
small simulations (the real ones are exercised in tests/lab/)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kaic.checks.accelerators import parse_taint
from kaic.checks.base import Resource, exclusive
from kaic.checks.cluster_autoscaling import CA_LOCKS, parse_pool_label
from kaic.checks.predicates import tolerates
from kaic.cluster.api import KubeObject
from kaic.errors import UsageError
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

POOL = "kaic.io/accelerator-pool"
GPU = "nvidia.com/gpu"


def run(requirement: str, cluster: FakeCluster, options: dict[str, str | None]) -> CheckResult:
    return run_fake_check(cluster, requirement, options=options, run_id="run1")


TAINT = {"key": "pool.example/autoscaled", "value": "true", "effect": "NoSchedule"}
TAINT_TEXT = "pool.example/autoscaled=true:NoSchedule"


def node(
    name: str, gpus: int = 1, pool: str = "gpu", taint: dict[str, str] | None = None
) -> KubeObject:
    cap = {"cpu": "8", "memory": "64Gi", GPU: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {POOL: pool}},
        "spec": {"taints": [dict(taint)]} if taint else {},
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

    def __init__(
        self,
        max_size: int = 10,
        scale_down: bool = True,
        delay: int = 3,
        taint: dict[str, str] | None = None,
    ) -> None:
        self.taint = taint
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
                and all(
                    tolerates(p["spec"].get("tolerations") or [], x)
                    for x in n.get("spec", {}).get("taints") or []
                )
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
            fc.add(node(f"gpu-added-{self.added}", taint=self.taint))
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


def ca_cluster(
    nodes: int = 2, gpus: int = 1, baseline_taint: dict[str, str] | None = None, **kw: Any
) -> FakeCluster:
    fc = FakeCluster()
    fc.serve("policy/v1", ("poddisruptionbudgets", "PodDisruptionBudget", True))
    for i in range(nodes):
        fc.add(node(f"gpu-{i}", gpus, taint=baseline_taint))
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


# -- a dedicated pool (--autoscaler-pool-taint) ------------------------------------------

DEDICATED = {**FAST, "autoscaler-pool-taint": TAINT_TEXT}


def test_cluster_autoscaling_passes_on_a_dedicated_pool_whose_pods_tolerate_its_taint() -> None:
    fc = ca_cluster(nodes=1, baseline_taint=TAINT, taint=TAINT)
    result = run("cluster_autoscaling", fc, DEDICATED)
    assert result.outcome is Outcome.PASS, result.reason
    phases = json.loads(next(e.content for e in result.evidence if e.name == "phases.json"))
    assert next(p for p in phases if p["phase"] == "scale-up")["new_node_tainted"] is True
    # (the fake scheduler binds no pod to a tainted node that the pod does not tolerate)


def test_cluster_autoscaling_names_the_option_when_the_pool_is_tainted_and_not_tolerated() -> None:
    result = run("cluster_autoscaling", ca_cluster(nodes=1, baseline_taint=TAINT), FAST)
    assert result.outcome is Outcome.ERROR
    assert f"gpu-0 ({TAINT_TEXT})" in result.reason
    assert "--autoscaler-pool-taint" in result.reason


def test_cluster_autoscaling_is_an_error_when_the_named_taint_is_not_on_the_pool() -> None:
    result = run("cluster_autoscaling", ca_cluster(nodes=2), DEDICATED)
    assert result.outcome is Outcome.ERROR
    assert "pool nodes without the taint" in result.reason and "gpu-0, gpu-1" in result.reason
    assert "not dedicated" in result.reason


def test_cluster_autoscaling_warns_when_the_new_node_lacks_the_pools_taint() -> None:
    fc = ca_cluster(nodes=1, baseline_taint=TAINT)  # the autoscaler adds untainted nodes
    result = run("cluster_autoscaling", fc, DEDICATED)
    assert result.outcome is Outcome.PASS, result.reason
    scale_up = next(s for s in result.subresults if s.name == "ScaleUp")
    assert any("does not carry the pool's taint" in line for line in scale_up.log)
    phases = json.loads(next(e.content for e in result.evidence if e.name == "phases.json"))
    assert next(p for p in phases if p["phase"] == "scale-up")["new_node_tainted"] is False


def test_cluster_autoscaling_rejects_a_taint_that_keeps_no_pod_away() -> None:
    result = run(
        "cluster_autoscaling",
        ca_cluster(nodes=1),
        {**FAST, "autoscaler-pool-taint": "pool.example/autoscaled:PreferNoSchedule"},
    )
    assert result.outcome is Outcome.ERROR and "does not keep other pods away" in result.reason


@pytest.mark.parametrize(
    ("text", "taint"),
    [
        ("a.example/b=c:NoSchedule", {"key": "a.example/b", "value": "c", "effect": "NoSchedule"}),
        ("dedicated:NoExecute", {"key": "dedicated", "effect": "NoExecute"}),
        ("dedicated=:NoSchedule", {"key": "dedicated", "effect": "NoSchedule"}),
    ],
)
def test_parse_taint_reads_kubectls_form(text: str, taint: dict[str, str]) -> None:
    assert parse_taint(text) == taint


@pytest.mark.parametrize("text", ["dedicated", "=x:NoSchedule", "a=b", "a b:NoSchedule", ""])
def test_parse_taint_rejects_other_text(text: str) -> None:
    with pytest.raises(UsageError, match="key\\[=value\\]:NoSchedule"):
        parse_taint(text)


def test_the_locks_of_cluster_autoscaling_follow_its_options() -> None:
    from kaic.checks import load_builtin_checks

    specs = {s.requirement_id: s for s in load_builtin_checks().all()}
    ca = specs["cluster_autoscaling"]
    cluster_shared = ("cluster (shared)",)
    assert tuple(str(lk) for lk in ca.held({})) == cluster_shared
    assert ca.held({"autoscaler-node-pool-label": "a=b"}) == ca.locks
    assert set(CA_LOCKS) <= set(ca.locks)
    dedicated = ca.held(
        {"autoscaler-node-pool-label": "a=b", "autoscaler-pool-taint": "t:NoSchedule"}
    )
    assert [str(lk) for lk in dedicated] == ["autoscaled-pool", "cluster (shared)"]
    assert set(exclusive(Resource.AUTOSCALED_POOL)) <= set(dedicated)
    options = {"autoscaler-node-pool-label": "a=b", "autoscaler-pool-taint": "t:NoSchedule"}
    beside = {
        other
        for other, spec in specs.items()
        if other != "cluster_autoscaling"
        and not any(a.conflicts(b) for a in dedicated for b in spec.held(options))
    }
    # with a dedicated pool it runs beside the MUSTs that use other accelerators ...
    assert {"gang_scheduling", "pod_autoscaling", "secure_accelerator_access"} <= beside
    # ... but not beside a check that compares the node inventory with something
    assert "accelerator_metrics" not in beside and "driver_runtime_management" not in beside
    assert "ext_heterogeneous_pools" not in beside
    shared_pool = [
        spec.requirement_id
        for spec in specs.values()
        if any(lk.resource == Resource.NODE_POOL and lk.shared for lk in spec.locks)
    ]
    assert shared_pool and not set(shared_pool) & beside


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        ({"key": "pool.example/autoscaled", "operator": "Exists"}, True),
        ({"key": "pool.example/autoscaled", "value": "true", "effect": "NoSchedule"}, True),
        ({"key": "pool.example/autoscaled", "value": "false", "effect": "NoSchedule"}, False),
        ({"key": "pool.example/autoscaled", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"operator": "Exists"}, True),
        ({"key": GPU, "operator": "Exists"}, False),
    ],
)
def test_tolerates_matches_a_taint_as_the_scheduler_does(
    toleration: dict[str, str], tolerated: bool
) -> None:
    assert tolerates([toleration], TAINT) is tolerated
