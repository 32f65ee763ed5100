"""The real adapter's own logic (kubeconfig loading, retries, error mapping), against a
tiny loopback HTTP stub. Its behaviour against a real apiserver is proven in tests/lab."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kaic.cluster.client import RetryPolicy, connect
from kaic.errors import (
    ClusterUnreachableError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    RejectedError,
)

FAST = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.02)


class Stub:
    """Answers requests from a queue of (status, body) per path; records what it got."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, Any]]] = {}
        self.requests: list[tuple[str, str]] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class H(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                stub.requests.append((self.command, self.path))
                path = self.path.split("?")[0]
                queue = stub.answers.get(path) or [
                    (404, {"kind": "Status", "code": 404, "message": "not found"})
                ]
                status, body = queue.pop(0) if len(queue) > 1 else queue[0]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        return H


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[tuple[Stub, Path]]:
    s = Stub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), s.handler())
    t = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    t.start()
    kc = tmp_path / "kubeconfig"
    kc.write_text(_kubeconfig(f"http://127.0.0.1:{server.server_address[1]}"))
    yield s, kc
    server.shutdown()


def _kubeconfig(server: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster: {{server: '{server}'}}\n"
        "users:\n- name: u\n  user: {token: t0ken}\n"
        "contexts:\n- name: one\n  context: {cluster: c, user: u}\n"
        "- name: two\n  context: {cluster: c, user: u}\n"
        "current-context: one\n"
    )


def _status(code: int, message: str) -> tuple[int, dict[str, Any]]:
    return code, {"kind": "Status", "code": code, "message": message}


def test_connect_uses_the_current_context_unless_one_is_named(stub: tuple[Stub, Path]) -> None:
    _, kc = stub
    assert connect(str(kc)).context == "one"
    assert connect(str(kc), context="two").context == "two"


def test_connect_reads_kubeconfig_from_the_environment(
    stub: tuple[Stub, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, kc = stub
    monkeypatch.setenv("KUBECONFIG", str(kc))
    assert connect().context == "one"


def test_an_unknown_context_is_an_input_error(stub: tuple[Stub, Path]) -> None:
    _, kc = stub
    with pytest.raises(InputError, match="nope"):
        connect(str(kc), context="nope")


def test_a_missing_kubeconfig_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        connect(str(tmp_path / "missing"))


def test_no_configuration_at_all_means_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ClusterUnreachableError, match="no kubeconfig"):
        connect()


def test_429_and_503_are_retried_until_the_server_answers(stub: tuple[Stub, Path]) -> None:
    s, kc = stub
    s.answers["/version"] = [
        _status(429, "slow down"),
        _status(503, "busy"),
        (200, {"gitVersion": "v1.36.2"}),
    ]
    c = connect(str(kc), retry=FAST)
    assert c.server_version() == "v1.36.2"
    assert [p for _, p in s.requests].count("/version") == 3


def test_retries_give_up_after_the_policy_allows(stub: tuple[Stub, Path]) -> None:
    s, kc = stub
    s.answers["/version"] = [_status(503, "busy")]
    c = connect(str(kc), retry=FAST)
    with pytest.raises(Exception, match="HTTP 503"):
        c.server_version()
    assert len(s.requests) == FAST.attempts


def test_a_refused_connection_is_unreachable(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(_kubeconfig("http://127.0.0.1:9"))
    c = connect(str(kc), retry=FAST)
    with pytest.raises(ClusterUnreachableError, match="cannot reach the cluster"):
        c.server_version()


@pytest.mark.parametrize(
    ("code", "message", "error"),
    [
        (403, 'pods is forbidden: User "x" cannot list', PermissionDeniedError),
        (403, 'admission webhook "v.example.com" denied the request: no', RejectedError),
        (409, "already exists", ConflictError),
        (422, "is invalid", RejectedError),
        (401, "Unauthorized", ClusterUnreachableError),
    ],
)
def test_http_errors_map_onto_the_kaic_error_tree(
    stub: tuple[Stub, Path], code: int, message: str, error: type[Exception]
) -> None:
    s, kc = stub
    s.answers["/api/v1"] = [
        (
            200,
            {
                "resources": [
                    {"name": "pods", "kind": "Pod", "namespaced": True, "verbs": ["list"]},
                    {
                        "name": "pods/exec",
                        "kind": "PodExecOptions",
                        "namespaced": True,
                        "verbs": [],
                    },
                ]
            },
        )
    ]
    s.answers["/api/v1/namespaces/ns/pods"] = [_status(code, message)]
    c = connect(str(kc), retry=FAST)
    with pytest.raises(error):
        c.list("v1", "Pod", "ns")


def test_discovery_lists_kinds_without_subresources_and_empty_when_not_served(
    stub: tuple[Stub, Path],
) -> None:
    s, kc = stub
    s.answers["/api/v1"] = [
        (
            200,
            {
                "resources": [
                    {"name": "pods", "kind": "Pod", "namespaced": True, "verbs": ["list"]},
                    {"name": "pods/status", "kind": "Pod", "namespaced": True, "verbs": ["get"]},
                ]
            },
        )
    ]
    c = connect(str(kc), retry=FAST)
    assert [r.name for r in c.api_resources("v1")] == ["pods"]
    assert c.api_resources("example.com/v1") == []
    with pytest.raises(NotFoundError, match="does not serve Widget"):
        c.list("example.com/v1", "Widget")


def test_lists_follow_continue_tokens_and_fill_in_kind(stub: tuple[Stub, Path]) -> None:
    s, kc = stub
    s.answers["/api/v1"] = [
        (
            200,
            {
                "resources": [
                    {"name": "nodes", "kind": "Node", "namespaced": False, "verbs": ["list"]}
                ]
            },
        )
    ]
    s.answers["/api/v1/nodes"] = [
        (200, {"metadata": {"continue": "abc"}, "items": [{"metadata": {"name": "a"}}]}),
        (200, {"metadata": {}, "items": [{"metadata": {"name": "b"}}]}),
    ]
    c = connect(str(kc), retry=FAST)
    nodes = c.list("v1", "Node")
    assert [n["metadata"]["name"] for n in nodes] == ["a", "b"]
    assert all(n["kind"] == "Node" and n["apiVersion"] == "v1" for n in nodes)
    assert "continue=abc" in s.requests[-1][1]
