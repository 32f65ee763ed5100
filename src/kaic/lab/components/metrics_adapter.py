"""The lab's custom-metrics pipeline: ``kaic.lab.sims.metrics_adapter`` as a local process,
registered with the aggregator as ``v1beta1``/``v1beta2.custom.metrics.k8s.io``.

Owns: the adapter's serving certificate, process, ExternalName Service (→ localhost,
so the apiserver dials loopback only) and the two APIService objects. Must not know
any check. ``--without metrics-adapter`` gives a lab without a custom-metrics API.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from kaic.lab import pki as lab_pki
from kaic.lab.apiserver import ApiError, probe
from kaic.lab.component import ProcessComponent, register
from kaic.lab.context import LabContext

NAMESPACE = "kaic-lab-metrics"
SERVICE = "kaic-lab-metrics-adapter"
VERSIONS = ("v1beta1", "v1beta2")


def api_service_name(version: str) -> str:
    return f"{version}.custom.metrics.k8s.io"


@register
class MetricsAdapter(ProcessComponent):
    name = "metrics-adapter"
    description = (
        "custom.metrics.k8s.io adapter (small Python server of the lab) serving "
        "the per-pod metrics that test workloads write; APIService via an "
        "ExternalName Service to localhost"
    )
    order = 110
    after = ("kube-apiserver",)
    optional = True
    default = True
    ready_timeout = 30.0

    def port_keys(self) -> tuple[str, ...]:
        return ("metrics-adapter",)

    def before_start(self, ctx: LabContext) -> None:
        d = ctx.dir("metrics-adapter")
        if not (d / "serving.crt").exists():
            lab_pki.issue_serving_cert(
                ctx.pki, d, "serving", dns=("localhost", f"{SERVICE}.{NAMESPACE}.svc")
            )

    def argv(self, ctx: LabContext) -> list[str]:
        d = ctx.dir("metrics-adapter")
        p = ctx.pki
        return [
            sys.executable,
            "-m",
            "kaic.lab.sims.metrics_adapter",
            f"--port={ctx.port('metrics-adapter')}",
            f"--cert={d / 'serving.crt'}",
            f"--key={d / 'serving.key'}",
            f"--client-ca={p.front_proxy_ca_crt}",
            f"--server={ctx.server}",
            f"--ca={p.ca_crt}",
            f"--admin-cert={p.admin_crt}",
            f"--admin-key={p.admin_key}",
            f"--root={ctx.dir('exec')}",
        ]

    def ready(self, ctx: LabContext) -> bool:
        return probe(f"https://127.0.0.1:{ctx.port('metrics-adapter')}/healthz")

    def after_start(self, ctx: LabContext) -> None:
        ctx.apply(self.objects(ctx))
        ctx.wait(
            "the custom.metrics.k8s.io APIServices to be Available",
            lambda: all(self._available(ctx, v) for v in VERSIONS),
            timeout=30,
            alive=self.name,
        )

    def objects(self, ctx: LabContext) -> list[dict[str, Any]]:
        ca = ctx.pki.ca_crt.read_bytes()
        import base64

        bundle = base64.b64encode(ca).decode()
        labels = {"app.kubernetes.io/name": SERVICE, "app.kubernetes.io/part-of": "kaic-lab"}
        objs: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            # NOTE: ExternalName → localhost: the aggregator resolves it to
            # https://localhost:<port> and does not look for endpoints.
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "localhost",
                    "ports": [{"name": "https", "port": ctx.port("metrics-adapter")}],
                },
            },
        ]
        for i, v in enumerate(VERSIONS):
            objs.append(
                {
                    "apiVersion": "apiregistration.k8s.io/v1",
                    "kind": "APIService",
                    "metadata": {"name": api_service_name(v), "labels": labels},
                    "spec": {
                        "group": "custom.metrics.k8s.io",
                        "version": v,
                        "service": {
                            "name": SERVICE,
                            "namespace": NAMESPACE,
                            "port": ctx.port("metrics-adapter"),
                        },
                        "caBundle": bundle,
                        "groupPriorityMinimum": 100,
                        "versionPriority": 100 + 100 * i,
                    },
                }
            )
        return objs

    def _available(self, ctx: LabContext, version: str) -> bool:
        try:
            obj = ctx.get(
                f"/apis/apiregistration.k8s.io/v1/apiservices/{api_service_name(version)}"
            )
        except ApiError:
            return False
        return any(
            c.get("type") == "Available" and c.get("status") == "True"
            for c in obj.get("status", {}).get("conditions", [])
        )

    def stop(self, ctx: LabContext) -> None:
        # The APIServices would point at a closed port: remove them with the process.
        for v in VERSIONS:
            with contextlib.suppress(ApiError):
                ctx.request(
                    "DELETE",
                    f"/apis/apiregistration.k8s.io/v1/apiservices/{api_service_name(v)}",
                    timeout=5,
                )
        super().stop(ctx)

    def healthy(self, ctx: LabContext) -> bool:
        return super().healthy(ctx) and all(self._available(ctx, v) for v in VERSIONS)
