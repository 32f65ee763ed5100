"""What a lab component gets to work with: paths, ports, PKI, and a small API client.

Owns: ``LabContext``. Must not import the ``kubernetes`` client (only ``kaic.cluster``
does); the lab talks to its apiserver with plain HTTPS and the built ``kubectl``.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kaic.errors import LabError
from kaic.lab import proc
from kaic.lab.options import LabOptions
from kaic.lab.pki import Pki

# kind -> (apiVersion, plural, namespaced) for objects the lab itself applies with
# server-side apply over HTTPS; any other kind goes through ``kubectl apply``.
_KNOWN_KINDS: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("v1", "namespaces", False),
    "Node": ("v1", "nodes", False),
    "ConfigMap": ("v1", "configmaps", True),
    "Service": ("v1", "services", True),
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "Secret": ("v1", "secrets", True),
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
    "ValidatingAdmissionPolicy": ("admissionregistration.k8s.io/v1",
                                  "validatingadmissionpolicies", False),
    "ValidatingAdmissionPolicyBinding": ("admissionregistration.k8s.io/v1",
                                         "validatingadmissionpolicybindings", False),
    "APIService": ("apiregistration.k8s.io/v1", "apiservices", False),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "PriorityClass": ("scheduling.k8s.io/v1", "priorityclasses", False),
}

FIELD_MANAGER = "kaic-lab"
_PORT_LOCK = threading.Lock()


class ApiError(LabError):
    """An HTTP error from the lab's apiserver."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
    _ssl: ssl.SSLContext | None = field(default=None, repr=False)

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
    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
              ) -> int:
        """Start a detached process for component ``name``; output goes to its log."""
        return proc.spawn(argv, log=self.log_path(name), pidfile=self.pid_path(name),
                          cwd=self.state, env=proc.clean_env(env))

    def pid(self, name: str) -> int | None:
        return proc.read_pid(self.pid_path(name))

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace")
                             .splitlines()[-lines:])
        except OSError:
            return ""

    # ---- API ---------------------------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            c = ssl.create_default_context(cafile=str(self.pki.ca_crt))
            c.load_cert_chain(str(self.pki.admin_crt), str(self.pki.admin_key))
            self._ssl = c
        return self._ssl

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json", accept: str = "application/json",
                timeout: float = 30.0) -> Any:
        """One HTTPS request to the lab's apiserver as the admin; returns parsed JSON.

        Raises ApiError with the HTTP status for error responses.
        """
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": content_type,
                                              "Accept": accept})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=self._context()))
        try:
            with opener.open(req, timeout=timeout) as r:
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
        try:
            self.get(path)
        except ApiError as e:
            if e.status == 404:
                return False
            raise
        return True

    def apply(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Server-side apply ``objects`` (field manager ``kaic-lab``, conflicts forced).

        Kinds the lab knows go straight over HTTPS; the rest in one ``kubectl apply``.
        """
        rest: list[Mapping[str, Any]] = []
        for obj in objects:
            path = object_path(obj)
            if path is None:
                rest.append(obj)
                continue
            body = json.dumps(obj).encode()
            # NOTE: a plain create is much cheaper than server-side apply for large
            # CRDs (no typed conversion of the whole schema); apply only if it exists.
            try:
                self.request("POST", f"{path.rsplit('/', 1)[0]}?fieldManager={FIELD_MANAGER}",
                             body)
                continue
            except ApiError as e:
                if e.status != 409:
                    raise
            self.request("PATCH", f"{path}?fieldManager={FIELD_MANAGER}&force=true", body,
                         content_type="application/apply-patch+yaml")
        if rest:
            self.kubectl("apply", "--server-side", "--force-conflicts",
                         f"--field-manager={FIELD_MANAGER}", "-f", "-",
                         input=yaml.safe_dump_all(list(rest)))

    def patch_status(self, obj_path: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource of the object at ``obj_path``."""
        self.request("PATCH", f"{obj_path}/status", {"status": dict(status)},
                     content_type="application/merge-patch+json")

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120.0,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the lab's own ``kubectl`` against the lab."""
        argv = [str(self.binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        try:
            r = subprocess.run(argv, input=input, capture_output=True, text=True,
                               timeout=timeout, env=proc.clean_env(), check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise LabError(f"kubectl {' '.join(args[:3])}: {e}") from e
        if check and r.returncode != 0:
            err = (r.stderr.strip() or r.stdout.strip()).splitlines()
            raise LabError(f"kubectl {' '.join(args[:3])} failed: "
                           f"{'; '.join(err[-3:]) or r.returncode}")
        return r

    # ---- waits -------------------------------------------------------------------
    def wait(self, what: str, cond: Callable[[], bool], *, timeout: float = 60.0,
             interval: float = 0.1, alive: str | None = None) -> None:
        """Poll ``cond`` until true; LabError after ``timeout`` seconds.

        With ``alive`` (a component name), fail early if its process has exited.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                if cond():
                    return
            except (ApiError, OSError):
                pass
            if alive is not None and self.pid(alive) is None:
                raise LabError(f"{alive} exited while waiting for {what}; last log lines:\n"
                               f"{self.log_tail(alive)}")
            if time.monotonic() > deadline:
                hint = f"; see `kaic lab logs {alive}`" if alive else ""
                raise LabError(f"timed out after {timeout:.0f}s waiting for {what}{hint}")
            time.sleep(interval)
            interval = min(interval * 1.5, 1.0)


def probe(url: str, *, timeout: float = 2.0) -> bool:
    """True if ``url`` (http or https, certificate not verified) answers 200."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=ctx))
    try:
        with opener.open(url, timeout=timeout) as r:
            return int(r.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
