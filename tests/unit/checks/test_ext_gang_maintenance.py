"""ext_gang_maintenance against the fake cluster: node groups plus a coordinated
maintenance controller (PASS), either one alone or neither (MANUAL, saying which is
missing), single-node "groups" and user-given labels and API groups."""

from __future__ import annotations

from typing import Any

from kaic.checks.ext_gang_maintenance import mechanisms_served, node_groups
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

CLIQUE = "nvidia.com/gpu.clique"


def _node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}}


def _fake(*, groups: bool, operator: bool) -> FakeCluster:
    fake = FakeCluster()
    for i in range(4):
        labels = {CLIQUE: f"cluster-a.{i // 2}"} if groups else {}
        fake.add(_node(f"n{i}", labels))
    if operator:
        fake.serve("maintenance.nvidia.com/v1alpha1", ("nodemaintenances", "NodeMaintenance", True))
    return fake


def _run(fake: FakeCluster, **options: str) -> CheckResult:
    return run_fake_check(fake, "ext_gang_maintenance", options=options)


def test_passes_with_node_groups_and_a_coordinated_maintenance_controller() -> None:
    r = _run(_fake(groups=True, operator=True))
    assert r.outcome is Outcome.PASS, r.reason
    log = "\n".join(r.log)
    assert "nvidia.com/gpu.clique: cluster-a.0 (2 nodes), cluster-a.1 (2 nodes)" in log
    assert "NVIDIA maintenance operator" in log


def test_manual_without_groups_or_controller_names_both() -> None:
    r = _run(_fake(groups=False, operator=False))
    assert r.outcome is Outcome.MANUAL
    assert "no tightly coupled node groups" in r.reason
    assert "no coordinated maintenance controller (no API group maintenance.nvidia.com)" in r.reason
    assert "attach how the platform defines tightly coupled node groups" in r.reason


def test_manual_with_groups_but_no_controller() -> None:
    r = _run(_fake(groups=True, operator=False))
    assert r.outcome is Outcome.MANUAL
    assert "node groups found (nvidia.com/gpu.clique: cluster-a.0 (2 nodes)" in r.reason
    assert "but no controller that maintains a group together" in r.reason


def test_manual_with_a_controller_but_no_groups() -> None:
    r = _run(_fake(groups=False, operator=True))
    assert r.outcome is Outcome.MANUAL
    assert "controller is installed (maintenance.nvidia.com) but no nodes form" in r.reason


def test_a_label_on_one_node_only_is_no_group() -> None:
    nodes = [_node("a", {CLIQUE: "x"}), _node("b", {CLIQUE: "y"}), _node("c")]
    assert node_groups(nodes, [CLIQUE]) == {}
    nodes.append(_node("d", {CLIQUE: "x"}))
    assert node_groups(nodes, [CLIQUE]) == {CLIQUE: {"x": ["a", "d"]}}


def test_user_given_label_and_api_group_count() -> None:
    fake = FakeCluster()
    fake.add(_node("a", {"example.com/rack": "r1"}))
    fake.add(_node("b", {"example.com/rack": "r1"}))
    fake.serve("maint.example.com/v1", ("rackmaintenances", "RackMaintenance", False))
    assert _run(fake).outcome is Outcome.MANUAL
    r = _run(
        fake,
        **{"gang-group-label": "example.com/rack", "gang-maintenance-api": "maint.example.com"},
    )
    assert r.outcome is Outcome.PASS, r.reason
    assert "API group maint.example.com (--gang-maintenance-api)" in "\n".join(r.log)


def test_mechanisms_are_matched_by_api_group_not_by_prefix() -> None:
    served = ["v1", "maintenance.nvidia.com.example/v1", "apps/v1"]
    assert mechanisms_served(served, ["maintenance.nvidia.com"]) == []
