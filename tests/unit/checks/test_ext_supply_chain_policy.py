"""ext_supply_chain_policy against the fake cluster: a fake admission step stands in for
the apiserver's ValidatingAdmissionPolicy (reading the allow-list from kaic's policy) or a
platform's webhook; each way the procedure can end."""

from __future__ import annotations

import json
import re
from typing import Any

from kaic.checks.ext_supply_chain_policy import (
    COMPLIANT_IMAGE,
    VIOLATING_IMAGE,
    builtin_policy,
    denied_by,
)
from kaic.errors import RejectedError
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

NS = "kaic-t"
ADMISSION = "admissionregistration.k8s.io/v1"
FAST = {"image-policy-timeout": "0.3"}


def _fake(*, vap: bool = True, enforce: bool = True) -> FakeCluster:
    fake = FakeCluster()
    fake.serve(
        ADMISSION, ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False)
    )
    if vap:
        fake.serve(
            ADMISSION,
            ("validatingadmissionpolicies", "ValidatingAdmissionPolicy", False),
            ("validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", False),
        )

    def admission(obj: dict[str, Any], dry_run: bool) -> None:
        """The apiserver's ValidatingAdmissionPolicy plugin, for kaic's kind of policy."""
        if obj["kind"] != "Pod" or not enforce:
            return
        ns = obj["metadata"]["namespace"]
        for (av, kind, _, name), b in list(fake.store.items()):
            if kind != "ValidatingAdmissionPolicyBinding":
                continue
            selected = b["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]
            if selected.get("kubernetes.io/metadata.name") != ns:
                continue
            policy = fake.store[(av, "ValidatingAdmissionPolicy", None, b["spec"]["policyName"])]
            expr = policy["spec"]["validations"][0]["expression"]
            allowed = json.loads(re.search(r"(\[[^\]]*\])\.exists", expr).group(1))  # type: ignore[union-attr]
            images = [c["image"] for c in obj["spec"]["containers"]]
            bad = [i for i in images if not any(i.startswith(p) for p in allowed)]
            if bad:
                raise RejectedError(
                    f'pods "{obj["metadata"]["name"]}" is invalid: ValidatingAdmissionPolicy'
                    f" '{policy['metadata']['name']}' with binding '{name}' denied request:"
                    f" image {', '.join(bad)} is not from an allowed registry"
                )

    fake.on_create.append(admission)
    return fake


def _sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


def _evidence(result: CheckResult, name: str) -> str:
    return next(e.content for e in result.evidence if e.name == name)


def test_passes_with_kaics_own_policy_denying_the_violating_image() -> None:
    fake = _fake()
    result = run_fake_check(fake, "ext_supply_chain_policy", options=FAST)
    assert result.outcome is Outcome.PASS, result.reason
    assert _sub(result, "ViolatingImageDenied").outcome is Outcome.PASS
    assert _sub(result, "CompliantImageAdmitted").outcome is Outcome.PASS
    assert _sub(result, "SignatureVerification").outcome is Outcome.SKIP
    assert "denied request" in _evidence(result, "denial.txt")
    doc = json.loads(_evidence(result, "policy.json"))
    assert doc["policy"]["source"].startswith("kaic (built-in engine")
    assert doc["denied_by"] == f"ValidatingAdmissionPolicy kaic-image-policy-{NS}"
    log = "\n".join(result.log)
    assert "it does not show that the platform enforces a policy of its own" in log
    # dry-run only, and kaic's policy is removed afterwards
    assert not [k for k in fake.store if k[1] in ("Pod", "ValidatingAdmissionPolicy")]
    assert ("Pod", "kaic-image-policy-violating", True) in [c[1] for c in fake.calls]


def test_fails_when_the_policy_api_is_served_but_nothing_enforces_it() -> None:
    result = run_fake_check(_fake(enforce=False), "ext_supply_chain_policy", options=FAST)
    assert result.outcome is Outcome.FAIL
    reason = _sub(result, "ViolatingImageDenied").reason
    assert f"a pod with image {VIOLATING_IMAGE} was admitted" in reason
    assert "no policy engine enforces it at admission" in reason
    assert _sub(result, "CompliantImageAdmitted").outcome is Outcome.SKIP


def test_fails_without_any_policy_engine() -> None:
    result = run_fake_check(_fake(vap=False), "ext_supply_chain_policy", options=FAST)
    assert result.outcome is Outcome.FAIL
    assert "no policy engine" in _sub(result, "PolicyEngineDetected").reason


def test_detects_kyverno_and_tests_the_platforms_named_policy() -> None:
    fake = _fake(vap=False)
    fake.serve("kyverno.io/v1", ("clusterpolicies", "ClusterPolicy", False))
    fake.add(
        {
            "apiVersion": ADMISSION,
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "kyverno-resource-validating-webhook-cfg"},
        }
    )

    def kyverno(obj: dict[str, Any], dry_run: bool) -> None:
        if obj["kind"] == "Pod" and not obj["spec"]["containers"][0]["image"].startswith(
            "ghcr.io/acme/"
        ):
            raise RejectedError(
                'admission webhook "validate.kyverno.svc-fail" denied the request: policy'
                " restrict-registries: images must come from ghcr.io/acme/"
            )

    fake.on_create.append(kyverno)
    result = run_fake_check(
        fake,
        "ext_supply_chain_policy",
        options={
            **FAST,
            "image-policy": "Kyverno ClusterPolicy restrict-registries",
            "image-policy-compliant-image": "ghcr.io/acme/model-server:1.2",
            "image-policy-violating-image": "docker.io/someone/model-server:1.2",
        },
    )
    assert result.outcome is Outcome.PASS, result.reason
    doc = json.loads(_evidence(result, "policy.json"))
    assert any(e.startswith("Kyverno (API group kyverno.io") for e in doc["engines"])
    assert doc["denied_by"] == "admission webhook validate.kyverno.svc-fail"
    assert doc["signature_verification"] == ["Kyverno verifyImages rules"]
    assert "restrict-registries" in _evidence(result, "denial.txt")
    assert not [c for c in fake.calls if c[1][0] == "ValidatingAdmissionPolicy"]


