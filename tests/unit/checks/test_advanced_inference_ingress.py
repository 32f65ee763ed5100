"""advanced_inference_ingress against the fake cluster."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kaic.checks import REGISTRY, load_builtin_checks
from kaic.checks.advanced_inference_ingress import binomial_lower_tail
from kaic.cluster.api import ExecResult
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

GW = "gateway.networking.k8s.io/v1"
POOL = "inference.networking.k8s.io/v1"
IDLE, BUSY = "kaic-aii-sim-idle", "kaic-aii-sim-busy"
NS = "kaic-ns"
SUBTESTS = [
    "InferenceAPIServed",
    "GatewayClassAccepted",
    "ModelServersReady",
    "PoolAcceptedByGateway",
    "RequestsReachPool",
    "PickerFollowsMetrics",
]


def _serve(fake: FakeCluster, *, pool: bool = True, gateway: bool = True) -> None:
    if gateway:
        fake.serve(
            GW,
            ("gatewayclasses", "GatewayClass", False),
            ("gateways", "Gateway", True),
            ("httproutes", "HTTPRoute", True),
        )
    if pool:
        fake.serve(POOL, ("inferencepools", "InferencePool", True))
    fake.serve(
        "rbac.authorization.k8s.io/v1",
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    )
    fake.serve("v1", ("serviceaccounts", "ServiceAccount", True))


def _class(name: str, accepted: str = "True") -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": "example.com/igw"},
        "status": {"conditions": [{"type": "Accepted", "status": accepted, "reason": "R"}]},
    }


def _true(*types: str) -> list[dict[str, str]]:
    return [{"type": t, "status": "True", "reason": t} for t in types]


class InferenceGateway:
    """An inference gateway on the fake cluster: pods become Ready, the Gateway is
    programmed, the route and pool get status, and ``exec`` in the client pod plays the
    data plane with its picker. Each knob breaks one part of it."""

    def __init__(
        self,
        fake: FakeCluster,
        *,
        ready: bool = True,
        route_refs: tuple[str, str] | None = ("True", "ResolvedRefs"),
        pool_status: bool = True,
        reach: bool = True,
        busy_every: int = 0,
    ) -> None:
        self.fake = fake
        self.ready = ready
        self.route_refs = route_refs
        self.pool_status = pool_status
        self.reach = reach
        self.busy_every = busy_every
        self.served = 0
        self.scripts: list[str] = []
        fake.controllers.append(self.reconcile)
        fake.exec_handler = self.exec

    def reconcile(self, fake: FakeCluster) -> None:
        for (av, kind, _ns, _name), obj in list(fake.store.items()):
            if av == "v1" and kind == "Pod" and "status" not in obj and self.ready:
                obj["status"] = {"phase": "Running", "conditions": _true("Ready")}
            if av == GW and kind == "Gateway" and "status" not in obj:
                obj["status"] = {
                    "addresses": [{"type": "IPAddress", "value": "198.18.7.1"}],
                    "conditions": _true("Accepted", "Programmed"),
                }
            if av == GW and kind == "HTTPRoute" and "status" not in obj and self.route_refs:
                status, reason = self.route_refs
                obj["status"] = {
                    "parents": [
                        {
                            "parentRef": {"kind": "Gateway", "name": "kaic-aii-gateway"},
                            "controllerName": "example.com/igw",
                            "conditions": [
                                *_true("Accepted"),
                                {"type": "ResolvedRefs", "status": status, "reason": reason},
                            ],
                        }
                    ]
                }
            if av == POOL and kind == "InferencePool" and "status" not in obj and self.pool_status:
                obj["status"] = {
                    "parents": [
                        {
                            "parentRef": {"kind": "Gateway", "name": "kaic-aii-gateway"},
                            "conditions": _true("Accepted", "ResolvedRefs"),
                        }
                    ]
                }

    def exec(
        self, namespace: str, pod: str, command: Sequence[str], container: str | None
    ) -> ExecResult:
        script = command[-1]
        self.scripts.append(script)
        assert pod == "kaic-aii-client"
        assert "http://198.18.7.1:80/v1/completions" in script
        assert '"model": "kaic/sim-model"' in script
        requests = int(script.split("-lt ")[1].split(" ")[0])
        lines = []
        for _ in range(requests):
            self.served += 1
            if not self.reach:
                lines.append("- 503")
            elif self.busy_every and self.served % self.busy_every == 0:
                lines.append(f"{BUSY} 200")
            else:
                lines.append(f"{IDLE} 200")
        return ExecResult("\n".join(lines) + "\n", "", 0)


def _run(fake: FakeCluster, options: dict[str, str | None] | None = None) -> CheckResult:
    opts: dict[str, str | None] = {"inference-status-timeout": "0.3", **(options or {})}
    return run_fake_check(
        fake,
        "advanced_inference_ingress",
        options=opts,
        namespace=NS,
        timeout=120.0,
        catalog_version="1.37",
    )


def _sub(result: CheckResult, name: str) -> tuple[Outcome, str]:
    s = next(s for s in result.subresults if s.name == name)
    return s.outcome, s.reason


def _setup(**knobs: Any) -> tuple[FakeCluster, InferenceGateway]:
    fake = FakeCluster()
    _serve(fake)
    fake.add(_class("igw"))
    return fake, InferenceGateway(fake, **knobs)


def test_passes_when_the_gateway_routes_to_the_pool_and_the_picker_avoids_the_busy_pod() -> None:
    fake, gw = _setup()
    result = _run(fake)
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.name for s in result.subresults] == SUBTESTS
    created = {(args[0], args[1]) for call, args in fake.calls if call == "create"}
    assert {
        ("InferencePool", "kaic-aii-pool"),
        ("Gateway", "kaic-aii-gateway"),
        ("HTTPRoute", "kaic-aii-route"),
        ("Pod", "kaic-aii-epp"),
        ("Role", "kaic-aii-epp"),
        ("RoleBinding", "kaic-aii-epp"),
        ("ServiceAccount", "kaic-aii-epp"),
    } <= created
    route = fake.store[(GW, "HTTPRoute", NS, "kaic-aii-route")]
    ref = route["spec"]["rules"][0]["backendRefs"][0]
    assert ref == {
        "group": "inference.networking.k8s.io",
        "kind": "InferencePool",
        "name": "kaic-aii-pool",
    }
    pool = fake.store[(POOL, "InferencePool", NS, "kaic-aii-pool")]
    assert pool["spec"]["endpointPickerRef"]["name"] == "kaic-aii-epp"
    busy = fake.store[("v1", "Pod", NS, BUSY)]["spec"]["containers"][0]
    assert "--fake-metrics" in busy["args"]
    assert json.loads(busy["args"][-1])["waiting-requests"] == 50
    epp = fake.store[("v1", "Pod", NS, "kaic-aii-epp")]["spec"]["containers"][0]
    assert f"--pool-namespace={NS}" in epp["args"] and "--pool-name=kaic-aii-pool" in epp["args"]
    traffic = json.loads(next(e.content for e in result.evidence if e.name == "traffic.json"))
    assert traffic["gateway_class"] == "igw"
    assert traffic["picker"]["by_backend"] == {BUSY: 0, IDLE: 20}
    assert traffic["reach_pool"]["failed"] == 0
    assert len(gw.scripts) == 3  # one warm-up request, then two batches


def test_fails_at_inference_api_served_without_the_extension_crds() -> None:
    fake = FakeCluster()
    _serve(fake, pool=False)
    fake.add(_class("igw"))
    InferenceGateway(fake)
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    assert _sub(result, "InferenceAPIServed") == (
        Outcome.FAIL,
        "the API server does not serve InferencePool in inference.networking.k8s.io/v1"
        " (the Gateway API Inference Extension's CRDs are not installed)",
    )
    assert all(_sub(result, n)[0] is Outcome.SKIP for n in SUBTESTS[1:])


def test_fails_naming_the_route_when_the_implementation_answers_invalid_kind() -> None:
    fake, _ = _setup(route_refs=("False", "InvalidKind"))
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    outcome, reason = _sub(result, "PoolAcceptedByGateway")
    assert outcome is Outcome.FAIL
    assert reason.startswith(f"HTTPRoute {NS}/kaic-aii-route: Accepted=True (Accepted),")
    assert "ResolvedRefs=False (InvalidKind)" in reason
    assert reason.endswith(
        "from controller example.com/igw: the Gateway implementation does not route to"
        " InferencePool"
    )
    assert _sub(result, "RequestsReachPool")[0] is Outcome.SKIP


def test_fails_when_no_controller_writes_route_status_within_the_wait() -> None:
    fake, _ = _setup(route_refs=None)
    outcome, reason = _sub(_run(fake), "PoolAcceptedByGateway")
    assert outcome is Outcome.FAIL
    assert reason.startswith(
        f"HTTPRoute {NS}/kaic-aii-route (backend InferencePool kaic-aii-pool):"
    )
    assert "no controller wrote a status for Gateway kaic-aii-gateway within 0s" in reason


def test_fails_naming_the_pool_when_no_gateway_accepts_it() -> None:
    fake, _ = _setup(pool_status=False)
    outcome, reason = _sub(_run(fake), "PoolAcceptedByGateway")
    assert outcome is Outcome.FAIL
    assert reason.startswith(f"InferencePool {NS}/kaic-aii-pool: no status.parents entry")


def test_fails_naming_the_pod_that_never_gets_ready() -> None:
    fake, _ = _setup(ready=False)
    outcome, reason = _sub(_run(fake), "ModelServersReady")
    assert outcome is Outcome.FAIL
    assert reason.startswith(
        f"pod {NS}/{IDLE} (image ghcr.io/llm-d/llm-d-inference-sim:v0.10.2) is not Ready"
    )


def test_fails_when_requests_through_the_gateway_reach_no_pool_pod() -> None:
    fake, _ = _setup(reach=False)
    result = _run(fake, {"inference-status-timeout": "0.3"})
    outcome, reason = _sub(result, "RequestsReachPool")
    assert outcome is Outcome.FAIL
    assert "reach no pod of InferencePool kaic-aii-pool" in reason
    assert "- 503" in reason
    assert _sub(result, "PickerFollowsMetrics")[0] is Outcome.SKIP


def test_fails_when_the_picker_spreads_requests_like_a_coin_toss() -> None:
    fake, _ = _setup(busy_every=2)
    result = _run(fake)
    outcome, reason = _sub(result, "PickerFollowsMetrics")
    assert outcome is Outcome.FAIL
    assert reason.startswith(
        "the endpoint picker kaic-aii-epp of InferencePool kaic-aii-pool sent 10 of 20"
        f" requests to {BUSY}"
    )
    assert _sub(result, "RequestsReachPool")[0] is Outcome.PASS


def test_is_manual_with_the_evidence_to_attach_when_no_gateway_class_exists() -> None:
    fake = FakeCluster()
    _serve(fake)
    result = _run(fake)
    assert result.outcome is Outcome.MANUAL
    assert result.reason.startswith("no GatewayClass exists")
    assert "kubectl get inferencepools -A -o yaml" in result.reason
    assert [s.name for s in result.subresults] == ["InferenceAPIServed"]


def test_fails_when_the_named_gateway_class_does_not_exist() -> None:
    fake, _ = _setup()
    outcome, reason = _sub(_run(fake, {"gateway-class": "other"}), "GatewayClassAccepted")
    assert (outcome, reason) == (Outcome.FAIL, "GatewayClass other does not exist")


def test_fails_when_no_gateway_class_is_accepted() -> None:
    fake = FakeCluster()
    _serve(fake)
    fake.add(_class("igw", accepted="False"))
    outcome, reason = _sub(_run(fake), "GatewayClassAccepted")
    assert outcome is Outcome.FAIL
    assert reason.startswith("no GatewayClass is accepted by a controller: igw [controller")


def test_binomial_lower_tail_separates_a_picker_from_a_coin_toss() -> None:
    assert binomial_lower_tail(2, 20) < 0.001 < binomial_lower_tail(3, 20)
    assert binomial_lower_tail(20, 20) == 1.0


def test_bad_option_values_are_refused_before_the_check_runs() -> None:
    load_builtin_checks()
    spec = REGISTRY.find("advanced_inference_ingress", "1.37")
    assert spec is not None
    opts = {o.name: o for o in spec.options}
    assert opts["inference-pool-requests"].problem("0") == (
        "--inference-pool-requests must be a whole number above 0, got '0'"
    )
    assert opts["inference-gateway-port"].problem("http") is not None
    assert opts["inference-status-timeout"].problem("-5") is not None
    assert opts["inference-pool-requests"].problem("40") is None
