"""The lab's stand-in for a container runtime: a container's command really runs, as a
local process started for that container.

No image is pulled. A container whose image the lab understands (``IMAGES``: busybox,
ubuntu, debian, python, nvidia/cuda) runs its ``command`` and ``args`` with the host's
tools, with the pod's environment (literal values, downward-API ``fieldRef`` and
``resourceFieldRef``, ConfigMap and Secret keys, ``envFrom``), its simulated devices
(through the ``sh`` of ``device-visibility``, as ``kubectl exec`` has them), its
projected service-account token at the volume's ``mountPath``, the directories of its
``hostPath`` volumes and of the PersistentVolumes its claims are bound to (``hostPath`` or
``local``, only under the lab's own directory), and a network namespace of its own
(``sandbox_prefix``). Its stdout and stderr go to a CRI-format log file that
kwok serves to ``kubectl logs`` (a kwok ``Logs`` object named like the pod); its exit
code decides the container's state and, with the pod's ``restartPolicy``, the pod's
phase; deleting the pod stops it.

A pod whose images are not all understood (or that has init containers) keeps kwok's
behaviour: the runtime marks it ``kaic.io/runtime: kwok`` with the reason in
``kaic.io/runtime-reason`` and an Event ``NotRun``; only such pods are completed by kwok's
``pod-complete`` stage (see ``kaic.lab.components.kwok``). Pods the runtime runs are
marked ``kaic.io/runtime: local``.

Owns: that decision, the container processes (one process group each), their log files
and ``Logs`` objects, the pods' container statuses and phase once they run. Must not
import the ``kubernetes`` client (it uses ``kaic.lab.apiserver.ApiClient``), and must not
decide which GPUs a container sees (``kaic.lab.sims.devices`` does).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from kaic.cluster.quantity import parse_quantity
from kaic.lab.apiserver import ApiClient, ApiError, Mirror
from kaic.lab.sims import nics

RUNTIME_ANNOTATION = "kaic.io/runtime"
REASON_ANNOTATION = "kaic.io/runtime-reason"
LOCAL = "local"
"""``kaic.io/runtime`` of pods whose containers run as local processes."""
KWOK = "kwok"
"""``kaic.io/runtime`` of pods the lab does not run (kwok simulates them, as before)."""
KWOK_API = "kwok.x-k8s.io/v1alpha1"
SOURCE = "kaic-lab-runtime"
DEVICE_DIR_ENV = "KAIC_DEVICE_DIR"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
"""Restart delays after consecutive failures (the kubelet's back-off, shortened)."""
MIN_SYNC_GAP_S = 0.2
"""The least time between two pod syncs (a burst of pod events is one sync)."""
STOP_GRACE_CAP_S = 10.0
"""At most this long between TERM and KILL, whatever ``terminationGracePeriodSeconds``."""


# ---------------------------------------------------------------------------------------
# Images the lab understands
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageProfile:
    """How the lab runs containers of one image: the host programs it stands in with."""

    name: str
    default_command: tuple[str, ...]
    """The image's CMD (none of these images has an ENTRYPOINT): what runs when the
    container sets neither ``command`` nor ``args``; ``args`` alone replace it."""
    needs: tuple[str, ...] = ()
    """Host programs without which the image cannot be played (with the Debian package)."""
    links: tuple[tuple[str, str], ...] = ()
    """(name on the container's PATH, host program) pairs, e.g. ``python`` → ``python3``."""
    busybox_applets: bool = False
    """Put every applet of the host's ``busybox`` first on the container's PATH."""
    package: str = ""


IMAGES: dict[str, ImageProfile] = {
    "busybox": ImageProfile(
        "busybox", ("sh",), needs=("busybox",), busybox_applets=True, package="busybox"
    ),
    "ubuntu": ImageProfile("ubuntu", ("bash",), needs=("bash",)),
    "debian": ImageProfile("debian", ("bash",), needs=("bash",)),
    "cuda": ImageProfile("cuda", ("bash",), needs=("bash",)),
    "python": ImageProfile(
        "python",
        ("python3",),
        needs=("python3",),
        links=(("python", "python3"),),
    ),
}
"""Understood images, by repository name (the last path part, without tag or digest)."""


def image_repository(image: str) -> str:
    """``docker.io/library/busybox:1.36`` → ``busybox``; ``nvcr.io/nvidia/cuda:12`` → ``cuda``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def understood(
    image: str, which: Callable[[str], str | None] = shutil.which
) -> tuple[ImageProfile | None, str]:
    """The profile for ``image``, or None and why the lab does not run it."""
    repo = image_repository(image)
    profile = IMAGES.get(repo)
    if profile is None:
        known = ", ".join(sorted(IMAGES))
        return None, f"image {image!r} is not one the lab runs (understood: {known})"
    lacking = [p for p in profile.needs if which(p) is None]
    if lacking:
        pkg = f" (Debian package {profile.package})" if profile.package else ""
        return None, (
            f"image {image!r} needs the host program {', '.join(lacking)}{pkg}, which is "
            "not installed"
        )
    return profile, ""


def pod_decision(
    pod: Mapping[str, Any], which: Callable[[str], str | None] = shutil.which
) -> tuple[bool, str]:
    """(True, "") if the runtime runs ``pod``; else (False, the reason)."""
    spec = pod.get("spec") or {}
    if spec.get("initContainers"):
        return False, "pods with init containers are not run by the lab"
    for c in spec.get("containers") or []:
        profile, why = understood(str(c.get("image", "")), which)
        if profile is None:
            return False, f"container {c.get('name')}: {why}"
    return True, ""


# ---------------------------------------------------------------------------------------
# The container's environment and command line
# ---------------------------------------------------------------------------------------


class ConfigError(Exception):
    """The container cannot be started (``CreateContainerConfigError``)."""


Mount = tuple[Path, str, bool]
"""(host directory, the container's mountPath, read-only)."""


Lookup = Callable[[str, str, str], Mapping[str, str] | None]
"""(kind ``configmaps``|``secrets``, namespace, name) → decoded data, None if absent."""

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (``$$`` escapes; unknown references stay)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR_REF.sub(sub, text)


def _field_ref(pod: Mapping[str, Any], path: str) -> str:
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    st = pod.get("status") or {}
    simple = {
        "metadata.name": md.get("name"),
        "metadata.namespace": md.get("namespace"),
        "metadata.uid": md.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": st.get("hostIP"),
        "status.podIP": st.get("podIP"),
        "status.hostIPs": ",".join(i.get("ip", "") for i in st.get("hostIPs") or []),
        "status.podIPs": ",".join(i.get("ip", "") for i in st.get("podIPs") or []),
    }
    if path in simple:
        return str(simple[path] or "")
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = (md.get(path.split(".")[1]) or {}).items()
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items))
    raise ConfigError(f"unsupported fieldRef {path!r}")


