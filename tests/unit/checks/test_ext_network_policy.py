"""ext_network_policy against the fake cluster: the fake's exec stands in for the clients'
curl, and a small simulated enforcer reads the NetworkPolicies kaic created; each way the
procedure can end, including a network where no connection can be made."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kaic.checks.ext_network_policy import DENIED, ROLE, SERVER, connect_command
from kaic.cluster.api import ExecResult
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

NS = "kaic-t"
FAST = {"network-policy-timeout": "0.5", "network-policy-connect-timeout": "1"}
SERVER_IP = "198.18.16.10"


def _fake(network: str = "enforced", *, pods_run: bool = True, served: bool = True) -> FakeCluster:
    """``network``: ``enforced`` (a correct enforcer), ``open`` (no enforcer), ``down``
    (no connection at all) or ``strict`` (the enforcer drops the allowed client too)."""
    fake = FakeCluster()
    if served:
        fake.serve("networking.k8s.io/v1", ("networkpolicies", "NetworkPolicy", True))

    def kubelet(c: FakeCluster) -> None:
        if not pods_run:
            return
        for i, (key, pod) in enumerate(sorted(c.store.items())):
            if key[1] == "Pod" and "phase" not in pod.get("status", {}):
                ip = SERVER_IP if key[3] == SERVER else f"198.18.16.{20 + i}"
                pod["spec"]["nodeName"] = "node-a"
                pod["status"] = {"phase": "Running", "podIP": ip}

    def curl(namespace: str, pod: str, command: Sequence[str], container: str | None) -> ExecResult:
        assert SERVER_IP in command[-1]
        role = fake.store[("v1", "Pod", namespace, pod)]["metadata"]["labels"][ROLE]
        policies = [k for k in fake.store if k[1] == "NetworkPolicy"]
        blocked = {
            "enforced": bool(policies) and role != "allowed",
            "strict": bool(policies),
            "open": False,
            "down": True,
        }[network]
        if blocked:
            return ExecResult("", "curl: (28) Connection timed out after 1001 ms\n", 28)
        return ExecResult(SERVER, "", 0)

    fake.controllers.append(kubelet)
    fake.exec_handler = curl
    return fake


def _sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


def test_passes_when_the_denied_connection_is_blocked_and_the_allowed_one_is_not() -> None:
    result = run_fake_check(_fake(), "ext_network_policy", options=FAST)
    assert result.outcome is Outcome.PASS, result.reason
    for name in (
        "PodsRun",
        "ConnectivityWithoutPolicy",
        "PoliciesApplied",
        "DeniedConnectionBlocked",
        "AllowedConnectionSucceeds",
    ):
        assert _sub(result, name).outcome is Outcome.PASS, name
    assert _sub(result, "ClusterScopedPolicyAPI").outcome is Outcome.SKIP
    log = next(e.content for e in result.evidence if e.name == "connections.log")
    assert f"kubectl exec -n {NS} {DENIED} -- sh -c" in log and "[exit code 28]" in log
    doc = json.loads(next(e.content for e in result.evidence if e.name == "network-policy.json"))
    assert doc["denied"]["blocked"] is True and doc["server_ip"] == SERVER_IP


def test_fails_when_no_enforcer_blocks_the_denied_connection() -> None:
    result = run_fake_check(_fake("open"), "ext_network_policy", options=FAST)
    assert result.outcome is Outcome.FAIL
    reason = _sub(result, "DeniedConnectionBlocked").reason
    assert f"the denied connection {DENIED} -> {SERVER} still succeeds" in reason
    assert "no NetworkPolicy enforcer acts on the pod network" in reason
    assert _sub(result, "AllowedConnectionSucceeds").outcome is Outcome.PASS


def test_never_passes_when_pods_cannot_connect_at_all() -> None:
    fake = _fake("down")
    result = run_fake_check(fake, "ext_network_policy", options=FAST)
    assert result.outcome is Outcome.ERROR
    reason = _sub(result, "ConnectivityWithoutPolicy").reason
    assert "pods cannot connect at all" in reason
    assert _sub(result, "DeniedConnectionBlocked").outcome is Outcome.SKIP
    assert not [k for k in fake.store if k[1] == "NetworkPolicy"]


def test_fails_when_the_enforcer_blocks_the_allowed_connection_too() -> None:
    result = run_fake_check(_fake("strict"), "ext_network_policy", options=FAST)
    assert result.outcome is Outcome.FAIL
    assert _sub(result, "DeniedConnectionBlocked").outcome is Outcome.PASS
    assert (
        "fails under the policy that allows it" in _sub(result, "AllowedConnectionSucceeds").reason
    )


def test_reports_cluster_scoped_policy_apis_as_the_scale_guidance() -> None:
    fake = _fake()
    fake.serve(
        "policy.networking.k8s.io/v1alpha1",
        ("adminnetworkpolicies", "AdminNetworkPolicy", False),
        ("baselineadminnetworkpolicies", "BaselineAdminNetworkPolicy", False),
    )
    result = run_fake_check(fake, "ext_network_policy", options=FAST)
    assert result.outcome is Outcome.PASS
    sub = _sub(result, "ClusterScopedPolicyAPI")
    assert sub.outcome is Outcome.PASS
    assert "AdminNetworkPolicy (policy.networking.k8s.io/v1alpha1)" in sub.log[0]
    assert "BaselineAdminNetworkPolicy" in sub.log[0]


def test_fails_when_the_pods_never_run() -> None:
    result = run_fake_check(_fake(pods_run=False), "ext_network_policy", options=FAST)
    assert result.outcome is Outcome.FAIL
    assert f"{SERVER} did not run" in _sub(result, "PodsRun").reason


def test_fails_when_networkpolicy_is_not_served() -> None:
    result = run_fake_check(_fake(served=False), "ext_network_policy", options=FAST)
    assert result.outcome is Outcome.FAIL
    assert "does not serve NetworkPolicy" in _sub(result, "PoliciesApplied").reason


def test_the_client_command_brackets_ipv6_addresses() -> None:
    assert connect_command("fd00::5", 3)[-1] == "curl -sS -m 3 'http://[fd00::5]:8080/hostname'"
    assert connect_command("198.18.16.4", 2.5)[-1].endswith(" http://198.18.16.4:8080/hostname")
