"""ext_maintenance_notification on the lab: with ``--with maintenance-notice`` a GPU node
announces maintenance (PASS, naming it); the default lab announces none (MANUAL)."""

from __future__ import annotations

import pytest
from tests.lab.labtools import LabFactory, run_check_on_lab, sub

from kaic.lab.lab import Lab
from kaic.model import Outcome

pytestmark = pytest.mark.lab

LEAN = {
    "gateway-api",
    "inference-extension",
    "jobset",
    "kueue",
    "traefik",
    "dcgm-exporter",
    "httpd",
    "porter",
    "container-runtime",
    "sandbox-runtime",
    "device-visibility",
}
"""Default components the check does not need (a smaller second lab)."""


def test_ext_maintenance_notification_is_manual_on_the_default_lab(lab: Lab) -> None:
    result = run_check_on_lab(lab, "ext_maintenance_notification", timeout=60)
    assert result.outcome is Outcome.MANUAL, result.reason
    assert "no node announces planned maintenance now" in result.reason
    assert "VMEventScheduled" in result.reason


def test_ext_maintenance_notification_passes_with_the_notice_component(
    lab_factory: LabFactory,
) -> None:
    noticed = lab_factory(with_={"maintenance-notice"}, without=LEAN)
    result = run_check_on_lab(noticed, "ext_maintenance_notification", timeout=60)
    assert result.outcome is Outcome.PASS, result.reason
    log = "\n".join(sub(result, "MaintenanceNoticeVisible").log)
    assert "kaic-gpu-0: Node condition VMEventScheduled=True" in log
    assert "Redeploy scheduled for" in log
