"""ext_supply_chain_policy on the lab: the real apiserver's ValidatingAdmissionPolicy,
with kaic's own image policy scoped to the check's namespace, denies a pod from a
registry outside the allow-list and admits a compliant one (PASS: the built-in engine
works); with the admission plugin disabled the policy is accepted but not enforced
(FAIL)."""

from __future__ import annotations

import json

import pytest
from tests.lab.labtools import SECURITY_LAB, LabFactory, run_check_on_lab, sub

from kaic.lab.lab import Lab
from kaic.model import Outcome

pytestmark = pytest.mark.lab

VAP = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"


def _left_over(lab: Lab) -> list[str]:
    items = lab.ctx.get(VAP).get("items") or []
    return [i["metadata"]["name"] for i in items if i["metadata"]["name"].startswith("kaic-")]


def test_ext_supply_chain_policy_passes_with_the_builtin_validating_admission_policy(
    lab: Lab,
) -> None:
    result = run_check_on_lab(lab, "ext_supply_chain_policy")
    assert result.outcome is Outcome.PASS, result.reason
    assert sub(result, "ViolatingImageDenied").outcome is Outcome.PASS
    assert sub(result, "CompliantImageAdmitted").outcome is Outcome.PASS
    denial = next(e.content for e in result.evidence if e.name == "denial.txt")
    assert "ValidatingAdmissionPolicy 'kaic-image-policy-" in denial
    assert "denied request: image kaic-untrusted.invalid/kaic/not-allowed:1.0 is not from" in (
        denial
    )
    doc = json.loads(next(e.content for e in result.evidence if e.name == "policy.json"))
    assert (
        "Kubernetes ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1)" in (doc["engines"])
    )
    assert doc["policy"]["source"].startswith("kaic (built-in engine")
    assert _left_over(lab) == []


def test_ext_supply_chain_policy_fails_when_admission_policies_are_not_enforced(
    lab_factory: LabFactory,
) -> None:
    lab = lab_factory(**SECURITY_LAB)
    result = run_check_on_lab(
        lab, "ext_supply_chain_policy", options={"image-policy-timeout": "10"}
    )
    assert result.outcome is Outcome.FAIL, result.reason
    assert sub(result, "PolicyEngineDetected").outcome is Outcome.PASS
    assert sub(result, "ImagePolicyInPlace").outcome is Outcome.PASS
    reason = sub(result, "ViolatingImageDenied").reason
    assert "a pod with image kaic-untrusted.invalid/kaic/not-allowed:1.0 was admitted" in reason
    assert "no policy engine enforces it at admission" in reason
    assert _left_over(lab) == []
