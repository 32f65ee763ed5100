"""The real ``ClusterAPI`` adapter against the lab's apiserver: exec, port-forward and
http_get through a pod, watch-based waits, server-side apply, and the error mapping."""

from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kaic.cluster.client import connect
from kaic.errors import NotFoundError, RejectedError, WaitTimeoutError
from kaic.lab import Lab

pytestmark = pytest.mark.lab


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_http_get_and_port_forward_reach_a_pod_port(lab: Lab, namespace: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    c = connect(str(lab.kubeconfig))
    try:
        c.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {"containers": [{"name": "main", "image": "registry.invalid/a:1"}]},
            }
        )
        c.create(
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
            }
        )
        c.wait_for(
            "v1",
            "Pod",
            "web",
            namespace,
            lambda p: bool(p and p.get("status", {}).get("phase") == "Running"),
            timeout=60,
            what="pod web to run",
        )
        assert c.http_get(namespace, "web", 8080, "/metrics") == "hello /metrics"
        # one forward after another: a closed forward's proxy thread must be gone before
        # its socket is, or the next forward's TLS handshake meets its leftovers
        answers = [c.http_get(namespace, "web", 8080, f"/n{i}") for i in range(40)]
        assert answers == [f"hello /n{i}" for i in range(40)]
        with c.port_forward(namespace, "web", 8080) as local:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"http://127.0.0.1:{local}/x", timeout=10) as r:
                assert r.read() == b"hello /x"
    finally:
        server.shutdown()


def test_waits_apply_and_errors_on_the_real_apiserver(lab: Lab, namespace: str) -> None:
    c = connect(str(lab.kubeconfig))
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": namespace},
        "data": {"k": "1"},
    }
    c.apply(cm)
    timer = threading.Timer(
        0.5, lambda: c.patch("v1", "ConfigMap", "cm", {"data": {"k": "2"}}, namespace)
    )
    timer.start()
    got = c.wait_for(
        "v1",
        "ConfigMap",
        "cm",
        namespace,
        lambda o: bool(o and o["data"]["k"] == "2"),
        timeout=20,
        what="k=2",
    )
    assert got is not None and got["data"]["k"] == "2"
    with pytest.raises(WaitTimeoutError, match="k=3"):
        c.wait_for(
            "v1",
            "ConfigMap",
            "cm",
            namespace,
            lambda o: bool(o and o["data"]["k"] == "3"),
            timeout=2,
            what="k=3",
        )
    with pytest.raises(RejectedError, match="Invalid value"):
        c.create({**cm, "metadata": {"name": "Bad_Name", "namespace": namespace}})
    with pytest.raises(NotFoundError, match="does not serve Widget"):
        c.list("example.com/v1", "Widget")
    assert c.delete("v1", "ConfigMap", "cm", namespace, wait_timeout=20) is True
    assert c.get("v1", "ConfigMap", "cm", namespace) is None
