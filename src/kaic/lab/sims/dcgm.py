"""A simulated NVIDIA DCGM exporter for the lab's simulated GPUs (the metrics are made up).

Owns: the DCGM-style Prometheus text for a list of GPUs (``render``) and a tiny HTTP
server per GPU node on 127.0.0.1, all in one process (``python -m kaic.lab.sims.dcgm``). The
series names, label names and units follow NVIDIA's dcgm-exporter
(``DCGM_FI_DEV_GPU_UTIL`` in %, ``DCGM_FI_DEV_FB_USED``/``FREE`` in MiB, temperature in
°C, power in W, ``DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL`` as a counter; labels ``gpu``,
``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``Hostname``). The values are
deterministic functions of the GPU index and the time, not measurements.

Faults (read on every request from a JSON file, so tests can switch them at run time):
``{"omit_memory": ["kaic-gpu-1/3"]}`` leaves out the memory series of GPU 3 of node
``kaic-gpu-1`` (a bare ``"3"`` means GPU 3 of every node).

Must not listen on anything but loopback.
"""

from __future__ import annotations

import argparse
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
    """One node's simulated exporter: where it listens and which GPUs it reports."""

    node: str
    port: int
    gpus: tuple[Gpu, ...]


def write_spec(path: Path, exporters: Sequence[NodeExporter]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            [
                {"node": e.node, "port": e.port, "gpus": [asdict(g) for g in e.gpus]}
                for e in exporters
            ],
            indent=2,
        )
    )


def read_spec(path: Path) -> list[NodeExporter]:
    return [
        NodeExporter(d["node"], int(d["port"]), tuple(Gpu(**g) for g in d["gpus"]))
        for d in json.loads(path.read_text())
    ]


SPEC_LINES = 20
"""The simulator's log names this many nodes' listeners (a large lab has thousands)."""
EXPORTER_SELECTOR = "app=nvidia-dcgm-exporter"
"""Label selector of the exporter's DaemonSet pods."""
PORT = 9400


def pod_port_forward(pod: Mapping[str, Any], local: int) -> dict[str, Any]:
    """A kwok PortForward from an exporter pod's port 9400 to ``local``, named like the
    pod and owned by it (kwok matches port-forwards by pod name)."""
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
        "spec": {
            "forwards": [{"ports": [PORT], "target": {"address": "127.0.0.1", "port": local}}]
        },
    }


def keep_port_forwards(
    api: ApiClient, namespace: str, exporters: Sequence[NodeExporter], stop: threading.Event
) -> None:
    """Give every exporter pod (also one the DaemonSet recreates) its PortForward: a list,
    then a watch from it (a large lab has thousands of exporter pods: no re-listing)."""
    ports = {e.node: e.port for e in exporters}
    done: set[str] = set()
    pods_path = f"/api/v1/namespaces/{namespace}/pods?labelSelector={EXPORTER_SELECTOR}"

    def forward(pod: Mapping[str, Any]) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        uid = pod["metadata"]["uid"]
        if uid in done or node not in ports or pod["metadata"].get("deletionTimestamp"):
            return
        try:
            api.request(
                "POST",
                f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{namespace}/portforwards",
                pod_port_forward(pod, ports[node]),
            )
        except ApiError as e:
            if e.status != 409:
                raise
        done.add(uid)
        print(f"port-forward for {namespace}/{pod['metadata']['name']}", flush=True)

    while not stop.is_set():
        try:
            doc = api.get(pods_path)
            for pod in doc["items"]:
                forward(pod)
            rv = doc["metadata"]["resourceVersion"]
            for line in api.watch_lines(
                f"{pods_path}&watch=1&resourceVersion={rv}&timeoutSeconds=300", timeout=330
            ):
                if stop.is_set():
                    return
                event = json.loads(line)
                if event.get("type") in ("ADDED", "MODIFIED"):
                    forward(event["object"])
        except (ApiError, OSError, KeyError, TypeError, ValueError) as e:
            print(f"keeping port-forwards failed: {e}", flush=True)
        stop.wait(2.0)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m kaic.lab.sims.dcgm",
        description="simulated DCGM exporters: one loopback listener per lab GPU node",
    )
    ap.add_argument("--spec", type=Path, required=True, help="JSON list of {node, port, gpus}")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--fault-file", type=Path)
    ap.add_argument("--kubeconfig", type=Path, help="keep the exporter pods' PortForwards")
    ap.add_argument("--namespace", default="gpu-operator")
    a = ap.parse_args(argv)
    exporters = read_spec(a.spec)
    servers = [make_server(e.node, e.gpus, a.host, e.port, a.fault_file) for e in exporters]
    for e in exporters[:SPEC_LINES]:
        print(
            f"dcgm simulator for {e.node}: {len(e.gpus)} GPUs on http://{a.host}:{e.port}/metrics",
            flush=True,
        )
    if len(exporters) > SPEC_LINES:
        print(f"… and {len(exporters) - SPEC_LINES} more nodes", flush=True)
    stop = threading.Event()
    if a.kubeconfig:
        api = ApiClient.from_kubeconfig(a.kubeconfig)
        args = (api, a.namespace, exporters, stop)
        threading.Thread(target=keep_port_forwards, args=args, daemon=True).start()
    http.serve_all(servers, stop)


if __name__ == "__main__":
    main(sys.argv[1:])
