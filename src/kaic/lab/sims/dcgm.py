"""A simulated NVIDIA DCGM exporter for the lab's simulated GPUs (the metrics are made up).

Owns: the DCGM-style Prometheus text for a list of GPUs (``render``) and a tiny HTTP
server per exporter pod at the pod's IP, all in one process (``python -m
kaic.lab.sims.dcgm``) that runs inside the lab's network namespace, where every pod IP
of the lab is a local address (``kaic.lab.network``); it follows the exporter pods with
a watch and writes each pod's kwok PortForward to its listener. The
series names, label names and units follow NVIDIA's dcgm-exporter
(``DCGM_FI_DEV_GPU_UTIL`` in %, ``DCGM_FI_DEV_FB_USED``/``FREE`` in MiB, temperature in
°C, power in W, ``DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL`` as a counter; labels ``gpu``,
``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``Hostname``). The values are
deterministic functions of the GPU index and the time, not measurements.

Faults (read on every request from a JSON file, so tests can switch them at run time):
``{"omit_memory": ["kaic-gpu-1/3"]}`` leaves out the memory series of GPU 3 of node
``kaic-gpu-1`` (a bare ``"3"`` means GPU 3 of every node).

Must not listen on anything but the lab's pod range (pods whose IP is outside
``--pod-cidr`` are not served) or loopback, nor dial anything but the apiserver (through
the lab's relay on the namespace's loopback).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kaic.errors import LabError
from kaic.lab.apiserver import ApiClient, ApiError
from kaic.lab.sims import http

FB_TOTAL_MIB = 81559  # an H100 80GB HBM3 as nvidia-smi reports it
FB_RESERVED_MIB = 0


@dataclass(frozen=True)
class Gpu:
    """One simulated GPU as the exporter would report it."""

    index: int
    uuid: str
    model: str = "NVIDIA H100 80GB HBM3"
    pci_bus_id: str = ""

    @property
    def bus_id(self) -> str:
        return self.pci_bus_id or f"00000000:{0x18 + self.index * 0x10 % 0x100:02X}:00.0"


@dataclass(frozen=True)
class Faults:
    """What the simulated exporter leaves out: GPUs as ``"<node>/<index>"`` (one GPU) or
    ``"<index>"`` (that index on every node)."""

    omit_memory: frozenset[str] = frozenset()

    def omits_memory(self, node: str, index: int) -> bool:
        return f"{node}/{index}" in self.omit_memory or str(index) in self.omit_memory

    @classmethod
    def load(cls, path: Path | None) -> Faults:
        if path is None or not path.exists():
            return cls()
        try:
            doc = json.loads(path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            return cls()
        return cls(omit_memory=frozenset(str(i) for i in doc.get("omit_memory", [])))


def write_faults(path: Path, *, omit_memory: Iterable[str | int] = ()) -> None:
    """Switch the exporter's faults (an empty call clears them); ``omit_memory`` takes
    ``"<node>/<index>"`` or an index for every node."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"omit_memory": sorted({str(i) for i in omit_memory})}))
    tmp.replace(path)


# (name, type, help) in the order dcgm-exporter's default counters list them.
_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory frequency (in MHz)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
    ),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB)."),
    (
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "counter",
        "Total number of NVLink bandwidth counters for all lanes.",
    ),
)
MEMORY_FIELDS = frozenset({"DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_RESERVED"})


def values(gpu: Gpu, now: float) -> dict[str, float]:
    """Plausible, deterministic readings of one GPU at time ``now`` (seconds)."""
    phase = now / 30.0 + gpu.index
    util = round(35 + 30 * math.sin(phase), 0)
    used = int(FB_TOTAL_MIB * (0.25 + 0.05 * (gpu.index % 8)))
    return {
        "DCGM_FI_DEV_SM_CLOCK": 1980.0,
        "DCGM_FI_DEV_MEM_CLOCK": 2619.0,
        "DCGM_FI_DEV_MEMORY_TEMP": 40.0 + gpu.index % 4,
        "DCGM_FI_DEV_GPU_TEMP": round(38 + util / 5, 0),
        "DCGM_FI_DEV_POWER_USAGE": round(120 + 4.5 * util + gpu.index * 0.25, 3),
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": float(int(now * 1000 * 300)),
        "DCGM_FI_DEV_GPU_UTIL": util,
        "DCGM_FI_DEV_MEM_COPY_UTIL": round(util / 3, 0),
        "DCGM_FI_DEV_XID_ERRORS": 0.0,
        "DCGM_FI_DEV_FB_FREE": float(FB_TOTAL_MIB - used - FB_RESERVED_MIB),
        "DCGM_FI_DEV_FB_USED": float(used),
        "DCGM_FI_DEV_FB_RESERVED": float(FB_RESERVED_MIB),
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": float(int(now * 1e6) * (gpu.index + 1)),
    }


def _fmt(v: float) -> str:
    return str(int(v)) if v == int(v) else repr(v)


