"""Retries of passing faults: 429 with Retry-After (API Priority and Fairness), 503/504
and an apiserver that is restarting are retried for ``RetryPolicy.outage_s``; a 500
(a webhook that cannot be called) only ``attempts`` times; the reachability probe never
waits out an outage."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kaic.cluster.client import RetryPolicy, connect
from kaic.errors import ClusterError, ClusterUnreachableError

QUICK = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.05, outage_s=3.0)


def _kubeconfig(tmp: Path, port: int) -> str:
    kc = tmp / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\n"
        "users:\n- name: u\n  user: {token: t}\n"
        "contexts:\n- name: one\n  context: {cluster: c, user: u}\n"
        "current-context: one\n"
    )
    return str(kc)


class _Answers:
    """What the server answers, in order; the last one for ever after."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.seen: list[float] = []

    def next(self) -> tuple[int, dict[str, str]]:
        self.seen.append(time.monotonic())
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def server() -> Iterator[tuple[int, list[_Answers]]]:
    box: list[_Answers] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code, headers = box[0].next()
            body = json.dumps(
                {"kind": "Status", "code": code, "message": f"answer {code}"}
                if code >= 400
                else {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}}
            ).encode()
            self.send_response(code)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield int(httpd.server_address[1]), box
    finally:
        httpd.shutdown()
        httpd.server_close()


def _get(tmp: Path, port: int, policy: RetryPolicy = QUICK) -> Any:
    c = connect(_kubeconfig(tmp, port), retry=policy)
    return c._call("GET", "/api/v1/namespaces/x/configmaps/x", what="getting ConfigMap x/x")


def test_429_is_retried_past_the_attempts_and_honours_retry_after(
    server: tuple[int, list[_Answers]], tmp_path: Path
) -> None:
    port, box = server
    box.append(_Answers(*[(429, {"Retry-After": "0.2"})] * 4, (200, {})))
    assert _get(tmp_path, port)["metadata"]["name"] == "x"
    gaps = [b - a for a, b in zip(box[0].seen, box[0].seen[1:], strict=False)]
    assert len(box[0].seen) == 5 > QUICK.attempts
    assert all(g >= 0.18 for g in gaps), gaps


def test_a_throttled_server_that_never_lets_us_in_ends_after_the_outage_window(
    server: tuple[int, list[_Answers]], tmp_path: Path
) -> None:
    port, box = server
    box.append(_Answers((429, {"Retry-After": "0.5"})))
    start = time.monotonic()
    with pytest.raises(ClusterError, match=r"getting ConfigMap x/x: HTTP 429: answer 429"):
        _get(tmp_path, port)
    assert QUICK.outage_s <= time.monotonic() - start < QUICK.outage_s + 2


@pytest.mark.parametrize("code", [503, 504])
def test_not_ready_and_timed_out_answers_are_waited_out(
    server: tuple[int, list[_Answers]], tmp_path: Path, code: int
) -> None:
    port, box = server
    box.append(_Answers(*[(code, {})] * 6, (200, {})))
    assert _get(tmp_path, port)["kind"] == "ConfigMap"


def test_a_500_gets_only_the_attempts(server: tuple[int, list[_Answers]], tmp_path: Path) -> None:
    port, box = server
    box.append(_Answers((500, {})))
    with pytest.raises(ClusterError, match="HTTP 500: answer 500"):
        _get(tmp_path, port)
    assert len(box[0].seen) == QUICK.attempts


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_an_apiserver_that_comes_back_within_the_window_is_waited_for(tmp_path: Path) -> None:
    port = _closed_port()
    answered: list[bool] = []

    def come_back() -> None:
        time.sleep(1.0)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answered.append(True)
                body = b'{"kind": "ConfigMap", "apiVersion": "v1"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        httpd.timeout = 5
        httpd.handle_request()
        httpd.server_close()

    t = threading.Thread(target=come_back, daemon=True)
    t.start()
    assert _get(tmp_path, port)["kind"] == "ConfigMap"
    t.join(5)
    assert answered == [True]


def test_the_reachability_probe_does_not_wait_out_an_outage(tmp_path: Path) -> None:
    c = connect(_kubeconfig(tmp_path, _closed_port()), retry=QUICK)
    start = time.monotonic()
    with pytest.raises(ClusterUnreachableError, match="connection refused"):
        c.server_version()
    assert time.monotonic() - start < 1.0
