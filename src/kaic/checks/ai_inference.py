"""Check of ``ai_inference``: the Gateway API (standard channel, v1) is served, accepts a
route that splits traffic by weight and routes on an OpenAI-style header, a GatewayClass
is accepted by a controller, and that implementation really routes: requests sent
through a Gateway of the class split 90/10 by weight between two backends that answer
with their own name, and requests carrying the model header all reach the named backend.

Owns: the kinds that must be served, the routes (dry-run and real), how controller
acceptance, Gateway and route status are judged, the traffic sent through the Gateway
from a client pod, and the statistical test of the observed split. Everything it creates
lives in the check's namespace.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Sequence
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
from kaic.checks.gateways import (
    API_VERSION,
    GROUP,
    Tally,
    as_status,
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
from kaic.cluster.api import KubeObject, has_condition, name_of
from kaic.errors import ClusterError, WaitTimeoutError

KINDS = ("GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute", "ReferenceGrant")
MODEL_HEADER = "X-Gateway-Model-Name"
WEIGHTS = (90, 10)
MODEL = "llama-3-8b-instruct"
BACKEND_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
"""agnhost: ``netexec`` answers ``GET /hostname`` with the pod's name, and the image has
``sh`` and ``curl`` for the client pod."""
BACKEND_PORT = 8080
SERVICE_PORT = 8000
STABLE, CANARY = "kaic-model-stable", "kaic-model-canary"
CLIENT = "kaic-inference-client"
GATEWAY = "kaic-inference-gateway"
ROUTE = "kaic-inference-route"
HEADER_REQUESTS = 20
ALPHA = 0.001
"""Significance of the two-sided exact binomial test of the observed split: a correct
90/10 implementation is rejected by chance in at most 1 run of 1000."""
DISCOVERY = "discovery.k8s.io/v1"


def inference_route(namespace: str, run_id: str, header: str = MODEL_HEADER) -> KubeObject:
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
                                    "name": header,
                                    "value": MODEL,
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


def _route_kept(route: KubeObject, header: str = MODEL_HEADER) -> str | None:
    """Why the stored route lost the weights or the header match, if it did."""
    rules = (route.get("spec") or {}).get("rules") or []
    if not rules:
        return "the route came back without rules"
    weights = tuple(b.get("weight") for b in rules[0].get("backendRefs") or [])
    if weights != WEIGHTS:
        return f"backend weights came back as {weights}, sent {WEIGHTS}"
    headers = [h.get("name") for m in rules[0].get("matches") or [] for h in m.get("headers") or []]
    if header not in headers:
        return f"the {header} header match was dropped"
    return None


# -- statistics --------------------------------------------------------------------------


def binomial_p_value(k: int, n: int, p: float) -> float:
    """Exact two-sided binomial test: the probability, for ``n`` draws with success
    probability ``p``, of an outcome at most as likely as ``k`` successes."""
    if n <= 0:
        return 1.0
    pmf = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    # NOTE: a relative slack so that outcomes exactly as likely as k are not lost to
    # rounding (the convention of R's binom.test and SciPy's binomtest).
    limit = pmf[k] * (1 + 1e-7)
    return min(1.0, sum(x for x in pmf if x <= limit))


def acceptance_interval(n: int, p: float, alpha: float = ALPHA) -> tuple[int, int]:
    """The successes out of ``n`` that the two-sided test at ``alpha`` does not reject."""
    ok = [k for k in range(n + 1) if binomial_p_value(k, n, p) >= alpha]
    return (ok[0], ok[-1]) if ok else (0, n)


# -- objects -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """The choices of one run: images, header, port, how many requests."""

    namespace: str
    backend_image: str
    client_image: str
    header: str
    model: str
    port: int
    requests: int


def _pod(name: str, image: str, args: list[str], labels: dict[str, str], ns: str) -> KubeObject:
    container: dict[str, Any] = {"name": "main", "image": image, "args": args}
    if args[:1] == ["netexec"]:
        container["ports"] = [{"name": "http", "containerPort": BACKEND_PORT}]
        container["readinessProbe"] = {
            "httpGet": {"path": "/healthz", "port": BACKEND_PORT},
            "periodSeconds": 2,
        }
    return restricted_pod(name, ns, container, labels=labels)


def backend_objects(s: Setup) -> list[KubeObject]:
    """Two model-server stand-ins (pods answering with their own name) with a Service
    each, and the client pod the requests are sent from."""
    objs: list[KubeObject] = []
    for name in (STABLE, CANARY):
        sel = {"kaic.io/inference-backend": name}
        objs.append(
            _pod(
                name,
                s.backend_image,
                ["netexec", f"--http-port={BACKEND_PORT}"],
                {**sel, "app.kubernetes.io/name": "kaic-model-server"},
                s.namespace,
            )
        )
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": s.namespace, "labels": dict(sel)},
                "spec": {
                    "selector": sel,
                    "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
                },
            }
        )
    objs.append(
        _pod(CLIENT, s.client_image, ["pause"], {"app.kubernetes.io/name": CLIENT}, s.namespace)
    )
    return objs


def traffic_route(s: Setup) -> KubeObject:
    """The route traffic is sent through: requests with ``<header>: <model>`` go to the
    canary alone; all others are split 90/10 between stable and canary."""
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {"name": ROUTE, "namespace": s.namespace},
        "spec": {
            "parentRefs": [{"name": GATEWAY, "sectionName": "http"}],
            "rules": [
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": "/"},
                            "headers": [{"type": "Exact", "name": s.header, "value": s.model}],
                        }
                    ],
                    "backendRefs": [{"name": CANARY, "port": SERVICE_PORT}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": STABLE, "port": SERVICE_PORT, "weight": WEIGHTS[0]},
                        {"name": CANARY, "port": SERVICE_PORT, "weight": WEIGHTS[1]},
                    ],
                },
            ],
        },
    }


def _route_parent(route: KubeObject | None) -> KubeObject | None:
    """The status a controller wrote for the route under the test Gateway."""
    return parent_status(route, "Gateway", GATEWAY)


def route_accepted(route: KubeObject | None) -> bool:
    parent = _route_parent(route)
    return has_condition(parent, "Accepted") and has_condition(parent, "ResolvedRefs")


def endpoints_ready(slices: Sequence[KubeObject]) -> int:
    """Ready endpoint addresses in a Service's EndpointSlices."""
    return sum(
        len(e.get("addresses") or [])
        for s in slices
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready", True) is not False
    )


