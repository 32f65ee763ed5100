"""ext_workload_identity (extended profile, TestExtWorkloadIdentity): workloads get
short-lived, audience-bound credentials whose identity a verification endpoint confirms.

Owns: the procedure of the program document's row *Security / Secure Workload
Authentication* on the cluster's own issuer — a ServiceAccount, a TokenRequest bound to an
audience with a short lifetime, TokenReview (the right audience is accepted as that
ServiceAccount, another audience is refused), and the issuer's OIDC discovery and JWKS
verifying the token's signature, issuer, audience, subject and lifetime — plus the
detection of a federated external identity (SPIFFE/SPIRE, cloud workload identity).
Tokens never reach the evidence. Must not dial anything but the apiserver.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import jwt

from kaic.checks.base import CheckContext, CheckOption, Permission, Subtest, check
from kaic.cluster.api import KubeObject, name_of
from kaic.errors import ClusterError, PermissionDeniedError

SERVICE_ACCOUNT = "kaic-identity"
AUDIENCE = "kaic.io/ext-workload-identity"
OTHER_AUDIENCE = "kaic.io/not-this-audience"
DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/openid/v1/jwks"
CLOCK_SLACK_S = 60
"""Tolerance between the cluster's clock and kaic's when judging a token's lifetime."""

OPTIONS = (
    CheckOption(
        "workload-identity-audience",
        "audience the short-lived test token is requested for",
        AUDIENCE,
    ),
    CheckOption(
        "workload-identity-lifetime",
        "seconds the test token is requested to live (the apiserver's minimum is 600)",
        "600",
    ),
)

# (what, how it shows in the API): federated identity mechanisms kaic recognises.
FEDERATION_ANNOTATIONS = {
    "iam.gke.io/gcp-service-account": "GKE Workload Identity",
    "eks.amazonaws.com/role-arn": "EKS IAM roles for service accounts",
    "azure.workload.identity/client-id": "Azure Workload Identity",
}
FEDERATION_CSI_DRIVERS = {"csi.spiffe.io": "SPIFFE CSI driver (SPIRE)"}
FEDERATION_CRD_GROUPS = {"spire.spiffe.io": "SPIRE controller manager"}


def token_request(audience: str, lifetime: int) -> KubeObject:
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [audience], "expirationSeconds": lifetime},
    }


def token_review(token: str, audience: str) -> KubeObject:
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {"generateName": "kaic-"},
        "spec": {"token": token, "audiences": [audience]},
    }


