"""ai_inference against the fake cluster."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from kaic.checks.ai_inference import acceptance_interval, binomial_p_value
from kaic.cluster.api import ExecResult
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
    fake.serve("discovery.k8s.io/v1", ("endpointslices", "EndpointSlice", True))


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


def _true(*types: str) -> list[dict[str, str]]:
    return [{"type": t, "status": "True", "reason": t} for t in types]


class Implementation:
    """A Gateway API implementation on the fake cluster: kubelet and endpoint controller
    for the check's pods, status for Gateways and routes, and a data plane behind
    ``exec`` in the client pod. Each knob breaks one part of it."""

    def __init__(
        self,
        fake: FakeCluster,
        *,
        canary_every: int = 10,
        honour_header: bool = True,
        program: bool = True,
        endpoints: bool = True,
        fail_every: int = 0,
    ) -> None:
        self.fake = fake
        self.canary_every = canary_every
        self.honour_header = honour_header
        self.program = program
        self.endpoints = endpoints
        self.fail_every = fail_every
        self.served = 0
        self.commands: list[str] = []
        fake.controllers.append(self.reconcile)
        fake.exec_handler = self.exec

    def reconcile(self, fake: FakeCluster) -> None:
        for (av, kind, ns, name), obj in list(fake.store.items()):
            if av == "v1" and kind == "Pod" and "status" not in obj:
                obj["status"] = {"phase": "Running", "conditions": _true("Ready")}
            if av == "v1" and kind == "Service" and self.endpoints:
                key = ("discovery.k8s.io/v1", "EndpointSlice", ns, f"{name}-x")
                if key not in fake.store:
                    fake.add(
                        {
                            "apiVersion": "discovery.k8s.io/v1",
                            "kind": "EndpointSlice",
                            "metadata": {
                                "name": f"{name}-x",
                                "namespace": ns,
                                "labels": {"kubernetes.io/service-name": name},
                            },
                            "endpoints": [
                                {"addresses": ["198.18.0.9"], "conditions": {"ready": True}}
                            ],
                        }
                    )
            if av == GW and kind == "Gateway" and self.program and "status" not in obj:
                obj["status"] = {
                    "addresses": [{"type": "IPAddress", "value": "198.18.7.1"}],
                    "conditions": _true("Accepted", "Programmed"),
                }
            if av == GW and kind == "HTTPRoute" and "status" not in obj:
                obj["status"] = {
                    "parents": [
                        {
                            "parentRef": {"name": "kaic-inference-gateway"},
                            "controllerName": "example.com/gateway",
                            "conditions": _true("Accepted", "ResolvedRefs"),
                        }
                    ]
                }

    def exec(
        self, namespace: str, pod: str, command: Sequence[str], container: str | None
    ) -> ExecResult:
        script = command[-1]
        self.commands.append(script)
        assert pod == "kaic-inference-client"
        assert "http://198.18.7.1:80/hostname" in script
        requests = int(script.split("-lt ")[1].split(" ")[0])
        headed = "X-Gateway-Model-Name: llama-3-8b-instruct" in script
        lines = []
        for _ in range(requests):
            self.served += 1
            if self.fail_every and self.served % self.fail_every == 0:
                lines.append("no available server 503")
            elif (headed and self.honour_header) or self.served % self.canary_every == 0:
                lines.append("kaic-model-canary 200")
            else:
                lines.append("kaic-model-stable 200")
        return ExecResult("\n".join(lines) + "\n", "", 0)


def _run(fake: FakeCluster, options: dict[str, str | None] | None = None) -> CheckResult:
    return run_fake_check(
        fake, "ai_inference", options=options, run_id="r1", namespace="kaic-ns", timeout=300.0
    )


def _sub(result: CheckResult, name: str) -> tuple[Outcome, str]:
    s = next(s for s in result.subresults if s.name == name)
    return s.outcome, s.reason


def test_passes_with_the_kinds_served_a_class_accepted_and_traffic_split_and_routed() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("envoy", "True"))
    impl = Implementation(fake)
    result = _run(fake)
    assert result.outcome is Outcome.PASS, result.reason
    route = next(args for call, args in fake.calls if call == "create")
    assert route == ("HTTPRoute", "kaic-inference-r1", True)
    assert [s.name for s in result.subresults] == [
        "GatewayAPIServed",
        "WeightedHeaderRouteAccepted",
        "GatewayClassAccepted",
        "BackendsReady",
        "BackendEndpointsPublished",
        "GatewayProgrammed",
        "HTTPRouteAccepted",
        "WeightedSplitObserved",
        "HeaderRoutedToModel",
    ]
    evidence = {e.name: e.content for e in result.evidence}
    assert "weight: 90" in evidence["httproute-dry-run.yaml"]
    assert "X-Gateway-Model-Name" in evidence["httproute-dry-run.yaml"]
    assert "envoy" in evidence["gatewayclasses.yaml"]
    traffic = json.loads(evidence["traffic.json"])
    assert traffic["gateway_class"] == "envoy"
    assert traffic["gateway_address"] == "http://198.18.7.1:80"
    assert traffic["weighted"]["by_backend"] == {"kaic-model-canary": 20, "kaic-model-stable": 180}
    assert traffic["weighted"]["accepted_canary_counts"] == list(acceptance_interval(200, 0.1))
    assert traffic["header_matched"]["by_backend"]["kaic-model-canary"] == 20
    assert traffic["route_status"]["parents"][0]["parentRef"]["name"] == "kaic-inference-gateway"
    assert "ResolvedRefs" in evidence["httproute.yaml"]
    assert "Programmed" in evidence["gateway.yaml"]
    # the requests went from the client pod to the Gateway's status address
    assert any("-H 'X-Gateway-Model-Name: llama-3-8b-instruct'" in c for c in impl.commands)
    kinds = {args[0] for call, args in fake.calls if call == "create" and not args[2]}
    assert kinds == {"Pod", "Service", "Gateway", "HTTPRoute"}


def test_fails_with_a_clear_reason_when_the_gateway_api_is_not_installed() -> None:
    result = _run(FakeCluster())
    assert result.outcome is Outcome.FAIL
    assert _sub(result, "GatewayAPIServed") == (
        Outcome.FAIL,
        "the API server does not serve gateway.networking.k8s.io/v1"
        " (no Gateway API CRDs installed)",
    )
    assert _sub(result, "WeightedSplitObserved")[0] is Outcome.SKIP


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
    Implementation(fake)

    def drop_weights(obj: dict[str, Any], dry_run: bool) -> None:
        if dry_run:
            for b in obj["spec"]["rules"][0]["backendRefs"]:
                b.pop("weight")

    fake.on_create.append(drop_weights)
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    assert "weights came back as (None, None)" in result.reason


def test_the_gateway_api_without_any_gateway_class_fails_instead_of_passing() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    outcome, reason = _sub(result, "GatewayClassAccepted")
    assert outcome is Outcome.FAIL and "no GatewayClass exists" in reason
    # the API-only verdict stays visible on its own
    assert _sub(result, "GatewayAPIServed")[0] is Outcome.PASS
    assert _sub(result, "WeightedHeaderRouteAccepted")[0] is Outcome.PASS
    for name in ("BackendsReady", "GatewayProgrammed"):
        assert _sub(result, name) == (Outcome.SKIP, "needs GatewayClassAccepted, which failed")
    for name in ("HTTPRouteAccepted", "WeightedSplitObserved", "HeaderRoutedToModel"):
        assert _sub(result, name)[0] is Outcome.SKIP
    assert not [c for c, args in fake.calls if c == "create" and not args[2]]


def test_classes_that_no_controller_accepted_fail_with_their_state() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("orphan", None))
    fake.add(_gateway_class("pending", "Unknown"))
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    outcome, reason = _sub(result, "GatewayClassAccepted")
    assert outcome is Outcome.FAIL
    assert "orphan [controller example.com/gateway, Accepted missing]" in reason
    assert "pending [controller example.com/gateway, Accepted=Unknown (Pending)]" in reason


def test_a_named_gateway_class_must_exist_and_be_accepted() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("aaa", "True"))
    fake.add(_gateway_class("envoy", "True"))
    Implementation(fake)
    named = _run(fake, {"gateway-class": "envoy"})
    assert named.outcome is Outcome.PASS, named.reason
    gw = next(o for k, o in fake.store.items() if k[1] == "Gateway")
    assert gw["spec"]["gatewayClassName"] == "envoy"
    missing = _run(FakeCluster(), {"gateway-class": "istio"})
    assert missing.outcome is Outcome.FAIL
    fake2 = FakeCluster()
    _serve_gateway(fake2)
    missing = _run(fake2, {"gateway-class": "istio"})
    assert "GatewayClass istio does not exist" in missing.reason


def test_an_even_split_fails_the_weighted_test_with_counts_and_p_value() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("envoy", "True"))
    Implementation(fake, canary_every=2)
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    outcome, reason = _sub(result, "WeightedSplitObserved")
    assert outcome is Outcome.FAIL
    assert "kaic-model-stable 100, kaic-model-canary 100 of 200" in reason
    low, high = acceptance_interval(200, 0.1)
    assert f"accepted: {low}..{high} requests to kaic-model-canary" in reason
    assert _sub(result, "HeaderRoutedToModel")[0] is Outcome.PASS


def test_ignoring_the_model_header_fails_header_routing() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("envoy", "True"))
    Implementation(fake, honour_header=False)
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    outcome, reason = _sub(result, "HeaderRoutedToModel")
    assert outcome is Outcome.FAIL
    assert reason.startswith(
        "18 of 20 requests with X-Gateway-Model-Name: llama-3-8b-instruct did not reach"
        " kaic-model-canary"
    )
    assert _sub(result, "WeightedSplitObserved")[0] is Outcome.PASS


def test_a_configured_model_header_is_the_one_routed_on() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("envoy", "True"))
    impl = Implementation(fake)
    result = _run(fake, {"inference-model-header": "X-Model", "inference-requests": "50"})
    # the fake data plane only honours X-Gateway-Model-Name: the configured one is sent
    assert result.outcome is Outcome.FAIL
    assert any("-H 'X-Model: llama-3-8b-instruct'" in c for c in impl.commands)
    route = next(o for k, o in fake.store.items() if k[1] == "HTTPRoute")
    assert route["spec"]["rules"][0]["matches"][0]["headers"][0]["name"] == "X-Model"


def test_a_gateway_that_is_never_programmed_fails_naming_the_condition() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("envoy", "True"))
    Implementation(fake, program=False)
    result = run_fake_check(fake, "ai_inference", run_id="r1", namespace="kaic-ns", timeout=3)
    assert result.outcome is Outcome.FAIL
    outcome, reason = _sub(result, "GatewayProgrammed")
    assert outcome is Outcome.FAIL
    assert reason == (
        "Gateway kaic-inference-gateway of class envoy (listener HTTP port 80) is not"
        " Programmed with an address: Accepted missing, Programmed missing; no status address"
    )
    assert _sub(result, "HTTPRouteAccepted")[1] == "needs GatewayProgrammed, which failed"


def test_services_without_endpoints_fail_before_any_traffic_is_sent() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("envoy", "True"))
    impl = Implementation(fake, endpoints=False)
    result = run_fake_check(fake, "ai_inference", run_id="r1", namespace="kaic-ns", timeout=3)
    assert result.outcome is Outcome.FAIL
    outcome, reason = _sub(result, "BackendEndpointsPublished")
    assert outcome is Outcome.FAIL
    assert reason.startswith("Service kaic-model-stable has no ready endpoint")
    assert _sub(result, "GatewayProgrammed")[0] is Outcome.PASS
    assert _sub(result, "HTTPRouteAccepted")[0] is Outcome.PASS
    assert _sub(result, "WeightedSplitObserved")[1] == (
        "needs BackendEndpointsPublished, which failed"
    )
    assert impl.commands == []


def test_requests_that_reach_no_backend_fail_the_split() -> None:
    fake = FakeCluster()
    _serve_gateway(fake)
    fake.add(_gateway_class("envoy", "True"))
    Implementation(fake, fail_every=50)
    result = _run(fake)
    outcome, reason = _sub(result, "WeightedSplitObserved")
    assert outcome is Outcome.FAIL
    assert reason.startswith("4 of 200 requests through http://198.18.7.1:80 reached no backend")
    assert "no available server 503" in reason


def test_binomial_p_value_matches_known_values() -> None:
    # P(X = 0) for n = 10, p = 0.5 on each tail
    assert binomial_p_value(0, 10, 0.5) == pytest.approx(2 / 1024)
    assert binomial_p_value(5, 10, 0.5) == pytest.approx(1.0)
    # exactly the expected count is never rejected; all-stable is, overwhelmingly
    assert binomial_p_value(20, 200, 0.1) == pytest.approx(1.0)
    assert binomial_p_value(0, 200, 0.1) < 1e-8
    assert binomial_p_value(100, 200, 0.1) < 1e-30


def test_acceptance_interval_for_the_default_sample() -> None:
    low, high = acceptance_interval(200, 0.1)
    assert (low, high) == (8, 35)  # as docs/checks.md states
    assert binomial_p_value(low - 1, 200, 0.1) < 0.001 <= binomial_p_value(low, 200, 0.1)
    assert binomial_p_value(high + 1, 200, 0.1) < 0.001 <= binomial_p_value(high, 200, 0.1)
