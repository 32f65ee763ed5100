"""The real ``ClusterAPI``: the official ``kubernetes`` client, wrapped.

Owns: kubeconfig loading like kubectl (``--kubeconfig``, ``--context``, ``KUBECONFIG``,
``~/.kube/config``, in-cluster), discovery, dict-based CRUD on any group/version
(built-in kinds and CRDs alike), server-side dry-run and apply, watch-based waits with
explicit timeouts, exec and port-forward over websockets, scraping an HTTP endpoint
through a port-forward, SelfSubjectAccessReview, retries with backoff on 429/5xx and
dropped connections, and the mapping of client errors onto ``kaic.errors``.

Must not decide pass or fail, and must not leak a client exception to its callers.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import logging
import math
import os
import random
import re
import select
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import portforward as k8s_portforward
from kubernetes.stream import stream as k8s_stream
from kubernetes.stream.ws_client import ERROR_CHANNEL
from websocket import WebSocketException

from kaic.cluster.api import ApiResource, ExecResult, KubeList, KubeObject
from kaic.cluster.counting import COUNTS
from kaic.errors import (
    ClusterError,
    ClusterUnreachableError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    RejectedError,
    WaitTimeoutError,
)

__all__ = ["Cluster", "RetryPolicy", "connect"]

FIELD_MANAGER = "kaic"
_LIST_PAGE = 500
_DISCOVERY_TTL_S = 30.0
_CONNECTION_ERRORS = (
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ConnectTimeoutError,
    urllib3.exceptions.ReadTimeoutError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry 429, 5xx and dropped connections."""

    attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    outage_s: float = 45.0
    """How long to keep retrying once ``attempts`` are spent: an apiserver restarting, a
    stalled etcd, or API Priority and Fairness answering 429 for a while. The
    reachability probe does not use it (an unreachable cluster fails fast)."""

    def again(
        self, attempt: int, started: float, *, probe: bool = False, outage: bool = True
    ) -> bool:
        """Whether to retry after ``attempt`` (0-based) failed, ``started`` monotonic;
        ``outage``: the failure is one that passes (no connection, 429, 503, 504)."""
        if attempt + 1 < self.attempts:
            return True
        return outage and not probe and time.monotonic() - started < self.outage_s

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            with contextlib.suppress(ValueError):
                return min(float(retry_after), 10.0)
        base: float = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        return base * (0.5 + random.random() / 2)


# -- kubeconfig ------------------------------------------------------------------------


def _kubeconfig_path(kubeconfig: str | None) -> str | None:
    """Which kubeconfig to read, like kubectl: flag, then $KUBECONFIG, then ~/.kube/config."""
    if kubeconfig:
        if not Path(kubeconfig).expanduser().is_file():
            raise InputError(f"kubeconfig {kubeconfig} does not exist")
        return str(Path(kubeconfig).expanduser())
    env = os.environ.get("KUBECONFIG", "")
    paths = [p for p in env.split(os.pathsep) if p]
    existing = [str(Path(p).expanduser()) for p in paths if Path(p).expanduser().is_file()]
    if existing:
        return os.pathsep.join(existing)
    default = Path("~/.kube/config").expanduser()
    return str(default) if default.is_file() else None