def _resource_ref(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    res = container.get("resources") or {}
    kind, _, name = str(ref.get("resource", "")).partition(".")
    value = (res.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (res.get("limits") or {}).get(name)
    if value is None:
        return "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(parse_quantity(value) / divisor))


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    lookup: Lookup,
    base: Mapping[str, str],
) -> dict[str, str]:
    """The environment of ``container``: ``base``, then ``envFrom``, then ``env``."""
    ns = str((pod.get("metadata") or {}).get("namespace", ""))
    env = dict(base)

    def source(kind: str, ref: Mapping[str, Any]) -> Mapping[str, str] | None:
        data = lookup(kind, ns, str(ref.get("name", "")))
        if data is None and not ref.get("optional"):
            raise ConfigError(f"{kind[:-1]} {ref.get('name')!r} not found")
        return data

    for ef in container.get("envFrom") or []:
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            if key in ef:
                got = source(kind, ef[key]) or {}
                env.update({f"{ef.get('prefix', '')}{k}": v for k, v in got.items()})
    for e in container.get("env") or []:
        name = str(e.get("name", ""))
        vf = e.get("valueFrom")
        if vf is None:
            env[name] = expand(str(e.get("value", "")), env)
        elif "fieldRef" in vf:
            env[name] = _field_ref(pod, str(vf["fieldRef"].get("fieldPath", "")))
        elif "resourceFieldRef" in vf:
            env[name] = _resource_ref(container, vf["resourceFieldRef"])
        else:
            for kind, key in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
                if key in vf:
                    ref = vf[key]
                    data = source(kind, ref)
                    if data is None:
                        break
                    if ref.get("key") not in data:
                        if ref.get("optional"):
                            break
                        raise ConfigError(
                            f"key {ref.get('key')!r} not in {kind[:-1]} {ref.get('name')!r}"
                        )
                    env[name] = data[str(ref["key"])]
    return env


def container_argv(
    container: Mapping[str, Any], profile: ImageProfile, env: Mapping[str, str]
) -> list[str]:
    """command + args with ``$(VAR)`` expanded; the image's default where both are unset."""
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if not command:
        command = [] if args else list(profile.default_command)
    argv = [expand(str(a), env) for a in [*command, *args]]
    if not argv:
        raise ConfigError("no command to run")
    return argv


NIC_WAIT = (
    f'if [ -n "${nics.READY_ENV}" ]; then i=0; while [ ! -e "${nics.READY_ENV}" ] && '
    f"[ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; fi; unset {nics.READY_ENV}; "
)


def sandbox_prefix(pod: Mapping[str, Any]) -> list[str]:
    """The command prefix that puts a container's process into its pod's sandbox.

    Today every container gets a private network namespace with only loopback up
    (``unshare --net``): it can neither reach nor be reached from anything else, and
    two pods may listen on the same port. This is the one place a lab network would
    wire pods in instead (e.g. ``ip netns exec <pod's namespace>``). It also gets its own
    UTS namespace whose hostname is the pod's (``spec.hostname`` or its name), as in a
    container. With ``KAIC_NIC_READY`` set, it waits (at most 10 s) for that file: the
    container's NICs are in place (``kaic.lab.sims.nics``).
    """
    spec = pod.get("spec") or {}
    host = str(spec.get("hostname") or (pod.get("metadata") or {}).get("name", ""))[:63]
    root = os.geteuid() == 0
    return [
        "unshare",
        "--net",
        "--uts",
        *([] if root else ["--map-root-user"]),
        "/bin/sh",
        "-c",
        'ip link set lo up 2>/dev/null; hostname "$0" 2>/dev/null; ' + NIC_WAIT + 'exec "$@"',
        host or "pod",
    ]


# ---------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerState:
    """What the runtime knows about one container of one pod."""

    name: str
    image: str
    state: str = "waiting"
    """``waiting``, ``running`` or ``terminated``."""
    reason: str = "ContainerCreating"
    message: str = ""
    exit_code: int = 0
    started_at: str = ""
    finished_at: str = ""
    restarts: int = 0
    last: dict[str, Any] | None = None
    restart_at: float | None = None
    """Monotonic time of the next start (back-off), None if it will not restart."""

    def status(self) -> dict[str, Any]:
        if self.state == "running":
            state: dict[str, Any] = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": self.terminated()}
        else:
            state = {
                "waiting": {
                    "reason": self.reason,
                    **({"message": self.message} if self.message else {}),
                }
            }
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "containerID": "",
            "ready": self.state == "running",
            "started": self.state == "running",
            "restartCount": self.restarts,
            "state": state,
        }
        if self.last:
            out["lastState"] = {"terminated": self.last}
        return out

    def terminated(self) -> dict[str, Any]:
        return {
            "exitCode": self.exit_code,
            "reason": self.reason,
            **({"message": self.message} if self.message else {}),
            "startedAt": self.started_at or self.finished_at,
            "finishedAt": self.finished_at,
        }