def render(
    node: str,
    gpus: Sequence[Gpu],
    *,
    faults: Faults = Faults(),
    now: float | None = None,
    driver_version: str = "580.82.07",
) -> str:
    """The exporter's ``/metrics`` text for ``gpus`` of ``node``."""
    t = time.time() if now is None else now
    readings = {g.index: values(g, t) for g in gpus}
    out: list[str] = []
    for name, typ, help_ in _FIELDS:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {typ}")
        for g in gpus:
            if name in MEMORY_FIELDS and faults.omits_memory(node, g.index):
                continue
            labels = (
                f'gpu="{g.index}",UUID="{g.uuid}",pci_bus_id="{g.bus_id}",'
                f'device="nvidia{g.index}",modelName="{g.model}",Hostname="{node}",'
                f'DCGM_FI_DRIVER_VERSION="{driver_version}"'
            )
            out.append(f"{name}{{{labels}}} {_fmt(readings[g.index][name])}")
    return "\n".join(out) + "\n"


# ---- the server ----------------------------------------------------------------------


def make_server(
    node: str, gpus: Sequence[Gpu], host: str, port: int, fault_file: Path | None
) -> ThreadingHTTPServer:
    """An HTTP server for one node's exporter (not started)."""

    def answer(req: http.Request) -> http.Reply:
        if req.path not in ("/metrics", "/"):
            return http.Reply(404, b"not found\n")
        body = render(node, gpus, faults=Faults.load(fault_file)).encode()
        return http.Reply(200, body, "text/plain; version=0.0.4; charset=utf-8")

    return http.server(host, port, answer, name="kaic.lab.sims.dcgm")


def serve(node: str, gpus: Sequence[Gpu], host: str, port: int, fault_file: Path | None) -> None:
    make_server(node, gpus, host, port, fault_file).serve_forever()


@dataclass(frozen=True)
class NodeExporter:
    """One node's simulated exporter: the GPUs it reports."""

    node: str
    gpus: tuple[Gpu, ...]


def write_spec(path: Path, exporters: Sequence[NodeExporter]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            [{"node": e.node, "gpus": [asdict(g) for g in e.gpus]} for e in exporters],
            indent=2,
        )
    )


def read_spec(path: Path) -> list[NodeExporter]:
    return [
        NodeExporter(d["node"], tuple(Gpu(**g) for g in d["gpus"]))
        for d in json.loads(path.read_text())
    ]


LOG_LINES = 20
"""The simulator's log names this many listeners (a large lab has thousands)."""
EXPORTER_SELECTOR = "app=nvidia-dcgm-exporter"
"""Label selector of the exporter's DaemonSet pods."""
PORT = 9400
READY = "dcgm simulator running"
"""The log line that says the simulator watches the exporter pods."""


def pod_port_forward(pod: Mapping[str, Any], ip: str, port: int = PORT) -> dict[str, Any]:
    """A kwok PortForward from an exporter pod's port 9400 to the simulator's listener
    at the pod's IP, named like the pod and owned by it (kwok matches port-forwards by
    pod name; kwok dials the pod IP from the host, through the lab's veth)."""
    md = pod["metadata"]
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "PortForward",
        "metadata": {
            "name": md["name"],
            "namespace": md["namespace"],
            "labels": {"app.kubernetes.io/managed-by": "kaic-lab"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": md["name"], "uid": md["uid"]}
            ],
        },
        "spec": {"forwards": [{"ports": [PORT], "target": {"address": ip, "port": port}}]},
    }


def pod_ip(pod: Mapping[str, Any], pod_cidr: ipaddress.IPv4Network) -> str | None:
    """The pod's IP if it lies in the lab's pod range, else None."""
    ip = (pod.get("status") or {}).get("podIP")
    try:
        return ip if ip and ipaddress.ip_address(ip) in pod_cidr else None
    except ValueError:
        return None


