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

Run: ``python -m kaic.lab.sims.metrics_adapter --port P --cert C --key K --client-ca FPCA
--server URL --ca CA --admin-cert A --admin-key AK --root DIR``.
"""

from __future__ import annotations

import argparse
import json
import ssl
import threading
import urllib.parse
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kaic.lab.apiserver import ApiClient
from kaic.lab.sims import http

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


def metric_value(
    version: str, namespace: str, pod: str, metric: str, value: float
) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    described = {"kind": "Pod", "namespace": namespace, "name": pod, "apiVersion": "/v1"}
    if version == "v1beta1":
        return {
            "describedObject": described,
            "metricName": metric,
            "timestamp": now,
            "value": quantity(value),
        }
    return {
        "describedObject": described,
        "metric": {"name": metric},
        "timestamp": now,
        "value": quantity(value),
    }


class Adapter:
    """The state the handler needs: where pods write metrics and how to list pods."""

    def __init__(self, root: Path, server: str, ca: str, cert: str, key: str) -> None:
        self.root = root
        self.api = ApiClient.from_files(server, ca, cert, key)

    def pods(self, namespace: str, selector: str) -> list[str]:
        q = f"?labelSelector={urllib.parse.quote(selector)}" if selector else ""
        items = self.api.request("GET", f"/api/v1/namespaces/{namespace}/pods{q}", timeout=10)[
            "items"
        ]
        return [
            p["metadata"]["name"]
            for p in items
            if p.get("status", {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
        ]

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        if len(parts) < 3 or parts[0] != "apis" or parts[1] != GROUP or parts[2] not in VERSIONS:
            return 404, _status(404, f"{path} not found")
        version = parts[2]
        if len(parts) == 3:
            return 200, {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{GROUP}/{version}",
                "resources": [
                    {
                        "name": f"pods/{m}",
                        "singularName": "",
                        "namespaced": True,
                        "kind": "MetricValueList",
                        "verbs": ["get"],
                    }
                    for m in all_metric_names(self.root)
                ],
            }
        # namespaces/<ns>/pods/<name|*>/<metric>
        if len(parts) != 8 or parts[3] != "namespaces" or parts[5] != "pods":
            return 404, _status(404, f"{path}: only per-pod metrics are served")
        namespace, pod, metric = parts[4], parts[6], parts[7]
        names = self.pods(namespace, query.get("labelSelector", [""])[0]) if pod == "*" else [pod]
        items = []
        for name in names:
            values = read_metrics(self.root, namespace, name)
            if metric in values:
                items.append(metric_value(version, namespace, name, metric, values[metric]))
        if pod != "*" and not items:
            return 404, _status(404, f"metric {metric} not found for pod {namespace}/{pod}")
        return 200, {
            "kind": "MetricValueList",
            "apiVersion": f"{GROUP}/{version}",
            "metadata": {},
            "items": items,
        }


def _status(code: int, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "code": code,
    }


def make_answer(adapter: Adapter) -> http.Answer:
    """Health paths for anyone; every other path only for a client with a certificate."""

    def reply(code: int, body: dict[str, Any]) -> http.Reply:
        return http.Reply(code, json.dumps(body).encode(), "application/json")

    def answer(req: http.Request) -> http.Reply:
        if req.path in ("/healthz", "/readyz", "/livez"):
            return http.Reply(200, b"ok", "text/plain")
        if not req.peer_cert:
            return reply(401, _status(401, "a client certificate is required"))
        try:
            return reply(*adapter.answer(req.path, req.query))
        except Exception as e:  # a broken request must not kill the adapter
            return reply(500, _status(500, f"{type(e).__name__}: {e}"))

    return answer


def serve(args: argparse.Namespace) -> ThreadingHTTPServer:
    adapter = Adapter(Path(args.root), args.server, args.ca, args.admin_cert, args.admin_key)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        # NOTE: only the apiserver's aggregator (front-proxy client cert) may ask.
        tls.load_verify_locations(args.client_ca)
        # Health probes come without one; every other path requires it (see make_answer).
        tls.verify_mode = ssl.CERT_OPTIONAL
    return http.server(
        "127.0.0.1",
        args.port,
        make_answer(adapter),
        tls=tls,
        log=lambda line: print(line, flush=True),
        name="kaic.lab.sims.metrics_adapter",
    )


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
