"""The lab's custom-metrics pipeline: the real prometheus-adapter (program
``prometheus-adapter`` of ``programs.toml``, ``sigs.k8s.io/prometheus-adapter``
``cmd/adapter``, built by ``kaic lab build``) on top of the lab's real Prometheus,
registered with the aggregation layer as ``v1beta1``/``v1beta2.custom.metrics.k8s.io``.

The chain it completes: a pod's ``/metrics`` → Prometheus (pod discovery, the
``namespace`` and ``pod`` target labels) → prometheus-adapter (the rules of
``rules()``: every series with ``namespace`` and ``pod`` labels becomes a per-pod metric
of the same name) → the aggregator → the HPA controller in kube-controller-manager.

Network rule: the adapter listens on 127.0.0.1 only and dials only the lab's
apiserver and Prometheus, both on 127.0.0.1; the APIServices reach it through a Service
of type ``ExternalName: localhost``.

Owns: the adapter's serving certificate, rules file, command line and process, the
ExternalName Service, the two APIService objects and the HPA controller's permission
to read custom metrics. Must not know any check.
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import yaml

from kaic.errors import LabError
from kaic.lab import pki as lab_pki
from kaic.lab import programs
from kaic.lab.apiserver import ApiError, probe
from kaic.lab.component import ProcessComponent, register
from kaic.lab.context import LabContext
from kaic.lab.objects import LAB_LABELS, namespace

NAMESPACE = "monitoring"
SERVICE = "prometheus-adapter"
GROUP = "custom.metrics.k8s.io"
VERSIONS = ("v1beta1", "v1beta2")
RELIST_INTERVAL = "5s"
"""How often the adapter lists the series Prometheus has (upstream default: 10m)."""
MAX_AGE = "30s"
"""How far back a series may have been seen to be listed."""
LABELS = {
    **LAB_LABELS,
    "app.kubernetes.io/name": "prometheus-adapter",
    "app.kubernetes.io/component": "metrics-adapter",
}


def api_service_name(version: str) -> str:
    return f"{version}.{GROUP}"


def rules() -> dict[str, Any]:
    """The adapter's discovery rules: every series scraped from a pod (labels
    ``namespace`` and ``pod``, as the lab Prometheus sets them), except Prometheus' own
    per-target series, is served as the per-pod metric of the same name."""
    return {
        "rules": [
            {
                "seriesQuery": '{namespace!="",pod!=""}',
                "seriesFilters": [{"isNot": "^(up|scrape_.*)$"}],
                "resources": {
                    "overrides": {
                        "namespace": {"resource": "namespace"},
                        "pod": {"resource": "pod"},
                    }
                },
                "name": {"matches": "^(.*)$", "as": "${1}"},
                "metricsQuery": "max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
            }
        ]
    }


@register
class PrometheusAdapter(ProcessComponent):
    name = "prometheus-adapter"
    description = (
        "real prometheus-adapter (built from its Go module) serving custom.metrics.k8s.io "
        "from the lab Prometheus; APIService via an ExternalName Service to localhost"
    )
    order = 130
    after = ("kube-apiserver", "prometheus")
    needs = ("prometheus",)
    optional = True
    default = False
    ready_timeout = 90.0

    def port_keys(self) -> tuple[str, ...]:
        return ("prometheus-adapter",)

    def before_start(self, ctx: LabContext) -> None:
        programs.require_binary("prometheus-adapter", ctx.options.version)
        d = ctx.dir(self.name)
        if not (d / "serving.crt").exists():
            lab_pki.issue_serving_cert(
                ctx.pki, d, "serving", dns=("localhost", f"{SERVICE}.{NAMESPACE}.svc")
            )
        (d / "config.yaml").write_text(yaml.safe_dump(rules(), sort_keys=False))

    def argv(self, ctx: LabContext) -> list[str]:
        d = ctx.dir(self.name)
        kc = str(ctx.kubeconfig)
        return [
            str(programs.binary_of("prometheus-adapter", ctx.options.version)),
            f"--config={d / 'config.yaml'}",
            f"--prometheus-url=http://127.0.0.1:{ctx.port('prometheus')}/",
            f"--metrics-relist-interval={RELIST_INTERVAL}",
            f"--metrics-max-age={MAX_AGE}",
            f"--lister-kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ctx.port(self.name)}",
            f"--tls-cert-file={d / 'serving.crt'}",
            f"--tls-private-key-file={d / 'serving.key'}",
            f"--cert-dir={d}",
            "--v=1",
        ]

    def ready(self, ctx: LabContext) -> bool:
        return probe(f"https://127.0.0.1:{ctx.port(self.name)}/readyz")

    def after_start(self, ctx: LabContext) -> None:
        ctx.apply(self.objects(ctx))
        ctx.wait(
            "the custom.metrics.k8s.io APIServices to be Available",
            lambda: all(self._available(ctx, v) for v in VERSIONS),
            timeout=60,
            alive=self.name,
        )

    def objects(self, ctx: LabContext) -> list[dict[str, Any]]:
        bundle = base64.b64encode(ctx.pki.ca_crt.read_bytes()).decode()
        port = ctx.port(self.name)
        objs: list[dict[str, Any]] = [
            namespace(NAMESPACE),
            # NOTE: ExternalName → localhost: the aggregator dials https://localhost:<port>
            # and looks for no endpoints (the network rule).
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": dict(LABELS)},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "localhost",
                    "ports": [{"name": "https", "port": port}],
                },
            },
            # The HPA controller's permission to read custom metrics (prometheus-adapter's
            # own deployment binds the same to this ServiceAccount).
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "kaic-lab-custom-metrics-reader", "labels": dict(LABELS)},
                "rules": [{"apiGroups": [GROUP], "resources": ["*"], "verbs": ["get", "list"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "kaic-lab-hpa-custom-metrics", "labels": dict(LABELS)},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "kaic-lab-custom-metrics-reader",
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": "horizontal-pod-autoscaler",
                        "namespace": "kube-system",
                    }
                ],
            },
        ]
        for i, v in enumerate(VERSIONS):
            objs.append(
                {
                    "apiVersion": "apiregistration.k8s.io/v1",
                    "kind": "APIService",
                    "metadata": {"name": api_service_name(v), "labels": dict(LABELS)},
                    "spec": {
                        "group": GROUP,
                        "version": v,
                        "service": {"name": SERVICE, "namespace": NAMESPACE, "port": port},
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
            with contextlib.suppress(ApiError, LabError, OSError):
                ctx.request(
                    "DELETE",
                    f"/apis/apiregistration.k8s.io/v1/apiservices/{api_service_name(v)}",
                    timeout=5,
                )
        super().stop(ctx)

    def healthy(self, ctx: LabContext) -> bool:
        return super().healthy(ctx) and all(self._available(ctx, v) for v in VERSIONS)
