"""Simulated device visibility: which GPUs a lab container "sees" when you ``exec`` into it.

Owns: the device visibility agent (a watcher of the lab's pods, ResourceClaims and
ResourceSlices), how it derives each container's visible GPUs from what the scheduler
actually allocated, the per-pod kwok ``Exec`` rules, and the small shell programs that
give an exec'd command its own ``/dev`` and ``nvidia-smi``. Must not import the
``kubernetes`` client (it talks to the apiserver with the lab's client,
``kaic.lab.apiserver``, and the lab's kubeconfig).

How it works (docs/lab.md, "Simulated device visibility"):

* kwok runs ``kubectl exec`` commands as local processes and resolves ``argv[0]`` with its
  own ``PATH``. The lab puts ``<exec-bin>`` first on kwok's ``PATH``; this module writes an
  ``sh`` there. Without ``KAIC_DEVICE_DIR`` in its environment it is plain ``/bin/sh``.
* For every pod the agent creates an ``Exec`` rule (same name and namespace as the pod, one
  target per container) that sets ``KAIC_DEVICE_DIR=<root>/pods/<uid>/<container>``.
* Once the pod is bound, the agent writes that directory: ``devices`` (``nvidia3`` …),
  ``bin/nvidia-smi`` listing those GPUs, and ``ready``. The ``sh`` wrapper waits for
  ``ready``, then runs the command in a private mount namespace whose ``/dev`` holds the
  usual character devices plus one empty file per visible GPU.
* Visible GPUs come from ResourceClaim allocations (``status.allocation.devices.results``,
  per container through ``resources.claims``) or, for ``nvidia.com/gpu`` requests, from a
  per-node assignment the agent makes like a device plugin would (lowest free indices,
  never one device to two containers). On a node labelled ``nvidia.com/gpu.replicas=R``
  (time-slicing) share ``i`` is physical GPU ``i // R``: containers holding shares of
  one GPU see the same ``/dev/nvidia<N>`` and UUID.
* The installed driver is simulated too: the stand-in ``nvidia-smi`` reports the driver
  version and CUDA version that the same ConfigMap says are installed on the node (keys
  ``driver-version`` and ``cuda-version``, per node ``driver-version.<node>`` and
  ``cuda-version.<node>``; default ``ACTUAL_DRIVER_VERSION``/``ACTUAL_CUDA_VERSION``), so a
  node's installed driver can be made to disagree with what its ResourceSlice publishes.
* DRA devices of type ``vgpu`` (the ``virtual-gpus`` component) are shown like GPUs.
* The lab's namespace sandbox: pods whose RuntimeClass has handler ``kaic-unshare`` get
  ``KAIC_SANDBOX`` in their Exec rule, and the ``sh`` wrapper then runs the command in new
  PID, network, mount, UTS and IPC namespaces chrooted into a private root (ConfigMap key
  ``sandbox``: ``off`` runs such pods unisolated, for negative tests).
* Device failures (``kaic.lab.sims.device_health``, run on every reconcile): the Node
  annotation ``kaic.io/device-fault`` fails GPUs (allocatable, ResourceSlice, Node
  condition ``GPUUnhealthy``, Events) until it is removed.
* Leak modes (ConfigMap ``kube-system/kaic-lab-devices``, key ``mode``) break isolation on
  purpose so that checks can be seen to FAIL: ``leak-unrequested`` (containers without a
  grant see every GPU of their node), ``leak-envvar`` (containers that set
  ``NVIDIA_VISIBLE_DEVICES=all`` see every GPU of their node), ``leak-shared`` (granted
  containers see every GPU of their node).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaic.cluster.quantity import parse_quantity
from kaic.lab.apiserver import ApiClient, ApiError, Mirror
from kaic.lab.sims.device_health import CONFIGMAP_NAME as HEALTH_CONFIGMAP
from kaic.lab.sims.device_health import HealthReporter, reporting_on

DRIVER = "gpu.nvidia.com"
RESOURCE = "nvidia.com/gpu"
VISIBLE_ENV = "NVIDIA_VISIBLE_DEVICES"
REPLICAS_LABEL = "nvidia.com/gpu.replicas"
"""GPU Feature Discovery's label of time-slicing replicas per physical GPU."""
PRODUCT = "NVIDIA H100 80GB HBM3"
DEVICE_DIR_ENV = "KAIC_DEVICE_DIR"
CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "kaic-lab-devices"
RULE_LABEL = "kaic.io/device-visibility"
MODES = ("isolated", "leak-unrequested", "leak-envvar", "leak-shared")
KWOK_API = "kwok.x-k8s.io/v1alpha1"
NO_RULE = "no-rule"
"""Last part of the ``KAIC_DEVICE_DIR`` the lab's default ClusterExec sets: an exec that
kwok matched to no per-pod rule (the agent has not seen the pod yet) fails with exit
code 126 instead of showing the host's devices."""
ACTUAL_DRIVER_VERSION = "580.82.07"
"""The simulated installed driver (what ``nvidia-smi`` reports; the DRA driver publishes
it as the semantic version ``580.82.7``)."""
ACTUAL_CUDA_VERSION = "13.0"
"""The CUDA version the simulated driver supports (``CUDA Version`` of ``nvidia-smi``)."""
SANDBOX_ENV = "KAIC_SANDBOX"
SANDBOX_HANDLER = "kaic-unshare"
"""RuntimeClass handler of the lab's namespace sandbox: ``exec`` in such a pod runs in new
PID, network, mount, UTS and IPC namespaces with a private root (ConfigMap key
``sandbox``: ``isolated``, the default, or ``off`` to run such pods unisolated)."""
ALIVE_FILE = "agent-alive"
"""Touched by the agent after every reconcile (the lab's readiness probe)."""