def test_without_a_named_policy_and_without_the_builtin_engine_it_fails_naming_the_engine() -> None:
    fake = _fake(vap=False)
    fake.serve("templates.gatekeeper.sh/v1", ("constrainttemplates", "ConstraintTemplate", False))
    result = run_fake_check(fake, "ext_supply_chain_policy", options=FAST)
    assert result.outcome is Outcome.FAIL
    reason = _sub(result, "PolicyEngineDetected").reason
    assert "no --image-policy was named" in reason and "OPA Gatekeeper" in reason


def test_fails_when_the_compliant_image_is_denied_too() -> None:
    result = run_fake_check(
        _fake(),
        "ext_supply_chain_policy",
        options={**FAST, "image-policy-allowed-registries": "ghcr.io/nobody/"},
    )
    assert result.outcome is Outcome.FAIL
    reason = _sub(result, "CompliantImageAdmitted").reason
    assert f"compliant image {COMPLIANT_IMAGE} was denied too" in reason


def test_a_refusal_that_is_not_an_admission_denial_is_an_error() -> None:
    fake = _fake(enforce=False)

    def schema(obj: dict[str, Any], dry_run: bool) -> None:
        if obj["kind"] == "Pod":
            raise RejectedError('Pod "x" is invalid: spec.containers[0].image: Required value')

    fake.on_create.append(schema)
    result = run_fake_check(fake, "ext_supply_chain_policy", options=FAST)
    assert result.outcome is Outcome.ERROR
    assert "not by an admission policy" in _sub(result, "ViolatingImageDenied").reason


def test_a_bad_registry_prefix_is_an_error_before_anything_is_installed() -> None:
    fake = _fake()
    result = run_fake_check(
        fake, "ext_supply_chain_policy", options={"image-policy-allowed-registries": "a' + 'b"}
    )
    assert result.outcome is Outcome.ERROR
    assert "is not an image prefix" in _sub(result, "ImagePolicyInPlace").reason
    assert not [c for c in fake.calls if c[1][0] == "ValidatingAdmissionPolicy"]


def test_denials_are_told_apart_from_other_refusals() -> None:
    assert denied_by("ValidatingAdmissionPolicy 'p' with binding 'b' denied request: x") == (
        "ValidatingAdmissionPolicy p"
    )
    assert denied_by('admission webhook "w.example" denied the request: no') == (
        "admission webhook w.example"
    )
    assert denied_by("pods is forbidden: User cannot create") is None


def test_the_builtin_policy_is_scoped_to_one_namespace_and_checks_every_container() -> None:
    policy, binding = builtin_policy("p", "ns-a", ["registry.k8s.io/", "ghcr.io/x/"])
    expr = policy["spec"]["validations"][0]["expression"]
    assert "object.spec.containers.all" in expr and "object.spec.initContainers.all" in expr
    assert '["registry.k8s.io/", "ghcr.io/x/"]' in expr
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "ns-a"}
    }