def verify_token(
    token: str, discovery: dict[str, Any], jwks: dict[str, Any], audience: str
) -> dict[str, Any]:
    """The claims of ``token`` once its signature verifies against the issuer's JWKS and
    its issuer, audience and expiry hold; ``jwt.PyJWTError`` otherwise."""
    header = jwt.get_unverified_header(token)
    kid = header.get("kid")
    keys = [k for k in jwks.get("keys") or [] if isinstance(k, dict)]
    key = next((k for k in keys if k.get("kid") == kid), None)
    if key is None:
        raise jwt.InvalidKeyError(
            f"the issuer's JWKS has no key {kid!r} (it has {[k.get('kid') for k in keys]})"
        )
    alg = str(header.get("alg") or key.get("alg") or "")
    allowed = discovery.get("id_token_signing_alg_values_supported") or [alg]
    if alg not in allowed or alg.lower() == "none":
        raise jwt.InvalidAlgorithmError(f"the token is signed with {alg!r}, not one of {allowed}")
    claims: dict[str, Any] = jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=[alg],
        audience=audience,
        issuer=str(discovery.get("issuer", "")),
        options={"require": ["exp", "iat", "iss", "sub", "aud"]},
    )
    return claims


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.ns = ctx.namespace
        self.audience = ctx.option("workload-identity-audience") or AUDIENCE
        self.lifetime = int(ctx.float_option("workload-identity-lifetime"))
        self.user = f"system:serviceaccount:{self.ns}:{SERVICE_ACCOUNT}"
        self.token = ""
        self.evidence: dict[str, Any] = {"service_account": self.user, "audience": self.audience}

    def issue(self, t: Subtest) -> None:
        self.c.create(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": SERVICE_ACCOUNT, "namespace": self.ns},
            }
        )
        try:
            out = self.c.create_subresource(
                "v1",
                "ServiceAccount",
                SERVICE_ACCOUNT,
                "token",
                token_request(self.audience, self.lifetime),
                self.ns,
            )
        except PermissionDeniedError:
            raise
        except ClusterError as e:
            t.fail(
                "the platform issued no short-lived token (TokenRequest for ServiceAccount"
                f" {SERVICE_ACCOUNT} refused: {e}); only long-lived credentials remain"
            )
        status = out.get("status") or {}
        self.token = str(status.get("token") or "")
        if not self.token:
            t.fail("TokenRequest answered without a token")
        expires = str(status.get("expirationTimestamp") or "")
        self.evidence["token_request"] = {
            "expirationSeconds": self.lifetime,
            "expirationTimestamp": expires,
        }
        try:
            left = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp() - time.time()
        except ValueError:
            t.fail(f"TokenRequest answered with an unreadable expirationTimestamp {expires!r}")
        if left > self.lifetime + CLOCK_SLACK_S:
            t.fail(
                f"the token asked to live {self.lifetime}s is valid for {left:.0f}s: the"
                " platform extends short-lived tokens"
            )
        t.log(f"a token for {self.user}, audience {self.audience}, expires in {left:.0f}s")

    def review(self, token: str, audience: str) -> dict[str, Any]:
        out = self.c.create(token_review(token, audience))
        status: dict[str, Any] = dict(out.get("status") or {})
        return status

    def confirmed(self, t: Subtest) -> None:
        status = self.review(self.token, self.audience)
        self.evidence["token_review"] = status
        if not status.get("authenticated"):
            t.fail(f"TokenReview did not authenticate the token: {status.get('error') or status}")
        user = (status.get("user") or {}).get("username")
        if user != self.user:
            t.fail(f"TokenReview says the token is {user!r}, not {self.user!r}")
        if self.audience not in (status.get("audiences") or []):
            t.fail(f"TokenReview did not confirm audience {self.audience}: {status}")
        t.log(f"TokenReview: authenticated as {user} for audience {self.audience}")

    def other_audience(self, t: Subtest) -> None:
        status = self.review(self.token, OTHER_AUDIENCE)
        self.evidence["token_review_other_audience"] = status
        if status.get("authenticated"):
            t.fail(
                f"TokenReview accepted the token for audience {OTHER_AUDIENCE}, which it was"
                " not issued for: tokens are not bound to their audience"
            )
        t.log(f"TokenReview refused the token for audience {OTHER_AUDIENCE}")

    def signature(self, t: Subtest) -> None:
        try:
            discovery = json.loads(self.c.raw_get(DISCOVERY))
            jwks = json.loads(self.c.raw_get(JWKS))
        except ClusterError as e:
            t.fail(f"the issuer's discovery document or keys are not served: {e}")
        except ValueError as e:
            t.fail(f"the issuer's discovery document or keys are not JSON: {e}")
        self.evidence["discovery"] = discovery
        self.evidence["jwks"] = jwks
        try:
            claims = verify_token(self.token, discovery, jwks, self.audience)
        except jwt.PyJWTError as e:
            t.fail(f"the token does not verify against the issuer's keys: {e}")
        lifetime = int(claims["exp"]) - int(claims["iat"])
        self.evidence["claims"] = {k: v for k, v in claims.items() if k != "kubernetes.io"}
        if claims.get("sub") != self.user:
            t.fail(f"the token's subject is {claims.get('sub')!r}, not {self.user!r}")
        if lifetime > self.lifetime + CLOCK_SLACK_S:
            t.fail(f"the token lives {lifetime}s (exp - iat), more than the {self.lifetime}s asked")
        t.log(
            f"signature verified with key {jwt.get_unverified_header(self.token).get('kid')}"
            f" of issuer {discovery.get('issuer')} (keys read through the apiserver's {JWKS};"
            f" published jwks_uri {discovery.get('jwks_uri')}); lifetime {lifetime}s"
        )

    def federation(self, t: Subtest) -> None:
        found: list[str] = []
        try:
            for sa in self.c.list("v1", "ServiceAccount"):
                ann = sa.get("metadata", {}).get("annotations") or {}
                for key, what in FEDERATION_ANNOTATIONS.items():
                    if key in ann:
                        found.append(f"{what} (ServiceAccount {name_of(sa)})")
        except ClusterError as e:
            t.log(f"could not list ServiceAccounts: {e}")
        for r in self.c.api_resources("storage.k8s.io/v1"):
            if r.kind == "CSIDriver":
                for d in self.c.list("storage.k8s.io/v1", "CSIDriver"):
                    if name_of(d) in FEDERATION_CSI_DRIVERS:
                        found.append(FEDERATION_CSI_DRIVERS[name_of(d)])
        for v in self.c.api_versions():
            group = v.split("/")[0]
            if group in FEDERATION_CRD_GROUPS:
                found.append(FEDERATION_CRD_GROUPS[group])
        found = sorted(set(found))
        self.evidence["federation"] = found
        if not found:
            t.skip(
                "no federated external identity (SPIFFE/SPIRE, cloud workload identity) is"
                " visible; the cluster's own issuer above is the identity mechanism"
            )
        t.skip(
            f"detected {', '.join(found)}; kaic does not yet exchange the token for that"
            " external identity: attach the platform's proof that the identity matches"
        )

    def keep_evidence(self) -> None:
        self.ctx.evidence(
            "identity.json", json.dumps(self.evidence, indent=2, default=str), "application/json"
        )


@check(
    "ext_workload_identity",
    test="TestExtWorkloadIdentity",
    locks=(),
    options=OPTIONS,
    permissions=(
        Permission("create", "serviceaccounts"),
        Permission("create", "serviceaccounts", subresource="token"),
        Permission("create", "tokenreviews", "authentication.k8s.io", namespaced=False),
        Permission("list", "serviceaccounts", namespaced=False),
    ),
    timeout_s=120.0,
)
def ext_workload_identity(ctx: CheckContext) -> None:
    """A short-lived, audience-bound token of a ServiceAccount is confirmed as that
    ServiceAccount by TokenReview and verifies against the issuer's published keys."""
    run = _Run(ctx)
    try:
        ctx.step("ShortLivedTokenIssued", run.issue)
        ctx.step("TokenReviewConfirmsIdentity", run.confirmed, needs=("ShortLivedTokenIssued",))
        ctx.step("OtherAudienceRefused", run.other_audience, needs=("ShortLivedTokenIssued",))
        ctx.step("IssuerVerifiesSignature", run.signature, needs=("ShortLivedTokenIssued",))
        ctx.step("ExternalIdentityFederation", run.federation)
    finally:
        run.keep_evidence()
