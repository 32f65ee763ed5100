"""ext_workload_identity against the fake cluster: a real signed JWT, TokenRequest,
TokenReview and the issuer's keys; each way the procedure can fail."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from kaic.checks.ext_workload_identity import AUDIENCE, SERVICE_ACCOUNT
from kaic.errors import RejectedError
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

NS = "kaic-t"
ISSUER = "https://kubernetes.default.svc.cluster.local"
USER = f"system:serviceaccount:{NS}:{SERVICE_ACCOUNT}"


def _key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING = _key()


def _jwks(key: Any, kid: str = "k1") -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**jwk, "kid": kid, "alg": "RS256", "use": "sig"}]}


def _fake(
    *,
    refuse: bool = False,
    lifetime: int | None = None,
    sign_with: Any = None,
    any_audience: bool = False,
    annotations: dict[str, str] | None = None,
) -> FakeCluster:
    fake = FakeCluster()
    fake.serve("v1", ("serviceaccounts", "ServiceAccount", True))
    fake.serve("authentication.k8s.io/v1", ("tokenreviews", "TokenReview", False))
    issued: dict[str, list[str]] = {}

    def token(name: str, ns: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if refuse:
            raise RejectedError("admission webhook denied the request: tokens are disabled")
        now = int(time.time())
        life = lifetime or body["spec"]["expirationSeconds"]
        aud = body["spec"]["audiences"]
        tok = jwt.encode(
            {"iss": ISSUER, "sub": USER, "aud": aud, "iat": now, "nbf": now, "exp": now + life},
            sign_with or SIGNING,
            algorithm="RS256",
            headers={"kid": "k1"},
        )
        issued[tok] = aud
        expires = datetime.fromtimestamp(now + life, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {**body, "status": {"token": tok, "expirationTimestamp": expires}}

    def review(obj: dict[str, Any], dry_run: bool) -> None:
        if obj["kind"] != "TokenReview":
            return
        tok, want = obj["spec"]["token"], obj["spec"]["audiences"]
        ok = tok in issued and (any_audience or bool(set(want) & set(issued[tok])))
        obj["status"] = (
            {"authenticated": True, "user": {"username": USER}, "audiences": want}
            if ok
            else {"authenticated": False, "error": "token audiences are invalid"}
        )

    fake.subresource_handlers[("ServiceAccount", "token")] = token
    fake.on_create.append(review)
    fake.raw["/.well-known/openid-configuration"] = json.dumps(
        {
            "issuer": ISSUER,
            "jwks_uri": "https://203.0.113.7:6443/openid/v1/jwks",
            "id_token_signing_alg_values_supported": ["RS256"],
        }
    )
    fake.raw["/openid/v1/jwks"] = json.dumps(_jwks(SIGNING))
    if annotations:
        fake.add(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "trainer", "namespace": "ml", "annotations": annotations},
            }
        )
    return fake


def _run(fake: FakeCluster) -> CheckResult:
    return run_fake_check(fake, "ext_workload_identity", namespace=NS)


def _sub(r: CheckResult, name: str) -> Any:
    return next(s for s in r.subresults if s.name == name)


def test_passes_with_a_short_lived_audience_bound_token_that_verifies() -> None:
    r = _run(_fake())
    assert r.outcome is Outcome.PASS, r.reason
    assert [s.outcome for s in r.subresults] == [Outcome.PASS] * 4 + [Outcome.SKIP]
    ev = next(e.content for e in r.evidence if e.name == "identity.json")
    assert json.loads(ev)["claims"]["sub"] == USER
    assert "eyJ" not in ev  # the token itself is never evidence
    assert "203.0.113.7" in "\n".join(r.log)  # named, never dialled


def test_a_refused_token_request_fails_naming_long_lived_credentials() -> None:
    r = _run(_fake(refuse=True))
    assert r.outcome is Outcome.FAIL
    assert "issued no short-lived token" in _sub(r, "ShortLivedTokenIssued").reason
    assert _sub(r, "IssuerVerifiesSignature").outcome is Outcome.SKIP


def test_a_token_that_lives_longer_than_asked_fails() -> None:
    r = _run(_fake(lifetime=365 * 86400))
    assert "extends short-lived tokens" in _sub(r, "ShortLivedTokenIssued").reason


def test_a_token_accepted_for_another_audience_fails() -> None:
    r = _run(_fake(any_audience=True))
    assert _sub(r, "OtherAudienceRefused").outcome is Outcome.FAIL
    assert "not bound to their audience" in _sub(r, "OtherAudienceRefused").reason


def test_a_signature_the_issuers_keys_do_not_verify_fails() -> None:
    r = _run(_fake(sign_with=_key()))
    sub = _sub(r, "IssuerVerifiesSignature")
    assert sub.outcome is Outcome.FAIL and "does not verify" in sub.reason


@pytest.mark.parametrize(
    ("annotation", "named"),
    [
        ("iam.gke.io/gcp-service-account", "GKE Workload Identity"),
        ("eks.amazonaws.com/role-arn", "EKS IAM roles"),
    ],
)
def test_a_federated_identity_is_detected_and_left_to_the_reviewer(
    annotation: str, named: str
) -> None:
    r = _run(_fake(annotations={annotation: "x"}))
    sub = _sub(r, "ExternalIdentityFederation")
    assert sub.outcome is Outcome.SKIP and named in sub.reason
    assert r.outcome is Outcome.PASS


def test_the_audience_option_is_used() -> None:
    fake = _fake()
    r = run_fake_check(
        fake, "ext_workload_identity", namespace=NS, options={"workload-identity-audience": "vault"}
    )
    assert r.outcome is Outcome.PASS, r.reason
    assert AUDIENCE not in next(e.content for e in r.evidence if e.name == "identity.json")