class _Captured(logging.Handler):
    """Collects the client library's log records (it reports exec-plugin failures with
    ``logging.error`` on the root logger and carries on)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


@contextlib.contextmanager
def _quiet_library() -> Iterator[_Captured]:
    """No log line or warning of the client library reaches the terminal meanwhile."""
    captured = _Captured()
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [captured]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield captured
    finally:
        root.handlers = saved


def _known_contexts(path: str) -> list[str]:
    with contextlib.suppress(Exception):
        contexts, _ = k8s_config.list_kube_config_contexts(config_file=path)
        return [str(c.get("name")) for c in contexts or [] if isinstance(c, dict)]
    return []


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    retry: RetryPolicy | None = None,
    timeout_s: float = 30.0,
) -> Cluster:
    """A ``Cluster`` for the kubeconfig and context kubectl would use with the same flags.

    Does not talk to the server yet (``server_version()`` is the cheapest reachability
    probe). Raises ``InputError`` for an unreadable kubeconfig, an unknown context (naming
    the known ones), a server address that is not a URL, or a failing exec credential
    plugin, and ``ClusterUnreachableError`` when no configuration can be found at all.
    """
    cfg = k8s_client.Configuration()
    path = _kubeconfig_path(kubeconfig)
    context_name: str | None = context
    try:
        if path is not None:
            if context is not None:
                known = _known_contexts(path)
                if known and context not in known:
                    raise InputError(
                        f"--context {context}: no such context in {path}; "
                        f"known contexts: {', '.join(known)}"
                    )
            with _quiet_library() as log:
                k8s_config.load_kube_config(
                    config_file=path,
                    context=context,
                    client_configuration=cfg,
                    persist_config=False,
                )
            plugin = [m for m in log.messages if m]
            if plugin:
                raise InputError(
                    f"kubeconfig {path}: the user's credentials could not be obtained: {plugin[0]}"
                )
            if context_name is None:
                _, active = k8s_config.list_kube_config_contexts(config_file=path)
                context_name = str(active.get("name")) if active else None
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            if context:
                raise InputError(f"--context {context} given, but no kubeconfig was found")
            with _quiet_library():
                k8s_config.load_incluster_config(client_configuration=cfg)
            context_name = "in-cluster"
        else:
            raise ClusterUnreachableError(
                "no kubeconfig found (use --kubeconfig, set KUBECONFIG or create"
                " ~/.kube/config) and not running inside a cluster"
            )
    except ConfigException as e:
        where = path or "in-cluster configuration"
        raise InputError(f"cannot load {where}: {' '.join(str(e).split())}") from e
    except yaml.YAMLError as e:
        detail = " ".join(str(e).split())
        raise InputError(f"kubeconfig {path} is not valid YAML: {detail}") from e
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise InputError(f"cannot load kubeconfig {path}: {' '.join(str(e).split())}") from e
    host = str(cfg.host or "")
    url = urlsplit(host)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InputError(
            f"kubeconfig {path}: context '{context_name}' has no usable server "
            f"address ({host!r}); set the cluster's server to https://HOST:PORT"
        )
    if not cfg.verify_ssl:
        # NOTE: the kubeconfig asked for it (insecure-skip-tls-verify); one warning per
        # request from urllib3 would only bury kaic's output.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    # NOTE: kaic retries itself (with backoff and Retry-After); urllib3's own retries
    # would hide dropped connections from that policy and double the waiting.
    cfg.retries = urllib3.util.Retry(
        total=0, connect=0, read=0, redirect=0, status=0, raise_on_status=False
    )
    return Cluster(cfg, context=context_name, retry=retry or RetryPolicy(), timeout_s=timeout_s)


# -- error mapping -----------------------------------------------------------------------


def _status_message(e: ApiException) -> str:
    body = getattr(e, "body", None)
    if body:
        with contextlib.suppress(ValueError, TypeError):
            doc = json.loads(body)
            if isinstance(doc, dict) and doc.get("message"):
                return str(doc["message"])
    return str(e.reason or f"HTTP {e.status}")


def _map_api_error(e: ApiException, what: str) -> ClusterError:
    status = int(e.status or 0)
    msg = _status_message(e)
    if status == 0:
        return ClusterUnreachableError(f"{what}: {msg.splitlines()[0] if msg else 'TLS error'}")
    if status == 401:
        return ClusterUnreachableError(
            f"{what}: the cluster refused the credentials (401 Unauthorized)"
        )
    if status == 403:
        # NOTE: a ValidatingAdmissionPolicy whose validation sets reason Forbidden
        # answers 403 "… with binding '…' denied request: …": admission, not RBAC.
        if "admission webhook" in msg or "denied the request" in msg or "denied request" in msg:
            return RejectedError(f"{what}: {msg}")
        return PermissionDeniedError(f"{what}: forbidden: {msg}")
    if status == 404:
        return NotFoundError(f"{what}: not found: {msg}")
    if status == 409:
        return ConflictError(f"{what}: conflict: {msg}")
    if status in (400, 422):
        return RejectedError(f"{what}: rejected: {msg}")
    return ClusterError(f"{what}: HTTP {status}: {msg}")


_OUTAGE_STATUSES = (429, 503, 504)
"""Answers retried for ``RetryPolicy.outage_s``: throttled, not ready, timed out. A 500
(e.g. a webhook that cannot be called) or 502 gets only the ``attempts``."""


def _retryable_status(status: int) -> bool:
    return status == 429 or status in (500, 502, 503, 504)


FORWARD_ATTEMPTS = 3
"""Tries to open a port-forward stream when the server answers the upgrade with a 5xx."""


# -- the adapter -------------------------------------------------------------------------


class Cluster:
    """The real ``ClusterAPI`` over one kubeconfig context. Thread-safe."""

    def __init__(
        self,
        configuration: Any,
        *,
        context: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._cfg = configuration
        self._api = k8s_client.ApiClient(configuration)
        self.context = context
        self.server = str(configuration.host)
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self._discovery: dict[str, tuple[float, list[ApiResource]]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Cluster(context={self.context!r}, server={self.server!r})"

    # -- HTTP ---------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | tuple[float, float] | None = None,
        stream: bool = False,
        what: str | None = None,
        probe: bool = False,
        accept: str = "application/json",
    ) -> Any:
        """One request with retries; returns parsed JSON, text, or the raw response.

        ``probe``: a reachability check, which gives up at the first timeout."""
        what = what or f"{method} {path}"
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        attempt = 0
        started = time.monotonic()
        while True:
            COUNTS.add(method, path, query or ())
            try:
                resp = self._api.call_api(
                    path,
                    method,
                    query_params=query or [],
                    header_params=headers,
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _return_http_data_only=True,
                    _request_timeout=timeout if timeout is not None else self.timeout_s,
                )
                if stream:
                    return resp
                data = resp.data
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
                if not text:
                    return None
                try:
                    return json.loads(text)
                except ValueError:
                    return text
            except ApiException as e:
                status = int(e.status or 0)
                if _retryable_status(status) and self.retry.again(
                    attempt, started, probe=probe, outage=status in _OUTAGE_STATUSES
                ):
                    retry_after = e.headers.get("Retry-After") if e.headers else None
                    time.sleep(self.retry.delay(attempt, retry_after))
                    attempt += 1
                    continue
                raise _map_api_error(e, what) from e
            except _CONNECTION_ERRORS as e:
                tls = _tls_problem(e, self.server)
                if tls is not None:  # NOTE: a certificate does not get better by retrying
                    raise ClusterUnreachableError(
                        f"cannot reach the cluster at {self.server}: {tls}"
                    ) from e
                if probe and _is_timeout(e):
                    read = timeout[1] if isinstance(timeout, tuple) else timeout
                    raise ClusterUnreachableError(
                        f"cannot reach the cluster at {self.server}: no answer within "
                        f"{read:.0f}s ({what})"
                    ) from e
                # NOTE: a create whose connection dropped may have reached the server;
                # retrying it can answer 409, which the caller sees as ConflictError.
                if self.retry.again(attempt, started, probe=probe):
                    time.sleep(self.retry.delay(attempt))
                    attempt += 1
                    continue
                raise ClusterUnreachableError(
                    f"cannot reach the cluster at {self.server} ({what}): {_short(e)}"
                ) from e

    # -- discovery ------------------------------------------------------------------------
    def server_version(self) -> str:
        """The server's gitVersion; also the reachability probe, so it fails within about
        ten seconds when the address accepts connections but does not answer."""
        doc = self._call(
            "GET", "/version", what="reading the server version", timeout=_PROBE_TIMEOUT, probe=True
        )
        if not isinstance(doc, dict) or "gitVersion" not in doc:
            raise ClusterError(
                f"the server at {self.server} answered /version without a"
                " gitVersion; is this a Kubernetes apiserver?"
            )
        return str(doc["gitVersion"])

    def api_versions(self) -> list[str]:
        out: list[str] = []
        core = self._call("GET", "/api", what="discovering the core API")
        out.extend(str(v) for v in (core or {}).get("versions", []))
        groups = self._call("GET", "/apis", what="discovering API groups")
        for g in (groups or {}).get("groups", []):
            out.extend(str(v["groupVersion"]) for v in g.get("versions", []))
        return out

    @staticmethod
    def _base(api_version: str) -> str:
        return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"

    def api_resources(self, api_version: str) -> list[ApiResource]:
        now = time.monotonic()
        with self._lock:
            cached = self._discovery.get(api_version)
        if cached and now - cached[0] < _DISCOVERY_TTL_S:
            return list(cached[1])
        try:
            doc = self._call("GET", self._base(api_version), what=f"discovering {api_version}")
        except NotFoundError:
            with self._lock:
                self._discovery.pop(api_version, None)
            return []
        group, _, version = api_version.rpartition("/")
        resources = [
            ApiResource(
                group=group,
                version=version,
                name=str(r["name"]),
                kind=str(r["kind"]),
                namespaced=bool(r.get("namespaced")),
                verbs=tuple(r.get("verbs") or ()),
            )
            for r in (doc or {}).get("resources", [])
            if "/" not in str(r["name"])  # subresources (pods/exec, */status) are not kinds
        ]
        with self._lock:
            self._discovery[api_version] = (now, resources)
        return list(resources)

    def _resource(self, api_version: str, kind: str) -> ApiResource:
        for r in self.api_resources(api_version):
            if r.kind == kind:
                return r
        with self._lock:  # the group may have just appeared: look again once
            self._discovery.pop(api_version, None)
        for r in self.api_resources(api_version):
            if r.kind == kind:
                return r
        raise NotFoundError(f"the server does not serve {kind} in {api_version}")

    def _path(
        self,
        res: ApiResource,
        namespace: str | None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        path = self._base(res.api_version)
        if res.namespaced and namespace:
            path += f"/namespaces/{quote(namespace, safe='')}"
        path += f"/{res.name}"
        if name:
            path += f"/{quote(name, safe='')}"
        if subresource:
            path += f"/{subresource}"
        return path

    # -- CRUD ---------------------------------------------------------------------------
    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        res = self._resource(api_version, kind)
        try:
            obj = self._call(
                "GET",
                self._path(res, namespace, name),
                what=f"getting {kind} {_ref(name, namespace)}",
            )
        except NotFoundError:
            return None
        return dict(obj) if isinstance(obj, dict) else None

    def _pages(
        self,
        res: ApiResource,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        what: str,
    ) -> Iterator[tuple[KubeList, str]]:
        """Each page of a list (``_LIST_PAGE`` objects at most) with the resourceVersion
        it was read at."""
        cont: str | None = None
        while True:
            query: list[tuple[str, Any]] = [("limit", _LIST_PAGE)]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if field_selector:
                query.append(("fieldSelector", field_selector))
            if cont:
                query.append(("continue", cont))
            doc = self._call("GET", self._path(res, namespace), query=query, what=what) or {}
            items: KubeList = []
            for item in doc.get("items") or []:
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", res.kind)
                # NOTE: no check reads managedFields, and on a large cluster they are a
                # good part of every listed Node and slice kept in memory.
                (item.get("metadata") or {}).pop("managedFields", None)
                items.append(item)
            meta = doc.get("metadata") or {}
            cont = meta.get("continue")
            yield items, str(meta.get("resourceVersion", ""))
            if not cont:
                return

    def _list_raw(
        self,
        res: ApiResource,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        what: str,
    ) -> tuple[KubeList, str]:
        items: KubeList = []
        rv = ""
        for page, page_rv in self._pages(res, namespace, label_selector, field_selector, what):
            items.extend(page)
            rv = page_rv
        return items, rv

    def _what_list(self, res: ApiResource, namespace: str | None) -> str:
        where = f" in namespace {namespace}" if namespace else ""
        return f"listing {res.name}.{res.group or 'core'}{where}"

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> KubeList:
        res = self._resource(api_version, kind)
        items, _ = self._list_raw(
            res, namespace, label_selector, field_selector, self._what_list(res, namespace)
        )
        return items

    def iterate(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Iterator[KubeObject]:
        res = self._resource(api_version, kind)
        what = self._what_list(res, namespace)
        for page, _ in self._pages(res, namespace, label_selector, field_selector, what):
            yield from page

    def create(self, obj: KubeObject, *, dry_run: bool = False) -> KubeObject:
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        res = self._resource(api_version, kind)
        md = obj.get("metadata") or {}
        namespace = md.get("namespace") if res.namespaced else None
        if res.namespaced and not namespace:
            raise RejectedError(f"{kind} {md.get('name', '')} needs metadata.namespace")
        query: list[tuple[str, Any]] = [("fieldManager", FIELD_MANAGER)]
        if dry_run:
            query.append(("dryRun", "All"))
        verb = "dry-run creating" if dry_run else "creating"
        name = md.get("name") or f"{md.get('generateName', '')}*"
        out = self._call(
            "POST",
            self._path(res, namespace),
            query=query,
            body=obj,
            what=f"{verb} {kind} {_ref(name, namespace)}",
        )
        return dict(out) if isinstance(out, dict) else {}

    def create_subresource(
        self,
        api_version: str,
        kind: str,
        name: str,
        subresource: str,
        body: KubeObject,
        namespace: str | None = None,
    ) -> KubeObject:
        res = self._resource(api_version, kind)
        out = self._call(
            "POST",
            self._path(res, namespace, name, subresource),
            query=[("fieldManager", FIELD_MANAGER)],
            body=body,
            what=f"creating {subresource} of {kind} {_ref(name, namespace)}",
        )
        return dict(out) if isinstance(out, dict) else {}

    def apply(self, obj: KubeObject) -> KubeObject:
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        res = self._resource(api_version, kind)
        md = obj.get("metadata") or {}
        namespace = md.get("namespace") if res.namespaced else None
        out = self._call(
            "PATCH",
            self._path(res, namespace, str(md.get("name", ""))),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=obj,
            content_type="application/apply-patch+yaml",
            what=f"applying {kind} {_ref(str(md.get('name', '')), namespace)}",
        )
        return dict(out) if isinstance(out, dict) else {}

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: KubeObject,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> KubeObject:
        res = self._resource(api_version, kind)
        out = self._call(
            "PATCH",
            self._path(res, namespace, name, subresource),
            query=[("fieldManager", FIELD_MANAGER)],
            body=patch,
            content_type="application/merge-patch+json",
            what=f"patching {kind} {_ref(name, namespace)}",
        )
        return dict(out) if isinstance(out, dict) else {}

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        wait_timeout: float | None = None,
    ) -> bool:
        res = self._resource(api_version, kind)
        try:
            self._call(
                "DELETE",
                self._path(res, namespace, name),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": "Foreground",
                },
                what=f"deleting {kind} {_ref(name, namespace)}",
            )
        except NotFoundError:
            return False
        if wait_timeout is not None:
            self.wait_for(
                api_version,
                kind,
                name,
                namespace,
                lambda o: o is None,
                timeout=wait_timeout,
                what=f"{kind} {_ref(name, namespace)} to go",
            )
        return True

    # -- watches and waits ---------------------------------------------------------------
    def _watch_events(
        self,
        res: ApiResource,
        namespace: str | None,
        resource_version: str,
        deadline: float,
        label_selector: str | None,
        field_selector: str | None,
    ) -> Iterator[dict[str, Any]]:
        """Watch events from ``resource_version`` until the deadline or the stream ends.

        Ends quietly on a dropped stream (the caller relists); raises ``_Expired`` on 410.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", max(1, math.ceil(remaining))),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        try:
            resp = self._call(
                "GET",
                self._path(res, namespace),
                query=query,
                stream=True,
                timeout=(10.0, remaining + 10.0),
                what=f"watching {res.name}",
            )
        except ClusterUnreachableError:
            return
        try:
            for line in _iter_lines(resp):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise _Expired()
                    return
                yield event
                if time.monotonic() >= deadline:
                    return
        except _CONNECTION_ERRORS:
            return
        finally:
            with contextlib.suppress(Exception):
                resp.release_conn()
                resp.close()

    def _observe(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        timeout: float,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Iterator[KubeList]:
        """The current list at start and after every change, until ``timeout`` seconds."""
        res = self._resource(api_version, kind)
        deadline = time.monotonic() + timeout
        what = f"listing {res.name}"
        while True:
            items, rv = self._list_raw(res, namespace, label_selector, field_selector, what)
            current = {_key(o): o for o in items}
            yield list(current.values())
            try:
                while time.monotonic() < deadline:
                    changed = False
                    for event in self._watch_events(
                        res, namespace, rv, deadline, label_selector, field_selector
                    ):
                        obj = event.get("object") or {}
                        rv = str((obj.get("metadata") or {}).get("resourceVersion", rv))
                        if event.get("type") == "BOOKMARK":
                            continue
                        obj.setdefault("apiVersion", res.api_version)
                        obj.setdefault("kind", res.kind)
                        if event.get("type") == "DELETED":
                            current.pop(_key(obj), None)
                        else:
                            current[_key(obj)] = obj
                        changed = True
                        yield list(current.values())
                    if not changed and time.monotonic() < deadline:
                        time.sleep(0.2)  # the stream ended early: watch again from rv
                    if time.monotonic() >= deadline:
                        return
            except _Expired:
                continue  # 410 Gone: relist
            return

    def wait_for(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        condition: Callable[[KubeObject | None], bool],
        *,
        timeout: float,
        what: str,
    ) -> KubeObject | None:
        last: KubeObject | None = None
        for objs in self._observe(
            api_version, kind, namespace, timeout, field_selector=f"metadata.name={name}"
        ):
            last = objs[0] if objs else None
            if condition(last):
                return last
        raise WaitTimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")

    def wait_list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        condition: Callable[[KubeList], bool],
        *,
        timeout: float,
        what: str,
        label_selector: str | None = None,
    ) -> KubeList:
        for objs in self._observe(
            api_version, kind, namespace, timeout, label_selector=label_selector
        ):
            if condition(objs):
                return objs
        raise WaitTimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")

    def watch_list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        timeout: float,
        label_selector: str | None = None,
    ) -> Iterator[KubeList]:
        yield from self._observe(
            api_version, kind, namespace, timeout, label_selector=label_selector
        )

    # -- exec, port-forward, scraping -------------------------------------------------------
    def _stream_core(self) -> Any:
        # NOTE: kubernetes.stream swaps ApiClient.request while it runs; a private
        # ApiClient per call keeps concurrent requests of other threads unaffected.
        return k8s_client.CoreV1Api(k8s_client.ApiClient(self._cfg))

    def exec(
        self,
        namespace: str,
        pod: str,
        command: Sequence[str],
        *,
        container: str | None = None,
        timeout: float = 60.0,
    ) -> ExecResult:
        kwargs: dict[str, Any] = {
            "command": list(command),
            "stderr": True,
            "stdin": False,
            "stdout": True,
            "tty": False,
            "_preload_content": False,
        }
        if container:
            kwargs["container"] = container
        what = f"exec in pod {namespace}/{pod}"
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/exec"

        def open_it() -> Any:
            COUNTS.add("POST", path)
            return k8s_stream(
                self._stream_core().connect_get_namespaced_pod_exec, pod, namespace, **kwargs
            )

        ws = self._open_stream(what, open_it)
        try:
            ws.run_forever(timeout=timeout)
            if ws.is_open():
                raise WaitTimeoutError(f"{what}: the command did not finish within {timeout:.0f}s")
            stdout = str(ws.read_stdout(timeout=0) or "")
            stderr = str(ws.read_stderr(timeout=0) or "")
            code = exec_exit_code(ws.read_channel(ERROR_CHANNEL), what, stderr)
            return ExecResult(stdout=stdout, stderr=stderr, exit_code=code)
        except ClusterError:
            raise
        except Exception as e:  # the stream broke after the upgrade (server gone, TLS)
            raise _map_ws_error(e, what, started=True) from e
        finally:
            _close_websocket(ws)

    def _open_stream(self, what: str, open_it: Callable[[], Any]) -> Any:
        """Open an exec or port-forward stream; a refused upgrade or a lost connection
        is mapped to what the server said (``_map_ws_error``).

        NOTE: nothing has run yet when the upgrade fails, so a 5xx answer (the apiserver
        could not reach the node agent, e.g. under load) or a connection the server did
        not take (it is restarting) is tried again, ``FORWARD_ATTEMPTS`` times; a 4xx is
        not."""
        for attempt in range(FORWARD_ATTEMPTS):
            try:
                return open_it()
            except Exception as e:
                mapped = _map_ws_error(e, what)
                answer = _handshake_answer(e)
                passing = (
                    answer[0] >= 500
                    if answer is not None
                    else isinstance(mapped, ClusterUnreachableError)
                )
                if not passing or attempt == FORWARD_ATTEMPTS - 1:
                    raise mapped from e
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def _open_forward(self, namespace: str, pod: str, port: int) -> Any:
        what = f"port-forward to pod {namespace}/{pod}:{port}"

        def open_it() -> Any:
            COUNTS.add("POST", f"/api/v1/namespaces/{namespace}/pods/{pod}/portforward")
            # NOTE: forwards open side by side (a large cluster's scrapes would otherwise
            # wait on each other's handshakes). The client's proxy thread of this forward
            # (it keeps no reference to it) is the one whose target is a method of this
            # forward: _close_forward waits for it before the websocket is closed.
            pf = k8s_portforward(
                self._stream_core().connect_get_namespaced_pod_portforward,
                pod,
                namespace,
                ports=str(port),
            )
            pf.kaic_proxy_threads = _proxy_threads_of(pf)
            return pf

        return self._open_stream(what, open_it)

    @contextlib.contextmanager
    def port_forward(self, namespace: str, pod: str, port: int) -> Iterator[int]:
        """Listen on a loopback port; each accepted connection gets its own stream."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        local_port = int(listener.getsockname()[1])
        stop = threading.Event()

        def pump(conn: socket.socket) -> None:
            try:
                pf = self._open_forward(namespace, pod, port)
            except ClusterError:
                conn.close()
                return
            remote = pf.socket(port)
            try:
                _splice(conn, remote, stop)
            finally:
                with contextlib.suppress(OSError):
                    conn.close()
                _close_forward(pf)

        def accept_loop() -> None:
            while not stop.is_set():
                r, _, _ = select.select([listener], [], [], 0.2)
                if not r:
                    continue
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(
                    target=pump, args=(conn,), daemon=True, name=f"kaic-port-forward-{pod}-{port}"
                ).start()

        t = threading.Thread(target=accept_loop, daemon=True, name="kaic-port-forward")
        t.start()
        try:
            yield local_port
        finally:
            stop.set()
            t.join(timeout=2)
            listener.close()

    def http_get(
        self, namespace: str, pod: str, port: int, path: str, *, timeout: float = 30.0
    ) -> str:
        what = f"GET {path} from pod {namespace}/{pod}:{port}"
        pf = self._open_forward(namespace, pod, port)
        try:
            sock = pf.socket(port)
            sock.settimeout(timeout)
            conn = http.client.HTTPConnection("localhost", port, timeout=timeout)
            conn.sock = sock
            try:
                conn.request("GET", path, headers={"Connection": "close"})
                resp = conn.getresponse()
                body = resp.read().decode("utf-8", "replace")
            except (OSError, http.client.HTTPException) as e:
                err = pf.error(port)
                raise ClusterError(f"{what}: {err or _short(e)}") from e
            if resp.status >= 400:
                raise (
                    NotFoundError(f"{what}: HTTP {resp.status}")
                    if resp.status == 404
                    else ClusterError(f"{what}: HTTP {resp.status}")
                )
            return body
        finally:
            _close_forward(pf)

    def raw_get(self, path: str, *, timeout: float = 30.0) -> str:
        # NOTE: JSON first, but any representation the path has (the issuer's JWKS is
        # only application/jwk-set+json; metrics paths are text).
        out = self._call(
            "GET", path, timeout=timeout, what=f"GET {path}", accept="application/json, */*;q=0.8"
        )
        if out is None:
            return ""
        return out if isinstance(out, str) else json.dumps(out)

    # -- authorization, events -----------------------------------------------------------------
    def can_i(
        self,
        verb: str,
        resource: str,
        *,
        group: str = "",
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> bool:
        attrs: dict[str, Any] = {"verb": verb, "resource": resource, "group": group}
        if namespace:
            attrs["namespace"] = namespace
        if subresource:
            attrs["subresource"] = subresource
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }
        out = self._call(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body=review,
            what=f"asking whether we may {verb} {resource}",
        )
        return bool(((out or {}).get("status") or {}).get("allowed"))

    def events(self, namespace: str, involved_name: str | None = None) -> KubeList:
        selector = f"involvedObject.name={involved_name}" if involved_name else None
        return self.list("v1", "Event", namespace, field_selector=selector)


# -- helpers --------------------------------------------------------------------------------


class _Expired(Exception):
    """A watch's resourceVersion is too old (410 Gone)."""


