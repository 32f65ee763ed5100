"""ext_maintenance_notification against the fake cluster: each signal of the table is
seen and named (PASS), a condition that is False or an unknown one is not, a user-given
signal counts, and nothing visible is MANUAL with what to attach."""

from __future__ import annotations

from typing import Any

import pytest

from kaic.checks.ext_maintenance_notification import SIGNALS
from kaic.lab.components.maintenance_notice import CONDITION, notice_condition
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check


def _node(name: str, **extra: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": extra.pop("labels", {})},
        "spec": {"taints": extra.pop("taints", [])},
        "status": {"conditions": [{"type": "Ready", "status": "True"}, *extra.pop("conds", [])]},
    }
    return node


def _run(*nodes: dict[str, Any], **options: str) -> CheckResult:
    fake = FakeCluster()
    for n in nodes:
        fake.add(n)
    return run_fake_check(fake, "ext_maintenance_notification", options=options)


def test_passes_naming_the_node_and_the_condition() -> None:
    r = _run(_node("a"), _node("b", conds=[notice_condition(0.0)]))
    assert r.outcome is Outcome.PASS, r.reason
    log = "\n".join(r.log)
    assert "b: Node condition VMEventScheduled=True (AKS" in log
    assert "Redeploy scheduled for 1970-01-02T00:00:00Z" in log
    assert "a:" not in log


@pytest.mark.parametrize("signal", [s for s in SIGNALS if s.kind != "condition"])
def test_each_taint_and_label_of_the_table_is_seen(signal: Any) -> None:
    extra: dict[str, Any] = (
        {"taints": [{"key": signal.key, "value": "ev-1", "effect": "NoSchedule"}]}
        if signal.kind == "taint"
        else {"labels": {signal.key: "1767225600"}}
    )
    r = _run(_node("n", **extra))
    assert r.outcome is Outcome.PASS, r.reason
    assert signal.key in "\n".join(r.log)


def test_a_condition_that_is_not_true_is_no_notice() -> None:
    cond = notice_condition(0.0) | {"status": "False"}
    r = _run(_node("n", conds=[cond]))
    assert r.outcome is Outcome.MANUAL


def test_manual_without_a_notice_says_what_was_looked_for_and_what_to_attach() -> None:
    r = _run(_node("n", taints=[{"key": "example.com/other", "effect": "NoSchedule"}]))
    assert r.outcome is Outcome.MANUAL
    assert "no node announces planned maintenance now (looked at 1 nodes" in r.reason
    assert "conditions VMEventScheduled" in r.reason
    assert "aws-node-termination-handler/scheduled-maintenance" in r.reason
    assert "cloud.google.com/scheduled-maintenance-time" in r.reason
    assert "attach the platform's documentation" in r.reason
    assert r.subresults == ()


def test_a_signal_given_by_the_user_counts() -> None:
    cond = {"type": "MaintenanceUpcoming", "status": "True", "reason": "Planned"}
    assert _run(_node("n", conds=[cond])).outcome is Outcome.MANUAL
    r = _run(_node("n", conds=[cond]), **{"maintenance-signal": "MaintenanceUpcoming"})
    assert r.outcome is Outcome.PASS, r.reason


def test_the_lab_component_sets_a_condition_of_the_table() -> None:
    assert CONDITION in {s.key for s in SIGNALS if s.kind == "condition"}
