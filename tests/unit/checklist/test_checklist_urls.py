"""URL reachability against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from checklist_helpers import edit, line_of, of_rule, requirement, write_valid
from ruamel.yaml.scalarstring import DoubleQuotedScalarString as DQ

from kaic.checklist.findings import Severity
from kaic.checklist.urls import USER_AGENT, UrlChecker, UrlResult, check_url
from kaic.checklist.validate import ValidateOptions, validate_paths


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to a non-loopback address fails the test instead of leaving the host."""
    real = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"test tried to dial {host}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


class _Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, body: bool) -> None:
        _Handler.seen.append((self.command, self.path, self.headers.get("User-Agent", "")))
        path = self.path.split("?", 1)[0]
        if path.startswith("/slow"):
            time.sleep(1.0)
        if path == "/missing":
            code = 404
        elif path == "/head-refused" and self.command == "HEAD":
            code = 405
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        else:
            code = 200
        payload = b"hello\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        self._answer(True)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_a_reachable_url_is_ok_and_names_kaic_in_the_user_agent(server: str) -> None:
    _Handler.seen.clear()
    assert check_url(f"{server}/ok", timeout=5).ok
    assert _Handler.seen == [("HEAD", "/ok", USER_AGENT)]
    assert USER_AGENT.startswith("kaic/")


def test_a_404_is_unreachable_after_head_and_get(server: str) -> None:
    _Handler.seen.clear()
    res = check_url(f"{server}/missing", timeout=5)
    assert res == UrlResult(f"{server}/missing", False, "status code 404")
    assert [m for m, _, _ in _Handler.seen] == ["HEAD", "GET"]


def test_a_refused_head_falls_back_to_get(server: str) -> None:
    assert check_url(f"{server}/head-refused", timeout=5).ok


def test_redirects_are_followed(server: str) -> None:
    assert check_url(f"{server}/redirect", timeout=5).ok


def test_a_slow_server_times_out(server: str) -> None:
    res = check_url(f"{server}/slow", timeout=0.2)
    assert not res.ok and "timed out" in res.detail


def test_a_closed_port_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = check_url(f"http://127.0.0.1:{port}/", timeout=2)
    assert not res.ok and res.detail


def test_urls_are_checked_concurrently(server: str) -> None:
    urls = [f"{server}/slow/{i}" for i in range(8)]
    started = time.monotonic()
    results = UrlChecker(timeout=5, workers=8).check_all(urls)
    elapsed = time.monotonic() - started
    assert all(results[u].ok for u in urls)
    assert elapsed < 4.0  # one after the other would take 8 s


def _local_urls(product: Path, server: str, website: str, evidence: str) -> None:
    def fix(d: Any) -> None:
        m = d["metadata"]
        m.pop("k8sConformanceUrl")  # its format rule demands github.com; never dialled here
        m["websiteUrl"] = DQ(f"{server}{website}")
        m["repoUrl"] = DQ(f"{server}/ok")
        m["documentationUrl"] = DQ(f"{server}/ok")
        m["productLogoUrl"] = DQ(f"{server}/logo.svg")
        requirement(d, "ai_inference")["evidence"].append(DQ(f"{server}{evidence}"))

    edit(product, fix)


def test_reachable_metadata_and_evidence_urls_pass(tmp_path: Path, server: str) -> None:
    p = write_valid(tmp_path)
    _local_urls(p, server, "/ok", "/ok")
    findings = (
        validate_paths([p], ValidateOptions(url_checker=UrlChecker(timeout=5))).files[0].findings
    )
    assert of_rule(findings, "metadata.url-unreachable") == []
    assert of_rule(findings, "evidence.url-unreachable") == []
    assert of_rule(findings, "url.not-checked") == []


def test_unreachable_metadata_and_evidence_urls_fail_with_the_official_messages(
    tmp_path: Path, server: str
) -> None:
    p = write_valid(tmp_path)
    _local_urls(p, server, "/missing", "/missing?evidence")
    report = validate_paths([p], ValidateOptions(url_checker=UrlChecker(timeout=5)))
    findings = report.files[0].findings
    meta = of_rule(findings, "metadata.url-unreachable")
    assert [(f.message, f.line, f.column, f.severity) for f in meta] == [
        (
            f"Invalid URL in metadata websiteUrl: {server}/missing (status code 404)",
            *line_of(p, f'"{server}/missing"'),
            Severity.ERROR,
        )
    ]
    ev = of_rule(findings, "evidence.url-unreachable")
    assert [(f.message, f.line, f.column) for f in ev] == [
        (
            f"Invalid evidence URL for 'ai_inference': {server}/missing?evidence (status code 404)",
            *line_of(p, f'"{server}/missing?evidence"'),
        )
    ]
    assert report.exit_code() == 1


def test_the_k8s_conformance_url_gets_its_own_message(tmp_path: Path) -> None:
    p = write_valid(tmp_path)
    seen: list[str] = []

    class Refusing(UrlChecker):
        def check_all(self, urls: Any) -> dict[str, UrlResult]:
            out = {}
            for u in urls:
                seen.append(u)
                out[u] = UrlResult(u, False, "status code 404")
            return out

    findings = validate_paths([p], ValidateOptions(url_checker=Refusing())).files[0].findings
    url = "https://github.com/cncf/k8s-conformance/tree/master/v1.37/acme"
    hits = [
        f for f in of_rule(findings, "metadata.url-unreachable") if "k8sConformance" in f.message
    ]
    assert [(f.message, f.line) for f in hits] == [
        (f"k8sConformanceUrl is not accessible: {url} (status code 404)", line_of(p, url)[0])
    ]
    assert all(urlsplit(u).hostname for u in seen)