# ---------------------------------------------------------------------------------------
# What a node has and what a container may see
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Gpu:
    """One simulated GPU of one node."""

    node: str
    index: int
    uuid: str
    device: str = ""
    """The DRA device name (``gpu-3``), empty for device-plugin-only nodes."""
    pool: str = ""
    product: str = PRODUCT
    physical: int | None = None
    """The physical GPU a time-sliced share belongs to (None: the GPU is ``index``)."""

    @property
    def dev_name(self) -> str:
        return f"nvidia{self.index if self.physical is None else self.physical}"


def synthetic_uuid(lab: str, node: str, index: int) -> str:
    """The stable UUID the lab gives GPU ``index`` of ``node`` (same as its slices)."""
    return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"kaic-lab/{lab}/{node}/{index}"))


def _attr(attrs: Mapping[str, Any], name: str) -> Any:
    for k in (name, f"{DRIVER}/{name}"):
        v = attrs.get(k)
        if isinstance(v, Mapping):
            for t in ("int", "string", "version", "bool"):
                if t in v:
                    return v[t]
    return None


def gpus_by_node(
    nodes: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]], lab: str
) -> dict[str, list[Gpu]]:
    """Every node's GPUs: from the driver's ResourceSlices (node-local ones), else from the
    node's ``nvidia.com/gpu`` capacity with the lab's synthetic UUIDs."""
    out: dict[str, dict[int, Gpu]] = {}
    for s in slices:
        spec = s.get("spec") or {}
        node = spec.get("nodeName")
        if spec.get("driver") != DRIVER or not node:
            continue
        for d in spec.get("devices") or []:
            attrs = d.get("attributes") or {}
            if _attr(attrs, "type") not in (None, "gpu", "vgpu"):
                continue
            idx = _attr(attrs, "minor")
            idx = _attr(attrs, "index") if idx is None else idx
            if idx is None:
                continue
            uid = str(_attr(attrs, "uuid") or synthetic_uuid(lab, node, int(idx)))
            product = str(_attr(attrs, "productName") or PRODUCT)
            out.setdefault(node, {})[int(idx)] = Gpu(
                node,
                int(idx),
                uid,
                str(d.get("name", "")),
                str((spec.get("pool") or {}).get("name", "")),
                product,
            )
    for n in nodes:
        name = n.get("metadata", {}).get("name", "")
        cap = (n.get("status") or {}).get("capacity") or {}
        try:
            count = int(str(cap.get(RESOURCE, 0)))
        except ValueError:
            count = 0
        have = out.setdefault(name, {})
        labels = n.get("metadata", {}).get("labels") or {}
        try:
            replicas = max(1, int(str(labels.get(REPLICAS_LABEL, "1"))))
        except ValueError:
            replicas = 1
        for i in range(count):
            if replicas > 1:
                # NOTE: time-slicing: share i is a replica of physical GPU i // replicas.
                phys = i // replicas
                have.setdefault(i, Gpu(name, i, synthetic_uuid(lab, name, phys), physical=phys))
            else:
                have.setdefault(i, Gpu(name, i, synthetic_uuid(lab, name, i)))
    return {k: [v[i] for i in sorted(v)] for k, v in out.items() if v}


@dataclass(frozen=True)
class Driver:
    """The simulated driver installed on one node."""

    version: str = ACTUAL_DRIVER_VERSION
    cuda: str = ACTUAL_CUDA_VERSION


def installed_drivers(data: Mapping[str, str], nodes: Iterable[str]) -> dict[str, Driver]:
    """The driver installed on each of ``nodes`` by the mode ConfigMap's ``data``:
    ``driver-version``/``cuda-version`` for every node, ``driver-version.<node>``/
    ``cuda-version.<node>`` for one."""
    base = Driver(
        str(data.get("driver-version") or ACTUAL_DRIVER_VERSION).strip(),
        str(data.get("cuda-version") or ACTUAL_CUDA_VERSION).strip(),
    )
    return {
        n: Driver(
            str(data.get(f"driver-version.{n}") or base.version).strip(),
            str(data.get(f"cuda-version.{n}") or base.cuda).strip(),
        )
        for n in nodes
    }


def _requested(container: Mapping[str, Any]) -> int:
    res = container.get("resources") or {}
    n = (res.get("limits") or {}).get(RESOURCE, (res.get("requests") or {}).get(RESOURCE))
    try:
        return int(parse_quantity(n)) if n is not None else 0
    except (ValueError, ArithmeticError):
        return 0


def pod_key(pod: Mapping[str, Any]) -> str:
    return str(pod.get("metadata", {}).get("uid", ""))


