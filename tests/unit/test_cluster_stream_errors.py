"""exec and port-forward upgrades the server refuses: the server's own words reach the
user, whatever the client library raised on top of them."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kaic.cluster import client
from kaic.cluster.client import exec_exit_code
from kaic.errors import (
    ClusterError,
    ClusterUnreachableError,
    NotFoundError,
    PermissionDeniedError,
)

BODY_500 = (
    '{"kind":"Status","apiVersion":"v1","status":"Failure","message":"no preferred '
    'addresses found; known addresses: []","code":500}'
)


def _as_the_client_raises(reason: str) -> BaseException:
    """ApiException(status=0) from the websocket call, then the client's AttributeError
    while it decodes the exception's empty body (``e.body.decode``)."""
    try:
        try:
            raise ApiException(status=0, reason=reason)
        except ApiException as e:
            e.body.decode("utf-8")  # type: ignore[union-attr]
    except AttributeError as outer:
        return outer
    raise AssertionError("no AttributeError")


def test_a_500_answer_is_reported_with_the_servers_message() -> None:
    e = _as_the_client_raises(
        f"Handshake status 500 Internal Server Error -+-+- "
        f"{{'content-type': 'application/json'}} -+-+- {BODY_500}"
    )
    mapped = client._map_ws_error(e, "exec in pod ns/p")
    assert str(mapped) == (
        "exec in pod ns/p: the server answered 500: no preferred addresses "
        "found; known addresses: []"
    )
    assert "AttributeError" not in str(mapped)


@pytest.mark.parametrize(("code", "cls"), [(403, PermissionDeniedError), (404, NotFoundError)])
def test_refusals_keep_their_kind(code: int, cls: type[ClusterError]) -> None:
    e = _as_the_client_raises(f"Handshake status {code} Forbidden -+-+- {{}} -+-+- None")
    mapped = client._map_ws_error(e, "port-forward to pod ns/p:80")
    assert isinstance(mapped, cls) and "Forbidden" in str(mapped)


class _FlakyForwards:
    """A stand-in for the client's portforward(): fails ``fails`` times, then works."""

    def __init__(self, fails: int, code: int) -> None:
        self.calls, self.fails, self.code = 0, fails, code

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.fails:
            raise _as_the_client_raises(
                f"Handshake status {self.code} x -+-+- {{}} -+-+- {BODY_500}"
            )
        return SimpleNamespace(name="forward")


def _cluster(monkeypatch: pytest.MonkeyPatch, fake: _FlakyForwards) -> Any:
    monkeypatch.setattr(client, "k8s_portforward", fake)
    monkeypatch.setattr(client.time, "sleep", lambda s: None)
    c = client.Cluster.__new__(client.Cluster)
    monkeypatch.setattr(
        c,
        "_stream_core",
        lambda: type("Core", (), {"connect_get_namespaced_pod_portforward": None})(),
        raising=False,
    )
    return c


def test_a_port_forward_refused_with_a_5xx_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FlakyForwards(fails=2, code=500)
    assert _cluster(monkeypatch, fake)._open_forward("ns", "p", 80).name == "forward"
    assert fake.calls == 3


def test_a_port_forward_that_keeps_failing_says_what_the_server_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FlakyForwards(fails=10, code=500)
    with pytest.raises(ClusterError, match="the server answered 500: no preferred addresses"):
        _cluster(monkeypatch, fake)._open_forward("ns", "p", 80)
    assert fake.calls == client.FORWARD_ATTEMPTS


def test_a_forbidden_port_forward_is_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FlakyForwards(fails=10, code=403)
    with pytest.raises(PermissionDeniedError):
        _cluster(monkeypatch, fake)._open_forward("ns", "p", 80)
    assert fake.calls == 1


def _status(**fields: object) -> str:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, **fields})


def test_exec_exit_code_reads_success_and_the_exit_code_cause() -> None:
    assert exec_exit_code(_status(status="Success"), "exec") == 0
    failure = _status(
        status="Failure",
        reason="NonZeroExitCode",
        message="command terminated with non-zero exit code: error executing command [sh], "
        "exit code 3",
        details={"causes": [{"reason": "ExitCode", "message": "3"}]},
    )
    assert exec_exit_code(failure, "exec") == 3
    assert exec_exit_code("", "exec") == -1


