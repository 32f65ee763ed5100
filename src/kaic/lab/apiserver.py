"""The one HTTPS client of the lab's apiserver, used by ``LabContext`` and every simulator.

Owns: ``ApiClient`` (plain urllib, a client certificate or a bearer token, no proxies),
``ApiError`` (an error answer, with its HTTP status) and ``probe`` (is a health URL up).
Must not import the ``kubernetes`` client (only ``kaic.cluster`` does), and dials only
loopback: a server that is not on 127.0.0.0/8 (or ``localhost``) is refused.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import shutil
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from kaic.errors import LabError


class ApiError(LabError):
    """An error answer of the lab's apiserver (``status`` 0: no answer at all)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _require_loopback(server: str) -> None:
    host = urllib.parse.urlsplit(server).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LabError(f"the lab's apiserver must be on loopback, not {server}")


def _opener(context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


class ApiClient:
    """Requests to one apiserver on loopback; JSON in, parsed JSON out."""

    def __init__(
        self,
        server: str,
        context: ssl.SSLContext,
        *,
        token: str | None = None,
        tmp: Path | None = None,
    ) -> None:
        _require_loopback(server)
        self.server = server.rstrip("/")
        self.token = token
        self._tmp = tmp
        self._opener = _opener(context)

    @classmethod
    def from_files(
        cls, server: str, ca: Path | str, cert: Path | str, key: Path | str
    ) -> ApiClient:
        """A client that trusts ``ca`` and presents the client certificate ``cert``."""
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        return cls(server, context)

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path) -> ApiClient:
        """A client for the current context of ``kubeconfig`` (file paths or ``-data``)."""
        cfg = yaml.safe_load(kubeconfig.read_text())
        current = cfg.get("current-context")
        ctx = next(
            (c["context"] for c in cfg.get("contexts", []) if c["name"] == current),
            cfg["contexts"][0]["context"],
        )
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        tmp = Path(tempfile.mkdtemp(prefix="kaic-lab-api-"))

        def file(section: Mapping[str, Any], key: str, name: str) -> Path | None:
            if section.get(f"{key}-data"):
                p = tmp / name
                p.write_bytes(base64.b64decode(section[f"{key}-data"]))
                p.chmod(0o600)
                return p
            return Path(section[key]) if section.get(key) else None

        ca = file(cluster, "certificate-authority", "ca.crt")
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        cert, key = (
            file(user, "client-certificate", "client.crt"),
            file(user, "client-key", "client.key"),
        )
        if cert and key:
            context.load_cert_chain(str(cert), str(key))
        return cls(str(cluster["server"]), context, token=user.get("token"), tmp=tmp)

    def close(self) -> None:
        """Remove the files written for ``-data`` entries of a kubeconfig."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _request(
        self, method: str, path: str, body: Any, content_type: str, accept: str
    ) -> urllib.request.Request:
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": content_type, "Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return urllib.request.Request(self.server + path, data=data, method=method, headers=headers)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        """One request; returns the parsed JSON answer (text if it is not JSON, None if
        empty). Raises ApiError with the HTTP status for error answers."""
        req = self._request(method, path, body, content_type, accept)
        try:
            with self._opener.open(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                text = json.loads(text).get("message", text)
            raise ApiError(e.code, f"{method} {path}: {e.code} {text}") from e
        except (urllib.error.URLError, OSError) as e:
            raise ApiError(0, f"{method} {path}: {e}") from e
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw.decode(errors="replace")

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def exists(self, path: str) -> bool:
        """True if ``path`` answers, False on 404 (other errors raise)."""
        try:
            self.get(path)
        except ApiError as e:
            if e.status == 404:
                return False
            raise
        return True

    def watch_lines(self, path: str, timeout: float) -> Iterator[bytes]:
        """The lines of a watch (``?watch=1``) until the server ends it."""
        with self._opener.open(
            self._request("GET", path, None, "application/json", "application/json"),
            timeout=timeout,
        ) as r:
            yield from r


_PROBE: list[urllib.request.OpenerDirector] = []


def probe(url: str, *, timeout: float = 2.0) -> bool:
    """True if ``url`` (http or https, certificate not verified) answers 200."""
    if not _PROBE:
        # NOTE: one context for every probe: building one loads the system CAs (costly
        # when readiness is polled many times a second).
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _PROBE.append(_opener(context))
    try:
        with _PROBE[0].open(url, timeout=timeout) as r:
            return int(r.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
