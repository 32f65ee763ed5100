"""What a lab component gets to work with: paths, ports, PKI, and the lab's API client.

Owns: ``LabContext``. Must not import the ``kubernetes`` client (only ``kaic.cluster``
does); the lab talks to its apiserver with ``kaic.lab.apiserver`` and the built
``kubectl``.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from kaic.errors import LabError
from kaic.lab import network, proc
from kaic.lab.apiserver import ApiClient, ApiError
from kaic.lab.network import LabNet
from kaic.lab.options import LabOptions
from kaic.lab.pki import Pki

T = TypeVar("T")
APPLY_TIMEOUT_S = 120.0
"""How long one create or apply of the lab's own objects may take."""

# kind -> (apiVersion, plural, namespaced) for objects the lab itself applies with
# server-side apply over HTTPS; any other kind goes through ``kubectl apply``.
_KNOWN_KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("v1", "namespaces", False),
    "Node": ("v1", "nodes", False),
    "ConfigMap": ("v1", "configmaps", True),
    "Service": ("v1", "services", True),
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "Secret": ("v1", "secrets", True),
    "Deployment": ("apps/v1", "deployments", True),
    "CustomResourceDefinition": ("apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "DeviceClass": ("resource.k8s.io/v1", "deviceclasses", False),
    "ResourceSlice": ("resource.k8s.io/v1", "resourceslices", False),
    "Stage": ("kwok.x-k8s.io/v1alpha1", "stages", False),
    "ClusterExec": ("kwok.x-k8s.io/v1alpha1", "clusterexecs", False),
    "ClusterPortForward": ("kwok.x-k8s.io/v1alpha1", "clusterportforwards", False),
    "ClusterLogs": ("kwok.x-k8s.io/v1alpha1", "clusterlogs", False),
    "ClusterAttach": ("kwok.x-k8s.io/v1alpha1", "clusterattaches", False),
    "Metric": ("kwok.x-k8s.io/v1alpha1", "metrics", False),
    "ClusterResourceUsage": ("kwok.x-k8s.io/v1alpha1", "clusterresourceusages", False),
    "Exec": ("kwok.x-k8s.io/v1alpha1", "execs", True),
    "PortForward": ("kwok.x-k8s.io/v1alpha1", "portforwards", True),
    "ValidatingAdmissionPolicy": (
        "admissionregistration.k8s.io/v1",
        "validatingadmissionpolicies",
        False,
    ),
    "ValidatingAdmissionPolicyBinding": (
        "admissionregistration.k8s.io/v1",
        "validatingadmissionpolicybindings",
        False,
    ),
    "APIService": ("apiregistration.k8s.io/v1", "apiservices", False),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "PriorityClass": ("scheduling.k8s.io/v1", "priorityclasses", False),
}

FIELD_MANAGER = "kaic-lab"
_PORT_LOCK = threading.Lock()
POD_HEADROOM = 1024
"""Pod addresses a lab keeps beyond one per node (``LabContext.net``)."""
_NET_LOCK = threading.Lock()
NETNS_PORT_PREFIX = "netns-"
"""Port keys with this prefix are used only inside the lab's network namespace (the
host's loopback port of that number may belong to anyone)."""
NET_FILE = "network.json"
"""In the state directory: the lab's network block (see ``kaic.lab.network``)."""


def object_path(obj: Mapping[str, Any]) -> str | None:
    """The REST path of ``obj`` if its kind is one the lab knows, else None."""
    kind = obj.get("kind", "")
    known = _KNOWN_KINDS.get(kind)
    if known is None or known[0] != obj.get("apiVersion"):
        return None
    api_version, plural, namespaced = known
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    name = obj["metadata"]["name"]
    if namespaced:
        ns = obj["metadata"].get("namespace", "default")
        return f"{base}/namespaces/{ns}/{plural}/{name}"
    return f"{base}/{plural}/{name}"