def exited(c: ContainerState, code: int, restart_policy: str) -> None:
    """Record that ``c``'s process ended with ``code`` and whether it will restart."""
    c.state = "terminated"
    c.exit_code = code if code >= 0 else 128 - code
    c.reason = "Completed" if code == 0 else "Error"
    c.message = ""
    c.finished_at = now_rfc3339()
    again = restart_policy == "Always" or (restart_policy == "OnFailure" and code != 0)
    c.restart_at = None
    if again:
        c.last = c.terminated()
        c.state, c.reason = "waiting", "CrashLoopBackOff"
        c.message = f"back-off restarting the container (exit code {c.exit_code})"
        c.restart_at = time.monotonic() + BACKOFF_S[min(c.restarts, len(BACKOFF_S) - 1)]


def pod_phase(containers: Iterable[ContainerState]) -> str:
    """Running until every container has terminated for good; then Succeeded if all
    exited 0, else Failed."""
    cs = list(containers)
    if any(c.state != "terminated" or c.restart_at is not None for c in cs):
        return "Running"
    return "Succeeded" if all(c.exit_code == 0 for c in cs) else "Failed"


def pod_status(containers: Sequence[ContainerState]) -> dict[str, Any]:
    phase = pod_phase(containers)
    ready = "True" if containers and all(c.state == "running" for c in containers) else "False"
    now = now_rfc3339()
    conds = [
        {"type": t, "status": ready, "lastTransitionTime": now}
        for t in ("Ready", "ContainersReady")
    ]
    for c in conds:
        if ready == "False":
            c["reason"] = "PodCompleted" if phase != "Running" else "ContainersNotReady"
    return {
        "phase": phase,
        "conditions": conds,
        "containerStatuses": [c.status() for c in containers],
    }


def grace_of(pod: Mapping[str, Any]) -> float:
    """Seconds between TERM and KILL: the pod's grace period, at most ``STOP_GRACE_CAP_S``."""
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return min(float(30 if grace is None else grace), STOP_GRACE_CAP_S)


def cri_line(stream: str, text: str, when: dt.datetime | None = None) -> str:
    """One line of the CRI log format kwok's ``logs`` reads (``<time> stdout F <text>``)."""
    t = when or dt.datetime.now(dt.UTC)
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    return f"{stamp} {stream} F {text}\n"


def logs_object(ns: str, name: str, uid: str, logs: list[dict[str, Any]]) -> dict[str, Any]:
    """The kwok ``Logs`` object of a pod (owned by it, so it goes with the pod)."""
    return {
        "apiVersion": KWOK_API,
        "kind": "Logs",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "kaic-lab"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}],
        },
        "spec": {"logs": logs},
    }


# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the runtime dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _pump(src: IO[bytes], stream: str, out: IO[str], lock: threading.Lock) -> None:
    for raw in iter(src.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            out.write(cri_line(stream, line))
            out.flush()
    src.close()


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_recorded(procs_dir: Path) -> list[int]:
    """KILL every process group recorded under ``procs_dir`` (leftovers); their pgids."""
    out: list[int] = []
    if not procs_dir.is_dir():
        return out
    for f in procs_dir.iterdir():
        with contextlib.suppress(OSError, ValueError):
            pgid = int(f.read_text().split()[0])
            if group_alive(pgid):
                kill_group(pgid)
                out.append(pgid)
        with contextlib.suppress(OSError):
            f.unlink()
    return out


def recorded_pids(procs_dir: Path) -> list[int]:
    """Every live process of the recorded container process groups."""
    groups: set[int] = set()
    if procs_dir.is_dir():
        for f in procs_dir.iterdir():
            with contextlib.suppress(OSError, ValueError):
                groups.add(int(f.read_text().split()[0]))
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] not in ("Z", "X") and int(stat[2]) in groups:
                out.append(int(d.name))
    return sorted(out)


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log: IO[str]
    threads: list[threading.Thread]
    record: Path


@dataclass
class PodRun:
    """One pod the runtime runs."""

    uid: str
    namespace: str
    name: str
    pod: dict[str, Any]
    containers: list[ContainerState]
    procs: dict[str, Proc] = field(default_factory=dict)
    pushed: str = ""
    """The last status sent (JSON), to send only changes."""
    final: bool = False


