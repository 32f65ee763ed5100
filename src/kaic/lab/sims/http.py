"""The simulators' one HTTP server helper: a threaded server on a loopback address that
answers GET (and POST) requests with what a function returns.

Owns: ``Request``, ``Reply``, ``server``, ``start``, ``Listeners``, ``serve_all`` and
``PodServers``.
Must not listen on anything but loopback or the lab network's 198.18.0.0/15 (another
address ends the simulator: ``SystemExit``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kaic.lab.network import LAB_RANGE


@dataclass(frozen=True)
class Request:
    """A GET or POST request as the answer function sees it."""

    path: str
    """Without the query string."""
    query: dict[str, list[str]] = field(default_factory=dict)
    peer_cert: dict[str, Any] | None = None
    """The client's verified certificate (TLS servers that ask for one), else None."""
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    """Request headers, names in lower case."""
    body: bytes = b""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Answer = Callable[[Request], Reply]


def allowed_address(host: str) -> bool:
    """Loopback, or an address of the lab network (which exists only inside the lab's
    namespaces, so a simulator can bind one only there)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip in LAB_RANGE


def server(
    host: str,
    port: int,
    answer: Answer,
    *,
    tls: ssl.SSLContext | None = None,
    log: Callable[[str], None] | None = None,
    name: str = "kaic lab simulator",
) -> ThreadingHTTPServer:
    """An HTTP(S) server on ``host:port`` (not started); ``log`` gets one line per request
    (default: none). An exception in ``answer`` is a 500 answer, not a dead server."""
    if not allowed_address(host):
        raise SystemExit(f"{name}: refusing to listen on non-loopback, non-lab {host}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.handle_one("GET", b"")

        def do_POST(self) -> None:
            try:
                length = max(0, min(int(self.headers.get("Content-Length") or 0), 1 << 20))
            except ValueError:
                length = 0
            self.handle_one("POST", self.rfile.read(length) if length else b"")

        def handle_one(self, method: str, body: bytes) -> None:
            url = urllib.parse.urlsplit(self.path)
            peer = getattr(self.connection, "getpeercert", lambda: None)()
            req = Request(
                url.path,
                urllib.parse.parse_qs(url.query),
                peer or None,
                method,
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            try:
                reply = answer(req)
            except Exception as e:  # a broken request must not kill the simulator
                reply = Reply(500, f"{type(e).__name__}: {e}\n".encode())
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            if log is not None:
                log(f"{self.address_string()} {format % args}")

    srv = ThreadingHTTPServer((host, port), Handler)
    if tls is not None:
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    return srv


class Listeners:
    """A changing set of servers served from one thread (``serve``): one selector over
    all their listening sockets, a thread per request (a large lab's thousands of
    exporters are not thousands of polling threads). ``add`` and ``remove`` may be
    called from any thread; a removed server is closed by the serving thread."""

    def __init__(self, servers: Sequence[ThreadingHTTPServer] = ()) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[bool, ThreadingHTTPServer]] = [(True, s) for s in servers]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def add(self, srv: ThreadingHTTPServer) -> None:
        self._change(True, srv)

    def remove(self, srv: ThreadingHTTPServer) -> None:
        self._change(False, srv)

    def _change(self, add: bool, srv: ThreadingHTTPServer) -> None:
        with self._lock:
            self._pending.append((add, srv))
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    def serve(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; then close every server."""
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        live: set[ThreadingHTTPServer] = set()
        try:
            while not stop.is_set():
                with self._lock:
                    pending, self._pending = self._pending, []
                for add, srv in pending:
                    if add and srv not in live:
                        srv.timeout = 0
                        sel.register(srv.socket, selectors.EVENT_READ, srv)
                        live.add(srv)
                    elif not add:
                        if srv in live:
                            sel.unregister(srv.socket)
                            live.discard(srv)
                        srv.server_close()
                for key, _ in sel.select(timeout=0.5):
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError, OSError):
                            self._wake_r.recv(4096)
                    elif key.data in live:
                        key.data.handle_request()
        finally:
            sel.close()
            for srv in live:
                srv.server_close()


def serve_all(servers: Sequence[ThreadingHTTPServer], stop: threading.Event) -> None:
    """Serve every server of ``servers`` from one thread until ``stop`` is set (see
    ``Listeners``)."""
    Listeners(servers).serve(stop)


def start(srv: ThreadingHTTPServer) -> ThreadingHTTPServer:
    """Serve ``srv`` in a daemon thread (stop it with ``srv.shutdown()``)."""
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


PodKey = tuple[str, str, int]
"""(pod uid, IP, port) of one server of a pod."""


class PodServers:
    """One server per (pod, IP, port) that is wanted and nothing else, each served in
    its own thread; a line on stdout for each started, stopped or refused."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.servers: dict[PodKey, ThreadingHTTPServer] = {}

    def serve(self, wanted: Mapping[PodKey, tuple[str, Answer]]) -> None:
        """Stop the servers not in ``wanted`` and start those missing; ``wanted`` maps a
        key to (what to call it in the log, how it answers)."""
        for key in [k for k in self.servers if k not in wanted]:
            self.servers.pop(key).shutdown()
            print(f"stopped {key[1]}:{key[2]}", flush=True)
        for key, (label, answer) in wanted.items():
            if key in self.servers:
                continue
            try:
                self.servers[key] = start(server(key[1], key[2], answer, name=self.name))
                print(f"serving {label} on {key[1]}:{key[2]}", flush=True)
            except OSError as e:
                print(f"cannot serve {label} on {key[1]}:{key[2]}: {e}", flush=True)

    def close(self) -> None:
        for srv in self.servers.values():
            srv.shutdown()
        self.servers.clear()
