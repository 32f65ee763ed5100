"""ext_failed_device_detection on the lab: the simulated device plugin honours the fault
annotation (PASS); with its health reporting off it still advertises the contract but
nothing reacts (FAIL: allocatable did not drop)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.lab.labtools import run_check_on_lab, sub

from kaic.lab.components.device_health_off import reporting_configmap
from kaic.lab.lab import Lab
from kaic.lab.sims import device_health
from kaic.model import Outcome

pytestmark = pytest.mark.lab

CONFIGMAP = (
    f"/api/v1/namespaces/{device_health.CONFIGMAP_NAMESPACE}/configmaps/"
    f"{device_health.CONFIGMAP_NAME}"
)


@pytest.fixture
def health_reporting_off(lab: Lab) -> Iterator[Lab]:
    """The lab with the simulated device plugin's health reporting off (what
    ``--with device-health-off`` sets), then on again."""
    lab.ctx.apply([reporting_configmap("off")])
    try:
        yield lab
    finally:
        lab.ctx.request("DELETE", CONFIGMAP)


def test_ext_failed_device_detection_passes_with_the_simulated_device_plugin(lab: Lab) -> None:
    result = run_check_on_lab(lab, "ext_failed_device_detection", timeout=240)
    assert result.outcome is Outcome.PASS, result.reason
    for name in ("AllocatableDrops", "ResourceSliceUpdated", "FailureReported", "Recovers"):
        assert sub(result, name).outcome is Outcome.PASS, (name, sub(result, name).reason)
    log = "\n".join(result.log)
    assert "condition GPUUnhealthy=True (DeviceFailed" in log
    assert "event Warning DeviceUnhealthy" in log


def test_ext_failed_device_detection_fails_when_nothing_reports_the_failure(
    health_reporting_off: Lab,
) -> None:
    result = run_check_on_lab(
        health_reporting_off,
        "ext_failed_device_detection",
        options={"device-fault-timeout": "15"},
        timeout=240,
    )
    assert result.outcome is Outcome.FAIL
    assert "did not drop by 1" in sub(result, "AllocatableDrops").reason
    assert sub(result, "ResourceSliceUpdated").outcome is Outcome.FAIL
    assert sub(result, "Recovers").outcome is Outcome.SKIP
