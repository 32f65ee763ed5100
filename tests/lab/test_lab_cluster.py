"""The lab cluster does what docs/lab.md promises, observed through its real apiserver."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from labtools import LabFactory, wait_for

from kaic.lab import Lab
from kaic.lab import proc as lab_proc
from kaic.lab.components.nodes import DEVICE_CLASS, DRIVER, GPU_RESOURCE, POOL_LABEL

pytestmark = pytest.mark.lab

RESOURCE_V1_KINDS = {"DeviceClass", "ResourceClaim", "ResourceClaimTemplate", "ResourceSlice"}
CRD_GROUPS = {
    "gateway.networking.k8s.io",
    "jobset.x-k8s.io",
    "kueue.x-k8s.io",
    "inference.networking.k8s.io",
    "kwok.x-k8s.io",
}


def _groups(lab: Lab) -> set[str]:
    return {g["name"] for g in lab.ctx.get("/apis")["groups"]}


def _pod(
    name: str,
    *,
    limits: dict[str, str] | None = None,
    claims: list[dict[str, str]] | None = None,
    ns: str,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "registry.invalid/app:1"}
    if limits:
        container["resources"] = {"limits": limits}
    spec: dict[str, Any] = {"containers": [container]}
    if claims:
        spec["resourceClaims"] = claims
        container.setdefault("resources", {})["claims"] = [{"name": c["name"]} for c in claims]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def _create(lab: Lab, obj: dict[str, Any]) -> dict[str, Any]:
    ns = obj["metadata"].get("namespace")
    api = obj["apiVersion"]
    base = "/api/v1" if api == "v1" else f"/apis/{api}"
    plural = {
        "Pod": "pods",
        "ResourceClaimTemplate": "resourceclaimtemplates",
        "ConfigMap": "configmaps",
        "PortForward": "portforwards",
    }[obj["kind"]]
    path = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
    result: dict[str, Any] = lab.ctx.request("POST", path, obj)
    return result


def _get_pod(lab: Lab, ns: str, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = lab.ctx.get(f"/api/v1/namespaces/{ns}/pods/{name}")
    return pod


def _running(lab: Lab, ns: str, name: str) -> dict[str, Any] | None:
    pod = _get_pod(lab, ns, name)
    return pod if pod.get("status", {}).get("phase") == "Running" else None


def _unschedulable(lab: Lab, ns: str, name: str) -> dict[str, Any] | None:
    pod = _get_pod(lab, ns, name)
    for c in pod.get("status", {}).get("conditions", []):
        if (
            c["type"] == "PodScheduled"
            and c["status"] == "False"
            and c.get("reason") == "Unschedulable"
        ):
            return c
    return None


# ---- control plane ---------------------------------------------------------------


def test_apiserver_is_ready_and_kubectl_shows_the_built_server_version(lab: Lab) -> None:
    assert lab.ctx.request("GET", "/readyz") == "ok"
    path = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaic",
            "lab",
            "kubeconfig",
            "--name",
            lab.name,
            "--state-dir",
            str(lab.options.state),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    out = subprocess.run(
        [str(lab.ctx.binary("kubectl")), "--kubeconfig", path, "version", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=lab_proc.clean_env(),
    )
    assert json.loads(out.stdout)["serverVersion"]["gitVersion"] == lab.options.version


def test_lab_status_reports_every_component_healthy(lab: Lab) -> None:
    summary = lab.summary()
    assert summary["ready"], summary["components"]
    procs = {c["name"] for c in summary["components"] if c["pids"]}
    assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} <= procs


def test_discovery_serves_every_resource_v1_kind_and_the_crd_groups(lab: Lab) -> None:
    kinds = {r["kind"] for r in lab.ctx.get("/apis/resource.k8s.io/v1")["resources"]}
    assert kinds >= RESOURCE_V1_KINDS
    assert _groups(lab) >= CRD_GROUPS
    pools = lab.ctx.get("/apis/inference.networking.k8s.io/v1")["resources"]
    assert "InferencePool" in {r["kind"] for r in pools}
    gw = lab.ctx.get("/apis/gateway.networking.k8s.io/v1")["resources"]
    assert {"Gateway", "GatewayClass", "HTTPRoute"} <= {r["kind"] for r in gw}


def test_a_lab_without_gateway_api_does_not_serve_it(lab_factory: LabFactory) -> None:
    bare = lab_factory(without={"gateway-api"}, accelerators="none", nodes=1, cpu_nodes=1)
    groups = _groups(bare)
    assert "gateway.networking.k8s.io" not in groups
    assert {"jobset.x-k8s.io", "kueue.x-k8s.io"} <= groups


# ---- simulated accelerators ------------------------------------------------------


def test_gpu_pod_is_bound_to_a_gpu_node_and_runs(lab: Lab, namespace: str) -> None:
    _create(lab, _pod("gpu", limits={GPU_RESOURCE: "1"}, ns=namespace))
    pod = wait_for(lambda: _running(lab, namespace, "gpu"), what="gpu pod Running")
    node = lab.ctx.get(f"/api/v1/nodes/{pod['spec']['nodeName']}")
    assert node["metadata"]["labels"][POOL_LABEL] == "gpu"
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert int(node["status"]["allocatable"][GPU_RESOURCE]) == lab.options.gpus_per_node


def test_resourceclaim_pod_is_allocated_a_simulated_device_and_runs(
    lab: Lab, namespace: str
) -> None:
    _create(
        lab,
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "one-gpu", "namespace": namespace},
            "spec": {
                "spec": {
                    "devices": {
                        "requests": [{"name": "gpu", "exactly": {"deviceClassName": DEVICE_CLASS}}]
                    }
                }
            },
        },
    )
    _create(
        lab,
        _pod("dra", claims=[{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}], ns=namespace),
    )
    pod = wait_for(lambda: _running(lab, namespace, "dra"), what="DRA pod Running")
    claim_name = pod["status"]["resourceClaimStatuses"][0]["resourceClaimName"]
    claim = lab.ctx.get(
        f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims/{claim_name}"
    )
    results = claim["status"]["allocation"]["devices"]["results"]
    assert [r["driver"] for r in results] == [DRIVER]
    assert pod["metadata"]["uid"] in {r["uid"] for r in claim["status"]["reservedFor"]}
    node = pod["spec"]["nodeName"]
    slices = lab.ctx.get("/apis/resource.k8s.io/v1/resourceslices")["items"]
    devices = {
        d["name"]: d for s in slices if s["spec"]["nodeName"] == node for d in s["spec"]["devices"]
    }
    device = devices[results[0]["device"]]
    assert results[0]["pool"] == node
    assert device["attributes"]["productName"]["string"].startswith("NVIDIA")
    assert device["attributes"]["uuid"]["string"].startswith("GPU-")
    assert "resource.kubernetes.io/pcieRoot" in device["attributes"]


def test_a_gpu_over_request_stays_pending_unschedulable(lab: Lab, namespace: str) -> None:
    too_many = str(lab.options.gpus_per_node + 1)
    _create(lab, _pod("greedy", limits={GPU_RESOURCE: too_many}, ns=namespace))
    cond = wait_for(
        lambda: _unschedulable(lab, namespace, "greedy"), what="PodScheduled=False/Unschedulable"
    )
    assert GPU_RESOURCE in cond.get("message", "")
    time.sleep(2)
    assert _get_pod(lab, namespace, "greedy")["status"]["phase"] == "Pending"


def test_a_dra_over_request_stays_pending_unschedulable(lab: Lab, namespace: str) -> None:
    _create(
        lab,
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "too-many", "namespace": namespace},
            "spec": {
                "spec": {
                    "devices": {
                        "requests": [
                            {
                                "name": "gpu",
                                "exactly": {
                                    "deviceClassName": DEVICE_CLASS,
                                    "allocationMode": "ExactCount",
                                    "count": lab.options.gpus_per_node + 1,
                                },
                            }
                        ]
                    }
                }
            },
        },
    )
    _create(
        lab,
        _pod(
            "greedy",
            claims=[{"name": "gpu", "resourceClaimTemplateName": "too-many"}],
            ns=namespace,
        ),
    )
    wait_for(
        lambda: _unschedulable(lab, namespace, "greedy"), what="PodScheduled=False/Unschedulable"
    )


def test_a_lab_without_accelerators_cannot_run_a_gpu_pod(lab_factory: LabFactory) -> None:
    bare = lab_factory(without={"gateway-api"}, accelerators="none", nodes=1, cpu_nodes=1)
    bare.ctx.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "neg"}}])
    wait_for(
        lambda: bare.ctx.exists("/api/v1/namespaces/neg/serviceaccounts/default"),
        what="default ServiceAccount",
    )
    _create(bare, _pod("gpu", limits={GPU_RESOURCE: "1"}, ns="neg"))
    wait_for(lambda: _unschedulable(bare, "neg", "gpu"), what="gpu pod Unschedulable")
    assert bare.ctx.get("/apis/resource.k8s.io/v1/resourceslices")["items"] == []


# ---- exec and port-forward through the apiserver ---------------------------------


def test_exec_into_a_kwok_pod_runs_a_local_command(lab: Lab, namespace: str) -> None:
    _create(lab, _pod("shell", ns=namespace))
    wait_for(lambda: _running(lab, namespace, "shell"), what="pod Running")
    r = lab.ctx.kubectl(
        "exec", "-n", namespace, "shell", "--", "sh", "-c", "echo lab=$KAIC_LAB pid=$$"
    )
    assert f"lab={lab.name} pid=" in r.stdout


def test_port_forward_to_a_kwok_pod_reaches_a_local_process(lab: Lab, namespace: str) -> None:
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from the local process"
            self.send_response(200)
            # NOTE: with a length the client need not wait for the close, which a
            # port-forward stream does not pass on.
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _create(lab, _pod("web", ns=namespace))
        _create(
            lab,
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "PortForward",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {
                    "forwards": [
                        {
                            "ports": [8080],
                            "target": {"address": "127.0.0.1", "port": server.server_address[1]},
                        }
                    ]
                },
            },
        )
        wait_for(lambda: _running(lab, namespace, "web"), what="pod Running")
        local = lab_proc.free_port()
        pf = subprocess.Popen(
            [
                str(lab.ctx.binary("kubectl")),
                "--kubeconfig",
                str(lab.kubeconfig),
                "-n",
                namespace,
                "port-forward",
                "--address=127.0.0.1",
                "pod/web",
                f"{local}:8080",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=lab_proc.clean_env(),
        )
        try:
            import urllib.request

            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

            def fetch() -> bytes | None:
                try:
                    with opener.open(f"http://127.0.0.1:{local}/", timeout=5) as r:
                        body: bytes = r.read()
                        return body
                except OSError:
                    return None

            got = wait_for(fetch, timeout=30, what="port-forward", fail=False)
        finally:
            pf.terminate()
            out = pf.communicate(timeout=10)[0].decode(errors="replace")
        assert got == b"hello from the local process", f"kubectl port-forward said: {out}"
    finally:
        server.shutdown()


# ---- robustness and the network rule ---------------------------------------------


def test_killed_apiserver_comes_back_with_up_and_objects_are_kept(lab: Lab, namespace: str) -> None:
    _create(
        lab,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "survivor", "namespace": namespace},
            "data": {"k": "v"},
        },
    )
    old = lab.ctx.pid("kube-apiserver")
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: lab.ctx.pid("kube-apiserver") is None, what="apiserver gone")
    assert not lab.component("kube-apiserver").healthy(lab.ctx)
    lab.up()
    new = lab.ctx.pid("kube-apiserver")
    assert new is not None and new != old
    cm = lab.ctx.get(f"/api/v1/namespaces/{namespace}/configmaps/survivor")
    assert cm["data"] == {"k": "v"}
    assert lab.summary()["ready"]


def _loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_loopback


def test_every_socket_and_address_of_the_lab_is_loopback_or_in_its_own_network(
    lab: Lab, namespace: str
) -> None:
    net = lab.ctx.net

    def allowed(ip: str) -> bool:
        return _loopback(ip) or net.contains(ip)

    _create(lab, _pod("addr", ns=namespace))
    wait_for(lambda: _running(lab, namespace, "addr"), what="pod Running")
    listening = lab.listening()
    assert listening["kube-apiserver"], "the audit found no socket at all"
    assert listening["kube-proxy"], "the audit does not see inside the lab namespace"
    for component, socks in listening.items():
        for addr, port in socks:
            assert allowed(addr), f"{component} listens on {addr}:{port}"
    for component, pids in lab.pids().items():
        for pid in pids:
            for _local, remote in lab_proc.connections(pid):
                assert allowed(remote[0]), f"{component} is connected to {remote}"
    # Every socket of the lab namespace, whoever holds it (the relay's listener is there
    # while its process lives in the host's namespace).
    ss = subprocess.run(
        net.in_netns(["ss", "-H", "-n", "-t", "-u", "-a"]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert ss, "no socket in the lab namespace"
    for line in ss:
        _proto, state, _rq, _sq, local, peer = line.split()[:6]
        assert allowed(local.rsplit(":", 1)[0].strip("[]")), line
        if state not in ("LISTEN", "UNCONN"):
            assert allowed(peer.rsplit(":", 1)[0].strip("[]")), line
    pods = lab.ctx.get("/api/v1/pods")["items"]
    ips = [ip["ip"] for p in pods for ip in p.get("status", {}).get("podIPs", [])]
    assert ips, "no pod has an IP"
    assert all(ipaddress.ip_address(ip) in net.layout.pod_cidr for ip in ips), ips
    for node in lab.ctx.get("/api/v1/nodes")["items"]:
        for a in node["status"].get("addresses", []):
            if a["type"] == "InternalIP":
                assert _loopback(a["address"]), node["metadata"]["name"]
    for svc in lab.ctx.get("/api/v1/services")["items"]:
        for ip in svc["spec"].get("clusterIPs", []):
            if ip != "None":
                assert ipaddress.ip_address(ip) in net.layout.service_cidr, svc["metadata"]["name"]


def test_up_is_idempotent_and_down_leaves_no_process_port_or_file(
    lab_factory: LabFactory, tmp_path: Any
) -> None:
    from kaic.lab import LabOptions

    opts = LabOptions(
        name=f"pytest-{os.getpid()}-updown",
        nodes=1,
        cpu_nodes=0,
        gpus_per_node=2,
        accelerators="dra",
        without=frozenset({"gateway-api", "jobset", "kueue", "inference-extension"}),
        state_dir=tmp_path / "updown",
    )
    assert lab_factory is not None  # its session guard reaps labs of crashed sessions
    small = Lab(opts)
    try:
        small.up()
        pids = small.pids()
        ports = dict(small.ctx.ports)
        again = Lab(opts)
        again.up()
        assert again.pids() == pids
        assert again.ctx.ports == ports
    finally:
        small.down()
    assert not opts.state.exists()
    for name, ps in pids.items():
        for p in ps:
            assert not lab_proc.alive(p), name
    for port in ports.values():
        assert not lab_proc.port_in_use(port), port


def test_cli_status_and_logs_describe_the_running_lab(lab: Lab) -> None:
    base = [sys.executable, "-m", "kaic", "lab"]
    where = ["--name", lab.name, "--state-dir", str(lab.options.state)]
    r = subprocess.run(
        [*base, "status", *where, "-o", "json"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["ready"] and status["version"] == lab.options.version
    assert status["server"] == lab.server
    r = subprocess.run(
        [*base, "logs", "kube-apiserver", *where, "-n", "3"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert 0 < len(r.stdout.splitlines()) <= 3
    r = subprocess.run(
        [*base, "logs", "no-such-thing", *where], capture_output=True, text=True, check=False
    )
    assert r.returncode == 2 and r.stderr.startswith("kaic: error: ")
    r = subprocess.run(
        [*base, "kubectl", *where, "get", "nodes", "-o", "name"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "node/kaic-gpu-0" in r.stdout.split()
