"""ext_jobset on the lab: the real JobSet controller runs a JobSet (PASS); with the
JobSet CRDs but no controller, nothing acts on it (FAIL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.lab.labtools import require_program, run_check_on_lab, sub

from kaic.lab import proc
from kaic.lab.lab import Lab
from kaic.model import Outcome

pytestmark = pytest.mark.lab

WEBHOOKS = (
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
    "jobset-mutating-webhook-configuration",
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
    "jobset-validating-webhook-configuration",
)


@pytest.fixture
def no_jobset_controller(lab: Lab) -> Iterator[Lab]:
    """The lab with the JobSet CRDs but no controller (its process stopped and its
    webhooks unregistered), then restored."""
    assert proc.stop(lab.ctx.pid_path("jobset-controller"))
    for path in WEBHOOKS:
        lab.ctx.request("DELETE", path)
    try:
        yield lab
    finally:
        lab.up()


def test_ext_jobset_passes_with_the_real_jobset_controller(lab: Lab) -> None:
    require_program("jobset")
    result = run_check_on_lab(lab, "ext_jobset", timeout=300)
    assert result.outcome is Outcome.PASS, result.reason
    assert "the JobSet controller created Jobs kaic-jobset-leader-0" in "\n".join(result.log)
    objects = next(e.content for e in result.evidence if e.name == "objects.yaml")
    assert objects.count("\nkind: Job\n") == 3


def test_ext_jobset_fails_with_the_crds_but_no_controller(no_jobset_controller: Lab) -> None:
    result = run_check_on_lab(
        no_jobset_controller, "ext_jobset", options={"jobset-controller-timeout": "15"}
    )
    assert result.outcome is Outcome.FAIL
    assert sub(result, "APIServed").outcome is Outcome.PASS
    assert "no controller acted on the JobSet" in sub(result, "ControllerCreatesJobs").reason
    assert sub(result, "JobSetCompletes").outcome is Outcome.SKIP
