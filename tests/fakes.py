"""An in-memory ``ClusterAPI`` for unit tests of checks (mock at our own boundary).

Controllers and webhooks are simulated with hooks: ``on_create`` callbacks may change
or reject objects, ``controllers`` run on every wait/watch step.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from kaic import catalog
from kaic.checks import load_builtin_checks
from kaic.checks.base import CheckContext, run_check
from kaic.cluster.api import ApiResource, ExecResult, KubeObject
from kaic.cluster.tracking import TrackingCluster
from kaic.errors import ConflictError, NotFoundError, WaitTimeoutError
from kaic.model import CheckResult

Key = tuple[str, str, str | None, str]


def _merge(dst: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for k, v in patch.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def _matches(obj: KubeObject, selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k) != v.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field(obj: KubeObject, path: str) -> str:
    """A field selector's value of ``obj`` (dotted path; "" when absent, as the
    apiserver has it)."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _fields_match(obj: KubeObject, selector: str | None) -> bool:
    """A field selector (``a.b=v``, ``a.b==v``, ``a.b!=v``, comma-separated)."""
    for term in (selector or "").split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if _field(obj, k) == v:
                return False
        else:
            k, v = term.split("=", 1)
            if _field(obj, k) != v.lstrip("="):
                return False
    return True


CORE_KINDS = {
    "v1": [
        ("pods", "Pod", True),
        ("namespaces", "Namespace", False),
        ("nodes", "Node", False),
        ("services", "Service", True),
        ("events", "Event", True),
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True)],
}


