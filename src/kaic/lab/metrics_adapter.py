"""The lab's custom-metrics adapter: a small HTTPS server that serves
``custom.metrics.k8s.io`` (v1beta1 and v1beta2) for per-pod metrics.

Owns: discovery (``APIResourceList``) and ``MetricValueList`` answers for
``/apis/custom.metrics.k8s.io/<v>/namespaces/<ns>/pods/<name|*>/<metric>``. Values
come from what the workload exposes: a pod writes Prometheus text to
``kaic-metrics/<namespace>/<pod>/metrics`` relative to its working directory (and
serves that file as ``/metrics``). kwok runs ``exec`` commands on this host in the
lab's exec work directory, so that directory is the pods' shared "filesystem"; the
adapter parses those files with ``prometheus_client``'s text parser. It lists pods
from the apiserver (as the lab admin) to apply the label selector.

It stands in for Prometheus + prometheus-adapter, which the lab cannot run (there is
no pod network to scrape). It is not a general adapter: no object metrics other than
pods, no external metrics. Listens on 127.0.0.1 only and accepts only clients that
present the apiserver's front-proxy client certificate.

Run: ``python -m kaic.lab.metrics_adapter --port P --cert C --key K --client-ca FPCA
--server URL --ca CA --admin-cert A --admin-key AK --root DIR``.
"""

from __future__ import annotations

import argparse
import json
import ssl
import threading
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

GROUP = "custom.metrics.k8s.io"
VERSIONS = ("v1beta1", "v1beta2")
METRIC_ROOT = "kaic-metrics"


def read_metrics(root: Path, namespace: str, pod: str) -> dict[str, float]:
    """The samples (name → value) a pod exposes; empty when it wrote none."""
    path = root / METRIC_ROOT / namespace / pod / "metrics"
    try:
        text = path.read_text()
    except OSError:
        return {}
    out: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[sample.name] = float(sample.value)
    except ValueError:
        return {}
    return out


def all_metric_names(root: Path) -> list[str]:
    names: set[str] = set()
    base = root / METRIC_ROOT
    if base.is_dir():
        for f in base.glob("*/*/metrics"):
            names.update(read_metrics(root, f.parent.parent.name, f.parent.name))
    return sorted(names)


def quantity(value: float) -> str:
    """A value as a Kubernetes quantity in milli-units (``30`` → ``30000m``)."""
    return f"{round(value * 1000)}m"


def metric_value(version: str, namespace: str, pod: str, metric: str,
                 value: float) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    described = {"kind": "Pod", "namespace": namespace, "name": pod, "apiVersion": "/v1"}
    if version == "v1beta1":
        return {"describedObject": described, "metricName": metric, "timestamp": now,
                "value": quantity(value)}
    return {"describedObject": described, "metric": {"name": metric}, "timestamp": now,
            "value": quantity(value)}


class Adapter:
    """The state the handler needs: where pods write metrics and how to list pods."""

    def __init__(self, root: Path, server: str, ca: str, cert: str, key: str) -> None:
        self.root = root
        self.server = server
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(cert, key)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPSHandler(context=ctx))

    def pods(self, namespace: str, selector: str) -> list[str]:
        q = f"?labelSelector={urllib.parse.quote(selector)}" if selector else ""
        with self.opener.open(f"{self.server}/api/v1/namespaces/{namespace}/pods{q}",
                              timeout=10) as r:
            items = json.loads(r.read())["items"]
        return [p["metadata"]["name"] for p in items
                if p.get("status", {}).get("phase") == "Running"
                and not p["metadata"].get("deletionTimestamp")]

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        if len(parts) < 3 or parts[0] != "apis" or parts[1] != GROUP or \
                parts[2] not in VERSIONS:
            return 404, _status(404, f"{path} not found")
        version = parts[2]
        if len(parts) == 3:
            return 200, {"kind": "APIResourceList", "apiVersion": "v1",
                         "groupVersion": f"{GROUP}/{version}",
                         "resources": [{"name": f"pods/{m}", "singularName": "",
                                        "namespaced": True, "kind": "MetricValueList",
                                        "verbs": ["get"]} for m in all_metric_names(self.root)]}
        # namespaces/<ns>/pods/<name|*>/<metric>
        if len(parts) != 8 or parts[3] != "namespaces" or parts[5] != "pods":
            return 404, _status(404, f"{path}: only per-pod metrics are served")
        namespace, pod, metric = parts[4], parts[6], parts[7]
        names = self.pods(namespace, query.get("labelSelector", [""])[0]) \
            if pod == "*" else [pod]
        items = []
        for name in names:
            values = read_metrics(self.root, namespace, name)
            if metric in values:
                items.append(metric_value(version, namespace, name, metric, values[metric]))
        if pod != "*" and not items:
            return 404, _status(404, f"metric {metric} not found for pod {namespace}/{pod}")
        return 200, {"kind": "MetricValueList", "apiVersion": f"{GROUP}/{version}",
                     "metadata": {}, "items": items}


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "code": code}


def make_handler(adapter: Adapter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path in ("/healthz", "/readyz", "/livez"):
                self._send(200, b"ok", "text/plain")
                return
            peer = getattr(self.connection, "getpeercert", lambda: None)()
            if not peer:
                self._send(401, json.dumps(_status(401, "a client certificate is required"))
                           .encode(), "application/json")
                return
            try:
                code, body = adapter.answer(url.path, urllib.parse.parse_qs(url.query))
            except Exception as e:  # a broken request must not kill the adapter
                code, body = 500, _status(500, f"{type(e).__name__}: {e}")
            self._send(code, json.dumps(body).encode(), "application/json")

        def _send(self, code: int, data: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            print(f"{self.address_string()} {format % args}", flush=True)

    return Handler


def serve(args: argparse.Namespace) -> ThreadingHTTPServer:
    adapter = Adapter(Path(args.root), args.server, args.ca, args.admin_cert, args.admin_key)
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(adapter))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        # NOTE: only the apiserver's aggregator (front-proxy client cert) may ask.
        tls.load_verify_locations(args.client_ca)
        # Health probes come without one; every other path requires it (see Handler).
        tls.verify_mode = ssl.CERT_OPTIONAL
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    return httpd


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="kaic-lab-metrics-adapter")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-ca", default="")
    p.add_argument("--server", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--admin-cert", required=True)
    p.add_argument("--admin-key", required=True)
    p.add_argument("--root", required=True)
    args = p.parse_args(argv)
    httpd = serve(args)
    print(f"kaic lab metrics adapter serving {GROUP} on 127.0.0.1:{args.port}", flush=True)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    t.join()


if __name__ == "__main__":
    main()
