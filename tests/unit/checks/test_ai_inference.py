"""ai_inference against the fake cluster."""

from __future__ import annotations

from typing import Any

from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

GW = "gateway.networking.k8s.io/v1"


def _serve_gateway(fake: FakeCluster) -> None:
    fake.serve(
        GW,
        ("gatewayclasses", "GatewayClass", False),
        ("gateways", "Gateway", True),
        ("httproutes", "HTTPRoute", True),
        ("grpcroutes", "GRPCRoute", True),
        ("referencegrants", "ReferenceGrant", True),
    )


def _gateway_class(name: str, accepted: str | None) -> dict[str, Any]:
    gc: dict[str, Any] = {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": "example.com/gateway"},
    }
    if accepted:
        gc["status"] = {
            "conditions": [
                {
                    "type": "Accepted",
                    "status": accepted,
                    "reason": "Accepted" if accepted == "True" else "Pending",
                }
            ]
        }
    return gc


def _run(fake: FakeCluster, options: dict[str, str | None] | None = None) -> CheckResult:
    return run_fake_check(
        fake, "ai_inference", options=options, run_id="r1", namespace="kaic-ns", timeout=300.0
    )


def _sub(result: CheckResult, name: str) -> tuple[Outcome, str]:
    s = next(s for s in result.subresults if s.name == name)
    return s.outcome, s.reason


def test_passes_with_the_kinds_served_a_route_accepted_and_a_class_accepted() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("envoy", "True"))
    result = _run(fake)
    assert result.outcome is Outcome.PASS, result.reason
    route = next(args for call, args in fake.calls if call == "create")
    assert route == ("HTTPRoute", "kaic-inference-r1", True)
    evidence = {e.name: e.content for e in result.evidence}
    assert "weight: 90" in evidence["httproute-dry-run.yaml"]
    assert "X-Gateway-Model-Name" in evidence["httproute-dry-run.yaml"]
    assert "envoy" in evidence["gatewayclasses.yaml"]


def test_fails_with_a_clear_reason_when_the_gateway_api_is_not_installed() -> None:
    result = _run(FakeCluster())
    assert result.outcome is Outcome.FAIL
    assert _sub(result, "GatewayAPIServed") == (
        Outcome.FAIL,
        "the API server does not serve gateway.networking.k8s.io/v1"
        " (no Gateway API CRDs installed)",
    )


def test_fails_naming_a_kind_missing_from_the_standard_channel() -> None:
    fake = FakeCluster()
    fake.serve(
        GW,
        ("gatewayclasses", "GatewayClass", False),
        ("gateways", "Gateway", True),
        ("httproutes", "HTTPRoute", True),
    )
    fake.add(_gateway_class("envoy", "True"))
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    assert "does not serve GRPCRoute, ReferenceGrant" in result.reason


def test_fails_when_the_server_drops_the_backend_weights() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("envoy", "True"))

    def drop_weights(obj: dict[str, Any], dry_run: bool) -> None:
        for b in obj["spec"]["rules"][0]["backendRefs"]:
            b.pop("weight")

    fake.on_create.append(drop_weights)
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    assert "weights came back as (None, None)" in result.reason


def test_no_gateway_class_at_all_is_a_skipped_subresult_not_a_pass_of_it() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    result = _run(fake)
    assert result.outcome is Outcome.PASS
    outcome, reason = _sub(result, "GatewayClassAccepted")
    assert outcome is Outcome.SKIP and "no GatewayClass exists" in reason


def test_classes_that_no_controller_accepted_fail_with_their_state() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("orphan", None))
    fake.add(_gateway_class("pending", "Unknown"))
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    outcome, reason = _sub(result, "GatewayClassAccepted")
    assert outcome is Outcome.FAIL
    assert "orphan [controller example.com/gateway, no Accepted condition]" in reason
    assert "pending [controller example.com/gateway, Accepted=Unknown (Pending)]" in reason


def test_a_named_gateway_class_must_exist_and_be_accepted() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("envoy", "True"))
    assert _run(fake, {"gateway-class": "envoy"}).outcome is Outcome.PASS
    missing = _run(fake, {"gateway-class": "istio"})
    assert missing.outcome is Outcome.FAIL and "GatewayClass istio does not exist" in missing.reason
