"""ext_gang_maintenance on the lab: the default lab has neither tightly coupled node
groups nor a coordinated maintenance controller, so the check is MANUAL saying so."""

from __future__ import annotations

import pytest
from tests.lab.labtools import run_check_on_lab

from kaic.lab.lab import Lab
from kaic.model import Outcome

pytestmark = pytest.mark.lab


def test_ext_gang_maintenance_is_manual_on_the_default_lab(lab: Lab) -> None:
    result = run_check_on_lab(lab, "ext_gang_maintenance", timeout=60)
    assert result.outcome is Outcome.MANUAL, result.reason
    assert "no tightly coupled node groups" in result.reason
    assert "no coordinated maintenance controller" in result.reason
    assert result.subresults == ()
