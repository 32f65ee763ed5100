"""Check of ``advanced_inference_ingress``: an implementation of the Gateway API Inference
Extension routes requests to an InferencePool and its endpoint picker's choice follows
the metrics the model servers publish.

Owns: the inference kinds that must be served, the objects of one test pool (two
model-server pods of the llm-d inference simulator, the reference endpoint picker with
its RBAC, an InferencePool over the pods), a Gateway of the platform's class with an
HTTPRoute whose backend is the pool, how route and pool status are judged, and the
requests sent from a client pod (where they land, by the model server's
``x-inference-pod`` answer header). Everything it creates lives in the check's
namespace. Must not: route around the Gateway (requests go to its status address only).
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from typing import Any

import yaml

from kaic.checks.base import (
    CheckContext,
    CheckOption,
    Permission,
    Resource,
    Subtest,
    check,
    exclusive,
    shared,
)
from kaic.checks.gateways import API_VERSION as GW_API_VERSION
from kaic.checks.gateways import GROUP as GW_GROUP
from kaic.checks.gateways import (
    Tally,
    class_line,
    conditions_line,
    gateway_programmed,
    gateway_url,
    http_gateway,
    parent_status,
    tally,
)
from kaic.checks.pods import restricted_pod
from kaic.checks.predicates import pod_ready
from kaic.cluster.api import KubeObject, condition, has_condition, name_of
from kaic.errors import WaitTimeoutError

POOL_GROUP = "inference.networking.k8s.io"
POOL_API = f"{POOL_GROUP}/v1"
OBJECTIVE_APIS = ("inference.networking.x-k8s.io/v1alpha2", "llm-d.ai/v1alpha1")
"""Where an InferenceObjective is served: the inference extension's experimental group
up to v1.5, llm-d-router's group since the extension moved it there (v1.6)."""
RBAC_API = "rbac.authorization.k8s.io/v1"

SIM_IMAGE = "ghcr.io/llm-d/llm-d-inference-sim:v0.10.2"
"""The llm-d inference simulator: vLLM's OpenAI API and ``/metrics`` without a model;
``--fake-metrics`` makes it report a given queue depth and KV-cache use, and with
``POD_NAME`` set it names itself in the ``x-inference-pod`` answer header."""
EPP_IMAGE = "registry.k8s.io/gateway-api-inference-extension/epp:v1.5.0"
"""The inference extension's reference endpoint picker, last release from that
repository (v1.6 moved it to llm-d-router); ext-proc gRPC on 9002, gRPC health on 9003,
metrics on 9090."""
CLIENT_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
"""Has ``sh`` and ``curl``; run with ``pause``."""
MODEL = "kaic/sim-model"
SIM_PORT = 8000
EPP_PORT = 9002
EPP_HEALTH_PORT = 9003
IDLE, BUSY = "kaic-aii-sim-idle", "kaic-aii-sim-busy"
POOL = "kaic-aii-pool"
EPP = "kaic-aii-epp"
CLIENT = "kaic-aii-client"
GATEWAY = "kaic-aii-gateway"
ROUTE = "kaic-aii-route"
POOL_LABEL = "kaic.io/inference-pool"
BUSY_METRICS = {"running-requests": 5, "waiting-requests": 50, "kv-cache-usage": 0.95}
"""What the busy model server reports: a deep queue and an almost full KV cache."""
ALPHA = 0.001
"""The picker's choice must differ from a coin toss between the two pods: the count sent
to the busy pod must be that unlikely under p = 0.5 (one-sided exact binomial test)."""


# -- judging status --------------------------------------------------------------------------


def route_settled(route: KubeObject | None) -> bool:
    """Accepted and ResolvedRefs True, or an answer no wait changes: ResolvedRefs False
    with reason InvalidKind (the implementation does not know the backend kind)."""
    parent = parent_status(route, "Gateway", GATEWAY)
    if has_condition(parent, "Accepted") and has_condition(parent, "ResolvedRefs"):
        return True
    refs = condition(parent, "ResolvedRefs")
    return bool(refs and refs.get("status") == "False" and refs.get("reason") == "InvalidKind")