@dataclass
class LabContext:
    """Everything a component needs; one per ``kaic lab`` invocation."""

    options: LabOptions
    bin: Path
    ports: dict[str, int] = field(default_factory=dict)
    enabled: tuple[str, ...] = ()
    """Names of the components enabled in this lab (in start order)."""
    _api: ApiClient | None = field(default=None, repr=False)

    # ---- paths -------------------------------------------------------------------
    @property
    def state(self) -> Path:
        return self.options.state

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def pki(self) -> Pki:
        return Pki(self.state / "pki")

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port('kube-apiserver')}"

    def dir(self, name: str) -> Path:
        """A directory for component ``name`` under the state directory (created)."""
        d = self.state / "data" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def log_path(self, name: str) -> Path:
        return self.state / "logs" / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.state / "run" / f"{name}.pid"

    @property
    def net(self) -> LabNet:
        """The lab network (its block of 198.18.0.0/15, names); allocated the first time
        and recorded in the state directory."""
        with _NET_LOCK:
            f = self.state / NET_FILE
            net = network.load(f)
            if net is None:
                # NOTE: a large lab takes more than one block: one pod per GPU node (the
                # DCGM exporters) and headroom for the lab's and the tests' own pods.
                pods = self.options.nodes + self.options.cpu_nodes + POD_HEADROOM
                net = network.allocate(self.name, self.state, span=network.span_for(pods))
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(json.dumps(net.to_json()) + "\n")
            return net

    def binary(self, name: str) -> Path:
        """A built binary, by name (``kube-apiserver``, ``kwok``, …)."""
        return self.bin / name

    # ---- ports -------------------------------------------------------------------
    def port(self, key: str) -> int:
        """The loopback port recorded for ``key``; a free one is picked the first time."""
        with _PORT_LOCK:
            return self._port(key)

    def _port(self, key: str) -> int:
        if key not in self.ports:
            taken = set(self.ports.values())
            p = proc.free_port()
            while p in taken:
                p = proc.free_port()
            self.ports[key] = p
        return self.ports[key]

    # ---- processes ---------------------------------------------------------------
    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        exe: str | None = None,
    ) -> int:
        """Start a detached process for component ``name``; output goes to its log.
        ``exe``: the program a wrapper ``argv`` execs (see ``proc.spawn``)."""
        return proc.spawn(
            argv,
            log=self.log_path(name),
            pidfile=self.pid_path(name),
            cwd=self.state,
            env=proc.clean_env(env),
            exe=exe,
        )

    def pid(self, name: str) -> int | None:
        return proc.read_pid(self.pid_path(name))

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ---- API ---------------------------------------------------------------------
    @property
    def api(self) -> ApiClient:
        """The lab's API client, as the admin (made on first use)."""
        if self._api is None or not self._api.server.endswith(f":{self.port('kube-apiserver')}"):
            p = self.pki
            self._api = ApiClient.from_files(self.server, p.ca_crt, p.admin_crt, p.admin_key)
        return self._api

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
        """One HTTPS request to the lab's apiserver as the admin; returns parsed JSON.

        Raises ApiError with the HTTP status for error responses.
        """
        return self.api.request(
            method, path, body, content_type=content_type, accept=accept, timeout=timeout
        )

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def exists(self, path: str) -> bool:
        return self.api.exists(path)

    def apply(self, objects: Iterable[Mapping[str, Any]], *, workers: int = 1) -> None:
        """Server-side apply ``objects`` (field manager ``kaic-lab``, conflicts forced).

        Kinds the lab knows go straight over HTTPS, ``workers`` requests at a time (a
        large lab's thousands of nodes and slices); the rest in one ``kubectl apply``.
        """
        known: list[tuple[str, Mapping[str, Any]]] = []
        rest: list[Mapping[str, Any]] = []
        for obj in objects:
            path = object_path(obj)
            if path is None:
                rest.append(obj)
            else:
                known.append((path, obj))
        self.each(lambda item: self._apply_one(*item), known, workers=workers)
        if rest:
            self.kubectl(
                "apply",
                "--server-side",
                "--force-conflicts",
                f"--field-manager={FIELD_MANAGER}",
                "-f",
                "-",
                input=yaml.safe_dump_all(list(rest)),
            )

    def _apply_one(self, path: str, obj: Mapping[str, Any]) -> None:
        body = json.dumps(obj).encode()
        # NOTE: a plain create is much cheaper than server-side apply for large
        # CRDs (no typed conversion of the whole schema); apply only if it exists.
        # NOTE: a long timeout: a large CRD takes the apiserver seconds to store, and
        # tens of seconds on a loaded machine (seen with several labs starting at once).
        try:
            self.request(
                "POST",
                f"{path.rsplit('/', 1)[0]}?fieldManager={FIELD_MANAGER}",
                body,
                timeout=APPLY_TIMEOUT_S,
            )
            return
        except ApiError as e:
            if e.status != 409:
                raise
        self.request(
            "PATCH",
            f"{path}?fieldManager={FIELD_MANAGER}&force=true",
            body,
            content_type="application/apply-patch+yaml",
            timeout=APPLY_TIMEOUT_S,
        )

    @staticmethod
    def each(fn: Callable[[T], object], items: Sequence[T], *, workers: int = 1) -> None:
        """``fn`` on every item, ``workers`` at a time; the first error is raised once
        all have been tried."""
        if workers <= 1 or len(items) <= 1:
            for item in items:
                fn(item)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kaic-lab") as pool:
            futures = [pool.submit(fn, item) for item in items]
        for f in futures:
            f.result()

    def patch_status(self, obj_path: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource of the object at ``obj_path``."""
        self.request(
            "PATCH",
            f"{obj_path}/status",
            {"status": dict(status)},
            content_type="application/merge-patch+json",
        )

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the lab's own ``kubectl`` against the lab."""
        argv = [str(self.binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        try:
            r = subprocess.run(
                argv,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=proc.clean_env(),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise LabError(f"kubectl {' '.join(args[:3])}: {e}") from e
        if check and r.returncode != 0:
            err = (r.stderr.strip() or r.stdout.strip()).splitlines()
            raise LabError(
                f"kubectl {' '.join(args[:3])} failed: {'; '.join(err[-3:]) or r.returncode}"
            )
        return r

    # ---- waits -------------------------------------------------------------------
    def wait(
        self,
        what: str,
        cond: Callable[[], bool],
        *,
        timeout: float = 60.0,
        interval: float = 0.05,
        max_interval: float = 0.25,
        alive: str | None = None,
    ) -> None:
        """Poll ``cond`` until true; LabError after ``timeout`` seconds.

        The pause between polls grows from ``interval`` to ``max_interval``. With
        ``alive`` (a component name), fail early if its process has exited.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                if cond():
                    return
            except (ApiError, OSError):
                pass
            if alive is not None and self.pid(alive) is None:
                raise LabError(
                    f"{alive} exited while waiting for {what}; last log lines:\n"
                    f"{self.log_tail(alive)}"
                )
            if time.monotonic() > deadline:
                hint = f"; see `kaic lab logs {alive}`" if alive else ""
                raise LabError(f"timed out after {timeout:.0f}s waiting for {what}{hint}")
            time.sleep(interval)
            # NOTE: a short cap: most waits end within a second or two, and a lab start
            # is a chain of them (a 1 s cap cost seconds per `kaic lab up`).
            interval = min(interval * 1.5, max_interval)
