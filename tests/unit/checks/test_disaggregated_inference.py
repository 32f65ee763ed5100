"""disaggregated_inference against the fake cluster."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from kaic.checks.disaggregated_inference import (
    BOTH,
    DECODE,
    DYNAMO,
    LLMD,
    PREFILL,
    SGLANG,
    VLLM,
    parse_endpoint,
    role_of,
    split_answer,
)
from kaic.cluster.api import ExecResult
from kaic.errors import UsageError
from kaic.model import CheckResult, Outcome, SubResult
from tests.fakes import FakeCluster, run_fake_check

NS = "llm-d"
GW = "gateway.networking.k8s.io/v1"


def _pod(
    name: str, labels: dict[str, str], *, ready: bool = True, args: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "nodeName": f"node-{name}",
            "containers": [
                {"name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "args": list(args)}
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": "198.18.16.9",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def _service(name: str, selector: dict[str, str], ip: str = "198.18.24.10") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"clusterIP": ip, "selector": selector, "ports": [{"name": "http", "port": 8000}]},
    }


class Stack(FakeCluster):
    """A disaggregated deployment on the fake cluster: the kubelet readies the check's
    pods, ``exec`` of curl in the client is the serving stack, and pod logs are kept per
    pod. Knobs break one part each."""

    def __init__(
        self,
        *,
        forward: bool = True,
        log_ids: bool = True,
        status: int = 200,
        models: bool = True,
        refused: int = 0,
    ) -> None:
        super().__init__()
        self.refused = refused
        self.forward = forward
        self.log_ids = log_ids
        self.status = status
        self.models = models
        self.logs: dict[str, str] = {}
        self.commands: list[list[str]] = []
        self.controllers.append(self.kubelet)
        self.exec_handler = self.curl

    def default(self) -> Stack:
        self.add(_pod("ms-prefill-0", {LLMD_ROLE: "prefill", "llm-d.ai/model": "m"}))
        self.add(_pod("ms-decode-0", {LLMD_ROLE: "decode", "llm-d.ai/model": "m"}))
        self.add(_service("ms-decode", {LLMD_ROLE: "decode"}))
        return self

    def kubelet(self, fake: FakeCluster) -> None:
        for (av, kind, _ns, _name), obj in list(fake.store.items()):
            if av == "v1" and kind == "Pod" and "status" not in obj:
                obj["status"] = {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                }

    def raw_get(self, path: str, *, timeout: float = 30.0) -> str:
        self.calls.append(("raw_get", path))
        base = path.split("?", 1)[0]
        return self.logs.get(base, "")

    def _log(self, pod: str, line: str) -> None:
        key = f"/api/v1/namespaces/{NS}/pods/{pod}/log"
        self.logs[key] = self.logs.get(key, "") + line + "\n"

    def curl(
        self, namespace: str, pod: str, command: Sequence[str], container: str | None
    ) -> ExecResult:
        cmd = list(command)
        self.commands.append(cmd)
        assert cmd[0] == "curl" and pod == "kaic-disagg-client"
        url = cmd[-1]
        rid = next(h.split(": ", 1)[1] for h in cmd if h.startswith("x-request-id: "))
        if self.refused:
            self.refused -= 1
            return ExecResult("", "curl: (7) Failed to connect: Couldn't connect to server", 7)
        if url.endswith("/v1/models"):
            body = json.dumps({"data": [{"id": "m"}]}) if self.models else "not found"
            return ExecResult(f"{body}\n{200 if self.models else 404}", "", 0)
        if self.log_ids:
            if self.forward:
                self._log("ms-prefill-0", f"INFO prefill request {rid}")
                self._log("ms-decode-0", f"INFO decode request {rid} kv from ms-prefill-0")
            else:
                self._log("ms-decode-0", f"INFO prefill+decode request {rid}")
        body = json.dumps({"choices": [{"text": "hello"}]}) if self.status == 200 else "boom"
        return ExecResult(f"{body}\n{self.status}", "", 0)


LLMD_ROLE = "llm-d.ai/role"


def _run(fake: FakeCluster, **options: str) -> CheckResult:
    return run_fake_check(
        fake,
        "disaggregated_inference",
        options={"disaggregated-timeout": "4", **options},
        catalog_version="1.37",
        timeout=60,
    )


def _sub(r: CheckResult, name: str) -> SubResult:
    return next(s for s in r.subresults if s.name == name)


def test_passes_when_prefill_and_decode_pods_both_log_the_request() -> None:
    fake = Stack().default()
    r = _run(fake)
    assert r.outcome is Outcome.PASS, r.reason
    assert [s.name for s in r.subresults] == [
        "FrameworkDetected",
        "PrefillDecodeSeparated",
        "RequestServed",
        "PhasesOnDistinctPods",
    ]
    assert any("llm-d in namespace llm-d" in line for line in _sub(r, "FrameworkDetected").log)
    (line,) = _sub(r, "PhasesOnDistinctPods").log
    assert "prefill pod llm-d/ms-prefill-0 (node node-ms-prefill-0)" in line
    assert "decode pod llm-d/ms-decode-0" in line
    post = fake.commands[-1]
    assert post[-1] == "http://198.18.24.10:8000/v1/completions"
    assert json.loads(post[post.index("--data") + 1])["model"] == "m"
    evidence = json.loads(next(e.content for e in r.evidence if e.name == "disaggregated.json"))
    assert evidence["endpoint"]["found_as"].startswith("Service llm-d/ms-decode")
    assert set(evidence["log_lines"]) == {"llm-d/ms-prefill-0", "llm-d/ms-decode-0"}
    assert evidence["request_id"].startswith("kaic-run12345-")


def test_fails_naming_the_decode_pod_that_ran_both_phases() -> None:
    r = _run(Stack(forward=False).default())
    assert r.outcome is Outcome.FAIL
    s = _sub(r, "PhasesOnDistinctPods")
    assert s.outcome is Outcome.FAIL
    assert "found only in decode pod llm-d/ms-decode-0 (prefill and decode in one pod)" in s.reason
    assert "prefill pods: llm-d/ms-prefill-0" in s.reason


def test_fails_when_no_pod_logs_the_request_id() -> None:
    r = _run(Stack(log_ids=False).default())
    s = _sub(r, "PhasesOnDistinctPods")
    assert s.outcome is Outcome.FAIL
    assert (
        "appears in the logs of none of the pods llm-d/ms-decode-0, llm-d/ms-prefill-0" in s.reason
    )


def test_fails_when_the_request_is_not_served() -> None:
    r = _run(Stack(status=503).default())
    assert r.outcome is Outcome.FAIL
    assert "HTTP 503" in _sub(r, "RequestServed").reason
    assert _sub(r, "PhasesOnDistinctPods").outcome is Outcome.SKIP


def test_a_refused_connection_is_asked_again_until_the_service_answers() -> None:
    fake = Stack(refused=1).default()
    r = _run(fake, **{"disaggregated-timeout": "2"})
    assert r.outcome is Outcome.PASS, r.reason
    assert len(fake.commands) == 3
    assert any("connection refused; asking again" in line for line in r.log)


def test_a_connection_refused_for_good_fails_the_request() -> None:
    r = _run(Stack(refused=1000).default(), **{"disaggregated-timeout": "2"})
    s = _sub(r, "RequestServed")
    assert s.outcome is Outcome.FAIL
    assert "Couldn't connect to server" in s.reason


def test_without_a_model_list_asks_for_the_model_name() -> None:
    fake = Stack(models=False).default()
    r = _run(fake)
    assert "name it with --disaggregated-model" in _sub(r, "RequestServed").reason
    r = _run(Stack(models=False).default(), **{"disaggregated-model": "m2"})
    assert r.outcome is Outcome.PASS, r.reason


def test_a_single_pod_serving_both_phases_fails_naming_it() -> None:
    fake = Stack()
    fake.add(_pod("ms-0", {LLMD_ROLE: "both"}))
    r = _run(fake)
    assert r.outcome is Outcome.FAIL
    s = _sub(r, "PrefillDecodeSeparated")
    assert "no prefill pod" in s.reason and "no decode pod" in s.reason
    assert "llm-d/ms-0 (llm-d.ai/role=both) serve prefill and decode in one pod" in s.reason
    assert _sub(r, "RequestServed").outcome is Outcome.SKIP


def test_a_prefill_pod_that_is_not_ready_fails_naming_it() -> None:
    fake = Stack()
    fake.add(_pod("ms-prefill-0", {LLMD_ROLE: "prefill"}, ready=False))
    fake.add(_pod("ms-decode-0", {LLMD_ROLE: "decode"}))
    r = _run(fake)
    s = _sub(r, "PrefillDecodeSeparated")
    assert s.outcome is Outcome.FAIL
    assert "prefill pod(s) ms-prefill-0 (not Ready, phase Running) not Ready after 4s" in s.reason


def test_no_framework_is_manual_with_what_to_attach() -> None:
    r = _run(Stack())
    assert r.outcome is Outcome.MANUAL
    assert r.reason.startswith("no disaggregated serving framework found in any namespace")
    assert "request whose id appears in the logs of a prefill pod" in r.reason


def test_framework_objects_without_role_pods_fail() -> None:
    fake = Stack()
    fake.serve("nvidia.com/v1alpha1", ("dynamographdeployments", "DynamoGraphDeployment", True))
    fake.add(
        {
            "apiVersion": "nvidia.com/v1alpha1",
            "kind": "DynamoGraphDeployment",
            "metadata": {"name": "g", "namespace": NS},
        }
    )
    r = _run(fake)
    assert r.outcome is Outcome.FAIL
    assert "DynamoGraphDeployment llm-d/g" in _sub(r, "PrefillDecodeSeparated").reason
    assert any(
        "CRDs served: DynamoGraphDeployment.nvidia.com" in x
        for x in _sub(r, "FrameworkDetected").log
    )


def test_no_endpoint_is_manual() -> None:
    fake = Stack()
    fake.add(_pod("p", {LLMD_ROLE: "prefill"}))
    fake.add(_pod("d", {LLMD_ROLE: "decode"}))
    r = _run(fake)
    assert r.outcome is Outcome.MANUAL
    assert "no endpoint to send a request to was found" in r.reason
    assert "--disaggregated-endpoint" in r.reason


def test_the_endpoint_option_names_a_service_or_a_url() -> None:
    fake = Stack().default()
    fake.add(_service("front", {"app": "x"}, ip="198.18.24.77"))
    r = _run(fake, **{"disaggregated-endpoint": "llm-d/front:8000"})
    assert r.outcome is Outcome.PASS, r.reason
    assert fake.commands[-1][-1] == "http://198.18.24.77:8000/v1/completions"
    fake = Stack().default()
    r = _run(
        fake, **{"disaggregated-endpoint": "http://198.18.7.1:80/", "disaggregated-path": "v1/chat"}
    )
    assert r.outcome is Outcome.PASS, r.reason
    assert fake.commands[-1][-1] == "http://198.18.7.1:80/v1/chat"


def test_a_missing_endpoint_service_is_an_error() -> None:
    r = _run(Stack().default(), **{"disaggregated-endpoint": "nope:80"})
    assert r.outcome is Outcome.ERROR
    assert "no Service llm-d/nope" in r.reason


def test_the_gateway_of_an_inference_pool_route_is_the_endpoint() -> None:
    fake = Stack().default()
    fake.serve(GW, ("httproutes", "HTTPRoute", True), ("gateways", "Gateway", True))
    fake.add(
        {
            "apiVersion": GW,
            "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": NS},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [
                    {
                        "backendRefs": [
                            {
                                "group": "inference.networking.k8s.io",
                                "kind": "InferencePool",
                                "name": "p",
                            }
                        ]
                    }
                ],
            },
        }
    )
    fake.add(
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": NS},
            "spec": {"listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]},
            "status": {"addresses": [{"value": "198.18.30.1"}]},
        }
    )
    r = _run(fake)
    assert r.outcome is Outcome.PASS, r.reason
    assert fake.commands[-1][-1] == "http://198.18.30.1:80/v1/completions"


def test_the_namespace_option_limits_the_search() -> None:
    r = _run(Stack().default(), **{"disaggregated-namespace": "elsewhere"})
    assert r.outcome is Outcome.MANUAL
    assert "namespace(s) elsewhere" in r.reason


@pytest.mark.parametrize(
    ("labels", "args", "expected"),
    [
        ({LLMD_ROLE: "prefill"}, [], (LLMD, PREFILL)),
        ({LLMD_ROLE: "decode"}, [], (LLMD, DECODE)),
        ({LLMD_ROLE: "both"}, [], (LLMD, BOTH)),
        ({"nvidia.com/dynamo-sub-component-type": "prefill"}, [], (DYNAMO, PREFILL)),
        ({"nvidia.com/dynamo-component-type": "worker"}, [], (DYNAMO, BOTH)),
        ({}, ["python3 -m sglang.launch_server --disaggregation-mode decode"], (SGLANG, DECODE)),
        ({}, ["--disaggregation-mode=prefill"], (SGLANG, PREFILL)),
        (
            {},
            ["--kv-transfer-config", '{"kv_connector":"P2pNcclConnector","kv_role":"kv_producer"}'],
            (VLLM, PREFILL),
        ),
        (
            {},
            ["--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'],
            None,
        ),
        ({"app": "x"}, ["--port", "8000"], None),
    ],
)
def test_roles_come_from_labels_and_arguments(
    labels: dict[str, str], args: list[str], expected: tuple[str, str] | None
) -> None:
    found = role_of(_pod("p", labels, args=args))
    assert (found[:2] if found else None) == expected


def test_endpoint_values_are_parsed_or_refused() -> None:
    assert parse_endpoint("ns/svc:8000") == ("service", "ns", "svc", 8000)
    assert parse_endpoint("svc") == ("service", None, "svc", None)
    assert parse_endpoint("http://10.0.0.1:8000/") == ("url", None, "http://10.0.0.1:8000", None)
    with pytest.raises(UsageError, match="--disaggregated-endpoint must be a URL"):
        parse_endpoint("a/b/c")


def test_a_malformed_endpoint_option_is_an_error_with_one_line() -> None:
    r = _run(Stack().default(), **{"disaggregated-endpoint": "not a service"})
    assert r.outcome is Outcome.ERROR
    assert "--disaggregated-endpoint must be a URL" in r.reason and "\n" not in r.reason


def test_curl_output_is_split_into_status_and_body() -> None:
    assert split_answer('{"a": 1}\n200') == (200, '{"a": 1}')
    assert split_answer("") == (0, "")
