"""The lab's stand-in for two container programs: ``agnhost porter`` and ``agnhost
netexec``, served at the pod's IP.

kwok runs no containers. For pods whose container runs
``registry.k8s.io/e2e-test-images/agnhost`` with the ``porter`` subcommand (as the
ai_service_metrics sample workload does), this process does what that container would
do: for each ``SERVE_PORT_<N>`` environment variable with a literal value it serves the
value over HTTP on ``<pod IP>:<N>``. The process runs inside the lab's network
namespace, where every pod IP of the lab is a local address (``kaic.lab.network``), so a
Prometheus that discovers the pod through the apiserver, or a client of the pod's
Service through kube-proxy, reaches it exactly as it would in a real cluster.
With the ``netexec`` subcommand (the ai_inference backends) it serves ``GET /hostname``
(the pod's hostname: ``spec.hostname`` or its name) and ``GET /healthz`` on
``<pod IP>:<--http-port>`` (default 8080); other paths answer 404. Pods of the
``vllm/vllm-openai`` image with an ``llm-d.ai/role`` label get the simulated prefill and
decode model servers of ``kaic.lab.sims.model_server`` (with ``--log-dir``).

Owns: the pod loop (polling the lab's apiserver as the admin with the lab's client) and
the listeners. Must never bind to anything but the lab's pod range (pods whose IP is not
in ``--pod-cidr`` are ignored) nor dial anything but the apiserver on loopback.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaic.errors import LabError
from kaic.lab.apiserver import ApiClient
from kaic.lab.sims import http
from kaic.lab.sims.model_server import ModelServers, Server, server_of

PORT_PREFIXES = ("SERVE_PORT_", "SERVE_TCP_PORT_")

Key = http.PodKey


def porter_ports(pod: dict[str, Any]) -> dict[int, str]:
    """``{port: body}`` that agnhost porter in ``pod`` would serve (empty if not porter)."""
    out: dict[int, str] = {}
    for c in pod.get("spec", {}).get("containers") or []:
        image = str(c.get("image", ""))
        argv = [*(c.get("command") or []), *(c.get("args") or [])]
        if "agnhost" not in image.rsplit("/", 1)[-1] or "porter" not in argv:
            continue
        for env in c.get("env") or []:
            name, value = str(env.get("name", "")), env.get("value")
            for prefix in PORT_PREFIXES:
                if name.startswith(prefix) and name[len(prefix) :].isdigit() and value is not None:
                    out[int(name[len(prefix) :])] = str(value)
    return out


def netexec_port(pod: dict[str, Any]) -> int | None:
    """The HTTP port ``agnhost netexec`` in ``pod`` would listen on (None if not netexec)."""
    for c in pod.get("spec", {}).get("containers") or []:
        image = str(c.get("image", ""))
        argv = [str(a) for a in [*(c.get("command") or []), *(c.get("args") or [])]]
        if "agnhost" not in image.rsplit("/", 1)[-1] or "netexec" not in argv:
            continue
        port = "8080"
        for i, arg in enumerate(argv):
            if arg.startswith("--http-port="):
                port = arg.split("=", 1)[1]
            elif arg == "--http-port" and i + 1 < len(argv):
                port = argv[i + 1]
        return int(port) if port.isdigit() else None
    return None


def hostname_of(pod: dict[str, Any]) -> str:
    return str(pod.get("spec", {}).get("hostname") or pod.get("metadata", {}).get("name", ""))


def netexec_answer(hostname: str) -> http.Answer:
    """What ``agnhost netexec`` answers, for the paths the lab's clients use."""

    def answer(req: http.Request) -> http.Reply:
        if req.path in ("/hostname", "/hostName"):
            return http.Reply(200, hostname.encode())
        if req.path == "/healthz":
            return http.Reply(200, b"")
        return http.Reply(404, b"404 page not found\n")

    return answer


def lab_ip(pod: dict[str, Any], pod_cidr: ipaddress.IPv4Network) -> str | None:
    """The pod's IP if it lies in the lab's pod range, else None."""
    ip = pod.get("status", {}).get("podIP")
    if not ip:
        return None
    try:
        return ip if ipaddress.ip_address(ip) in pod_cidr else None
    except ValueError:
        return None


def _constant(body: str) -> http.Answer:
    reply = http.Reply(200, body.encode())
    return lambda _req: reply


class Porter(http.PodServers):
    """Keeps one listener per (running porter or netexec pod, port) and nothing else."""

    def __init__(self, pod_cidr: ipaddress.IPv4Network, models: ModelServers | None = None) -> None:
        super().__init__("kaic.lab.sims.porter")
        self.pod_cidr = pod_cidr
        self.models = models

    def sync(self, pods: Sequence[dict[str, Any]]) -> None:
        wanted: dict[Key, http.Answer] = {}
        names: dict[Key, str] = {}
        models: list[Server] = []
        for pod in pods:
            if pod.get("status", {}).get("phase") != "Running" or pod.get("metadata", {}).get(
                "deletionTimestamp"
            ):
                continue
            ip = lab_ip(pod, self.pod_cidr)
            if ip is None:
                continue
            md = pod.get("metadata", {})
            answers = {port: _constant(body) for port, body in porter_ports(pod).items()}
            netexec = netexec_port(pod)
            if netexec is not None:
                answers[netexec] = netexec_answer(hostname_of(pod))
            model = server_of(pod, ip) if self.models is not None else None
            if model is not None and self.models is not None:
                models.append(model)
                answers[model.port] = self.models.answer(model)
            for port, answer in answers.items():
                key = (str(md.get("uid", "")), ip, port)
                wanted[key] = answer
                names[key] = f"{md.get('namespace')}/{md.get('name')}"
        if self.models is not None:
            self.models.update(models)
        self.serve({key: (names[key], answer) for key, answer in wanted.items()})


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m kaic.lab.sims.porter",
        description="serve agnhost-porter pods at their IPs (inside the lab namespace)",
    )
    ap.add_argument("--server", required=True, help="https://127.0.0.1:PORT of the apiserver")
    ap.add_argument("--ca", type=Path, required=True)
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--key", type=Path, required=True)
    ap.add_argument("--pod-cidr", type=ipaddress.IPv4Network, required=True)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument(
        "--log-dir", type=Path, help="where the model-server stand-ins write their logs"
    )
    a = ap.parse_args(argv)
    try:
        api = ApiClient.from_files(a.server, a.ca, a.cert, a.key)
    except LabError as e:
        raise SystemExit(f"kaic.lab.sims.porter: {e}") from e
    models = ModelServers(a.pod_cidr, a.log_dir, api) if a.log_dir else None
    porter = Porter(a.pod_cidr, models)
    print("porter simulator running", flush=True)
    while True:
        try:
            pods = api.get("/api/v1/pods?fieldSelector=status.phase%3DRunning").get("items") or []
            porter.sync(pods)
        except (LabError, OSError, ValueError, AttributeError) as e:
            print(f"listing pods failed: {e}", flush=True)
        time.sleep(a.interval)


if __name__ == "__main__":
    main(sys.argv[1:])
