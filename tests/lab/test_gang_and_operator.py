"""gang_scheduling and robust_controller on the lab, against the real Kueue controller
(``--with kueue-controller``, built by ``lab/extras/kueue.sh``).

* gang_scheduling PASSes with Kueue and FAILs on the default lab, which has Kueue's CRDs
  but no gang-scheduling controller.
* robust_controller PASSes with Kueue running and FAILs once Kueue's process is stopped
  while its webhook configurations stay registered (the webhook is down).

``KAIC_TEST_KUEUE_LAB=NAME`` reuses a running ``kaic lab up --name NAME --with
kueue-controller`` for the Kueue lab.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from labtools import require_program, run_check_on_lab, sub

from kaic.lab import Lab, proc, programs
from kaic.model import CheckResult, Outcome

pytestmark = pytest.mark.lab


def run(lab: Lab, requirement: str, **options: str) -> CheckResult:
    return run_check_on_lab(lab, requirement, timeout=300, options=options)


@pytest.fixture(scope="module")
def kueue_lab(lab_factory: Any) -> Lab:
    reuse = os.environ.get("KAIC_TEST_KUEUE_LAB")
    if reuse:
        existing = Lab.load(reuse)
        existing.up()
        return existing
    require_program("kueue")
    lab: Lab = lab_factory(with_={"kueue-controller"})
    return lab


@pytest.fixture
def kueue_stopped(kueue_lab: Lab) -> Iterator[Lab]:
    """The Kueue lab with Kueue's process stopped (webhook configurations stay), then
    restarted."""
    assert proc.stop(kueue_lab.ctx.pid_path("kueue-controller"))
    try:
        yield kueue_lab
    finally:
        kueue_lab.up()


def test_gang_scheduling_passes_with_the_real_kueue(kueue_lab: Lab) -> None:
    result = run(kueue_lab, "gang_scheduling", **{"gang-negative-window": "10"})
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.name for s in result.subresults] == [
        "PositiveGangScheduling",
        "NegativeGangScheduling",
        "Cleanup",
    ]
    log = "\n".join(result.log)
    assert "testing gang scheduling with Kueue" in log
    assert "admitted with pod counts [2]" in log
    assert "2 of 2 pods were seen Running at the same time" in log
    assert "insufficient quota" in log  # Kueue itself said why the big gang waits


def test_gang_scheduling_fails_on_a_lab_without_a_gang_controller(lab: Lab) -> None:
    result = run(lab, "gang_scheduling", **{"gang-lease-window": "3"})
    assert result.outcome is Outcome.FAIL
    assert result.reason.startswith("no gang-scheduling solution is running")
    assert "Kueue: installed, controller not running" in result.reason


def test_robust_controller_passes_with_the_real_kueue(kueue_lab: Lab) -> None:
    result = run(kueue_lab, "robust_controller")
    assert result.outcome is Outcome.PASS, result.reason
    log = "\n".join(result.log)
    assert 'admission webhook "vclusterqueue.kb.io" denied the request' in log
    assert "Active=False/FlavorNotFound" in log
    evidence = {e.name: e.content for e in result.evidence}
    assert f'"version": "{programs.version("kueue")}"' in evidence["operator.json"]


def test_robust_controller_fails_when_the_kueue_webhook_is_down(kueue_stopped: Lab) -> None:
    result = run(
        kueue_stopped,
        "robust_controller",
        # NOTE: pinned: with Kueue down, "auto" would pick the lab's JobSet controller.
        **{"operator": "kueue", "operator-lease-window": "20", "operator-reconcile-timeout": "10"},
    )
    assert result.outcome is Outcome.FAIL
    webhook = sub(result, "WebhookRejectsInvalidCR")
    assert webhook.outcome is Outcome.FAIL
    assert "could not call the webhook" in webhook.reason
    assert "clusterqueue.kb.io" in webhook.reason and "connection refused" in webhook.reason
    assert sub(result, "OperatorPodsRunning").outcome is Outcome.FAIL
    assert sub(result, "ControllerReconcilesCR").outcome is Outcome.FAIL
