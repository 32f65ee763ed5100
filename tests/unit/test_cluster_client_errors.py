"""Connection, TLS and kubeconfig problems: one line, in the server's or the file's words,
no retries of what cannot succeed, no log lines or warnings from the client library."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kaic.cluster import client as client_mod
from kaic.cluster.client import RetryPolicy, connect
from kaic.errors import ClusterUnreachableError, InputError

SLOW = RetryPolicy(attempts=5, base_delay_s=1.0, max_delay_s=1.0)


def _kubeconfig(
    tmp: Path, server: str, *, ca: bytes | None = None, user: str = "{token: t}"
) -> Path:
    ca_line = f", certificate-authority-data: {base64.b64encode(ca).decode()}" if ca else ""
    kc = tmp / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster: {{server: '{server}'{ca_line}}}\n"
        f"users:\n- name: u\n  user: {user}\n"
        "contexts:\n- name: one\n  context: {cluster: c, user: u}\n"
        "- name: two\n  context: {cluster: c, user: u}\n"
        "current-context: one\n"
    )
    return kc


def test_an_empty_server_address_is_one_line_without_library_warnings(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path, "")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match="has no usable server address") as e:
            connect(str(kc))
    assert "\n" not in str(e.value)
    assert caught == []


def test_a_missing_exec_credential_plugin_is_named_and_nothing_is_logged(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    user = (
        "\n    exec: {apiVersion: client.authentication.k8s.io/v1, "
        "command: /nonexistent/kubectl-oidc, interactiveMode: Never}"
    )
    kc = _kubeconfig(tmp_path, "https://127.0.0.1:9", user=user)
    with pytest.raises(InputError, match="/nonexistent/kubectl-oidc"):
        connect(str(kc))
    out, err = capfd.readouterr()
    assert "ERROR:root" not in out + err and err == ""


def test_an_unknown_context_lists_the_known_ones(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path, "https://127.0.0.1:9")
    with pytest.raises(InputError, match="known contexts: one, two"):
        connect(str(kc), context="nope")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def test_a_server_that_never_answers_fails_reachability_quickly_naming_the_address(
    tmp_path: Path, silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sum(client_mod._PROBE_TIMEOUT) <= 15 and client_mod._PROBE_TIMEOUT[1] <= 10
    monkeypatch.setattr(client_mod, "_PROBE_TIMEOUT", (1.0, 1.0))
    c = connect(str(_kubeconfig(tmp_path, f"http://127.0.0.1:{silent_server}")), retry=SLOW)
    start = time.monotonic()
    with pytest.raises(
        ClusterUnreachableError,
        match=f"cluster at http://127.0.0.1:{silent_server}: no answer within",
    ):
        c.server_version()
    assert time.monotonic() - start < 2.5


def _cert(
    cn: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    days: tuple[int, int],
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    iname, ikey = issuer or (name, key)
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(iname)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return b.sign(ikey, hashes.SHA256()), key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> int:
        (tmp_path / "s.crt").write_bytes(_pem(cert))
        (tmp_path / "s.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        srv.handle_error = lambda *a: None  # type: ignore[method-assign]
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(srv)
        return int(srv.server_address[1])

    yield start
    for s in servers:
        s.shutdown()


def test_an_expired_certificate_says_when_and_is_not_retried(
    tmp_path: Path, tls_server: Any
) -> None:
    ca, ca_key = _cert("ca", None, (-30, 300), ca=True)
    cert, key = _cert("server", (ca.subject, ca_key), (-30, -2))
    port = tls_server(cert, key)
    c = connect(str(_kubeconfig(tmp_path, f"https://127.0.0.1:{port}", ca=_pem(ca))), retry=SLOW)
    start = time.monotonic()
    with pytest.raises(ClusterUnreachableError) as e:
        c.server_version()
    assert time.monotonic() - start < 1.0  # no retry (each would wait 1 s)
    expected = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert str(e.value) == (
        f"cannot reach the cluster at https://127.0.0.1:{port}: the "
        f"server certificate expired on {expected}"
    )


def test_a_certificate_of_another_ca_says_so(tmp_path: Path, tls_server: Any) -> None:
    ca, ca_key = _cert("ca", None, (-1, 300), ca=True)
    other, _ = _cert("other-ca", None, (-1, 300), ca=True)
    cert, key = _cert("server", (ca.subject, ca_key), (-1, 30))
    port = tls_server(cert, key)
    c = connect(str(_kubeconfig(tmp_path, f"https://127.0.0.1:{port}", ca=_pem(other))), retry=SLOW)
    with pytest.raises(
        ClusterUnreachableError, match="not signed by the kubeconfig's certificate authority"
    ) as e:
        c.server_version()
    assert "\n" not in str(e.value) and "urllib3" not in str(e.value)


def test_insecure_skip_tls_verify_does_not_print_a_warning_per_request(
    tmp_path: Path, tls_server: Any
) -> None:
    cert, key = _cert("server", None, (-1, 30))  # self-signed
    port = tls_server(cert, key)
    kc = _kubeconfig(tmp_path, f"https://127.0.0.1:{port}")
    kc.write_text(
        kc.read_text().replace(
            "cluster: {server:", "cluster: {insecure-skip-tls-verify: true, server:"
        )
    )
    with warnings.catch_warnings(record=True) as caught:
        c = connect(str(kc), retry=SLOW)
        with pytest.raises(Exception, match="gitVersion"):
            c.server_version()
    assert [w for w in caught if "Unverified HTTPS" in str(w.message)] == []
