"""The one HTTPS client of the lab's apiserver, used by ``LabContext`` and every simulator.

Owns: ``ApiClient`` (plain urllib, a client certificate or a bearer token, no proxies),
``ApiError`` (an error answer, with its HTTP status), ``Mirror`` (a list + watch cache of
one collection, for simulators that must not re-list a large lab) and ``probe`` (is a
health URL up).
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
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
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


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` (``name`` for cluster-scoped objects)."""
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{ns}/{md.get('name', '')}" if ns else str(md.get("name", ""))


class Mirror:
    """The objects of one collection, kept current by a list and then a watch from its
    resourceVersion (with bookmarks), listed again only when the watch cannot resume
    (410 Gone, a failed request). A reader takes ``items()``: a snapshot, no request.

    ``on_event(type, obj)`` is called from the watch thread for every ADDED, MODIFIED and
    DELETED event (not for the objects of a list); ``changed`` is set after each event and
    each list, so a reconcile loop can wait on it.
    """

    PAGE = 500
    """Objects per page of a list."""

    def __init__(
        self,
        api: ApiClient,
        path: str,
        *,
        log: Callable[[str], None] | None = None,
        on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
        optional: bool = False,
        watch_timeout_s: int = 300,
    ) -> None:
        self.api = api
        self.path = path
        self.log = log or (lambda _msg: None)
        self.on_event = on_event
        self.optional = optional
        """A 404 (an API not served, e.g. a CRD not installed yet) is an empty collection,
        listed again after a while."""
        self.watch_timeout_s = watch_timeout_s
        self.synced = threading.Event()
        self.changed = threading.Event()
        self.lists = 0
        """How many times the collection was listed (a test and a log read it)."""
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    def _sep(self) -> str:
        return "&" if "?" in self.path else "?"

    def relist(self) -> str:
        """List the whole collection (in pages); returns the list's resourceVersion."""
        objects: dict[str, dict[str, Any]] = {}
        token = ""
        while True:
            page = f"{self.path}{self._sep()}limit={self.PAGE}"
            if token:
                page += "&continue=" + urllib.parse.quote(token)
            doc = self.api.request("GET", page)
            for obj in doc.get("items") or []:
                objects[object_key(obj)] = obj
            meta = doc.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                rv = str(meta.get("resourceVersion", ""))
                break
        with self._lock:
            self._objects = objects
        self.lists += 1
        self.synced.set()
        self.changed.set()
        return rv

    def apply(self, event: Mapping[str, Any]) -> str | None:
        """One watch event; returns the resourceVersion to resume from, None when the
        watch must be started again from a fresh list (an ERROR event)."""
        kind = str(event.get("type", ""))
        obj = event.get("object") or {}
        rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if kind == "ERROR":
            return None
        if kind in ("ADDED", "MODIFIED"):
            with self._lock:
                self._objects[object_key(obj)] = dict(obj)
        elif kind == "DELETED":
            with self._lock:
                self._objects.pop(object_key(obj), None)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            if self.on_event is not None:
                self.on_event(kind, obj)
            self.changed.set()
        return rv

    def run(self, stop: threading.Event) -> None:
        """List, then watch, until ``stop``; call in a thread of its own (``start``)."""
        rv: str | None = None
        while not stop.is_set():
            try:
                if rv is None:
                    rv = self.relist()
                lines = self.api.watch_lines(
                    f"{self.path}{self._sep()}watch=1&allowWatchBookmarks=true"
                    f"&resourceVersion={rv}&timeoutSeconds={self.watch_timeout_s}",
                    timeout=self.watch_timeout_s + 30,
                )
                for line in lines:
                    if stop.is_set():
                        return
                    if line.strip():
                        rv = self.apply(json.loads(line))
                        if rv is None:
                            break
            except ApiError as e:
                if not (self.optional and e.status == 404):
                    self.log(f"{self.path}: {e}")
                rv = None
                if self.optional and e.status == 404:
                    with self._lock:
                        self._objects = {}
                    self.synced.set()
                stop.wait(2.0 if e.status == 404 else 1.0)
            except (OSError, ValueError, KeyError, TypeError) as e:
                self.log(f"{self.path}: watch ended: {e}")
                rv = None
                stop.wait(1.0)

    def start(self, stop: threading.Event) -> Mirror:
        threading.Thread(target=self.run, args=(stop,), daemon=True, name=self.path).start()
        return self


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