def test_exec_failure_without_an_exit_code_is_the_servers_message_in_one_line() -> None:
    internal = _status(
        status="Failure",
        reason="InternalError",
        message="Internal error occurred: error executing command in container: cmd wait: "
        "sh -c true: exit status 126",
        details={"causes": [{"message": "error executing command in container"}]},
    )
    with pytest.raises(ClusterError) as e:
        exec_exit_code(internal, "exec in pod ns/p", "first\nkaic lab: no device view yet\n")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("exec in pod ns/p: Internal error occurred: error executing command")
    assert "exit status 126" in msg and "(stderr: kaic lab: no device view yet)" in msg
    with pytest.raises(ClusterError, match="unreadable exit status"):
        exec_exit_code("not json {", "exec")


def test_a_refused_connection_under_the_clients_attributeerror_is_unreachable() -> None:
    e = _as_the_client_raises("[Errno 111] Connection refused")
    mapped = client._map_ws_error(e, "exec in pod ns/p")
    assert isinstance(mapped, ClusterUnreachableError)
    assert str(mapped) == "exec in pod ns/p: connection refused"
    assert "AttributeError" not in str(mapped) and "decode" not in str(mapped)


def test_any_other_reason_under_the_clients_attributeerror_is_reported_as_said() -> None:
    e = _as_the_client_raises("Invalid WebSocket Header")
    mapped = client._map_ws_error(e, "exec in pod ns/p")
    assert str(mapped) == "exec in pod ns/p: Invalid WebSocket Header"
    assert "AttributeError" not in str(mapped)


def test_a_stream_lost_while_it_ran_says_so() -> None:
    from websocket import WebSocketConnectionClosedException

    e = WebSocketConnectionClosedException("Connection to remote host was lost.")
    mapped = client._map_ws_error(e, "exec in pod ns/p", started=True)
    assert isinstance(mapped, ClusterUnreachableError)
    assert str(mapped) == (
        "exec in pod ns/p: the connection to the server was lost: Connection to remote host"
        " was lost."
    )


class _FakeWs:
    """An exec stream that breaks while it runs."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.closed = error, False
        self.sock = SimpleNamespace(shutdown=lambda: None)

    def run_forever(self, timeout: float) -> None:
        raise self.error

    def close(self) -> None:
        self.closed = True


def _exec_cluster(monkeypatch: pytest.MonkeyPatch, stream: Any) -> Any:
    monkeypatch.setattr(client, "k8s_stream", stream)
    monkeypatch.setattr(client.time, "sleep", lambda s: None)
    c = client.Cluster.__new__(client.Cluster)
    monkeypatch.setattr(
        c,
        "_stream_core",
        lambda: type("Core", (), {"connect_get_namespaced_pod_exec": None})(),
        raising=False,
    )
    return c


def test_exec_reports_the_servers_500_after_trying_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def refused(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise _as_the_client_raises(
            f"Handshake status 500 Internal Server Error -+-+- {{}} -+-+- {BODY_500}"
        )

    with pytest.raises(ClusterError) as e:
        _exec_cluster(monkeypatch, refused).exec("ns", "p", ["true"])
    assert str(e.value) == (
        "exec in pod ns/p: the server answered 500: no preferred addresses found;"
        " known addresses: []"
    )
    assert len(calls) == client.FORWARD_ATTEMPTS


def test_exec_opens_again_when_the_server_was_restarting(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    ws = _FakeWs(OSError(104, "Connection reset by peer"))

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise _as_the_client_raises("[Errno 111] Connection refused")
        return ws

    with pytest.raises(ClusterUnreachableError) as e:
        _exec_cluster(monkeypatch, flaky).exec("ns", "p", ["sleep", "9"])
    assert len(calls) == 2 and ws.closed
    assert str(e.value) == (
        "exec in pod ns/p: the connection to the server was lost: [Errno 104] Connection"
        " reset by peer"
    )


def test_a_forbidden_exec_is_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise _as_the_client_raises("Handshake status 403 Forbidden -+-+- {} -+-+- None")

    with pytest.raises(PermissionDeniedError):
        _exec_cluster(monkeypatch, forbidden).exec("ns", "p", ["true"])
    assert len(calls) == 1


def test_each_forward_finds_its_own_proxy_thread_when_forwards_open_side_by_side() -> None:
    from kaic.cluster import client

    class Forward:
        def __init__(self) -> None:
            self.done = threading.Event()
            self.thread = threading.Thread(
                name=f"{client._PF_THREAD_PREFIX}: 9400", target=self._proxy, daemon=True
            )
            self.thread.start()

        def _proxy(self) -> None:
            self.done.wait(10)

    forwards = [Forward() for _ in range(5)]  # same thread names, all running at once
    try:
        for f in forwards:
            assert client._proxy_threads_of(f) == [f.thread]
    finally:
        for f in forwards:
            f.done.set()
            f.thread.join(5)
    assert client._proxy_threads_of(forwards[0]) == []  # ended: nothing to wait for