# -- counting --------------------------------------------------------------------------------


def binomial_lower_tail(k: int, n: int, p: float = 0.5) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1)))


def client_script(url: str, requests: int, model: str) -> list[str]:
    """``requests`` OpenAI completions POSTed to the Gateway, one line each:
    the ``x-inference-pod`` header of the answer (``-`` if none) and the HTTP status."""
    body = json.dumps({"model": model, "prompt": "Say hello.", "max_tokens": 4})
    curl = (
        f"curl -s -m 10 -o /dev/null -D - -H 'Content-Type: application/json'"
        f" -d {shlex.quote(body)} {shlex.quote(url + '/v1/completions')}"
    )
    loop = (
        f"i=0; while [ $i -lt {requests} ]; do "
        f"h=$({curl} | tr -d '\\r'); "
        "c=$(printf '%s\\n' \"$h\" | sed -n '1s/^HTTP[^ ]* \\([0-9]*\\).*/\\1/p'); "
        "p=$(printf '%s\\n' \"$h\" | sed -n 's/^[Xx]-[Ii]nference-[Pp]od: *//p' | tail -1); "
        'echo "${p:--} ${c:-000}"; i=$((i+1)); done'
    )
    return ["sh", "-c", loop]


# -- objects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    namespace: str
    sim_image: str
    epp_image: str
    client_image: str
    port: int
    requests: int
    status_timeout: float


def _pod(name: str, ns: str, labels: dict[str, str], container: dict[str, Any]) -> KubeObject:
    return restricted_pod(
        name,
        ns,
        {
            "name": "main",
            "resources": {
                "requests": {"cpu": "10m", "memory": "64Mi"},
                "limits": {"memory": "512Mi"},
            },
            **container,
        },
        labels=labels,
        spec={"serviceAccountName": EPP} if name == EPP else None,
    )


def sim_pod(s: Setup, name: str, busy: bool) -> KubeObject:
    args = ["--model", MODEL, "--port", str(SIM_PORT)]
    if busy:
        args += ["--fake-metrics", json.dumps(BUSY_METRICS)]
    return _pod(
        name,
        s.namespace,
        {POOL_LABEL: POOL, "app.kubernetes.io/name": "kaic-model-server"},
        {
            "image": s.sim_image,
            "args": args,
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {
                    "name": "POD_NAMESPACE",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                },
            ],
            "ports": [{"name": "http", "containerPort": SIM_PORT}],
            "readinessProbe": {
                "httpGet": {"path": "/health", "port": SIM_PORT},
                "periodSeconds": 2,
            },
        },
    )