class FakeCluster:
    """A dict-backed cluster. Serve API groups with ``serve``; simulate behaviour with
    ``on_create``, ``controllers``, ``exec_handler``, ``http_handler``, ``raw``."""

    def __init__(self, version: str = "v1.36.2") -> None:
        self.version = version
        self.resources: dict[str, list[ApiResource]] = {}
        self.store: dict[Key, KubeObject] = {}
        self.on_create: list[Callable[[KubeObject, bool], None]] = []
        self.controllers: list[Callable[[FakeCluster], None]] = []
        self.exec_handler: Callable[[str, str, Sequence[str], str | None], ExecResult] | None = None
        self.http_handler: Callable[[str, str, int, str], str] | None = None
        self.raw: dict[str, str] = {}
        self.subresource_handlers: dict[
            tuple[str, str], Callable[[str, str | None, KubeObject], KubeObject]
        ] = {}
        self.denied: set[tuple[str, str, str]] = set()
        self.calls: list[tuple[str, Any]] = []
        self._uid = itertools.count(1)
        for av, kinds in CORE_KINDS.items():
            self.serve(av, *kinds)

    # -- set-up helpers ---------------------------------------------------------------
    def serve(self, api_version: str, *kinds: tuple[str, str, bool]) -> None:
        group, _, version = api_version.rpartition("/")
        self.resources.setdefault(api_version, [])
        for name, kind, namespaced in kinds:
            self.resources[api_version].append(
                ApiResource(
                    group,
                    version,
                    name,
                    kind,
                    namespaced,
                    ("create", "delete", "get", "list", "patch", "update", "watch"),
                )
            )

    def unserve(self, api_version: str) -> None:
        self.resources.pop(api_version, None)

    def add(self, obj: KubeObject) -> KubeObject:
        """Put an object in the store as if it already existed (no hooks, no checks)."""
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        md.setdefault("uid", f"uid-{next(self._uid)}")
        self.store[self._key(obj)] = obj
        return obj

    def step(self) -> None:
        for c in list(self.controllers):
            c(self)

    # -- ClusterAPI -------------------------------------------------------------------
    def server_version(self) -> str:
        return self.version

    def api_versions(self) -> list[str]:
        return list(self.resources)

    def api_resources(self, api_version: str) -> list[ApiResource]:
        return list(self.resources.get(api_version, []))

    def _require_served(self, api_version: str, kind: str) -> None:
        if not any(r.kind == kind for r in self.resources.get(api_version, [])):
            raise NotFoundError(f"the server does not serve {kind} in {api_version}")

    @staticmethod
    def _key(obj: KubeObject) -> Key:
        md = obj.get("metadata", {})
        return (obj["apiVersion"], obj["kind"], md.get("namespace"), md["name"])

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        self._require_served(api_version, kind)
        obj = self.store.get((api_version, kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[KubeObject]:
        self._require_served(api_version, kind)
        out = []
        for (av, k, ns, _), obj in self.store.items():
            if (
                av == api_version
                and k == kind
                and (namespace is None or ns == namespace)
                and _matches(obj, label_selector)
                and _fields_match(obj, field_selector)
            ):
                out.append(copy.deepcopy(obj))
        return out

    def iterate(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Iterator[KubeObject]:
        """``list``, one object at a time (through ``list``, so overrides of it apply)."""
        yield from self.list(
            api_version,
            kind,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
        )

    def create(self, obj: KubeObject, *, dry_run: bool = False) -> KubeObject:
        self._require_served(obj["apiVersion"], obj["kind"])
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        if not md.get("name") and md.get("generateName"):
            md["name"] = f"{md['generateName']}{next(self._uid):05d}"
        self.calls.append(("create", (obj["kind"], md.get("name"), dry_run)))
        for hook in self.on_create:
            hook(obj, dry_run)
        if dry_run:
            return obj
        key = self._key(obj)
        if key in self.store:
            raise ConflictError(f"{obj['kind']} {md['name']} already exists")
        md.setdefault("uid", f"uid-{next(self._uid)}")
        md.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        self.store[key] = obj
        return copy.deepcopy(obj)

    def apply(self, obj: KubeObject) -> KubeObject:
        key = self._key(obj)
        if key in self.store:
            return self.patch(obj["apiVersion"], obj["kind"], key[3], obj, key[2])
        return self.create(obj)

    def create_subresource(
        self,
        api_version: str,
        kind: str,
        name: str,
        subresource: str,
        body: KubeObject,
        namespace: str | None = None,
    ) -> KubeObject:
        self.calls.append(("create_subresource", (kind, name, subresource, namespace)))
        handler = self.subresource_handlers.get((kind, subresource))
        if handler is None:
            raise NotFoundError(f"the fake cluster serves no {subresource} of {kind}")
        if self.get(api_version, kind, name, namespace) is None:
            raise NotFoundError(f"{kind} {name} not found")
        return handler(name, namespace, copy.deepcopy(body))

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
        key = (api_version, kind, namespace, name)
        if key not in self.store:
            raise NotFoundError(f"{kind} {name} not found")
        _merge(self.store[key], copy.deepcopy(patch))
        return copy.deepcopy(self.store[key])

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        wait_timeout: float | None = None,
    ) -> bool:
        self.calls.append(("delete", (kind, name, namespace)))
        gone = self.store.pop((api_version, kind, namespace, name), None) is not None
        if kind == "Namespace":
            for key in [k for k in self.store if k[2] == name]:
                del self.store[key]
        return gone

    def _poll(self, timeout: float, what: str, probe: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self.step()
            ok, value = probe()
            if ok:
                return value
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.01)

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
        def probe() -> tuple[bool, KubeObject | None]:
            obj = self.get(api_version, kind, name, namespace)
            return condition(obj), obj

        result: KubeObject | None = self._poll(timeout, what, probe)
        return result

    def wait_list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        condition: Callable[[list[KubeObject]], bool],
        *,
        timeout: float,
        what: str,
        label_selector: str | None = None,
    ) -> list[KubeObject]:
        def probe() -> tuple[bool, list[KubeObject]]:
            objs = self.list(api_version, kind, namespace, label_selector=label_selector)
            return condition(objs), objs

        result: list[KubeObject] = self._poll(timeout, what, probe)
        return result

    def watch_list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        timeout: float,
        label_selector: str | None = None,
    ) -> Iterator[list[KubeObject]]:
        deadline = time.monotonic() + timeout
        while True:
            self.step()
            yield self.list(api_version, kind, namespace, label_selector=label_selector)
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def exec(
        self,
        namespace: str,
        pod: str,
        command: Sequence[str],
        *,
        container: str | None = None,
        timeout: float = 60.0,
    ) -> ExecResult:
        self.calls.append(("exec", (namespace, pod, tuple(command), container)))
        if self.exec_handler is None:
            raise NotFoundError("no exec handler in the fake cluster")
        return self.exec_handler(namespace, pod, command, container)

    @contextmanager
    def port_forward(self, namespace: str, pod: str, port: int) -> Iterator[int]:
        yield 40000 + port % 1000

    def http_get(
        self, namespace: str, pod: str, port: int, path: str, *, timeout: float = 30.0
    ) -> str:
        if self.http_handler is None:
            raise NotFoundError("no http handler in the fake cluster")
        return self.http_handler(namespace, pod, port, path)

    def raw_get(self, path: str, *, timeout: float = 30.0) -> str:
        if path not in self.raw:
            raise NotFoundError(f"the server could not find {path}")
        return self.raw[path]

    def can_i(
        self,
        verb: str,
        resource: str,
        *,
        group: str = "",
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> bool:
        return (verb, resource, group) not in self.denied

    def events(self, namespace: str, involved_name: str | None = None) -> list[KubeObject]:
        evs = [
            o
            for (av, k, ns, _), o in self.store.items()
            if av == "v1" and k == "Event" and ns == namespace
        ]
        if involved_name:
            evs = [e for e in evs if e.get("involvedObject", {}).get("name") == involved_name]
        return copy.deepcopy(evs)


def gpu_slice(node: str, gpus: int) -> KubeObject:
    """The ResourceSlice of ``node``'s ``gpus`` whole GPUs (driver gpu.nvidia.com, one pool
    of one slice per node), each with its ``type`` and ``index``."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-gpu"},
        "spec": {
            "driver": "gpu.nvidia.com",
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": [
                {
                    "name": f"gpu-{i}",
                    "attributes": {"type": {"string": "gpu"}, "index": {"int": i}},
                }
                for i in range(gpus)
            ],
        },
    }


def fake_check_context(
    cluster: FakeCluster,
    requirement: str,
    *,
    options: Mapping[str, str | None] | None = None,
    timeout: float = 60.0,
    catalog_version: str = "1.36",
    namespace: str = "kaic-t",
    run_id: str = "run12345",
) -> CheckContext:
    """The context the runner would give the registered check of ``requirement``: its
    cluster is a ``TrackingCluster`` over ``cluster``, which labels what the check creates."""
    spec = load_builtin_checks().find(requirement, catalog_version)
    assert spec is not None, f"no check registered for {requirement}"
    return CheckContext(
        cluster=TrackingCluster(cluster, run_id, requirement),
        requirement=catalog.load(catalog_version).lookup(requirement),
        spec=spec,
        catalog_version=catalog_version,
        run_id=run_id,
        namespace=namespace,
        options=dict(options or {}),
        timeout_s=timeout,
    )


def run_fake_check(
    cluster: FakeCluster,
    requirement: str,
    *,
    options: Mapping[str, str | None] | None = None,
    timeout: float = 60.0,
    catalog_version: str = "1.36",
    namespace: str = "kaic-t",
    run_id: str = "run12345",
) -> CheckResult:
    """Run the registered check of ``requirement`` against a fake cluster."""
    return run_check(
        fake_check_context(
            cluster,
            requirement,
            options=options,
            timeout=timeout,
            catalog_version=catalog_version,
            namespace=namespace,
            run_id=run_id,
        )
    )