class Runtime:
    """Keeps one process per container of every pod it runs, and their statuses."""

    def __init__(
        self,
        api: ApiClient,
        root: Path,
        *,
        devices_root: Path | None = None,
        exec_bin: Path | None = None,
        workdir: Path | None = None,
        ca_file: Path | None = None,
        host_path_root: Path | None = None,
        log: Callable[[str], None] | None = None,
        which: Callable[[str], str | None] = shutil.which,
        nic_attacher: nics.NicAttacher | None = None,
    ) -> None:
        self.api = api
        self.root = root
        self.devices_root = devices_root
        self.exec_bin = exec_bin
        self.workdir = workdir or root
        self.ca_file = ca_file
        self.host_path_root = Path(os.path.normpath(host_path_root)) if host_path_root else None
        """hostPath and PersistentVolume directories must lie below it (None: none may)."""
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self.which = which
        self.pods: dict[str, PodRun] = {}
        self.decided: dict[str, str] = {}
        self._service_env: dict[str, str] | None = None
        self.nics = nic_attacher
        """Gives containers their allocated simulated NICs (``rdma-nics``); None: none."""

    # -- paths -------------------------------------------------------------------
    @property
    def procs_dir(self) -> Path:
        return self.root / "procs"

    def pod_dir(self, run: PodRun) -> Path:
        return self.root / "pods" / f"{run.namespace}_{run.name}_{run.uid}"

    def log_file(self, run: PodRun, container: str, restarts: int) -> Path:
        return self.pod_dir(run) / container / f"{restarts}.log"

    # -- API helpers -------------------------------------------------------------
    def lookup(self, kind: str, ns: str, name: str) -> Mapping[str, str] | None:
        try:
            obj = self.api.get(f"/api/v1/namespaces/{ns}/{kind}/{quote(name)}")
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        data = dict(obj.get("data") or {})
        if kind == "secrets":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        return {k: str(v) for k, v in data.items()}

    def service_env(self) -> dict[str, str]:
        """``KUBERNETES_SERVICE_HOST``/``PORT`` as a kubelet sets them (the ClusterIP of
        ``default/kubernetes``)."""
        if self._service_env is None:
            try:
                svc = self.api.get("/api/v1/namespaces/default/services/kubernetes")
                ip = str(svc["spec"]["clusterIP"])
                port = str(svc["spec"]["ports"][0]["port"])
                self._service_env = {
                    "KUBERNETES_SERVICE_HOST": ip,
                    "KUBERNETES_SERVICE_PORT": port,
                    "KUBERNETES_SERVICE_PORT_HTTPS": port,
                    "KUBERNETES_PORT": f"tcp://{ip}:{port}",
                }
            except (ApiError, KeyError, IndexError, TypeError):
                return {}
        return dict(self._service_env)

    def event(
        self, pod: Mapping[str, Any], reason: str, message: str, kind: str = "Normal"
    ) -> None:
        md = pod.get("metadata") or {}
        now = now_rfc3339()
        ev = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{md.get('name')}.", "namespace": md.get("namespace")},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": md.get("name"),
                "namespace": md.get("namespace"),
                "uid": md.get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": SOURCE, "host": (pod.get("spec") or {}).get("nodeName", "")},
            "reportingComponent": SOURCE,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        with contextlib.suppress(ApiError):
            self.api.request("POST", f"/api/v1/namespaces/{md.get('namespace')}/events", ev)

    def annotate(self, pod: Mapping[str, Any], value: str, reason: str) -> bool:
        md = pod["metadata"]
        ann = {RUNTIME_ANNOTATION: value, REASON_ANNOTATION: reason or None}
        try:
            self.api.request(
                "PATCH",
                f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}",
                {"metadata": {"annotations": ann, "uid": md["uid"]}},
                content_type="application/merge-patch+json",
            )
        except ApiError as e:
            if e.status not in (404, 409, 422):
                self.log(f"cannot mark {md['namespace']}/{md['name']}: {e}")
            return False
        return True

    def push_status(self, run: PodRun) -> None:
        status = pod_status(run.containers)
        text = json.dumps(
            {
                "phase": status["phase"],
                "cs": [
                    {k: v for k, v in c.items() if k != "lastTransitionTime"}
                    for c in status["containerStatuses"]
                ],
            },
            sort_keys=True,
        )
        if text == run.pushed:
            return
        try:
            self.api.request(
                "PATCH",
                f"/api/v1/namespaces/{run.namespace}/pods/{run.name}/status",
                {"status": status},
                content_type="application/strategic-merge-patch+json",
            )
        except ApiError as e:
            if e.status != 404:
                self.log(f"cannot update status of {run.namespace}/{run.name}: {e}")
            return
        run.pushed = text
        if status["phase"] in ("Succeeded", "Failed"):
            run.final = True
            self.log(f"{run.namespace}/{run.name}: {status['phase']}")

    def write_logs_object(self, run: PodRun) -> None:
        logs = []
        for c in run.containers:
            entry: dict[str, Any] = {
                "containers": [c.name],
                "logsFile": str(self.log_file(run, c.name, c.restarts)),
                "follow": False,
            }
            if c.restarts:
                entry["previousLogsFile"] = str(self.log_file(run, c.name, c.restarts - 1))
            logs.append(entry)
        try:
            self.api.request(
                "PATCH",
                f"/apis/{KWOK_API}/namespaces/{run.namespace}/logs/{run.name}"
                f"?fieldManager={SOURCE}&force=true",
                logs_object(run.namespace, run.name, run.uid, logs),
                content_type="application/apply-patch+yaml",
            )
        except ApiError as e:
            if e.status not in (403, 404):
                self.log(f"cannot write Logs of {run.namespace}/{run.name}: {e}")

    def explain_in_logs(self, pod: Mapping[str, Any], why: str) -> None:
        """``kubectl logs`` of a pod the runtime does not run says why (unless a kwok
        ``Logs`` object named like the pod exists already)."""
        md = pod["metadata"]
        f = self.root / "pods" / f"{md['namespace']}_{md['name']}_{md['uid']}" / "not-run.log"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(cri_line("stderr", f"kaic lab: this container did not run: {why}"))
        obj = logs_object(
            str(md["namespace"]),
            str(md["name"]),
            str(md["uid"]),
            [{"logsFile": str(f), "follow": False}],
        )
        try:
            self.api.request("POST", f"/apis/{KWOK_API}/namespaces/{md['namespace']}/logs", obj)
        except ApiError as e:
            if e.status not in (403, 404, 409):
                self.log(f"cannot write Logs of {md['namespace']}/{md['name']}: {e}")

    # -- containers --------------------------------------------------------------
    def volume_mounts(self, run: PodRun, container: Mapping[str, Any]) -> list[Mount]:
        """(host directory, mountPath, read-only) of the volumes the container mounts:
        projected ones (written here; the token from the TokenRequest API), read-only;
        ``hostPath`` volumes and claims bound to ``hostPath``/``local`` PersistentVolumes,
        whose directories must lie under ``host_path_root`` (``ConfigError`` otherwise).
        Other volume types are not mounted."""
        vols = {v.get("name"): v for v in (run.pod.get("spec") or {}).get("volumes") or []}
        out: list[Mount] = []
        for vm in container.get("volumeMounts") or []:
            vol = vols.get(vm.get("name"))
            if not vol:
                continue
            target = str(vm.get("mountPath"))
            if "projected" in vol:
                d = self.pod_dir(run) / "volumes" / str(vm.get("name"))
                self.write_projected(run, vol["projected"], d)
                out.append((d, target, True))
            elif "hostPath" in vol or "persistentVolumeClaim" in vol:
                host, read_only = self.host_directory(run, vol)
                if vm.get("subPath"):
                    raise ConfigError(f"volume {vol.get('name')}: subPath is not supported")
                out.append((host, target, read_only or bool(vm.get("readOnly"))))
        return out

    def host_directory(self, run: PodRun, vol: Mapping[str, Any]) -> tuple[Path, bool]:
        """The lab directory behind a ``hostPath`` or ``persistentVolumeClaim`` volume and
        whether the volume is read-only; ``ConfigError`` when it is not under the lab's
        directory, the claim is not bound, or its PersistentVolume is of another type."""
        name = vol.get("name")
        read_only = False
        if "hostPath" in vol:
            path, kind = str(vol["hostPath"].get("path") or ""), vol["hostPath"].get("type")
        else:
            claim = vol["persistentVolumeClaim"]
            read_only = bool(claim.get("readOnly"))
            try:
                pvc = self.api.get(
                    f"/api/v1/namespaces/{run.namespace}/persistentvolumeclaims/"
                    f"{quote(str(claim.get('claimName')))}"
                )
                pv_name = (pvc.get("spec") or {}).get("volumeName")
                if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
                    raise ConfigError(f"volume {name}: claim {claim.get('claimName')} is not bound")
                pv = self.api.get(f"/api/v1/persistentvolumes/{quote(str(pv_name))}")
            except ApiError as e:
                raise ConfigError(f"volume {name}: {e}") from e
            spec = pv.get("spec") or {}
            if "hostPath" in spec:
                path, kind = str(spec["hostPath"].get("path") or ""), spec["hostPath"].get("type")
            elif "local" in spec:
                path, kind = str(spec["local"].get("path") or ""), "Directory"
            else:
                raise ConfigError(
                    f"volume {name}: PersistentVolume {pv_name} is neither hostPath nor local;"
                    " the lab mounts only those"
                )
        host = Path(os.path.normpath(path)) if os.path.isabs(path) else None
        root = self.host_path_root
        if host is None or root is None or not host.is_relative_to(root) or host == root:
            raise ConfigError(
                f"volume {name}: the lab mounts host directories only under its own directory"
                f" ({root}), not {path!r}"
            )
        if kind == "DirectoryOrCreate":
            host.mkdir(parents=True, exist_ok=True)
        if not host.is_dir():
            raise ConfigError(f"volume {name}: {host} is not a directory")
        return host, read_only

    def write_projected(self, run: PodRun, projected: Mapping[str, Any], d: Path) -> None:
        d.mkdir(parents=True, exist_ok=True)
        sa = (run.pod.get("spec") or {}).get("serviceAccountName") or "default"
        for src in projected.get("sources") or []:
            if "serviceAccountToken" in src:
                t = src["serviceAccountToken"]
                req = {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {
                        "audiences": [t["audience"]] if t.get("audience") else None,
                        "expirationSeconds": int(t.get("expirationSeconds") or 3607),
                        "boundObjectRef": {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "name": run.name,
                            "uid": run.uid,
                        },
                    },
                }
                got = self.api.request(
                    "POST", f"/api/v1/namespaces/{run.namespace}/serviceaccounts/{sa}/token", req
                )
                (d / str(t.get("path") or "token")).write_text(got["status"]["token"])
            elif "configMap" in src:
                data = self.lookup("configmaps", run.namespace, src["configMap"]["name"]) or {}
                for item in src["configMap"].get("items") or [{"key": k, "path": k} for k in data]:
                    if item["key"] in data:
                        (d / item["path"]).write_text(data[item["key"]])
            elif "downwardAPI" in src:
                for item in src["downwardAPI"].get("items") or []:
                    if "fieldRef" in item:
                        value = _field_ref(run.pod, item["fieldRef"]["fieldPath"])
                        (d / item["path"]).write_text(value)
            elif "secret" in src:
                data = self.lookup("secrets", run.namespace, src["secret"]["name"]) or {}
                for item in src["secret"].get("items") or [{"key": k, "path": k} for k in data]:
                    if item["key"] in data:
                        (d / item["path"]).write_text(data[item["key"]])

    def command_line(
        self, run: PodRun, cname: str, argv: Sequence[str], mounts: Sequence[Mount]
    ) -> tuple[list[str], dict[str, str]]:
        """The full command line of a container process and the env it adds."""
        extra: dict[str, str] = {}
        line = [*sandbox_prefix(run.pod)]
        if mounts:
            line += ["unshare", "--mount", "/bin/sh", str(self.root / "mounts.sh")]
            for host, target, read_only in mounts:
                line += [str(host), target, "ro" if read_only else "rw"]
            line.append("--")
        wrapper = self.exec_bin / "sh" if self.exec_bin else None
        if self.devices_root is not None and wrapper is not None and wrapper.exists():
            extra[DEVICE_DIR_ENV] = str(self.devices_root / "pods" / run.uid / cname)
            line += [str(wrapper), "-c", 'exec "$@"', "kaic-container"]
        else:
            line += ["/bin/sh", "-c", 'exec "$@"', "kaic-container"]
        return [*line, *argv], extra

    def path_dir(self, profile: ImageProfile) -> str:
        """A directory of the names the image has that the host lacks (python → python3,
        busybox applets); empty if none."""
        d = self.root / "images" / profile.name
        if not profile.links and not profile.busybox_applets:
            return ""
        d.mkdir(parents=True, exist_ok=True)
        links = dict(profile.links)
        busybox = self.which("busybox") if profile.busybox_applets else None
        if busybox:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run([busybox, "--list"], capture_output=True, timeout=10)
                for applet in out.stdout.decode().split():
                    links.setdefault(applet, busybox)
        for name, target in links.items():
            p = d / name
            real = target if os.path.isabs(target) else self.which(target)
            if real and not p.exists():
                with contextlib.suppress(OSError):
                    p.symlink_to(real)
        return str(d)

    def start_container(self, run: PodRun, c: ContainerState) -> None:
        spec = next(x for x in run.pod["spec"]["containers"] if x["name"] == c.name)
        profile, why = understood(str(spec.get("image", "")), self.which)
        try:
            if profile is None:
                raise ConfigError(why)
            extra_path = self.path_dir(profile)
            base = {
                "PATH": f"{extra_path}:{DEFAULT_PATH}" if extra_path else DEFAULT_PATH,
                "HOSTNAME": run.name,
                "HOME": "/root",
                **self.service_env(),
            }
            env = container_env(run.pod, spec, self.lookup, base)
            argv = container_argv(spec, profile, env)
            mounts = self.volume_mounts(run, spec)
        except (ConfigError, ApiError, ValueError, KeyError, OSError) as e:
            c.state, c.reason, c.message = "waiting", "CreateContainerConfigError", str(e)
            c.restart_at = time.monotonic() + 5.0
            return
        line, extra = self.command_line(run, c.name, argv, mounts)
        env.update(extra)
        planned = self.nics.planned(run.pod, c.name) if self.nics else []
        ready = self.pod_dir(run) / c.name / f"nics-ready.{c.restarts}"
        if planned:
            ready.unlink(missing_ok=True)
            env[nics.READY_ENV] = str(ready)
        logf = self.log_file(run, c.name, c.restarts)
        logf.parent.mkdir(parents=True, exist_ok=True)
        out = logf.open("a")
        try:
            popen = subprocess.Popen(
                line,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as e:
            out.close()
            c.state, c.reason, c.message = "waiting", "RunContainerError", str(e)
            c.restart_at = time.monotonic() + 5.0
            return
        record = self.procs_dir / f"{run.uid}_{c.name}"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"{popen.pid}\n")
        lock = threading.Lock()
        threads = [
            threading.Thread(target=_pump, args=(s, n, out, lock), daemon=True)
            for s, n in ((popen.stdout, "stdout"), (popen.stderr, "stderr"))
            if s is not None
        ]
        for t in threads:
            t.start()
        run.procs[c.name] = Proc(popen, out, threads, record)
        if self.nics and planned:
            for problem in self.nics.started(run.pod, planned, popen.pid, ready):
                self.event(run.pod, "NicNotAttached", problem, "Warning")
        c.state, c.reason, c.message = "running", "", ""
        c.started_at = now_rfc3339()
        c.restart_at = None
        self.write_logs_object(run)
        self.event(run.pod, "Started", f"Started container {c.name} (local process {popen.pid})")

    def reap(self, run: PodRun) -> None:
        policy = str((run.pod.get("spec") or {}).get("restartPolicy") or "Always")
        for c in run.containers:
            p = run.procs.get(c.name)
            if p is None:
                continue
            code = p.popen.poll()
            if code is None:
                continue
            for t in p.threads:
                t.join(timeout=2)
            p.log.close()
            with contextlib.suppress(OSError):
                p.record.unlink()
            kill_group(p.popen.pid)  # what the main process left behind
            del run.procs[c.name]
            exited(c, code, policy)
            self.log(f"{run.namespace}/{run.name}/{c.name}: exited with {c.exit_code}")

    def restart_due(self, run: PodRun) -> None:
        for c in run.containers:
            if c.restart_at is None or c.name in run.procs or time.monotonic() < c.restart_at:
                continue
            if c.reason == "CrashLoopBackOff":
                c.restarts += 1
            self.start_container(run, c)

    def stop_pod(self, run: PodRun, grace: float) -> None:
        """TERM every process group of the pod, KILL after ``grace`` (in a thread)."""
        procs = list(run.procs.values())
        run.procs.clear()
        if self.nics:
            self.nics.stopped(run.uid)
        for p in procs:
            kill_group(p.popen.pid, signal.SIGTERM)

        def finish() -> None:
            deadline = time.monotonic() + grace
            for p in procs:
                while p.popen.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                kill_group(p.popen.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.popen.wait(timeout=5)
                for t in p.threads:
                    t.join(timeout=2)
                p.log.close()
                with contextlib.suppress(OSError):
                    p.record.unlink()

        threading.Thread(target=finish, daemon=True).start()

    # -- the loop ----------------------------------------------------------------
    def decide(self, pod: dict[str, Any]) -> str | None:
        """The pod's ``kaic.io/runtime`` (marking it the first time)."""
        md = pod["metadata"]
        have = (md.get("annotations") or {}).get(RUNTIME_ANNOTATION)
        if have in (LOCAL, KWOK):
            return str(have)
        if md["uid"] in self.decided:
            return self.decided[md["uid"]]
        ok, why = pod_decision(pod, self.which)
        value = LOCAL if ok else KWOK
        if not self.annotate(pod, value, why):
            return None
        self.decided[md["uid"]] = value
        if not ok:
            self.event(
                pod, "NotRun", f"kaic lab runs no process for this pod: {why}; kwok simulates it"
            )
            self.explain_in_logs(pod, why)
        return value

    def sync(self, pods: Sequence[dict[str, Any]]) -> None:
        seen = set()
        for pod in pods:
            md = pod.get("metadata") or {}
            uid = str(md.get("uid", ""))
            spec = pod.get("spec") or {}
            if not uid or not spec.get("nodeName"):
                continue
            seen.add(uid)
            run = self.pods.get(uid)
            if md.get("deletionTimestamp"):
                if run is not None and run.procs:
                    self.stop_pod(run, grace_of(pod))
                continue
            phase = (pod.get("status") or {}).get("phase")
            if run is None:
                if phase in ("Succeeded", "Failed"):
                    continue
                if self.decide(pod) != LOCAL or phase != "Running":
                    continue
                run = PodRun(
                    uid,
                    str(md["namespace"]),
                    str(md["name"]),
                    pod,
                    [
                        ContainerState(c["name"], str(c.get("image", "")))
                        for c in spec["containers"]
                    ],
                )
                self.pods[uid] = run
                for c in run.containers:
                    self.start_container(run, c)
            else:
                run.pod = pod
            self.reap(run)
            if not run.final:
                self.restart_due(run)
            self.push_status(run)
        for uid in [u for u in self.pods if u not in seen]:
            run = self.pods.pop(uid)
            if self.nics:
                self.nics.stopped(uid)
            if run.procs:
                # NOTE: kwok deletes a pod at once, so it is usually gone before its
                # deletionTimestamp is seen; the grace period is the pod's all the same.
                self.stop_pod(run, grace_of(run.pod))
        self.decided = {u: v for u, v in self.decided.items() if u in seen}

    def shutdown(self) -> None:
        for run in self.pods.values():
            for p in run.procs.values():
                kill_group(p.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for run in self.pods.values():
            for p in run.procs.values():
                while p.popen.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                kill_group(p.popen.pid)
        kill_recorded(self.procs_dir)


MOUNTS_SH = """#!/bin/sh
# kaic lab: inside a private mount namespace, put each host directory at the container's
# mountPath (arguments: SRC DST ro|rw ... --). A mountPath that does not exist on the host
# gets a tmpfs over its nearest existing ancestor below /run or /tmp (a container does not
# see the host's /run).
set -e
while [ "$1" != "--" ]; do
  src=$1; dst=$2; mode=$3; shift 3
  real=$(readlink -m "$dst")
  if [ ! -d "$real" ]; then
    a=$(dirname "$real")
    while [ ! -d "$a" ]; do a=$(dirname "$a"); done
    case "$a" in
      /run|/run/*|/tmp|/tmp/*) mount -t tmpfs -o mode=0755,size=4m kaic-volumes "$a" ;;
      *) echo "kaic lab: cannot mount a volume at $dst" >&2; exit 125 ;;
    esac
    mkdir -p "$real"
  fi
  mount --bind "$src" "$real"
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$real" 2>/dev/null || true; fi
done
shift
exec "$@"
"""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m kaic.lab.sims.runtime", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--kubeconfig", required=True, type=Path)
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("--devices-root", type=Path)
    ap.add_argument("--exec-bin", type=Path)
    ap.add_argument(
        "--host-path-root", type=Path, help="hostPath and PersistentVolume directories lie below"
    )
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between pod syncs")
    ap.add_argument("--nic-netns", help="the lab's namespace, where the NICs' bridge is")
    ap.add_argument("--nic-cidr", help="addresses of the simulated NICs")
    a = ap.parse_args(argv)
    a.root.mkdir(parents=True, exist_ok=True)
    (a.root / "mounts.sh").write_text(MOUNTS_SH)
    left = kill_recorded(a.root / "procs")
    api = ApiClient.from_kubeconfig(a.kubeconfig)
    rt = Runtime(
        api,
        a.root,
        devices_root=a.devices_root,
        exec_bin=a.exec_bin,
        workdir=a.workdir,
        host_path_root=a.host_path_root,
    )
    if a.nic_netns and a.nic_cidr:
        rt.nics = nics.NicAttacher(api, a.nic_netns, a.nic_cidr, log=rt.log)
    if left:
        rt.log(f"killed {len(left)} container process group(s) left by an earlier runtime")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    rt.log("container runtime running")
    # NOTE: the pods come from a watch (listed once, then their events), not from a
    # list every second: a lab of thousands of pods would spend most of its CPU (here
    # and in the apiserver) on that list. The loop still runs every interval, for the
    # containers that exit and restart.
    pods = Mirror(api, "/api/v1/pods", log=rt.log).start(stop)
    try:
        while not stop.is_set():
            if pods.synced.is_set():
                pods.changed.clear()
                try:
                    rt.sync(pods.items())
                except (ApiError, OSError, ValueError, AttributeError, KeyError) as e:
                    rt.log(f"sync failed: {e}")
            pods.changed.wait(a.interval)
            stop.wait(MIN_SYNC_GAP_S)
    finally:
        rt.shutdown()
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