def picker_objects(s: Setup) -> list[KubeObject]:
    """The endpoint picker of the test pool: its ServiceAccount and Role (read pods and
    the pool's kinds in the namespace), the picker pod and its Service."""
    ns = s.namespace
    sel = {"app.kubernetes.io/name": EPP}
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": [POOL_GROUP],
            "resources": ["inferencepools"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["inference.networking.x-k8s.io"],
            "resources": ["inferenceobjectives", "inferencemodelrewrites", "inferencepools"],
            "verbs": ["get", "list", "watch"],
        },
    ]
    args = [
        f"--pool-name={POOL}",
        f"--pool-namespace={ns}",
        f"--pool-group={POOL_GROUP}",
        f"--grpc-port={EPP_PORT}",
        f"--grpc-health-port={EPP_HEALTH_PORT}",
        "--metrics-port=9090",
        "--metrics-endpoint-auth=false",
        "--v=2",
    ]
    grpc_probe = {"grpc": {"port": EPP_HEALTH_PORT, "service": "inference-extension"}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": EPP, "namespace": ns}},
        {
            "apiVersion": RBAC_API,
            "kind": "Role",
            "metadata": {"name": EPP, "namespace": ns},
            "rules": rules,
        },
        {
            "apiVersion": RBAC_API,
            "kind": "RoleBinding",
            "metadata": {"name": EPP, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": EPP},
            "subjects": [{"kind": "ServiceAccount", "name": EPP, "namespace": ns}],
        },
        _pod(
            EPP,
            ns,
            dict(sel),
            {
                "image": s.epp_image,
                "args": args,
                "env": [
                    {
                        "name": "NAMESPACE",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                    }
                ],
                "ports": [
                    {"name": "grpc", "containerPort": EPP_PORT},
                    {"name": "grpc-health", "containerPort": EPP_HEALTH_PORT},
                    {"name": "metrics", "containerPort": 9090},
                ],
                "readinessProbe": {**grpc_probe, "periodSeconds": 2},
            },
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": EPP, "namespace": ns},
            "spec": {
                "selector": sel,
                "ports": [
                    {
                        "name": "grpc-ext-proc",
                        "port": EPP_PORT,
                        "targetPort": EPP_PORT,
                        "appProtocol": "http2",
                    }
                ],
            },
        },
    ]


def inference_pool(s: Setup) -> KubeObject:
    return {
        "apiVersion": POOL_API,
        "kind": "InferencePool",
        "metadata": {"name": POOL, "namespace": s.namespace},
        "spec": {
            "selector": {"matchLabels": {POOL_LABEL: POOL}},
            "targetPorts": [{"number": SIM_PORT}],
            "endpointPickerRef": {
                "name": EPP,
                "port": {"number": EPP_PORT},
                "failureMode": "FailClose",
            },
        },
    }


def pool_route(s: Setup) -> KubeObject:
    return {
        "apiVersion": GW_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {"name": ROUTE, "namespace": s.namespace},
        "spec": {
            "parentRefs": [{"name": GATEWAY, "sectionName": "http"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"group": POOL_GROUP, "kind": "InferencePool", "name": POOL}],
                    "timeouts": {"request": "60s"},
                }
            ],
        },
    }


def _yaml(obj: KubeObject | None) -> str:
    return yaml.safe_dump(obj, sort_keys=False) if obj else "# not found\n"


# -- the check ---------------------------------------------------------------------------------