def client_script(url: str, requests: int, header: str | None = None) -> list[str]:
    """The command the client pod runs: ``requests`` GETs of ``/hostname``, one line
    ``<body> <status>`` each."""
    h = f"-H {shlex.quote(header)} " if header else ""
    loop = (
        f"i=0; while [ $i -lt {requests} ]; do "
        f"curl -s -m 5 {h}-w ' %{{http_code}}\\n' {shlex.quote(url + '/hostname')}"
        " || echo ' 000'; i=$((i+1)); done"
    )
    return ["sh", "-c", loop]


# -- the check ---------------------------------------------------------------------------


@check(
    "ai_inference",
    test="TestGatewayAPIInference",
    locks=exclusive(Resource.GATEWAY) + shared(Resource.NODE_CAPACITY),
    options=(
        CheckOption(
            "gateway-class", "GatewayClass that must be accepted by its controller (default: any)"
        ),
        CheckOption(
            "inference-backend-image",
            "image of the two backends (must answer GET /hostname on port 8080 with the pod's"
            " name when run with args `netexec --http-port=8080`, as agnhost does)",
            BACKEND_IMAGE,
        ),
        CheckOption(
            "inference-client-image",
            "image of the client pod the requests are sent from (args `pause`; needs sh, curl)",
            BACKEND_IMAGE,
        ),
        CheckOption(
            "inference-gateway-port",
            "listener port of the test Gateway (Traefik's chart: 8000)",
            "80",
            kind="integer",
        ),
        CheckOption(
            "inference-requests",
            "requests sent to observe the 90/10 weighted split",
            "200",
            kind="integer",
        ),
        CheckOption(
            "inference-model-header", "the OpenAI-style model header routed on", MODEL_HEADER
        ),
    ),
    permissions=(
        Permission("create", "httproutes", GROUP),
        Permission("create", "gateways", GROUP),
        Permission("list", "gatewayclasses", GROUP, namespaced=False),
        Permission("create", "pods"),
        Permission("create", "services"),
        Permission("create", "pods", subresource="exec"),
        Permission("list", "endpointslices", "discovery.k8s.io"),
    ),
    timeout_s=420.0,
)
def ai_inference(ctx: CheckContext) -> None:
    """The Gateway API v1 kinds are served, a weighted, header-matched HTTPRoute is
    accepted, a GatewayClass is accepted by a controller, and a Gateway of that class
    splits real traffic 90/10 by weight and routes the model header to its backend."""
    header = ctx.option("inference-model-header") or MODEL_HEADER
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
        route = inference_route(ctx.namespace, ctx.run_id, header)
        try:
            stored = ctx.cluster.create(route, dry_run=True)
        except ClusterError as e:
            t.fail(f"server-side dry-run create of the HTTPRoute was refused: {e}")
        ctx.evidence(
            "httproute-dry-run.yaml", yaml.safe_dump(stored, sort_keys=False), "application/yaml"
        )
        lost = _route_kept(stored, header)
        t.require(lost is None, lost or "")
        t.log(f"HTTPRoute with weights {WEIGHTS} and a {header} match was accepted")

    chosen: list[str] = []

    def class_accepted(t: Subtest) -> None:
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
                f"GatewayClass {class_line(match[0])} is not accepted by its controller",
            )
            t.log(f"GatewayClass {class_line(match[0])}")
            chosen.append(wanted)
            return
        t.require(
            bool(classes),
            "no GatewayClass exists, so no Gateway API implementation can be accepting one"
            " (install one, or name its class with --gateway-class)",
        )
        accepted = sorted((gc for gc in classes if has_condition(gc, "Accepted")), key=name_of)
        t.require(
            bool(accepted),
            "no GatewayClass is accepted by a controller: "
            + "; ".join(class_line(gc) for gc in classes),
        )
        chosen.append(name_of(accepted[0]))
        t.log("accepted: " + "; ".join(class_line(gc) for gc in accepted))
        t.log(f"traffic goes through GatewayClass {chosen[0]}")

    ctx.step("GatewayClassAccepted", class_accepted, needs=("GatewayAPIServed",))

    setup = Setup(
        namespace=ctx.namespace,
        backend_image=ctx.option("inference-backend-image") or BACKEND_IMAGE,
        client_image=ctx.option("inference-client-image") or BACKEND_IMAGE,
        header=header,
        model=MODEL,
        port=int(ctx.option("inference-gateway-port") or 80),
        requests=int(ctx.option("inference-requests") or 200),
    )
    record: dict[str, Any] = {
        "gateway_class": chosen[0] if chosen else None,
        "header": header,
        "model": MODEL,
        "weights": dict(zip((STABLE, CANARY), WEIGHTS, strict=True)),
    }
    state: dict[str, Any] = {}

    def backends_ready(t: Subtest) -> None:
        for obj in backend_objects(setup):
            ctx.cluster.create(obj)
        pods = [STABLE, CANARY, CLIENT]
        for name in pods:
            try:
                ctx.cluster.wait_for(
                    "v1",
                    "Pod",
                    name,
                    ctx.namespace,
                    pod_ready,
                    timeout=ctx.budget(min(120, ctx.remaining() * 0.3)),
                    what=f"pod {name} to be Ready",
                )
            except WaitTimeoutError:
                pod = ctx.cluster.get("v1", "Pod", name, ctx.namespace)
                image = setup.client_image if name == CLIENT else setup.backend_image
                phase = (pod or {}).get("status", {}).get("phase", "unknown")
                t.fail(f"pod {name} (image {image}) is not Ready (phase {phase})")
        t.log(f"backends {STABLE}, {CANARY} and client {CLIENT} are Ready")

    ctx.step("BackendsReady", backends_ready, needs=("GatewayClassAccepted",))

    def endpoints_published(t: Subtest) -> None:
        for name in (STABLE, CANARY):
            try:
                ctx.cluster.wait_list(
                    DISCOVERY,
                    "EndpointSlice",
                    ctx.namespace,
                    lambda slices: endpoints_ready(slices) > 0,
                    timeout=ctx.budget(min(60, ctx.remaining() * 0.2)),
                    what=f"a ready endpoint of Service {name}",
                    label_selector=f"kubernetes.io/service-name={name}",
                )
            except WaitTimeoutError:
                t.fail(
                    f"Service {name} has no ready endpoint in its EndpointSlices although its"
                    " pod is Ready: the cluster's endpoint controller or pod network did not"
                    " publish it, so no Gateway can route to it"
                )
        t.log(f"Services {STABLE} and {CANARY} have ready endpoints")

    ctx.step("BackendEndpointsPublished", endpoints_published, needs=("BackendsReady",))

    def gateway_ready(t: Subtest) -> None:
        cls = chosen[0]
        ctx.cluster.create(http_gateway(GATEWAY, setup.namespace, cls, setup.port))
        try:
            gw = ctx.cluster.wait_for(
                API_VERSION,
                "Gateway",
                GATEWAY,
                ctx.namespace,
                gateway_programmed,
                timeout=ctx.budget(min(120, ctx.remaining() * 0.5)),
                what=f"Gateway {GATEWAY} to be Programmed",
            )
        except WaitTimeoutError:
            gw = ctx.cluster.get(API_VERSION, "Gateway", GATEWAY, ctx.namespace)
            _keep(ctx, "gateway.yaml", gw)
            listeners = [
                f"{ls.get('name')}: {conditions_line(as_status(ls), ('Accepted', 'Programmed'))}"
                for ls in (gw or {}).get("status", {}).get("listeners") or []
            ]
            has_address = gateway_url(gw, setup.port) is not None
            t.fail(
                f"Gateway {GATEWAY} of class {cls} (listener HTTP port {setup.port}) is not"
                f" Programmed with an address: {conditions_line(gw, ('Accepted', 'Programmed'))}"
                + ("" if has_address else "; no status address")
                + (f"; listeners {'; '.join(listeners)}" if listeners else "")
            )
        _keep(ctx, "gateway.yaml", gw)
        state["url"] = gateway_url(gw, setup.port)
        record["gateway_address"] = state["url"]
        t.log(f"Gateway {GATEWAY} of class {cls} is Programmed at {state['url']}")

    ctx.step("GatewayProgrammed", gateway_ready, needs=("GatewayClassAccepted",))

    def route_ready(t: Subtest) -> None:
        ctx.cluster.create(traffic_route(setup))
        try:
            route = ctx.cluster.wait_for(
                API_VERSION,
                "HTTPRoute",
                ROUTE,
                ctx.namespace,
                route_accepted,
                timeout=ctx.budget(min(60, ctx.remaining() * 0.5)),
                what=f"HTTPRoute {ROUTE} to be Accepted with ResolvedRefs",
            )
        except WaitTimeoutError:
            route = ctx.cluster.get(API_VERSION, "HTTPRoute", ROUTE, ctx.namespace)
            _keep(ctx, "httproute.yaml", route)
            parent = _route_parent(route)
            t.fail(
                f"HTTPRoute {ROUTE} is not Accepted with ResolvedRefs by Gateway {GATEWAY}: "
                + (
                    conditions_line(parent, ("Accepted", "ResolvedRefs"))
                    if parent
                    else "no controller wrote a status for it"
                )
            )
        _keep(ctx, "httproute.yaml", route)
        record["route_status"] = (route or {}).get("status")
        parent = _route_parent(route)
        t.log(f"HTTPRoute {ROUTE}: {conditions_line(parent, ('Accepted', 'ResolvedRefs'))}")

    ctx.step("HTTPRouteAccepted", route_ready, needs=("GatewayProgrammed", "BackendsReady"))

    def send(requests: int, with_header: bool) -> Tally:
        h = f"{setup.header}: {setup.model}" if with_header else None
        r = ctx.cluster.exec(
            ctx.namespace,
            CLIENT,
            client_script(state["url"], requests, h),
            timeout=ctx.budget(30 + requests * 0.5),
        )
        return tally(r.stdout, requests, (STABLE, CANARY))

    def warm_up(t: Subtest) -> None:
        """Until one plain and one header request reach a backend: a data plane takes
        a moment to program a new route."""
        deadline = min(60.0, ctx.remaining())
        waited = 0.0
        last: list[str] = []
        while True:
            plain, headed = send(1, False), send(1, True)
            if not plain.failures and not headed.failures:
                return
            last = plain.failures + headed.failures
            if waited >= deadline:
                t.fail(
                    f"requests through {state['url']} reach no backend after {waited:.0f}s"
                    f" (last answers: {'; '.join(last)})"
                )
            ctx.sleep(2)
            waited += 2

    def weighted_split(t: Subtest) -> None:
        warm_up(t)
        got = send(setup.requests, False)
        n = setup.requests
        canary = got.by_backend[CANARY]
        share = WEIGHTS[1] / sum(WEIGHTS)
        p_value = binomial_p_value(canary, n, share)
        low, high = acceptance_interval(n, share)
        record["weighted"] = {
            **got.to_json(),
            "expected_canary_share": share,
            "canary_share": round(canary / n, 4),
            "p_value": p_value,
            "alpha": ALPHA,
            "accepted_canary_counts": [low, high],
        }
        t.require(
            not got.failures,
            f"{len(got.failures)} of {n} requests through {state['url']} reached no backend"
            f" (e.g. {got.failures[0] if got.failures else ''})",
        )
        counts = f"{STABLE} {got.by_backend[STABLE]}, {CANARY} {canary} of {n}"
        t.require(
            p_value >= ALPHA,
            f"the split {counts} is not 90/10: exact binomial test p={p_value:.2g} < {ALPHA}"
            f" (accepted: {low}..{high} requests to {CANARY})",
        )
        t.log(f"split {counts} (p={p_value:.3g}; accepted {low}..{high} to {CANARY})")

    ctx.step(
        "WeightedSplitObserved",
        weighted_split,
        needs=("HTTPRouteAccepted", "BackendEndpointsPublished"),
    )

    def header_routed(t: Subtest) -> None:
        if not ctx.passed("WeightedSplitObserved"):
            warm_up(t)
        got = send(HEADER_REQUESTS, True)
        record["header_matched"] = got.to_json()
        wrong = HEADER_REQUESTS - got.by_backend[CANARY]
        t.require(
            wrong == 0,
            f"{wrong} of {HEADER_REQUESTS} requests with {setup.header}: {setup.model} did not"
            f" reach {CANARY} (by backend: {got.by_backend}; failed: {len(got.failures)})",
        )
        t.log(f"all {HEADER_REQUESTS} requests with {setup.header}: {setup.model} reached {CANARY}")

    ctx.step(
        "HeaderRoutedToModel",
        header_routed,
        needs=("HTTPRouteAccepted", "BackendEndpointsPublished"),
    )
    if state:
        ctx.evidence(
            "traffic.json", json.dumps(record, indent=2, default=str) + "\n", "application/json"
        )


def _keep(ctx: CheckContext, name: str, obj: KubeObject | None) -> None:
    ctx.evidence(
        name,
        yaml.safe_dump(obj, sort_keys=False) if obj else "# not found\n",
        "application/yaml",
    )
