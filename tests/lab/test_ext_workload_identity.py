"""ext_workload_identity on the lab: the real apiserver's issuer gives a short-lived,
audience-bound token that TokenReview and the published keys confirm (PASS); with the
TokenRequest API refused by an admission policy, only long-lived credentials remain
(FAIL)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from tests.lab.labtools import run_check_on_lab, sub

from kaic.lab.lab import Lab
from kaic.model import Outcome

pytestmark = pytest.mark.lab

POLICY = "kaic-test-no-token-requests"
VAP = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
BINDINGS = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"


@pytest.fixture
def token_requests_refused(lab: Lab) -> Iterator[Lab]:
    """A real ValidatingAdmissionPolicy that refuses every TokenRequest in namespaces of
    the check, removed afterwards."""
    lab.ctx.apply(
        [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": POLICY},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE"],
                                "resources": ["serviceaccounts/token"],
                            }
                        ],
                        "namespaceSelector": {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/metadata.name",
                                    "operator": "NotIn",
                                    "values": ["kube-system", "default"],
                                }
                            ]
                        },
                    },
                    "validations": [
                        {"expression": "false", "message": "short-lived tokens are disabled"}
                    ],
                },
            },
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": POLICY},
                "spec": {"policyName": POLICY, "validationActions": ["Deny"]},
            },
        ]
    )
    try:
        yield lab
    finally:
        lab.ctx.request("DELETE", f"{BINDINGS}/{POLICY}")
        lab.ctx.request("DELETE", f"{VAP}/{POLICY}")


def test_ext_workload_identity_passes_on_the_apiservers_issuer(lab: Lab) -> None:
    result = run_check_on_lab(lab, "ext_workload_identity")
    assert result.outcome is Outcome.PASS, result.reason
    for name in (
        "ShortLivedTokenIssued",
        "TokenReviewConfirmsIdentity",
        "OtherAudienceRefused",
        "IssuerVerifiesSignature",
    ):
        assert sub(result, name).outcome is Outcome.PASS, name
    assert sub(result, "ExternalIdentityFederation").outcome is Outcome.SKIP
    evidence = next(e.content for e in result.evidence if e.name == "identity.json")
    doc = json.loads(evidence)
    assert doc["claims"]["aud"] == ["kaic.io/ext-workload-identity"]
    assert "eyJ" not in evidence  # no token in the evidence


def test_ext_workload_identity_fails_when_token_requests_are_refused(
    token_requests_refused: Lab,
) -> None:
    result = None
    for _ in range(20):  # the policy takes effect once the apiserver's informer has it
        result = run_check_on_lab(token_requests_refused, "ext_workload_identity")
        if result.outcome is Outcome.FAIL:
            break
        time.sleep(1)
    assert result is not None and result.outcome is Outcome.FAIL, result
    issued = sub(result, "ShortLivedTokenIssued")
    assert "the platform issued no short-lived token" in issued.reason
    assert "short-lived tokens are disabled" in issued.reason
    assert sub(result, "IssuerVerifiesSignature").outcome is Outcome.SKIP