class Exporters:
    """One listener at ``<pod IP>:9400`` per live exporter pod, serving the GPUs of the
    pod's node, and the pod's PortForward to it; nothing for a pod whose IP is outside
    the lab's pod range, whose node has no simulated GPUs, or that is going away.

    Listeners are served by ``listeners`` (one thread for all); ``api`` (None: no
    PortForwards) writes the PortForwards."""

    def __init__(
        self,
        exporters: Sequence[NodeExporter],
        pod_cidr: ipaddress.IPv4Network,
        listeners: http.Listeners,
        *,
        fault_file: Path | None = None,
        api: ApiClient | None = None,
        port: int = PORT,
    ) -> None:
        self.gpus = {e.node: e.gpus for e in exporters}
        self.pod_cidr = pod_cidr
        self.listeners = listeners
        self.fault_file = fault_file
        self.api = api
        self.port = port
        self.served: dict[str, tuple[str, ThreadingHTTPServer]] = {}
        """pod uid -> (pod IP, its listener)"""
        self.forwarded: set[str] = set()
        self._lock = threading.Lock()
        self._logged = 0

    def _log(self, line: str) -> None:
        self._logged += 1
        if self._logged <= LOG_LINES:
            print(line, flush=True)
        elif self._logged == LOG_LINES + 1:
            print("… (further listeners are not logged)", flush=True)

    def pod(self, pod: Mapping[str, Any]) -> None:
        """A pod was added or changed."""
        md = pod.get("metadata") or {}
        uid = str(md.get("uid", ""))
        node = (pod.get("spec") or {}).get("nodeName")
        ip = pod_ip(pod, self.pod_cidr)
        if md.get("deletionTimestamp") or node not in self.gpus or ip is None:
            if md.get("deletionTimestamp"):
                self.gone(uid)
            return
        with self._lock:
            held = self.served.get(uid)
            if held is None or held[0] != ip:
                if held is not None:
                    self.listeners.remove(held[1])
                # NOTE: kwok recycles the IPs of deleted pods; whoever held this one goes.
                for other, (other_ip, srv) in list(self.served.items()):
                    if other_ip == ip and other != uid:
                        self.listeners.remove(srv)
                        del self.served[other]
                        self.forwarded.discard(other)
                try:
                    srv = make_server(node, self.gpus[node], ip, self.port, self.fault_file)
                except OSError as e:
                    print(f"cannot serve {node} on {ip}:{self.port}: {e}", flush=True)
                    return
                self.listeners.add(srv)
                self.served[uid] = (ip, srv)
                self._log(
                    f"dcgm simulator for {node}: {len(self.gpus[node])} GPUs on "
                    f"http://{ip}:{self.port}/metrics (pod {md.get('namespace')}/{md.get('name')})"
                )
        if self.api is not None and uid not in self.forwarded:
            self._forward(pod, ip)
            self.forwarded.add(uid)

    def _forward(self, pod: Mapping[str, Any], ip: str) -> None:
        assert self.api is not None
        md = pod["metadata"]
        body = pod_port_forward(pod, ip, self.port)
        base = f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{md['namespace']}/portforwards"
        try:
            self.api.request("POST", base, body)
        except ApiError as e:
            if e.status != 409:
                raise
            # NOTE: one left from before (e.g. a lab made by an older kaic): its target.
            self.api.request(
                "PATCH",
                f"{base}/{md['name']}",
                {"spec": body["spec"]},
                content_type="application/merge-patch+json",
            )

    def gone(self, uid: str) -> None:
        """A pod was deleted (or is being deleted)."""
        with self._lock:
            held = self.served.pop(uid, None)
            self.forwarded.discard(uid)
        if held is not None:
            self.listeners.remove(held[1])

    def sync(self, pods: Sequence[Mapping[str, Any]]) -> None:
        """The full list of exporter pods (after a list): those not in it are gone."""
        uids = {str((p.get("metadata") or {}).get("uid", "")) for p in pods}
        for uid in [u for u in self.served if u not in uids]:
            self.gone(uid)
        for p in pods:
            self.pod(p)


def keep(api: ApiClient, namespace: str, exporters: Exporters, stop: threading.Event) -> None:
    """Follow the exporter pods: a list, then a watch from it (a large lab has thousands
    of exporter pods: no re-listing), again after the watch ends or fails."""
    pods_path = f"/api/v1/namespaces/{namespace}/pods?labelSelector={EXPORTER_SELECTOR}"
    while not stop.is_set():
        try:
            doc = api.get(pods_path)
            exporters.sync(doc["items"])
            rv = doc["metadata"]["resourceVersion"]
            for line in api.watch_lines(
                f"{pods_path}&watch=1&resourceVersion={rv}&timeoutSeconds=300", timeout=330
            ):
                if stop.is_set():
                    return
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") in ("ADDED", "MODIFIED"):
                    exporters.pod(obj)
                elif event.get("type") == "DELETED":
                    exporters.gone(str((obj.get("metadata") or {}).get("uid", "")))
                elif event.get("type") == "ERROR":
                    break  # e.g. 410 Gone: list again
        except (ApiError, OSError, KeyError, TypeError, ValueError) as e:
            print(f"following the exporter pods failed: {e}", flush=True)
        stop.wait(2.0)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m kaic.lab.sims.dcgm",
        description=(
            "simulated DCGM exporters: one listener at each exporter pod's IP, inside the "
            "lab's network namespace"
        ),
    )
    ap.add_argument("--spec", type=Path, required=True, help="JSON list of {node, gpus}")
    ap.add_argument("--fault-file", type=Path)
    ap.add_argument("--kubeconfig", type=Path, required=True, help="the lab's (in-namespace)")
    ap.add_argument("--namespace", default="gpu-operator")
    ap.add_argument("--pod-cidr", type=ipaddress.IPv4Network, required=True)
    a = ap.parse_args(argv)
    nodes = read_spec(a.spec)
    try:
        api = ApiClient.from_kubeconfig(a.kubeconfig)
    except LabError as e:
        raise SystemExit(f"kaic.lab.sims.dcgm: {e}") from e
    listeners = http.Listeners()
    exporters = Exporters(nodes, a.pod_cidr, listeners, fault_file=a.fault_file, api=api)
    stop = threading.Event()
    threading.Thread(target=keep, args=(api, a.namespace, exporters, stop), daemon=True).start()
    print(f"{READY}: {len(nodes)} GPU nodes, exporter pods of {a.pod_cidr}", flush=True)
    listeners.serve(stop)


if __name__ == "__main__":
    main(sys.argv[1:])
