"""ext_network_policy on the lab: real connections between pods (curl exec'd in the
clients, to the server's pod IP in the lab network) are made, and with no NetworkPolicy
enforcer in the lab the denied connection still succeeds (FAIL). The lab cannot show a
PASS (docs/lab.md, "The lab network"); the fake cluster does."""

from __future__ import annotations

import pytest
from tests.lab.labtools import run_check_on_lab, sub

from kaic.lab.lab import Lab
from kaic.model import Outcome

pytestmark = pytest.mark.lab


def test_ext_network_policy_fails_in_the_lab_which_has_no_enforcer(lab: Lab) -> None:
    result = run_check_on_lab(
        lab, "ext_network_policy", options={"network-policy-timeout": "20"}, timeout=300
    )
    assert result.outcome is Outcome.FAIL, result.reason
    assert sub(result, "PodsRun").outcome is Outcome.PASS
    # the connections are real: without a policy both clients reach the server
    assert sub(result, "ConnectivityWithoutPolicy").outcome is Outcome.PASS
    assert sub(result, "PoliciesApplied").outcome is Outcome.PASS
    reason = sub(result, "DeniedConnectionBlocked").reason
    assert "the denied connection kaic-np-denied -> kaic-np-server still succeeds" in reason
    assert "no NetworkPolicy enforcer acts on the pod network" in reason
    assert sub(result, "AllowedConnectionSucceeds").outcome is Outcome.PASS
    assert sub(result, "ClusterScopedPolicyAPI").outcome is Outcome.SKIP
    log = next(e.content for e in result.evidence if e.name == "connections.log")
    assert "curl -sS -m 3 http://198.18." in log
    assert "kaic-np-server[exit code 0]" in log