def _ref(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name


def _key(obj: KubeObject) -> tuple[str, str]:
    md = obj.get("metadata") or {}
    return (str(md.get("namespace", "")), str(md.get("name", "")))


_PROBE_TIMEOUT = (5.0, 8.0)
# OpenSSL verify codes (x509_vfy.h)
_UNTRUSTED = {2, 18, 19, 20, 21, 27, 30}
_EXPIRED, _NOT_YET_VALID, _HOSTNAME = 10, 9, 62


def _causes(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException | None] = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        reason = getattr(x, "reason", None)
        stack += [
            x.__cause__,
            x.__context__,
            reason if isinstance(reason, BaseException) else None,
            *(a for a in x.args if isinstance(a, BaseException)),
        ]


def _is_timeout(e: BaseException) -> bool:
    # NOTE: urllib3's NewConnectionError (a refused connection) is a ConnectTimeoutError.
    return any(
        isinstance(x, TimeoutError | socket.timeout | urllib3.exceptions.TimeoutError)
        and not isinstance(x, urllib3.exceptions.NewConnectionError)
        for x in _causes(e)
    )


def _cert_dates(server: str) -> tuple[str, str] | None:
    """(not before, not after) of the server's certificate, read without verifying it."""
    url = urlsplit(server)
    if not url.hostname:
        return None
    try:
        pem = ssl.get_server_certificate((url.hostname, url.port or 443), timeout=5)
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(pem.encode())
    except (OSError, ValueError, ImportError):
        return None
    fmt = "%Y-%m-%d %H:%M:%S UTC"
    return (cert.not_valid_before_utc.strftime(fmt), cert.not_valid_after_utc.strftime(fmt))


def _tls_problem(e: BaseException, server: str) -> str | None:
    """Why TLS failed, in words, or None when it is not a TLS failure."""
    for x in _causes(e):
        if isinstance(x, ssl.SSLCertVerificationError):
            code, msg = x.verify_code, str(x.verify_message or x.reason or x)
            if code == _EXPIRED:
                dates = _cert_dates(server)
                return (
                    f"the server certificate expired on {dates[1]}"
                    if dates
                    else "the server certificate has expired"
                )
            if code == _NOT_YET_VALID:
                dates = _cert_dates(server)
                return (
                    f"the server certificate is not valid before {dates[0]}"
                    if dates
                    else "the server certificate is not valid yet"
                )
            if code in _UNTRUSTED:
                return (
                    "the server certificate is not signed by the kubeconfig's certificate"
                    f" authority ({msg})"
                )
            if code == _HOSTNAME:
                return f"the server certificate does not name {urlsplit(server).hostname} ({msg})"
            return f"TLS verification failed: {msg}"
        if isinstance(x, ssl.SSLError):
            return f"TLS handshake failed: {x.reason or x.strerror or x}"
    return None


def _short(e: BaseException) -> str:
    return _short_text(str(e) or type(e).__name__)


def _short_text(text: str) -> str:
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return text.splitlines()[0][:200]


_HANDSHAKE = re.compile(r"Handshake status (\d{3})([^\n]*?)(?: -\+-\+- .*? -\+-\+- (.*))?$", re.S)


def _handshake_answer(e: BaseException) -> tuple[int, str] | None:
    """The server's answer to a refused exec/port-forward upgrade, wherever it sits in
    the exception chain: (HTTP status, the Status message or the status line).

    NOTE: the client wraps websocket-client's ``Handshake status 500 … -+-+- headers -+-+-
    body`` into ``ApiException(status=0)`` and then, decoding its empty body, raises an
    AttributeError; the server's words are only in that exception's ``__context__``."""
    for x in _causes(e):
        text = x.reason if isinstance(x, ApiException) and x.reason else str(x)
        m = _HANDSHAKE.search(str(text))
        if m is None:
            continue
        code, status_line, body = int(m.group(1)), m.group(2).strip(), (m.group(3) or "").strip()
        return code, _status_text(body) or status_line
    return None


def _status_text(body: str) -> str:
    """The ``message`` of a Status object in ``body``, else its first line ('' if none)."""
    if not body or body == "None":
        return ""
    try:
        doc = json.loads(body)
    except ValueError:
        return body.splitlines()[0][:300]
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    return body.splitlines()[0][:300]


_LOST = re.compile(
    r"connection refused|connection reset|broken pipe|timed out|eof occurred|"
    r"connection to remote host was lost|socket is already closed|name or service not known|"
    r"network is unreachable|no route to host|errno 1\d\d\b",
    re.I,
)


def _map_ws_error(e: BaseException, what: str, *, started: bool = False) -> ClusterError:
    """What the server said about a failed exec/port-forward stream, as a kaic error.

    The client raises ``ApiException(status=0, reason=str(cause))`` and then, decoding its
    empty body, an ``AttributeError``: the outer exception's type says nothing; the
    server's answer, or the transport's reason, is found in the exception chain.
    ``started``: the stream was open (the connection was lost while it ran)."""
    answer = _handshake_answer(e)
    if answer is not None:
        code, message = answer
        if code == 403:
            return PermissionDeniedError(f"{what}: forbidden: {message}")
        if code == 404:
            return NotFoundError(f"{what}: not found: {message}")
        if code == 401:
            return ClusterUnreachableError(
                f"{what}: the cluster refused the credentials (401 Unauthorized)"
            )
        return ClusterError(f"{what}: the server answered {code}: {message}")
    lost = "the connection to the server was lost: " if started else ""
    for x in _causes(e):
        if isinstance(x, OSError | urllib3.exceptions.HTTPError | WebSocketException):
            return ClusterUnreachableError(f"{what}: {lost}{_short(x)}")
    for x in _causes(e):
        if isinstance(x, ApiException) and x.reason:
            reason = " ".join(str(x.reason).split())
            if _LOST.search(reason):
                return ClusterUnreachableError(f"{what}: {lost}{_short_text(reason)}")
            if x.status:
                return _map_api_error(x, what)
            return ClusterError(f"{what}: {reason[:300]}")
    return ClusterError(f"{what}: {type(e).__name__}: {_short(e)}")


def exec_exit_code(status_text: str, what: str, stderr: str = "") -> int:
    """The exit code from the status an exec stream ends with (its error channel).

    ``Success`` is 0; a ``Failure`` whose reason is ``NonZeroExitCode`` carries the code
    as its ``ExitCode`` cause. Any other failure is the server's (or kubelet's) own error,
    raised with its message and the command's last stderr line. A stream that ended with
    no status is -1 (the code is unknown)."""
    if not status_text.strip():
        return -1
    try:
        status = json.loads(status_text)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        raise ClusterError(f"{what}: unreadable exit status: {status_text.strip()[:200]!r}")
    if status.get("status") == "Success":
        return 0
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    for cause in causes if isinstance(causes, list) else []:
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            try:
                return int(str(cause.get("message")))
            except ValueError:
                break
    message = " ".join(str(status.get("message") or status.get("reason") or "failed").split())
    tail = stderr.strip().splitlines()[-1:] if stderr.strip() else []
    raise ClusterError(f"{what}: {message[:300]}" + (f" (stderr: {tail[0][:200]})" if tail else ""))


def _close_websocket(ws: Any) -> None:
    """Close an exec stream and its socket.

    NOTE: WSClient.close() leaves the TLS socket open once the server has closed the
    stream (websocket-client only closes a socket it still thinks connected)."""
    with contextlib.suppress(Exception):
        ws.close()
    with contextlib.suppress(Exception):
        ws.sock.shutdown()


_PF_THREAD_PREFIX = "Kubernetes port forward proxy"
_previous_excepthook = threading.excepthook


def _quiet_closed_forward(args: threading.ExceptHookArgs) -> None:
    """Swallow the client's port-forward proxy thread noticing that we closed its sockets.

    NOTE: ``kubernetes.stream.ws_client.PortForward`` runs a proxy thread that selects on
    the sockets ``_close_forward`` closes; it then dies with EBADF (or a ValueError on a
    closed socket's fd -1), which is the normal
    end of a forward, not an error. Every other thread exception goes to the previous hook.
    """
    thread_name = args.thread.name if args.thread else ""
    exc = args.exc_value
    closed = (isinstance(exc, OSError) and exc.errno in (errno.EBADF, errno.ENOTSOCK)) or (
        isinstance(exc, ValueError) and "file descriptor" in str(exc)
    )
    if thread_name.startswith(_PF_THREAD_PREFIX) and closed:
        return
    _previous_excepthook(args)


threading.excepthook = _quiet_closed_forward


FORWARD_CLOSE_WAIT_S = 3.0


def _proxy_threads_of(pf: Any) -> list[threading.Thread]:
    """The running threads the kubernetes client started for port-forward ``pf`` (their
    target is its bound ``_proxy``; ``threading.Thread`` keeps it as ``_target`` while
    the thread runs). A thread that has already ended is not listed: nothing to wait for."""
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith(_PF_THREAD_PREFIX)
        and getattr(getattr(t, "_target", None), "__self__", None) is pf
    ]


