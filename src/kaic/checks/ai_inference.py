"""Check of ``ai_inference``: the Gateway API (standard channel, v1) is served, accepts a
route that splits traffic by weight and routes on an OpenAI-style header, and a
GatewayClass is accepted by a controller.

Owns: the kinds that must be served, the route used for the dry-run, how controller
acceptance is judged. Must not create anything for real.
"""

from __future__ import annotations

import yaml

from kaic.checks.base import CheckContext, CheckOption, Permission, check
from kaic.cluster.api import KubeObject, has_condition, name_of
from kaic.errors import ClusterError

GROUP = "gateway.networking.k8s.io"
API_VERSION = f"{GROUP}/v1"
KINDS = ("GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute", "ReferenceGrant")
MODEL_HEADER = "X-Gateway-Model-Name"
WEIGHTS = (90, 10)


def inference_route(namespace: str, run_id: str) -> KubeObject:
    """An HTTPRoute for an OpenAI-compatible endpoint: model selected by header, traffic
    split 90/10 between two model-server Services."""
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {"name": f"kaic-inference-{run_id}".lower()[:63], "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "kaic-inference-gateway"}],
            "rules": [
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": "/v1/chat/completions"},
                            "headers": [
                                {
                                    "type": "Exact",
                                    "name": MODEL_HEADER,
                                    "value": "llama-3-8b-instruct",
                                }
                            ],
                        }
                    ],
                    "backendRefs": [
                        {"name": "model-server-stable", "port": 8000, "weight": WEIGHTS[0]},
                        {"name": "model-server-canary", "port": 8000, "weight": WEIGHTS[1]},
                    ],
                }
            ],
        },
    }


def _route_kept(route: KubeObject) -> str | None:
    """Why the stored route lost the weights or the header match, if it did."""
    rules = (route.get("spec") or {}).get("rules") or []
    if not rules:
        return "the route came back without rules"
    weights = tuple(b.get("weight") for b in rules[0].get("backendRefs") or [])
    if weights != WEIGHTS:
        return f"backend weights came back as {weights}, sent {WEIGHTS}"
    headers = [h.get("name") for m in rules[0].get("matches") or [] for h in m.get("headers") or []]
    if MODEL_HEADER not in headers:
        return f"the {MODEL_HEADER} header match was dropped"
    return None


def _describe(gc: KubeObject) -> str:
    conds = (gc.get("status") or {}).get("conditions") or []
    accepted = next((c for c in conds if c.get("type") == "Accepted"), None)
    state = (
        f"Accepted={accepted.get('status')} ({accepted.get('reason', '')})"
        if accepted
        else "no Accepted condition"
    )
    return f"{name_of(gc)} [controller {gc.get('spec', {}).get('controllerName', '?')}, {state}]"


@check(
    "ai_inference",
    test="TestGatewayAPIInference",
    options=(
        CheckOption(
            "gateway-class", "GatewayClass that must be accepted by its controller (default: any)"
        ),
    ),
    permissions=(
        Permission("create", "httproutes", GROUP),
        Permission("list", "gatewayclasses", GROUP, namespaced=False),
    ),
    timeout_s=120.0,
)
def ai_inference(ctx: CheckContext) -> None:
    """The Gateway API v1 kinds are served, a weighted, header-matched HTTPRoute is
    accepted, and a GatewayClass is accepted by a controller."""
    served = {r.kind for r in ctx.cluster.api_resources(API_VERSION)}
    with ctx.subtest("GatewayAPIServed") as t:
        t.require(
            bool(served),
            f"the API server does not serve {API_VERSION} (no Gateway API CRDs installed)",
        )
        missing = [k for k in KINDS if k not in served]
        t.require(not missing, f"{API_VERSION} does not serve {', '.join(missing)}")
        t.log(f"{API_VERSION} serves {', '.join(sorted(served))}")

    with ctx.subtest("WeightedHeaderRouteAccepted") as t:
        if "HTTPRoute" not in served:
            t.fail("HTTPRoute is not served, so no route can be created")
        route = inference_route(ctx.namespace, ctx.run_id)
        try:
            stored = ctx.cluster.create(route, dry_run=True)
        except ClusterError as e:
            t.fail(f"server-side dry-run create of the HTTPRoute was refused: {e}")
        ctx.evidence(
            "httproute-dry-run.yaml", yaml.safe_dump(stored, sort_keys=False), "application/yaml"
        )
        lost = _route_kept(stored)
        t.require(lost is None, lost or "")
        t.log(f"HTTPRoute with weights {WEIGHTS} and a {MODEL_HEADER} match was accepted")

    with ctx.subtest("GatewayClassAccepted") as t:
        if "GatewayClass" not in served:
            t.fail("GatewayClass is not served")
        classes = ctx.cluster.list(API_VERSION, "GatewayClass")
        ctx.evidence(
            "gatewayclasses.yaml",
            yaml.safe_dump_all(classes, sort_keys=False)
            if classes
            else "# no GatewayClass present\n",
            "application/yaml",
        )
        wanted = ctx.option("gateway-class")
        if wanted:
            match = [gc for gc in classes if name_of(gc) == wanted]
            t.require(bool(match), f"GatewayClass {wanted} does not exist")
            t.require(
                has_condition(match[0], "Accepted"),
                f"GatewayClass {_describe(match[0])} is not accepted by its controller",
            )
            t.log(f"GatewayClass {_describe(match[0])}")
            return
        if not classes:
            t.skip(
                "no GatewayClass exists, so no controller could be seen accepting one;"
                " install a Gateway API implementation or name one with --gateway-class"
            )
        accepted = [gc for gc in classes if has_condition(gc, "Accepted")]
        t.require(
            bool(accepted),
            "no GatewayClass is accepted by a controller: "
            + "; ".join(_describe(gc) for gc in classes),
        )
        t.log("accepted: " + "; ".join(_describe(gc) for gc in accepted))
