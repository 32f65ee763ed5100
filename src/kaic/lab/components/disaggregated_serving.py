"""A disaggregated model-serving deployment as llm-d lays one out (``disaggregated-serving``,
on by default), for disaggregated_inference; ``--with colocated-serving`` is its negative.

Owns: namespace ``disaggregated-serving`` with Deployments ``ms-prefill`` and ``ms-decode``
(one replica each; pod labels ``llm-d.ai/role=prefill|decode``,
``llm-d.ai/inferenceServing=true``, ``llm-d.ai/model``) running the ``vllm/vllm-openai``
image with a NIXL KV connector, and Service ``ms-decode`` (port 8000) for the decode side.
**The model servers are simulated**: no image is pulled; the ``porter`` component answers
at the pods' IPs (``kaic.lab.sims.model_server``): the decode server sends each request,
same ``x-request-id``, to a prefill pod over the pod network, and both log the id where
``kubectl logs`` finds it. What is real: the Deployments, ReplicaSets, scheduling, the
EndpointSlices and kube-proxy's ClusterIP, the traffic between the pods.

With ``colocated-serving`` the decode server has no KV connector and runs both phases
itself (the prefill pod stays idle): the request id shows up in the decode pod only.
Must not start processes.
"""

from __future__ import annotations

import json
from typing import Any

from kaic.lab.component import Component, register
from kaic.lab.context import LabContext

NAME = "disaggregated-serving"
COLOCATED = "colocated-serving"
NAMESPACE = "disaggregated-serving"
IMAGE = "vllm/vllm-openai:v0.11.0"
MODEL = "kaic/tiny-llm"
PORT = 8000
ROLE = "llm-d.ai/role"
KV_CONFIG = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"})
SIMULATED = "kaic.io/simulated"


def _labels(role: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"ms-{role}",
        "llm-d.ai/inferenceServing": "true",
        "llm-d.ai/model": "tiny-llm",
        ROLE: role,
    }


def deployment(role: str, connector: bool) -> dict[str, Any]:
    args = ["--model", MODEL, "--port", str(PORT), "--enable-log-requests"]
    if connector:
        args += ["--kv-transfer-config", KV_CONFIG]
    labels = _labels(role)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"ms-{role}",
            "namespace": NAMESPACE,
            "labels": {**labels, SIMULATED: "model-server"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**labels, SIMULATED: "model-server"}},
                "spec": {
                    "containers": [
                        {
                            "name": "vllm",
                            "image": IMAGE,
                            "args": args,
                            "ports": [{"name": "http", "containerPort": PORT}],
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                        }
                    ],
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                    "terminationGracePeriodSeconds": 1,
                },
            },
        },
    }


def objects(colocated: bool) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {SIMULATED: "model-server"}},
        },
        deployment("prefill", True),
        deployment("decode", not colocated),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ms-decode", "namespace": NAMESPACE},
            "spec": {
                "selector": _labels("decode"),
                "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
            },
        },
    ]


@register
class DisaggregatedServing(Component):
    name = NAME
    description = (
        "llm-d-style prefill and decode Deployments (simulated vLLM servers answered by"
        " porter) and a decode Service, for disaggregated_inference"
    )
    order = 113
    after = ("kube-apiserver",)
    optional = True
    default = True

    def start(self, ctx: LabContext) -> None:
        ctx.apply(objects(COLOCATED in ctx.enabled))

    def healthy(self, ctx: LabContext) -> bool:
        return ctx.exists(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/ms-decode")