def _live(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


@dataclass
class DevicePluginAssigner:
    """Hands out concrete GPU indices for ``nvidia.com/gpu`` requests, per node, like a
    device plugin: lowest free indices first, in pod creation order, never one GPU to two
    containers; released when the pod is gone or finished."""

    assigned: dict[tuple[str, str], tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    """(pod uid, container) -> (node, indices)."""
    conflicts: list[str] = field(default_factory=list)

    def sync(
        self,
        pods: Sequence[Mapping[str, Any]],
        gpus: Mapping[str, list[Gpu]],
        dra_taken: Mapping[str, set[int]],
    ) -> None:
        live = {}
        for p in pods:
            node = p.get("spec", {}).get("nodeName")
            if not node or not _live(p):
                continue
            for c in p["spec"].get("containers") or []:
                if _requested(c):
                    live[(pod_key(p), c["name"])] = (p, c, node)
        for key in [k for k in self.assigned if k not in live]:
            del self.assigned[key]
        self.conflicts = []
        used: dict[str, set[int]] = {}
        for node, idx in self.assigned.values():
            used.setdefault(node, set()).update(idx)
        order = sorted(
            live.items(),
            key=lambda kv: (
                kv[1][0]["metadata"].get("creationTimestamp", ""),
                kv[1][0]["metadata"].get("namespace", ""),
                kv[1][0]["metadata"].get("name", ""),
                kv[0][1],
            ),
        )
        for key, (p, c, node) in order:
            if key in self.assigned:
                continue
            busy = used.setdefault(node, set()) | dra_taken.get(node, set())
            free = [g.index for g in gpus.get(node, []) if g.index not in busy]
            want = _requested(c)
            if len(free) < want:
                self.conflicts.append(
                    f"{p['metadata'].get('namespace')}/{p['metadata'].get('name')} container "
                    f"{c['name']}: wants {want} {RESOURCE} on {node}, {len(free)} free"
                )
                continue
            self.assigned[key] = (node, tuple(free[:want]))
            used[node].update(free[:want])

    def of(self, uid: str, container: str) -> tuple[int, ...]:
        got = self.assigned.get((uid, container))
        return got[1] if got else ()


def claim_names(pod: Mapping[str, Any]) -> dict[str, str]:
    """Pod-level claim name -> ResourceClaim object name (direct or from a template)."""
    out = {}
    for rc in pod.get("spec", {}).get("resourceClaims") or []:
        if rc.get("resourceClaimName"):
            out[rc["name"]] = rc["resourceClaimName"]
    for st in (pod.get("status") or {}).get("resourceClaimStatuses") or []:
        if st.get("resourceClaimName"):
            out[st["name"]] = st["resourceClaimName"]
    return out


def container_grants(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    claims: Mapping[tuple[str, str], Mapping[str, Any]],
    by_device: Mapping[tuple[str, str], Gpu],
) -> list[Gpu] | None:
    """GPUs the claims referenced by ``container`` were allocated (by request name); None
    while one of them is not known to be allocated yet.

    NOTE: the scheduler writes a claim's allocation before it binds the pod, but the
    agent follows pods and claims through separate watches, so it can see the pod bound
    before its claim allocated (or a device of a slice it has not seen yet). A view made
    then would show the container no device, and an exec in that moment would report
    it; the container's view waits for the claim instead (``write_state`` writes no
    ``ready`` for it, and the exec wrapper waits)."""
    names = claim_names(pod)
    ns = pod.get("metadata", {}).get("namespace", "")
    out: list[Gpu] = []
    for ref in (container.get("resources") or {}).get("claims") or []:
        claim = claims.get((ns, names.get(ref.get("name", ""), "")))
        alloc = ((claim or {}).get("status") or {}).get("allocation")
        if not alloc:
            return None
        request = ref.get("request")
        for r in (alloc.get("devices") or {}).get("results") or []:
            if r.get("driver") != DRIVER:
                continue
            rq = str(r.get("request", ""))
            if request and rq != request and not rq.startswith(f"{request}/"):
                continue
            g = by_device.get((str(r.get("pool")), str(r.get("device"))))
            if g is None:
                return None
            if g not in out:
                out.append(g)
    return out


def visibility(
    pods: Sequence[Mapping[str, Any]],
    claims: Iterable[Mapping[str, Any]],
    gpus: Mapping[str, list[Gpu]],
    assigner: DevicePluginAssigner,
    mode: str = "isolated",
) -> dict[str, dict[str, list[Gpu]]]:
    """pod uid -> container name -> the GPUs it sees, for every bound, live pod (a
    container whose claims are not seen allocated yet has no entry: no view yet)."""
    by_device = {(g.pool, g.device): g for gl in gpus.values() for g in gl if g.device}
    claim_map = {
        (c.get("metadata", {}).get("namespace", ""), c.get("metadata", {}).get("name", "")): c
        for c in claims
    }
    dra_taken: dict[str, set[int]] = {}
    for c in claim_map.values():
        for r in (((c.get("status") or {}).get("allocation") or {}).get("devices") or {}).get(
            "results"
        ) or []:
            g = by_device.get((str(r.get("pool")), str(r.get("device"))))
            if g is not None:
                dra_taken.setdefault(g.node, set()).add(g.index)
    assigner.sync(pods, gpus, dra_taken)
    out: dict[str, dict[str, list[Gpu]]] = {}
    for p in pods:
        node = p.get("spec", {}).get("nodeName")
        if not node or not _live(p):
            continue
        node_gpus = gpus.get(node, [])
        per: dict[str, list[Gpu]] = {}
        for c in p["spec"].get("containers") or []:
            claimed = container_grants(p, c, claim_map, by_device)
            if claimed is None:  # its claims are not seen allocated yet: no view yet
                continue
            granted = claimed
            idx = assigner.of(pod_key(p), c["name"])
            granted += [g for g in node_gpus if g.index in idx and g not in granted]
            asked = (
                bool(granted)
                or bool(_requested(c))
                or bool((c.get("resources") or {}).get("claims"))
            )
            env_all = any(
                e.get("name") == VISIBLE_ENV and e.get("value") == "all" for e in c.get("env") or []
            )
            seen = sorted(granted)
            if (
                (mode == "leak-unrequested" and not asked)
                or (mode == "leak-envvar" and env_all)
                or (mode == "leak-shared" and asked)
            ):
                seen = list(node_gpus)
            per[c["name"]] = seen
        out[pod_key(p)] = per
    return out


# ---------------------------------------------------------------------------------------
# Files: the sh wrapper, the /dev builder, per-container state, kwok Exec rules
# ---------------------------------------------------------------------------------------

WAIT_READY_S: float = 30

SH_WRAPPER = """#!/bin/sh
# kaic lab: `sh` as kwok resolves it for `kubectl exec` (simulated device visibility,
# see docs/lab.md). Without KAIC_DEVICE_DIR this is plain /bin/sh.
if [ -z "${KAIC_DEVICE_DIR:-}" ]; then exec /bin/sh "$@"; fi
d=$KAIC_DEVICE_DIR
unset KAIC_DEVICE_DIR
case "$d" in
  */@NORULE@)
    echo "kaic lab: no device view for this pod yet (kwok found no Exec rule of the" \
      "device visibility agent); try again" >&2
    exit 126;;
esac
i=0
while [ ! -e "$d/ready" ]; do
  i=$((i+1))
  if [ "$i" -gt @WAIT@ ]; then
    echo "kaic lab: device visibility of this container is not ready ($d)" >&2
    exit 126
  fi
  sleep 0.1
done
if [ -s "$d/devices" ]; then PATH="$d/bin:$PATH"; export PATH; fi
ns="-m"
if [ -n "${KAIC_SANDBOX:-}" ]; then ns="-m -p -f -n -u -i --mount-proc"; fi
if [ "$(id -u)" = 0 ]; then exec unshare $ns /bin/sh "@ROOT@/devns.sh" "$d" "$@"; fi
exec unshare $ns -r /bin/sh "@ROOT@/devns.sh" "$d" "$@"
"""

DEVNS = """#!/bin/sh
# kaic lab: inside a private mount namespace, give the command the container's /dev:
# the usual character devices of the host plus one empty file per visible GPU.
set -e
d=$1
shift
h=$(mktemp -d "${TMPDIR:-/tmp}/kaic-dev.XXXXXX")
mount --rbind /dev "$h"
mount -t tmpfs -o mode=0755,size=1m kaic-dev /dev
for n in null zero full random urandom tty ptmx; do
  if [ -e "$h/$n" ]; then : > "/dev/$n"; mount --bind "$h/$n" "/dev/$n"; fi
done
for n in pts shm mqueue; do
  if [ -d "$h/$n" ]; then mkdir "/dev/$n"; mount --rbind "$h/$n" "/dev/$n"; fi
done
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
while read -r n; do
  if [ -n "$n" ]; then : > "/dev/$n"; fi
done < "$d/devices"
umount -l "$h"
rmdir "$h" 2>/dev/null || true
if [ -n "${KAIC_SANDBOX:-}" ]; then
  # the namespace sandbox: a private root of the host's read-only system directories,
  # an empty /tmp and /root, this /dev and a /proc of the new PID namespace
  unset KAIC_SANDBOX
  r="$d/sandbox-root"
  mkdir -p "$r"
  mount -t tmpfs -o mode=0755 kaic-root "$r"
  for p in bin sbin lib lib32 lib64 libx32 usr etc; do
    if [ -L "/$p" ]; then ln -s "$(readlink "/$p")" "$r/$p"
    elif [ -d "/$p" ]; then
      mkdir "$r/$p"; mount --rbind "/$p" "$r/$p"
      mount -o remount,bind,ro "$r/$p" 2>/dev/null || true
    fi
  done
  mkdir "$r/dev" "$r/proc" "$r/tmp" "$r/root"
  chmod 1777 "$r/tmp"
  mount --rbind /dev "$r/dev"
  mount -t proc proc "$r/proc"
  hostname kaic-sandbox 2>/dev/null || true
  set +e
  exec chroot "$r" /bin/sh "$@"
fi
set +e
exec /bin/sh "$@"
"""


def nvidia_smi_script(gpus: Sequence[Gpu], driver: Driver | None = None) -> str:
    """A stand-in ``nvidia-smi`` that knows only ``gpus`` and the node's installed
    ``driver``: ``-L`` like the real one, ``--query-gpu=driver_version`` (CSV, one line
    per GPU), and a header with ``Driver Version`` and ``CUDA Version`` otherwise."""
    drv = driver or Driver()
    listing = "\n".join(f"GPU {i}: {g.product} (UUID: {g.uuid})" for i, g in enumerate(gpus))
    table = "\n".join(f"|   {i}  {g.product:<34} | {g.uuid} |" for i, g in enumerate(gpus))
    versions = "\n".join(drv.version for _ in gpus)
    header = (
        f"| NVIDIA-SMI {drv.version}   Driver Version: {drv.version}   CUDA Version: {drv.cuda} |"
    )
    return (
        "#!/bin/sh\n"
        "# kaic lab: simulated nvidia-smi (the GPUs granted to this container)\n"
        'case "${1:-}" in\n'
        "  -L|--list-gpus)\n"
        f"    cat <<'EOF'\n{listing}\nEOF\n"
        "    ;;\n"
        "  --query-gpu=driver_version)\n"
        f"    cat <<'EOF'\n{versions}\nEOF\n"
        "    ;;\n"
        "  *)\n"
        f"    cat <<'EOF'\n+ kaic lab simulated nvidia-smi +\n{header}\n{table}\nEOF\n"
        "    ;;\n"
        "esac\n"
    )


def _write(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write atomically when the content changed; True if it did."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def install_programs(root: Path, exec_bin: Path) -> None:
    """Write ``devns.sh`` under ``root`` and the ``sh`` wrapper into ``exec_bin``."""
    root.mkdir(parents=True, exist_ok=True)
    _write(root / "devns.sh", DEVNS, 0o755)
    _write(
        exec_bin / "sh",
        SH_WRAPPER.replace("@ROOT@", str(root))
        .replace("@WAIT@", str(int(WAIT_READY_S * 10)))
        .replace("@NORULE@", NO_RULE),
        0o755,
    )


def with_no_rule_marker(cluster_exec: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """The lab's default ClusterExec with ``KAIC_DEVICE_DIR`` pointing at the no-rule
    marker, so that an exec the agent has no rule for yet fails instead of showing the
    host's devices."""
    out = json.loads(json.dumps(cluster_exec))
    for ex in out.get("spec", {}).get("execs") or []:
        local = ex.setdefault("local", {})
        envs = [e for e in local.get("envs") or [] if e.get("name") != DEVICE_DIR_ENV]
        local["envs"] = [*envs, {"name": DEVICE_DIR_ENV, "value": str(root / NO_RULE)}]
    return dict(out)


def container_dir(root: Path, uid: str, container: str) -> Path:
    return root / "pods" / uid / container


def write_state(
    root: Path,
    vis: Mapping[str, Mapping[str, list[Gpu]]],
    pods: Sequence[Mapping[str, Any]],
    drivers: Mapping[str, Driver] | None = None,
    written: dict[tuple[str, str], tuple[Gpu | Driver | None, ...]] | None = None,
) -> None:
    """Per-container ``devices``, ``gpus``, ``bin/nvidia-smi`` and ``ready`` for bound pods;
    directories of pods that are gone are removed. ``written`` (kept by the caller between
    calls) remembers what each container's files were last written from, so that an
    unchanged view is not read back from disk on every call."""
    known = {pod_key(p) for p in pods}
    for p in pods:
        uid = pod_key(p)
        if uid not in vis:
            continue
        node = str(p.get("spec", {}).get("nodeName") or "")
        driver = (drivers or {}).get(node)
        for cname, seen in vis[uid].items():
            key = (*seen, driver)
            if written is not None and written.get((uid, cname)) == key:
                continue
            d = container_dir(root, uid, cname)
            _write(d / "devices", "".join(f"{g.dev_name}\n" for g in seen))
            _write(d / "gpus", "".join(f"{g.index} {g.uuid} {g.node}\n" for g in seen))
            _write(d / "bin" / "nvidia-smi", nvidia_smi_script(seen, driver), 0o755)
            _write(d / "ready", "")
            if written is not None:
                written[(uid, cname)] = key
    if written is not None:
        for k in [k for k in written if k[0] not in known]:
            del written[k]
    pods_dir = root / "pods"
    if pods_dir.is_dir():
        for d in pods_dir.iterdir():
            if d.name not in known:
                shutil.rmtree(d, ignore_errors=True)


def exec_rule(
    pod: Mapping[str, Any], root: Path, base: Mapping[str, Any], sandbox: bool = False
) -> dict[str, Any]:
    """The kwok ``Exec`` rule of ``pod``: one target per container, each with the
    default ClusterExec's ``local`` settings plus its ``KAIC_DEVICE_DIR`` (and
    ``KAIC_SANDBOX`` when ``sandbox``)."""
    md = pod["metadata"]
    execs = []
    for c in pod.get("spec", {}).get("containers") or []:
        local = json.loads(json.dumps(base))
        envs = [
            e for e in local.get("envs") or [] if e.get("name") not in (DEVICE_DIR_ENV, SANDBOX_ENV)
        ]
        envs.append(
            {"name": DEVICE_DIR_ENV, "value": str(container_dir(root, md["uid"], c["name"]))}
        )
        if sandbox:
            envs.append({"name": SANDBOX_ENV, "value": "namespaces"})
        local["envs"] = envs
        execs.append({"containers": [c["name"]], "local": local})
    return {
        "apiVersion": KWOK_API,
        "kind": "Exec",
        "metadata": {
            "name": md["name"],
            "namespace": md["namespace"],
            "labels": {RULE_LABEL: "agent", "app.kubernetes.io/managed-by": "kaic-lab"},
            "annotations": {"kaic.io/pod-uid": md["uid"]},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": md["name"], "uid": md["uid"]}
            ],
        },
        "spec": {"execs": execs},
    }


# ---------------------------------------------------------------------------------------
# The agent
# ---------------------------------------------------------------------------------------


PODS = "/api/v1/pods"
NODES = "/api/v1/nodes"
SLICES = "/apis/resource.k8s.io/v1/resourceslices"
CLAIMS = "/apis/resource.k8s.io/v1/resourceclaims"
EXECS = f"/apis/{KWOK_API}/execs"


def _configmap(name: str) -> str:
    """The collection of the one ConfigMap ``name`` of the settings namespace."""
    return (
        f"/api/v1/namespaces/{CONFIGMAP_NAMESPACE}/configmaps?fieldSelector=metadata.name%3D{name}"
    )


SETTINGS = _configmap(CONFIGMAP_NAME)
HEALTH_SETTINGS = _configmap(HEALTH_CONFIGMAP)
CLUSTER_EXECS = f"/apis/{KWOK_API}/clusterexecs"
RUNTIME_CLASSES = "/apis/node.k8s.io/v1/runtimeclasses"
MIRRORED = (
    PODS,
    NODES,
    SLICES,
    CLAIMS,
    EXECS,
    SETTINGS,
    HEALTH_SETTINGS,
    CLUSTER_EXECS,
    RUNTIME_CLASSES,
)
"""The collections the agent follows by watch (``kaic.lab.apiserver.Mirror``): listed
once, then kept current by their events, so that a lab of thousands of nodes and pods is
not listed again on every reconcile, and a reconcile runs only when one of them changed
in a way that matters (a node's heartbeat does not), or every ``FULL_RESYNC_S``."""
RULE_WRITERS = 4
"""Threads writing pods' Exec rules (a large lab's exporter pods appear by the thousand)."""
FULL_RESYNC_S = 30.0
"""A reconcile (and a device-health pass) runs at least this often even when nothing it
follows changed; the files of every container view are then checked on disk again."""


def node_digest(node: Mapping[str, Any]) -> str:
    """What the agent reads of a node (labels, annotations, capacity, allocatable): a
    change anywhere else, such as kwok's heartbeat of its conditions, is not a reason to
    reconcile."""
    md = node.get("metadata") or {}
    st = node.get("status") or {}
    return json.dumps(
        [md.get("labels"), md.get("annotations"), st.get("capacity"), st.get("allocatable")],
        sort_keys=True,
    )


class Agent:
    """Keeps every pod's simulated device view in line with the cluster's allocations."""

    def __init__(self, api: ApiClient, root: Path, lab: str, log: Any = None) -> None:
        self.api = api
        self.root = root
        self.lab = lab
        self.assigner = DevicePluginAssigner()
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.wake = threading.Event()
        self._last_conflicts: list[str] = []
        self._mode = "isolated"
        self._base: dict[str, Any] | None = None
        self._ruled: set[str] = set()
        """Uids of pods whose Exec rule is known to be in place."""
        self._sandboxed: set[str] = set()
        """RuntimeClasses of the lab's namespace sandbox (empty when it is ``off``)."""
        self.health = HealthReporter(api, self.log)
        """Simulated device failures (``kaic.lab.sims.device_health``)."""
        self.mirrors: dict[str, Mirror] = {}
        """The watched collections once ``follow`` started them (none in a unit test: then
        every reconcile lists)."""
        self._writes: queue.Queue[str] | None = None
        """Uids of pods whose Exec rule the writer threads are to write (``follow`` starts
        them; without them a rule is written at once, in the caller's thread)."""
        self._pending: dict[str, Mapping[str, Any]] = {}
        self._pending_lock = threading.Lock()
        self.dirty = threading.Event()
        """Set when something the reconcile reads changed (a pod, a claim, a slice, a rule,
        a setting, what matters of a node) or a collection was listed again."""
        self.health_dirty = threading.Event()
        """The same for the device-health pass (nodes, slices, settings)."""
        self._nodes: dict[str, str] = {}
        """Node name -> ``node_digest`` as last seen in an event."""
        self._verified: dict[str, tuple[Any, ...]] = {}
        """Pod uid -> (its rule's resourceVersion, its sandbox, the base) when its Exec
        rule was last found right: not compared again while none of them changed."""
        self._written: dict[tuple[str, str], tuple[Gpu | Driver | None, ...]] = {}
        """What ``write_state`` last wrote per container (emptied on every full resync)."""
        self._base_key = ""

    def follow(self, stop: threading.Event) -> None:
        """Start a Mirror per collection of ``MIRRORED``; pod and claim events wake the
        reconcile loop (a new pod also gets its Exec rule from its event at once)."""

        def changed(_kind: str, _obj: Mapping[str, Any]) -> None:
            self.dirty.set()
            self.wake.set()

        def changed_for_health(kind: str, obj: Mapping[str, Any]) -> None:
            changed(kind, obj)
            self.health_dirty.set()

        self._writes = queue.Queue()
        for i in range(RULE_WRITERS):
            threading.Thread(
                target=self._write_rules, args=(stop,), daemon=True, name=f"rules-{i}"
            ).start()
        handlers = {PODS: self.on_pod_event, NODES: self.on_node_event}
        for path in MIRRORED:
            self.mirrors[path] = Mirror(
                self.api,
                path,
                log=self.log,
                on_event=handlers.get(
                    path, changed_for_health if path in (SLICES, HEALTH_SETTINGS) else changed
                ),
                optional=path != PODS,
            ).start(stop)

    def on_node_event(self, kind: str, node: Mapping[str, Any]) -> None:
        """A node watch event: a reason to reconcile only if what the agent reads of the
        node changed."""
        name = str((node.get("metadata") or {}).get("name", ""))
        if kind == "DELETED":
            self._nodes.pop(name, None)
        else:
            digest = node_digest(node)
            if self._nodes.get(name) == digest:
                return
            self._nodes[name] = digest
        self.dirty.set()
        self.health_dirty.set()
        self.wake.set()

    def lists(self) -> int:
        """How many lists the mirrors made in all (a relist replaces a collection without
        events, so the agent reconciles after one)."""
        return sum(m.lists for m in self.mirrors.values())

    def want_rule(self, pod: Mapping[str, Any]) -> None:
        """Have the pod's Exec rule written: by a writer thread once ``follow`` started
        them (a watch thread or the reconcile loop never waits on thousands of writes
        when a large lab's pods appear at once), else now."""
        if self._writes is None:
            self.ensure_rule(pod)
            return
        uid = str(pod["metadata"]["uid"])
        with self._pending_lock:
            queued = uid in self._pending
            self._pending[uid] = pod
        if not queued:
            self._writes.put(uid)

    def _write_rules(self, stop: threading.Event) -> None:
        assert self._writes is not None
        while not stop.is_set():
            try:
                uid = self._writes.get(timeout=1.0)
            except queue.Empty:
                continue
            with self._pending_lock:
                pod = self._pending.pop(uid, None)
            if pod is not None:
                try:
                    self.ensure_rule(pod)
                except (KeyError, TypeError) as e:
                    self.log(f"cannot write an Exec rule: {e}")

    def _collection(self, path: str) -> list[dict[str, Any]]:
        mirror = self.mirrors.get(path)
        if mirror is not None and mirror.synced.is_set():
            return mirror.items()
        return self._list(path)

    def _list(self, path: str) -> list[dict[str, Any]]:
        try:
            items = self.api.request("GET", path).get("items") or []
        except ApiError as e:
            if e.status == 404:
                return []
            raise
        return list(items)

    def settings(self, name: str = CONFIGMAP_NAME) -> dict[str, str]:
        """The data of the mode ConfigMap, or of another ConfigMap ``name`` of its
        namespace the agent follows (empty when there is none)."""
        mirror = self.mirrors.get(_configmap(name))
        if mirror is not None and mirror.synced.is_set():
            items = mirror.items()
            data = (items[0].get("data") or {}) if items else {}
            return {str(k): str(v) for k, v in data.items()}
        try:
            cm = self.api.request(
                "GET", f"/api/v1/namespaces/{CONFIGMAP_NAMESPACE}/configmaps/{name}"
            )
        except ApiError as e:
            if e.status == 404:
                return {}
            raise
        return {str(k): str(v) for k, v in (cm.get("data") or {}).items()}

    def mode(self, data: Mapping[str, str] | None = None) -> str:
        if data is None:
            data = self.settings()
        mode = str(data.get("mode", "isolated")).strip()
        if mode not in MODES:
            self.log(f"unknown device visibility mode {mode!r}; using isolated")
            return "isolated"
        return mode

    def base_local(self) -> dict[str, Any]:
        """The ``local`` settings of the lab's default ClusterExec (workDir, envs), without
        the no-rule marker."""
        for ce in self._collection(CLUSTER_EXECS):
            for ex in (ce.get("spec") or {}).get("execs") or []:
                if not ex.get("containers") and ex.get("local") is not None:
                    local = dict(ex["local"])
                    local["envs"] = [
                        e for e in local.get("envs") or [] if e.get("name") != DEVICE_DIR_ENV
                    ]
                    return local
        return {}

    def reconcile(self) -> None:
        pods = self._collection(PODS)
        nodes = self._collection(NODES)
        slices = self._collection(SLICES)
        claims = self._collection(CLAIMS)
        data = self.settings()
        mode = self.mode(data)
        if mode != self._mode:
            self.log(f"device visibility mode: {mode}")
            self._mode = mode
        self._base = self.base_local()
        self._base_key = json.dumps(self._base, sort_keys=True)
        self._sandboxed = (
            {
                rc["metadata"]["name"]
                for rc in self._collection(RUNTIME_CLASSES)
                if rc.get("handler") == SANDBOX_HANDLER
            }
            if data.get("sandbox", "isolated").strip() != "off"
            else set()
        )
        gpus = gpus_by_node(nodes, slices, self.lab)
        vis = visibility(pods, claims, gpus, self.assigner, mode)
        if self.assigner.conflicts != self._last_conflicts:
            for c in self.assigner.conflicts:
                self.log(f"cannot assign devices: {c}")
            self._last_conflicts = list(self.assigner.conflicts)
        self.sync_rules(pods)
        drivers = installed_drivers(data, [n.get("metadata", {}).get("name", "") for n in nodes])
        write_state(self.root, vis, pods, drivers, self._written)
        if not self.mirrors:  # no health thread (a unit test): report here
            self.reconcile_health()
        (self.root / ALIVE_FILE).touch()

    def reconcile_health(self) -> None:
        """Apply the nodes' fault annotations (``kaic.lab.sims.device_health``)."""
        try:
            self.health.reconcile(
                self._collection(NODES),
                self._collection(SLICES),
                on=reporting_on(self.settings(HEALTH_CONFIGMAP)),
            )
        except (ApiError, OSError, KeyError, ValueError, TypeError) as e:
            self.log(f"device health: {e}")

    def _health_loop(self, stop: threading.Event, every_s: float, full_resync_s: float) -> None:
        # NOTE: its own thread: a pass that writes many nodes (faults injected on many at
        # once, or nodes created without the fault contract's annotation) must not hold
        # up the device views of new pods.
        last = -full_resync_s
        while not stop.is_set():
            now = time.monotonic()
            if self.health_dirty.is_set() or now - last >= full_resync_s:
                self.health_dirty.clear()
                last = now
                self.reconcile_health()
            stop.wait(every_s)

    def sync_rules(self, pods: Sequence[Mapping[str, Any]]) -> None:
        rules = {
            (r["metadata"]["namespace"], r["metadata"]["name"]): r for r in self._collection(EXECS)
        }
        live = set()
        for p in pods:
            md = p["metadata"]
            live.add(md["uid"])
            if md.get("deletionTimestamp"):
                continue
            have = rules.get((md["namespace"], md["name"]))
            if have is not None:
                ours = (have["metadata"].get("labels") or {}).get(RULE_LABEL) == "agent"
                same = (have["metadata"].get("annotations") or {}).get("kaic.io/pod-uid") == md[
                    "uid"
                ]
                if not ours:
                    continue
                key = (have["metadata"].get("resourceVersion"), self.sandboxed(p), self._base_key)
                if same and self._verified.get(md["uid"]) == key:
                    self._ruled.add(md["uid"])
                    continue
                if same and have.get("spec", {}).get("execs") == self.rule(p)["spec"]["execs"]:
                    self._ruled.add(md["uid"])
                    self._verified[md["uid"]] = key
                    continue
            self.want_rule(p)
        self._ruled &= live
        for uid in [u for u in self._verified if u not in live]:
            del self._verified[uid]

    def sandboxed(self, pod: Mapping[str, Any]) -> bool:
        return (pod.get("spec") or {}).get("runtimeClassName") in self._sandboxed

    def rule(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        return exec_rule(pod, self.root, self._base or {}, self.sandboxed(pod))

    def ensure_rule(self, pod: Mapping[str, Any]) -> None:
        """Create or update the pod's Exec rule (idempotent server-side apply)."""
        md = pod["metadata"]
        rule = self.rule(pod)
        path = (
            f"/apis/{KWOK_API}/namespaces/{md['namespace']}/execs/{md['name']}"
            "?fieldManager=kaic-lab-devices&force=true"
        )
        try:
            self.api.request("PATCH", path, rule, content_type="application/apply-patch+yaml")
        except ApiError as e:
            if e.status not in (403, 404):  # a namespace being deleted, a pod gone
                self.log(f"cannot write Exec rule for {md['namespace']}/{md['name']}: {e}")
            return
        self._ruled.add(md["uid"])

    def on_pod_event(self, kind: str, pod: Mapping[str, Any]) -> None:
        """A pod watch event: give a new pod its Exec rule at once (before it is even
        scheduled), then wake the reconcile loop."""
        md = pod.get("metadata") or {}
        try:
            if (
                kind in ("ADDED", "MODIFIED")
                and md.get("uid")
                and md["uid"] not in self._ruled
                and not md.get("deletionTimestamp")
                and self._base is not None
            ):
                self.want_rule(pod)
        except (KeyError, TypeError, AttributeError):
            pass
        self.dirty.set()
        self.wake.set()

    def run(
        self, stop: threading.Event, resync_s: float = 2.0, full_resync_s: float = FULL_RESYNC_S
    ) -> None:
        """Reconcile whenever something followed changed (at most every ``resync_s`` while
        changes keep coming), and every ``full_resync_s`` regardless; touch ``ALIVE_FILE``
        every ``resync_s`` once a reconcile has succeeded."""
        self.follow(stop)
        for mirror in self.mirrors.values():
            mirror.synced.wait(30.0)
        threading.Thread(
            target=self._health_loop,
            args=(stop, resync_s, full_resync_s),
            daemon=True,
            name="health",
        ).start()
        last, lists, alive = -full_resync_s, -1, False
        while not stop.is_set():
            self.wake.clear()
            started = time.monotonic()
            took = 0.0
            listed = self.lists()
            if listed != lists:
                lists = listed
                self.dirty.set()
                self.health_dirty.set()
            full = started - last >= full_resync_s
            if self.dirty.is_set() or full:
                self.dirty.clear()
                if full:
                    self._written.clear()
                    self._verified.clear()
                    last = started
                try:
                    self.reconcile()
                    alive = True
                except (ApiError, OSError, KeyError, ValueError) as e:
                    self.log(f"reconcile failed: {e}")
                    self.dirty.set()
                took = time.monotonic() - started
            elif alive:
                (self.root / ALIVE_FILE).touch()
            self.wake.wait(resync_s)
            # NOTE: at most half of the time reconciling: a large lab's lists take
            # seconds, and a burst of pod events must not turn into back-to-back lists.
            stop.wait(max(0.0, took - (time.monotonic() - started - took)))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kaic.lab.sims.devices --kubeconfig K --root DIR --exec-bin DIR --lab NAME``."""
    ap = argparse.ArgumentParser(prog="kaic-lab-devices", description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", required=True, type=Path)
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--exec-bin", required=True, type=Path)
    ap.add_argument("--lab", default="default")
    args = ap.parse_args(argv)
    install_programs(args.root, args.exec_bin)
    api = ApiClient.from_kubeconfig(args.kubeconfig)
    stop = threading.Event()
    agent = Agent(api, args.root, args.lab)
    agent.log(f"device visibility agent for lab {args.lab}: {api.server}, state {args.root}")
    try:
        agent.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
