"""ext_supply_chain_policy (extended profile, TestExtSupplyChainPolicy): an admission
policy engine enforces an image supply-chain policy: a pod whose image comes from a
registry outside the allow-list is denied at admission, a compliant one is admitted.

Owns: the detection of policy engines (Gatekeeper, Kyverno, sigstore policy-controller,
Kubernetes ValidatingAdmissionPolicy) from served API groups and webhook configurations;
the built-in policy (a ValidatingAdmissionPolicy and its binding, scoped to the check's
namespace, used when the user names no policy of the platform); the server-side dry-run
admission of a violating and a compliant pod and the evidence (the denial message). Must
not verify signatures itself or pull images: the pods are never created for real.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kaic.checks.base import CheckContext, CheckOption, Permission, Subtest, check
from kaic.checks.pods import RESTRICTED, SECCOMP
from kaic.checks.waits import poll
from kaic.cluster.api import KubeObject, name_of
from kaic.errors import ClusterError, PermissionDeniedError, RejectedError

ADMISSION = "admissionregistration.k8s.io/v1"
COMPLIANT_IMAGE = "registry.k8s.io/pause:3.10"
VIOLATING_IMAGE = "kaic-untrusted.invalid/kaic/not-allowed:1.0"
"""An image of a registry that can never exist (``.invalid``, RFC 2606): never pulled."""
ALLOWED_REGISTRIES = "registry.k8s.io/"
BUILTIN_POLICY = "kaic-image-policy"

OPTIONS = (
    CheckOption(
        "image-policy",
        "the platform's own image policy to test (free text naming it, e.g. `kyverno"
        " ClusterPolicy restrict-registries`); empty: kaic installs its own"
        " ValidatingAdmissionPolicy in the check's namespace",
        "",
    ),
    CheckOption(
        "image-policy-namespace",
        "namespace where the platform's policy is enforced (default: the check's namespace)",
        "",
    ),
    CheckOption("image-policy-compliant-image", "an image the policy admits", COMPLIANT_IMAGE),
    CheckOption("image-policy-violating-image", "an image the policy must deny", VIOLATING_IMAGE),
    CheckOption(
        "image-policy-allowed-registries",
        "comma-separated image prefixes kaic's own policy allows (ignored with --image-policy)",
        ALLOWED_REGISTRIES,
    ),
    CheckOption(
        "image-policy-timeout",
        "seconds for the policy to take effect (the apiserver loads policies asynchronously)",
        "30",
    ),
)

# Policy engines kaic recognises: (name, API groups, webhook configuration name prefixes).
ENGINES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "OPA Gatekeeper",
        ("templates.gatekeeper.sh", "constraints.gatekeeper.sh", "config.gatekeeper.sh"),
        ("gatekeeper-validating-webhook-configuration",),
    ),
    (
        "Kyverno",
        ("kyverno.io", "policies.kyverno.io"),
        ("kyverno-resource-validating-webhook-cfg", "kyverno-policy-validating-webhook-cfg"),
    ),
    (
        "Sigstore policy-controller",
        ("policy.sigstore.dev",),
        ("policy.sigstore.dev",),
    ),
)
SIGNATURE_GROUPS = {
    "policy.sigstore.dev": "Sigstore policy-controller ClusterImagePolicies",
    "externaldata.gatekeeper.sh": "Gatekeeper external data providers (cosign/Ratify)",
}
"""API groups whose presence means image signatures can be verified at admission."""
SIGNATURE_KINDS = {
    ("kyverno.io", "ClusterPolicy"): "Kyverno verifyImages rules",
    ("policies.kyverno.io", "ImageValidatingPolicy"): "Kyverno ImageValidatingPolicies",
}

_PREFIX = re.compile(r"^[A-Za-z0-9._:/@-]+$")
_VAP_DENIAL = re.compile(r"ValidatingAdmissionPolicy '([^']+)'.*denied request", re.S)
_WEBHOOK_DENIAL = re.compile(r'admission webhook "([^"]+)" denied the request', re.I)


def denied_by(message: str) -> str | None:
    """Which admission step denied a request, from the apiserver's message (None: the
    message is not an admission denial)."""
    m = _VAP_DENIAL.search(message)
    if m:
        return f"ValidatingAdmissionPolicy {m.group(1)}"
    m = _WEBHOOK_DENIAL.search(message)
    if m:
        return f"admission webhook {m.group(1)}"
    return None


def cel_prefixes(prefixes: list[str]) -> str:
    return "[" + ", ".join(json.dumps(p) for p in prefixes) + "]"


def builtin_policy(name: str, namespace: str, prefixes: list[str]) -> list[KubeObject]:
    """kaic's own image policy: every container image of a pod created or updated in
    ``namespace`` starts with one of ``prefixes``; a binding that denies otherwise."""
    allowed = cel_prefixes(prefixes)
    ok = f"{allowed}.exists(p, c.image.startsWith(p))"
    expression = (
        f"object.spec.containers.all(c, {ok}) && (!has(object.spec.initContainers)"
        f" || object.spec.initContainers.all(c, {ok}))"
    )
    message = (
        "'image ' + object.spec.containers.map(c, c.image)"
        f".filter(i, !{allowed}.exists(p, i.startsWith(p))).join(', ')"
        f" + ' is not from an allowed registry ({', '.join(prefixes)})'"
    )
    return [
        {
            "apiVersion": ADMISSION,
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["pods"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": expression,
                        "messageExpression": message,
                    }
                ],
            },
        },
        {
            "apiVersion": ADMISSION,
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    ]


def probe_pod(name: str, namespace: str, image: str) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": dict(SECCOMP),
            "containers": [{"name": "main", "image": image, "securityContext": dict(RESTRICTED)}],
        },
    }


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.user_policy = (ctx.option("image-policy") or "").strip()
        self.ns = (ctx.option("image-policy-namespace") or "").strip() or ctx.namespace
        self.compliant = ctx.option("image-policy-compliant-image") or COMPLIANT_IMAGE
        self.violating = ctx.option("image-policy-violating-image") or VIOLATING_IMAGE
        self.prefixes = [
            p.strip()
            for p in (ctx.option("image-policy-allowed-registries") or "").split(",")
            if p.strip()
        ] or [ALLOWED_REGISTRIES]
        self.policy_name = f"{BUILTIN_POLICY}-{ctx.namespace}"[:253]
        self.installed: list[KubeObject] = []
        self.engines: list[str] = []
        self.evidence: dict[str, Any] = {
            "namespace": self.ns,
            "compliant_image": self.compliant,
            "violating_image": self.violating,
        }

    # -- detection ---------------------------------------------------------------------
    def detect(self, t: Subtest) -> None:
        groups = {v.split("/")[0] for v in self.c.api_versions() if "/" in v}
        webhooks: list[str] = []
        try:
            webhooks = [
                name_of(w) for w in self.c.list(ADMISSION, "ValidatingWebhookConfiguration")
            ]
        except PermissionDeniedError:
            raise
        except ClusterError as e:
            t.log(f"could not list ValidatingWebhookConfigurations: {e}")
        found: list[str] = []
        for engine, engine_groups, hooks in ENGINES:
            how = [f"API group {g}" for g in engine_groups if g in groups]
            how += [
                f"webhook configuration {w}"
                for w in webhooks
                if any(w.startswith(h) for h in hooks)
            ]
            if how:
                found.append(f"{engine} ({', '.join(how)})")
        vap = any(r.kind == "ValidatingAdmissionPolicy" for r in self.c.api_resources(ADMISSION))
        if vap:
            found.append(f"Kubernetes ValidatingAdmissionPolicy ({ADMISSION})")
        self.engines = found
        self.evidence["engines"] = found
        self.evidence["validating_webhook_configurations"] = sorted(webhooks)
        signatures = [what for g, what in SIGNATURE_GROUPS.items() if g in groups]
        for (g, kind), what in SIGNATURE_KINDS.items():
            if g in groups and any(
                r.kind == kind
                for v in self.c.api_versions()
                if v.startswith(f"{g}/")
                for r in self.c.api_resources(v)
            ):
                signatures.append(what)
        self.evidence["signature_verification"] = sorted(set(signatures))
        if not found:
            t.fail(
                "no policy engine: no Gatekeeper, Kyverno or sigstore policy-controller API or"
                " webhook, and the apiserver does not serve ValidatingAdmissionPolicy in"
                f" {ADMISSION}"
            )
        t.log("policy engines present: " + "; ".join(found))
        if not self.user_policy and not vap:
            t.fail(
                "no --image-policy was named and the apiserver does not serve"
                " ValidatingAdmissionPolicy, kaic's built-in engine: name the platform's policy"
                " (--image-policy, --image-policy-*-image) to test " + ", ".join(found)
            )

    # -- the policy ----------------------------------------------------------------------
    def install(self, t: Subtest) -> None:
        if self.user_policy:
            self.evidence["policy"] = {"source": "platform", "name": self.user_policy}
            t.log(
                f"testing the platform's policy {self.user_policy!r} in namespace {self.ns};"
                " kaic installs nothing"
            )
            return
        bad = [p for p in self.prefixes if not _PREFIX.match(p)]
        if bad:
            t.error(
                f"--image-policy-allowed-registries: {', '.join(map(repr, bad))} is not an"
                " image prefix (letters, digits and . _ : / @ - only)"
            )
        for obj in builtin_policy(self.policy_name, self.ns, self.prefixes):
            try:
                self.installed.append(self.c.create(obj))
            except PermissionDeniedError:
                raise
            except ClusterError as e:
                t.fail(f"kaic's {obj['kind']} {self.policy_name} was not accepted: {e}")
        self.evidence["policy"] = {
            "source": "kaic (built-in engine: ValidatingAdmissionPolicy)",
            "name": self.policy_name,
            "allowed_registries": self.prefixes,
            "scope": f"namespace {self.ns}",
        }
        t.log(
            f"kaic installed ValidatingAdmissionPolicy {self.policy_name} and its binding,"
            f" scoped to namespace {self.ns}, allowing images from {', '.join(self.prefixes)}"
        )

    def _admit(self, name: str, image: str) -> tuple[bool, str]:
        """(admitted, the apiserver's message) for a dry-run pod with ``image``."""
        try:
            self.c.create(probe_pod(name, self.ns, image), dry_run=True)
        except (RejectedError, PermissionDeniedError) as e:
            if denied_by(str(e)) is None:
                raise
            return False, str(e)
        return True, ""

    def violating_denied(self, t: Subtest) -> None:
        timeout = self.ctx.budget(self.ctx.float_option("image-policy-timeout"))
        outcome: dict[str, Any] = {}

        def denied() -> bool:
            admitted, message = self._admit("kaic-image-policy-violating", self.violating)
            outcome.update(admitted=admitted, message=message)
            return not admitted

        try:
            poll(self.ctx, timeout, denied, interval=1.0, errors=())
        except RejectedError as e:
            t.error(f"the violating pod was refused, but not by an admission policy: {e}")
        self.evidence["violating"] = outcome
        if outcome.get("admitted"):
            whose = (
                f"the platform's policy {self.user_policy!r}"
                if self.user_policy
                else f"kaic's ValidatingAdmissionPolicy {self.policy_name}"
            )
            t.fail(
                f"a pod with image {self.violating} was admitted in namespace {self.ns} for"
                f" {timeout:.0f}s despite {whose}: no policy engine enforces it at admission"
            )
        message = str(outcome.get("message", ""))
        by = denied_by(message)
        self.evidence["denied_by"] = by
        ours = not self.user_policy and by == f"ValidatingAdmissionPolicy {self.policy_name}"
        t.log(f"denied at admission by {by}: {message}")
        if ours:
            t.log(
                "this shows the apiserver's built-in engine enforces an image allow-list that"
                " kaic installed; it does not show that the platform enforces a policy of its"
                " own (name that with --image-policy)"
            )

    def compliant_admitted(self, t: Subtest) -> None:
        try:
            admitted, message = self._admit("kaic-image-policy-compliant", self.compliant)
        except RejectedError as e:
            t.error(f"the compliant pod was refused, but not by an admission policy: {e}")
        self.evidence["compliant"] = {"admitted": admitted, "message": message}
        if not admitted:
            t.fail(
                f"a pod with the compliant image {self.compliant} was denied too"
                f" ({denied_by(message)}: {message}): the policy does not tell images apart"
            )
        t.log(f"a pod with image {self.compliant} was admitted (server-side dry-run)")

    def signatures(self, t: Subtest) -> None:
        found = self.evidence.get("signature_verification") or []
        if not found:
            t.skip(
                "no signature-verifying admission (sigstore policy-controller, Kyverno"
                " verifyImages, Gatekeeper external data) is visible; attach the platform's"
                " evidence that unsigned images or model artifacts are refused"
            )
        t.skip(
            f"detected {', '.join(found)}; kaic does not sign images: attach the platform's"
            " evidence that an unsigned image is denied"
        )

    def cleanup(self) -> None:
        for obj in reversed(self.installed):
            try:
                self.c.delete(obj["apiVersion"], obj["kind"], name_of(obj), wait_timeout=30)
            except ClusterError as e:
                self.ctx.log(f"could not delete {obj['kind']} {name_of(obj)}: {e}")

    def keep_evidence(self) -> None:
        self.ctx.evidence(
            "policy.json", json.dumps(self.evidence, indent=2, default=str), "application/json"
        )
        denial = (self.evidence.get("violating") or {}).get("message")
        if denial:
            self.ctx.evidence("denial.txt", f"{denial}\n")


@check(
    "ext_supply_chain_policy",
    test="TestExtSupplyChainPolicy",
    locks=(),
    options=OPTIONS,
    permissions=(
        Permission("create", "pods"),
        Permission(
            "list", "validatingwebhookconfigurations", "admissionregistration.k8s.io", False
        ),
        Permission("create", "validatingadmissionpolicies", "admissionregistration.k8s.io", False),
        Permission(
            "create", "validatingadmissionpolicybindings", "admissionregistration.k8s.io", False
        ),
        Permission("delete", "validatingadmissionpolicies", "admissionregistration.k8s.io", False),
        Permission(
            "delete", "validatingadmissionpolicybindings", "admissionregistration.k8s.io", False
        ),
    ),
    timeout_s=120.0,
)
def ext_supply_chain_policy(ctx: CheckContext) -> None:
    """A pod whose image comes from a registry outside the policy's allow-list is denied
    at admission while a pod with a compliant image is admitted."""
    run = _Run(ctx)
    try:
        ctx.step("PolicyEngineDetected", run.detect)
        ctx.step("ImagePolicyInPlace", run.install, needs=("PolicyEngineDetected",))
        ctx.step("ViolatingImageDenied", run.violating_denied, needs=("ImagePolicyInPlace",))
        ctx.step("CompliantImageAdmitted", run.compliant_admitted, needs=("ViolatingImageDenied",))
        ctx.step("SignatureVerification", run.signatures, needs=("PolicyEngineDetected",))
    finally:
        run.cleanup()
        run.keep_evidence()
