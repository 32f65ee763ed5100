"""ext_heterogeneous_pools against the fake cluster, with a small taint-aware scheduler."""

from __future__ import annotations

from typing import Any

from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

NS = "kaic-t"
TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def _node(name: str, gpu: bool, taint: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "pool": "gpu" if gpu else "cpu"},
        },
        "spec": {"taints": [TAINT]} if gpu and taint else {},
        "status": {"allocatable": {"nvidia.com/gpu": "8" if gpu else "0", "cpu": "8"}},
    }


def _fits(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    spec = pod["spec"]
    tol = {t.get("key") for t in spec.get("tolerations") or []}
    if any(t["key"] not in tol for t in node["spec"].get("taints") or []):
        return False
    labels = node["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    aff = spec.get("affinity", {}).get("nodeAffinity", {})
    terms = aff.get("requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms")
    for term in terms or []:
        for e in term["matchExpressions"]:
            if labels.get(e["key"]) not in e["values"]:
                return False
    return True


def _fake(*, taint: bool = True, nodepool_taints: list[Any] | None = None) -> FakeCluster:
    fake = FakeCluster()
    for name, gpu in (("gpu-0", True), ("gpu-1", True), ("cpu-0", False)):
        fake.add(_node(name, gpu, taint))
    if nodepool_taints is not None:
        fake.serve("karpenter.sh/v1", ("nodepools", "NodePool", False))
        fake.add(
            {
                "apiVersion": "karpenter.sh/v1",
                "kind": "NodePool",
                "metadata": {"name": "gpu"},
                "spec": {
                    "template": {
                        "metadata": {"labels": {"pool": "gpu"}},
                        "spec": {"taints": nodepool_taints},
                    }
                },
            }
        )

    def scheduler(c: FakeCluster) -> None:
        nodes = c.list("v1", "Node")
        for pod in c.list("v1", "Pod", NS):
            if pod["spec"].get("nodeName"):
                continue
            fit = next((n for n in nodes if _fits(pod, n)), None)
            if fit is not None:
                pod["spec"]["nodeName"] = fit["metadata"]["name"]
                c.add(pod)

    fake.controllers.append(scheduler)
    return fake


def _run(fake: FakeCluster) -> CheckResult:
    return run_fake_check(
        fake,
        "ext_heterogeneous_pools",
        namespace=NS,
        options={"pools-negative-window": "0.2", "pools-schedule-timeout": "0.5"},
    )


def _sub(r: CheckResult, name: str) -> Any:
    return next(s for s in r.subresults if s.name == name)


def test_passes_on_a_tainted_pool_with_a_matching_nodepool() -> None:
    r = _run(_fake(nodepool_taints=[TAINT]))
    assert r.outcome is Outcome.PASS, r.reason
    assert _sub(r, "AutoscalerHonoursPool").outcome is Outcome.PASS
    assert "pool=gpu" in "\n".join(r.log)


def test_an_untainted_pool_takes_any_pod() -> None:
    r = _run(_fake(taint=False))
    assert r.outcome is Outcome.FAIL
    assert "carry no NoSchedule taint" in _sub(r, "PlainPodKeptOff").reason


def test_a_nodepool_without_the_taint_fails() -> None:
    r = _run(_fake(nodepool_taints=[]))
    assert "without the pool's taint(s) nvidia.com/gpu" in _sub(r, "AutoscalerHonoursPool").reason


def test_without_an_autoscaler_that_step_is_skipped() -> None:
    r = _run(_fake())
    assert r.outcome is Outcome.PASS
    assert _sub(r, "AutoscalerHonoursPool").outcome is Outcome.SKIP


def test_no_accelerator_node_fails() -> None:
    fake = FakeCluster()
    fake.add(_node("cpu-0", False, False))
    r = _run(fake)
    assert "no node has accelerators" in _sub(r, "AcceleratorPoolFound").reason