def _close_forward(pf: Any) -> None:
    """Close a port-forward: its local sockets first, then wait for the client's proxy
    thread to close the websocket itself, and only then shut the websocket down.

    NOTE: shutting the websocket down while the proxy thread still uses its file
    descriptor (it closes the websocket itself, waiting up to 3 s for the server's close
    frame) let the next connection reuse that number under the old thread, which then
    read the new connection's TLS bytes ("wrong version number")."""
    with contextlib.suppress(Exception):
        pf.close()
    deadline = time.monotonic() + FORWARD_CLOSE_WAIT_S
    for t in getattr(pf, "kaic_proxy_threads", ()):
        if t.ident is not None:  # started (a thread still starting cannot be joined)
            t.join(max(0.0, deadline - time.monotonic()))
    with contextlib.suppress(Exception):
        pf.websocket.shutdown()


def _iter_lines(resp: Any) -> Iterator[str]:
    buf = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buf += chunk if isinstance(chunk, bytes) else str(chunk).encode()
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line.decode("utf-8", "replace")
    if buf.strip():
        yield buf.decode("utf-8", "replace")


def _splice(a: socket.socket, b: Any, stop: threading.Event) -> None:
    """Copy bytes both ways between two sockets until either side closes."""
    socks = [a, b]
    while not stop.is_set():
        r, _, _ = select.select(socks, [], [], 0.2)
        for s in r:
            try:
                data = s.recv(65536)
            except OSError:
                return
            if not data:
                return
            (b if s is a else a).sendall(data)