@check(
    "advanced_inference_ingress",
    test="TestAdvancedInferenceIngress",
    locks=exclusive(Resource.GATEWAY) + shared(Resource.NODE_CAPACITY),
    options=(
        CheckOption(
            "gateway-class", "GatewayClass that must be accepted by its controller (default: any)"
        ),
        CheckOption(
            "inference-gateway-port",
            "listener port of the test Gateway (Traefik's chart: 8000)",
            "80",
            kind="integer",
        ),
        CheckOption(
            "inference-client-image",
            "image of the client pod the requests are sent from (args `pause`; needs sh, curl)",
            CLIENT_IMAGE,
        ),
        CheckOption(
            "inference-sim-image",
            "image of the two model servers (the llm-d inference simulator: vLLM's OpenAI API,"
            " `--fake-metrics`, the `x-inference-pod` answer header)",
            SIM_IMAGE,
        ),
        CheckOption(
            "inference-epp-image",
            "image of the endpoint picker of the test InferencePool (the inference"
            " extension's EPP, v1.x flags)",
            EPP_IMAGE,
        ),
        CheckOption(
            "inference-pool-requests",
            "requests sent through the Gateway per traffic sub-test",
            "20",
            kind="integer",
        ),
        CheckOption(
            "inference-status-timeout",
            "seconds to wait for each status (Gateway, HTTPRoute, InferencePool), for each pod"
            " and for the first request to get through the Gateway",
            "90",
        ),
    ),
    permissions=(
        Permission("list", "gatewayclasses", GW_GROUP, namespaced=False),
        Permission("create", "gateways", GW_GROUP),
        Permission("create", "httproutes", GW_GROUP),
        Permission("create", "inferencepools", POOL_GROUP),
        Permission("create", "pods"),
        Permission("create", "services"),
        Permission("create", "serviceaccounts"),
        Permission("create", "roles", "rbac.authorization.k8s.io"),
        Permission("create", "rolebindings", "rbac.authorization.k8s.io"),
        Permission("create", "pods", subresource="exec"),
    ),
    timeout_s=480.0,
)
def advanced_inference_ingress(ctx: CheckContext) -> None:
    """A Gateway of the platform's class accepts an HTTPRoute to an InferencePool, the
    requests sent through it reach the pool's model servers, and the pool's endpoint
    picker sends them away from the server that reports a deep queue and full KV cache."""
    setup = Setup(
        namespace=ctx.namespace,
        sim_image=ctx.option("inference-sim-image") or SIM_IMAGE,
        epp_image=ctx.option("inference-epp-image") or EPP_IMAGE,
        client_image=ctx.option("inference-client-image") or CLIENT_IMAGE,
        port=int(ctx.option("inference-gateway-port") or 80),
        requests=int(ctx.option("inference-pool-requests") or 20),
        status_timeout=ctx.float_option("inference-status-timeout"),
    )
    record: dict[str, Any] = {"model": MODEL, "busy_metrics": BUSY_METRICS}
    state: dict[str, Any] = {}

    with ctx.subtest("InferenceAPIServed") as t:
        served = {r.kind for r in ctx.cluster.api_resources(POOL_API)}
        t.require(
            "InferencePool" in served,
            f"the API server does not serve InferencePool in {POOL_API} (the Gateway API"
            " Inference Extension's CRDs are not installed)",
        )
        objectives = [
            av
            for av in OBJECTIVE_APIS
            if any(r.kind == "InferenceObjective" for r in ctx.cluster.api_resources(av))
        ]
        record["inference_objective_served_in"] = objectives
        t.log(
            f"{POOL_API} serves {', '.join(sorted(served))}; InferenceObjective "
            + (f"served in {', '.join(objectives)}" if objectives else "not served (optional)")
        )

    wanted = ctx.option("gateway-class")
    gw_served = any(r.kind == "GatewayClass" for r in ctx.cluster.api_resources(GW_API_VERSION))
    classes = ctx.cluster.list(GW_API_VERSION, "GatewayClass") if gw_served else []
    ctx.evidence(
        "gatewayclasses.yaml",
        yaml.safe_dump_all(classes, sort_keys=False) if classes else "# none\n",
        "application/yaml",
    )
    if ctx.passed("InferenceAPIServed") and not classes and not wanted:
        ctx.manual(
            ("no GatewayClass exists" if gw_served else f"{GW_API_VERSION} is not served")
            + ", so there is no Gateway implementation to route to an InferencePool: attach"
            " the InferencePool (kubectl get inferencepools -A -o yaml), its endpoint picker's"
            " Deployment, the HTTPRoute with the pool as backendRef and its status, and a"
            " request log of the platform's inference gateway showing requests reaching the"
            " pool's pods and the picker avoiding a pod with a deep queue or full KV cache"
        )

    def class_accepted(t: Subtest) -> None:
        t.require(bool(classes), f"GatewayClass {wanted} does not exist (no GatewayClass at all)")
        if wanted:
            match = [gc for gc in classes if name_of(gc) == wanted]
            t.require(bool(match), f"GatewayClass {wanted} does not exist")
            t.require(
                has_condition(match[0], "Accepted"),
                f"GatewayClass {class_line(match[0])} is not accepted by its controller",
            )
            state["class"] = match[0]
        else:
            accepted = sorted((gc for gc in classes if has_condition(gc, "Accepted")), key=name_of)
            t.require(
                bool(accepted),
                "no GatewayClass is accepted by a controller: "
                + "; ".join(class_line(gc) for gc in classes),
            )
            state["class"] = accepted[0]
        record["gateway_class"] = name_of(state["class"])
        t.log(f"the test Gateway uses GatewayClass {class_line(state['class'])}")

    ctx.step("GatewayClassAccepted", class_accepted, needs=("InferenceAPIServed",))

    def servers_ready(t: Subtest) -> None:
        objs = [sim_pod(setup, IDLE, False), sim_pod(setup, BUSY, True), *picker_objects(setup)]
        objs.append(
            _pod(
                CLIENT,
                setup.namespace,
                {"app.kubernetes.io/name": CLIENT},
                {"image": setup.client_image, "args": ["pause"]},
            )
        )
        for obj in objs:
            ctx.cluster.create(obj)
        images = {IDLE: setup.sim_image, BUSY: setup.sim_image, EPP: setup.epp_image}
        for name in (IDLE, BUSY, EPP, CLIENT):
            try:
                ctx.cluster.wait_for(
                    "v1",
                    "Pod",
                    name,
                    setup.namespace,
                    pod_ready,
                    timeout=ctx.budget(setup.status_timeout),
                    what=f"pod {name} to be Ready",
                )
            except WaitTimeoutError:
                pod = ctx.cluster.get("v1", "Pod", name, setup.namespace)
                phase = (pod or {}).get("status", {}).get("phase", "unknown")
                t.fail(
                    f"pod {setup.namespace}/{name} (image {images.get(name, setup.client_image)})"
                    f" is not Ready after {setup.status_timeout:.0f}s (phase {phase})"
                )
        t.log(f"model servers {IDLE}, {BUSY} (reports {BUSY_METRICS}), picker {EPP} Ready")

    ctx.step("ModelServersReady", servers_ready, needs=("GatewayClassAccepted",))

    def pool_accepted(t: Subtest) -> None:
        cls = name_of(state["class"])
        controller = state["class"].get("spec", {}).get("controllerName", "?")
        ctx.cluster.create(inference_pool(setup))
        ctx.cluster.create(http_gateway(GATEWAY, setup.namespace, cls, setup.port))
        ctx.cluster.create(pool_route(setup))
        ns = setup.namespace
        try:
            gw = ctx.cluster.wait_for(
                GW_API_VERSION,
                "Gateway",
                GATEWAY,
                ns,
                gateway_programmed,
                timeout=ctx.budget(setup.status_timeout),
                what=f"Gateway {GATEWAY} to be Programmed",
            )
        except WaitTimeoutError:
            gw = ctx.cluster.get(GW_API_VERSION, "Gateway", GATEWAY, ns)
            ctx.evidence("gateway.yaml", _yaml(gw), "application/yaml")
            t.fail(
                f"Gateway {ns}/{GATEWAY} of class {cls} is not Programmed with an address:"
                f" {conditions_line(gw, ('Accepted', 'Programmed'))}"
            )
        ctx.evidence("gateway.yaml", _yaml(gw), "application/yaml")
        state["url"] = gateway_url(gw, setup.port)
        try:
            route = ctx.cluster.wait_for(
                GW_API_VERSION,
                "HTTPRoute",
                ROUTE,
                ns,
                route_settled,
                timeout=ctx.budget(setup.status_timeout),
                what=f"HTTPRoute {ROUTE} status",
            )
        except WaitTimeoutError:
            route = ctx.cluster.get(GW_API_VERSION, "HTTPRoute", ROUTE, ns)
        ctx.evidence("httproute.yaml", _yaml(route), "application/yaml")
        record["route_status"] = (route or {}).get("status")
        parent = parent_status(route, "Gateway", GATEWAY)
        if parent is None:
            t.fail(
                f"HTTPRoute {ns}/{ROUTE} (backend InferencePool {POOL}): no controller wrote a"
                f" status for Gateway {GATEWAY} within {setup.status_timeout:.0f}s; controller"
                f" {controller} of class {cls} does not handle the route"
            )
        by = parent.get("controllerName") or controller
        if not (has_condition(parent, "Accepted") and has_condition(parent, "ResolvedRefs")):
            refs = condition(parent, "ResolvedRefs")
            why = (
                ": the Gateway implementation does not route to InferencePool"
                if refs and refs.get("status") == "False" and refs.get("reason") == "InvalidKind"
                else ""
            )
            t.fail(
                f"HTTPRoute {ns}/{ROUTE}: {conditions_line(parent, ('Accepted', 'ResolvedRefs'))}"
                f" from controller {by}{why}"
            )
        held = conditions_line(parent, ("Accepted", "ResolvedRefs"))
        t.log(f"HTTPRoute {ROUTE}: {held} from {by}")
        try:
            pool = ctx.cluster.wait_for(
                POOL_API,
                "InferencePool",
                POOL,
                ns,
                lambda p: has_condition(parent_status(p, "Gateway", GATEWAY), "Accepted"),
                timeout=ctx.budget(setup.status_timeout),
                what=f"InferencePool {POOL} to be Accepted by Gateway {GATEWAY}",
            )
        except WaitTimeoutError:
            pool = ctx.cluster.get(POOL_API, "InferencePool", POOL, ns)
            ctx.evidence("inferencepool.yaml", _yaml(pool), "application/yaml")
            pp = parent_status(pool, "Gateway", GATEWAY)
            t.fail(
                f"InferencePool {ns}/{POOL}: "
                + (
                    conditions_line(pp, ("Accepted", "ResolvedRefs"))
                    if pp
                    else f"no status.parents entry for Gateway {GATEWAY}"
                )
                + f" after {setup.status_timeout:.0f}s (controller {by})"
            )
        ctx.evidence("inferencepool.yaml", _yaml(pool), "application/yaml")
        record["pool_status"] = (pool or {}).get("status")
        t.log(f"InferencePool {POOL} Accepted by Gateway {GATEWAY} at {state['url']}")

    ctx.step("PoolAcceptedByGateway", pool_accepted, needs=("ModelServersReady",))

    def send(requests: int) -> Tally:
        r = ctx.cluster.exec(
            setup.namespace,
            CLIENT,
            client_script(state["url"], requests, MODEL),
            timeout=ctx.budget(30 + requests * 2),
        )
        return tally(r.stdout, requests, (IDLE, BUSY))

    def reach_pool(t: Subtest) -> None:
        waited, last = 0.0, []
        while True:
            first = send(1)
            if not first.failures:
                break
            last = first.failures
            if waited >= min(setup.status_timeout, ctx.remaining()):
                t.fail(
                    f"requests through Gateway {GATEWAY} at {state['url']} reach no pod of"
                    f" InferencePool {POOL} after {waited:.0f}s (last answer: {'; '.join(last)})"
                )
            ctx.sleep(2)
            waited += 2
        got = send(setup.requests)
        record["reach_pool"] = got.to_json()
        t.require(
            not got.failures,
            f"{len(got.failures)} of {setup.requests} requests through {state['url']} were"
            f" not answered by a pod of InferencePool {POOL} (e.g. {got.failures[:1]})",
        )
        t.log(f"all {setup.requests} requests answered by pool pods: {got.by_backend}")

    ctx.step("RequestsReachPool", reach_pool, needs=("PoolAcceptedByGateway",))

    def follows_metrics(t: Subtest) -> None:
        got = send(setup.requests)
        busy = got.by_backend[BUSY]
        p = binomial_lower_tail(busy, setup.requests)
        record["picker"] = {**got.to_json(), "p_value_vs_random": p, "alpha": ALPHA}
        t.require(
            not got.failures,
            f"{len(got.failures)} of {setup.requests} requests failed (e.g. {got.failures[:1]})",
        )
        t.require(
            p < ALPHA,
            f"the endpoint picker {EPP} of InferencePool {POOL} sent {busy} of"
            f" {setup.requests} requests to {BUSY}, which reports"
            f" {BUSY_METRICS['waiting-requests']} waiting requests and KV-cache use"
            f" {BUSY_METRICS['kv-cache-usage']}: no better than a coin toss"
            f" (P(X<={busy}) = {p:.2g} under p=0.5, needs < {ALPHA})",
        )
        t.log(f"{IDLE} {got.by_backend[IDLE]}, {BUSY} {busy} of {setup.requests} (p={p:.2g})")

    ctx.step("PickerFollowsMetrics", follows_metrics, needs=("RequestsReachPool",))
    ctx.evidence(
        "traffic.json", json.dumps(record, indent=2, default=str) + "\n", "application/json"
    )
