"""disaggregated_inference: a disaggregated serving stack runs its prefill and decode
phases in separate pods, and one request is handled by both.

Owns: detecting the frameworks (llm-d, NVIDIA Dynamo, SGLang's RoleBasedGroup, plain vLLM
and SGLang prefill/decode deployments) by their CRDs, pod role labels and server
arguments; choosing the deployment to test and its endpoint; the request sent from a
client pod the check creates; reading the role pods' logs for the request's id; the
four sub-tests of ``TestDisaggregatedInference``. Must not import the Kubernetes client,
another requirement's module, or know anything about the lab.

Procedure (KAR-0041, "How We Might Test It"):

* ``FrameworkDetected`` — pods carrying a prefill/decode role (``llm-d.ai/role``,
  ``nvidia.com/dynamo-sub-component-type``, ``rolebasedgroup.workloads.x-k8s.io/role``,
  SGLang's ``--disaggregation-mode``, vLLM's ``kv_role`` of ``--kv-transfer-config``) or
  objects of a framework's CRDs (DynamoGraphDeployment, llm-d ModelService,
  RoleBasedGroup). Neither: MANUAL, saying what to attach.
* ``PrefillDecodeSeparated`` — the deployment tested has at least one Ready prefill pod
  and one Ready decode pod (a pod labelled for both phases counts for neither).
* ``RequestServed`` — an OpenAI completions request with a request id the check made up
  (header ``x-request-id``) sent to the endpoint from a client pod (``curl`` through
  ``exec``) gets a 2xx answer with choices. The endpoint: ``--disaggregated-endpoint``,
  else Dynamo's frontend Service, an HTTPRoute to an InferencePool (llm-d's gateway), or
  a Service selecting decode pods only. None: MANUAL.
* ``PhasesOnDistinctPods`` — that id appears in the log of a prefill pod and of a
  decode pod (different pods by construction: a pod has one role).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from kaic.checks.base import CheckContext, CheckOption, Permission, Resource, Subtest, check, shared
from kaic.checks.pods import restricted_pod
from kaic.checks.predicates import pod_phase, pod_ready
from kaic.cluster.api import ClusterAPI, KubeObject, labels_of, name_of, namespace_of
from kaic.errors import ClusterError, UsageError, WaitTimeoutError

PREFILL, DECODE, BOTH = "prefill", "decode", "both"

LLMD_ROLE = "llm-d.ai/role"
DYNAMO_ROLE = "nvidia.com/dynamo-sub-component-type"
DYNAMO_COMPONENT = "nvidia.com/dynamo-component-type"
RBG_ROLE = "rolebasedgroup.workloads.x-k8s.io/role"

LLMD = "llm-d"
DYNAMO = "NVIDIA Dynamo"
RBG = "SGLang RoleBasedGroup"
SGLANG = "SGLang"
VLLM = "vLLM"

CRD_KINDS: tuple[tuple[str, str, str], ...] = (
    # framework, API group, kind
    (DYNAMO, "nvidia.com", "DynamoGraphDeployment"),
    (DYNAMO, "nvidia.com", "DynamoComponentDeployment"),
    (LLMD, "llm-d.ai", "ModelService"),
    (RBG, "workloads.x-k8s.io", "RoleBasedGroup"),
)
INFERENCE_POOL_GROUPS = ("inference.networking.k8s.io", "inference.networking.x-k8s.io")
GATEWAY_API = "gateway.networking.k8s.io/v1"

CLIENT = "kaic-disagg-client"
CLIENT_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
"""agnhost: ``pause`` keeps the pod running, and the image has ``curl``."""
REQUEST_ID_HEADER = "x-request-id"
PROMPT = "Kubernetes AI conformance: say hello."
SERVICE_RE = re.compile(r"^(?:(?P<ns>[a-z0-9-]+)/)?(?P<name>[a-z0-9-]+)(?::(?P<port>[0-9]+))?$")


# -- detection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RolePod:
    """A model-server pod of a disaggregated deployment, and how its role is known."""

    namespace: str
    name: str
    framework: str
    role: str
    how: str
    """The label or argument that says the role, e.g. ``llm-d.ai/role=prefill``."""
    ready: bool
    phase: str
    node: str
    containers: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "pod": self.ref,
            "framework": self.framework,
            "role": self.role,
            "by": self.how,
            "ready": self.ready,
            "node": self.node,
        }


def _args(pod: KubeObject) -> list[list[str]]:
    """Each container's command and args, split into words (a ``sh -c`` line too)."""
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        words: list[str] = []
        for a in [*(c.get("command") or []), *(c.get("args") or [])]:
            words.extend(str(a).split())
        out.append(words)
    return out


def _flag(words: Sequence[str], flag: str) -> str | None:
    for i, w in enumerate(words):
        if w == flag and i + 1 < len(words):
            return words[i + 1]
        if w.startswith(flag + "="):
            return w.split("=", 1)[1]
    return None


def _label_role(value: str) -> str | None:
    v = value.strip().lower()
    if v in ("prefill-decode", "both", "aggregated", "agg"):
        return BOTH
    if "prefill" in v:
        return PREFILL
    if "decode" in v:
        return DECODE
    return None


def _kv_role(words: Sequence[str]) -> str | None:
    """vLLM's role from ``--kv-transfer-config``: producer = prefill, consumer = decode
    (``kv_both``, which NIXL uses on both sides, says nothing)."""
    raw = _flag(words, "--kv-transfer-config")
    if raw is None:
        return None
    m = re.search(r"""["']?kv_role["']?\s*:\s*["']?(kv_producer|kv_consumer)""", raw)
    if not m:
        return None
    return PREFILL if m.group(1) == "kv_producer" else DECODE


def role_of(pod: KubeObject) -> tuple[str, str, str] | None:
    """(framework, role, how) of a model-server pod, or None when nothing says a role."""
    labels = labels_of(pod)
    if LLMD_ROLE in labels:
        role = _label_role(labels[LLMD_ROLE])
        if role:
            return LLMD, role, f"{LLMD_ROLE}={labels[LLMD_ROLE]}"
    if DYNAMO_ROLE in labels:
        role = _label_role(labels[DYNAMO_ROLE])
        if role:
            return DYNAMO, role, f"{DYNAMO_ROLE}={labels[DYNAMO_ROLE]}"
    if labels.get(DYNAMO_COMPONENT) == "worker":
        return DYNAMO, BOTH, f"{DYNAMO_COMPONENT}=worker without {DYNAMO_ROLE} (aggregated)"
    if RBG_ROLE in labels:
        role = _label_role(labels[RBG_ROLE])
        if role:
            return RBG, role, f"{RBG_ROLE}={labels[RBG_ROLE]}"
    for words in _args(pod):
        mode = _flag(words, "--disaggregation-mode")
        if mode in (PREFILL, DECODE):
            return SGLANG, mode, f"--disaggregation-mode {mode}"
        kv = _kv_role(words)
        if kv:
            producer = "kv_producer" if kv == PREFILL else "kv_consumer"
            return VLLM, kv, f"--kv-transfer-config kv_role={producer}"
    return None


def role_pod(pod: KubeObject) -> RolePod | None:
    found = role_of(pod)
    if found is None or pod.get("metadata", {}).get("deletionTimestamp"):
        return None
    framework, role, how = found
    spec = pod.get("spec") or {}
    return RolePod(
        namespace=namespace_of(pod) or "",
        name=name_of(pod),
        framework=framework,
        role=role,
        how=how,
        ready=pod_ready(pod),
        phase=pod_phase(pod) or "unknown",
        node=str(spec.get("nodeName") or ""),
        containers=tuple(str(c.get("name")) for c in spec.get("containers") or []),
    )


@dataclass
class Group:
    """The pods of one framework in one namespace: one deployment under test."""

    framework: str
    namespace: str
    pods: list[RolePod] = field(default_factory=list)

    def of(self, role: str, ready: bool | None = None) -> list[RolePod]:
        return [p for p in self.pods if p.role == role and (ready is None or p.ready is ready)]

    @property
    def separated(self) -> bool:
        return bool(self.of(PREFILL, True)) and bool(self.of(DECODE, True))

    def describe(self) -> str:
        parts = []
        for role in (PREFILL, DECODE, BOTH):
            pods = self.of(role)
            if pods:
                parts.append(f"{role}: {', '.join(_pod_state(p) for p in pods)}")
        return f"{self.framework} in namespace {self.namespace} ({'; '.join(parts)})"


def _pod_state(p: RolePod) -> str:
    return p.name if p.ready else f"{p.name} (not Ready, phase {p.phase})"


def group_pods(pods: Iterable[KubeObject]) -> list[Group]:
    """Role pods grouped by framework and namespace, in a stable order."""
    groups: dict[tuple[str, str], Group] = {}
    for obj in pods:
        p = role_pod(obj)
        if p is None:
            continue
        groups.setdefault((p.framework, p.namespace), Group(p.framework, p.namespace)).pods.append(
            p
        )
    for g in groups.values():
        g.pods.sort(key=lambda p: (p.role, p.name))
    return [groups[k] for k in sorted(groups)]


def framework_objects(
    cluster: ClusterAPI, namespaces: Sequence[str] | None
) -> tuple[list[str], list[tuple[str, KubeObject]]]:
    """The framework CRDs served (``Kind.group``) and their objects in ``namespaces``."""
    served: list[str] = []
    objects: list[tuple[str, KubeObject]] = []
    versions = list(cluster.api_versions())
    for framework, group, kind in CRD_KINDS:
        for av in sorted((v for v in versions if v.startswith(group + "/")), reverse=True):
            if not any(r.kind == kind for r in cluster.api_resources(av)):
                continue
            served.append(f"{kind}.{group} ({av})")
            where: Sequence[str | None] = namespaces or [None]
            for ns in where:
                objects += [(framework, o) for o in cluster.list(av, kind, ns)]
            break
    return served, objects


def choose(groups: Sequence[Group], namespace: str | None) -> Group | None:
    """The deployment to test: in the endpoint's namespace when one is named; the first
    with Ready prefill and decode pods; else the first."""
    if namespace:
        groups = [g for g in groups if g.namespace == namespace] or list(groups)
    for g in groups:
        if g.separated:
            return g
    return groups[0] if groups else None


# -- the endpoint ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    url: str
    """``http://host:port`` (no trailing slash)."""
    how: str


def parse_endpoint(value: str) -> tuple[str, str | None, str, int | None]:
    """``("url", None, URL, None)`` or ``("service", ns, name, port)``; ``UsageError``
    for anything else."""
    v = value.strip()
    if v.startswith(("http://", "https://")):
        return "url", None, v.rstrip("/"), None
    m = SERVICE_RE.match(v)
    if not m:
        raise UsageError(
            f"--disaggregated-endpoint must be a URL (http://HOST:PORT) or a Service"
            f" ([NAMESPACE/]NAME[:PORT]), got {value!r}"
        )
    port = int(m.group("port")) if m.group("port") else None
    return "service", m.group("ns"), m.group("name"), port


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def service_url(svc: KubeObject, port: int | None) -> str | None:
    """``http://<ClusterIP>:<port>`` of a Service (its first port unless named)."""
    spec = svc.get("spec") or {}
    ip = str(spec.get("clusterIP") or "")
    ports = [int(p.get("port")) for p in spec.get("ports") or [] if p.get("port")]
    if not ip or ip == "None" or not ports:
        return None
    if port is not None and port not in ports:
        return None
    return f"http://{_host(ip)}:{port if port is not None else ports[0]}"


def _selects(svc: KubeObject, pod_labels: Mapping[str, str]) -> bool:
    sel = (svc.get("spec") or {}).get("selector") or {}
    return bool(sel) and all(pod_labels.get(k) == v for k, v in sel.items())


def discover_endpoint(
    cluster: ClusterAPI, group: Group, pods_by_name: Mapping[str, KubeObject]
) -> Endpoint | None:
    """Dynamo's frontend Service; a Gateway whose HTTPRoute sends to an InferencePool
    (llm-d); a Service that selects decode pods and no prefill pod."""
    ns = group.namespace
    services = cluster.list("v1", "Service", ns)
    if group.framework == DYNAMO:
        frontends = cluster.list("v1", "Pod", ns, label_selector=f"{DYNAMO_COMPONENT}=frontend")
        for svc in services:
            url = service_url(svc, None)
            if url and any(_selects(svc, labels_of(p)) for p in frontends):
                return Endpoint(url, f"Service {ns}/{name_of(svc)} of the Dynamo frontend")
    gw = _gateway_endpoint(cluster, ns)
    if gw is not None:
        return gw
    decode = [labels_of(pods_by_name[p.name]) for p in group.of(DECODE) if p.name in pods_by_name]
    prefill = [labels_of(pods_by_name[p.name]) for p in group.of(PREFILL) if p.name in pods_by_name]
    for svc in sorted(services, key=name_of):
        url = service_url(svc, None)
        if (
            url
            and any(_selects(svc, lb) for lb in decode)
            and not any(_selects(svc, lb) for lb in prefill)
        ):
            return Endpoint(url, f"Service {ns}/{name_of(svc)}, which selects the decode pods")
    return None


def _gateway_endpoint(cluster: ClusterAPI, ns: str) -> Endpoint | None:
    if not any(r.kind == "HTTPRoute" for r in cluster.api_resources(GATEWAY_API)):
        return None
    for route in sorted(cluster.list(GATEWAY_API, "HTTPRoute", ns), key=name_of):
        rules = (route.get("spec") or {}).get("rules") or []
        to_pool = any(
            b.get("kind") == "InferencePool" and b.get("group") in INFERENCE_POOL_GROUPS
            for r in rules
            for b in r.get("backendRefs") or []
        )
        if not to_pool:
            continue
        for parent in (route.get("spec") or {}).get("parentRefs") or []:
            gw = cluster.get(
                GATEWAY_API, "Gateway", str(parent.get("name")), parent.get("namespace") or ns
            )
            url = _gateway_url(gw, parent.get("sectionName"))
            if url:
                return Endpoint(
                    url,
                    f"Gateway {namespace_of(gw or {})}/{name_of(gw or {})} of HTTPRoute"
                    f" {ns}/{name_of(route)} to an InferencePool",
                )
    return None


def _gateway_url(gw: KubeObject | None, section: str | None) -> str | None:
    if not gw:
        return None
    listeners = [
        ls
        for ls in (gw.get("spec") or {}).get("listeners") or []
        if ls.get("protocol") == "HTTP" and (not section or ls.get("name") == section)
    ]
    addresses = [str(a.get("value")) for a in (gw.get("status") or {}).get("addresses") or []]
    if not listeners or not addresses or not addresses[0]:
        return None
    return f"http://{_host(addresses[0])}:{listeners[0].get('port')}"


# -- the request -------------------------------------------------------------------------------


# curl's exit status for "Failed to connect" (refused, no route).
CURL_COULD_NOT_CONNECT = 7
# Seconds a refused connection is asked again before it counts.
CONNECT_WAIT = 30.0


def curl_command(
    url: str, header: str, request_id: str, body: Mapping[str, Any] | None, timeout: int
) -> list[str]:
    """curl printing the body, a newline and the HTTP status (POST when ``body``)."""
    cmd = ["curl", "-s", "-S", "-m", str(timeout), "-w", "\n%{http_code}"]
    cmd += ["-H", f"{header}: {request_id}"]
    if body is not None:
        cmd += ["-X", "POST", "-H", "Content-Type: application/json", "--data", json.dumps(body)]
    return [*cmd, url]


def split_answer(stdout: str) -> tuple[int, str]:
    """(HTTP status, body) from ``curl_command``'s output (status 0: no answer)."""
    body, _, status = stdout.rstrip("\n").rpartition("\n")
    status = status.strip()
    return (int(status) if status.isdigit() else 0), body


def completion_ok(status: int, body: str) -> str | None:
    """Why the answer is not a successful completion, if it is not."""
    if not 200 <= status < 300:
        return f"HTTP {status or 'no answer'}: {body.strip()[:300]!r}"
    try:
        doc = json.loads(body)
    except ValueError:
        return f"HTTP {status} but the body is not JSON: {body.strip()[:200]!r}"
    if not isinstance(doc, dict) or not doc.get("choices"):
        return f"HTTP {status} but the answer has no choices: {body.strip()[:200]!r}"
    return None


def first_model(body: str) -> str | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    data = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("id"):
        return str(data[0]["id"])
    return None


def client_pod(namespace: str, image: str) -> KubeObject:
    return restricted_pod(
        CLIENT,
        namespace,
        {"name": "main", "image": image, "args": ["pause"]},
        labels={"app.kubernetes.io/name": CLIENT},
    )


def verdict(request_id: str, hits: Mapping[str, Sequence[RolePod]], group: Group) -> str | None:
    """Why the logs do not show the request on a prefill pod and a different decode pod
    (None: they do). ``hits``: the pods whose logs hold the id, by role."""
    prefill, decode, both = hits.get(PREFILL, ()), hits.get(DECODE, ()), hits.get(BOTH, ())
    if prefill and decode:
        distinct = [(p, d) for p in prefill for d in decode if p.ref != d.ref]
        return None if distinct else f"request id {request_id} found only in pod {prefill[0].ref}"

    def refs(pods: Sequence[RolePod]) -> str:
        return ", ".join(p.ref for p in pods)

    if both and not prefill and not decode:
        return (
            f"request id {request_id} found only in pod {refs(both)}"
            " (prefill and decode in one pod)"
        )
    if decode:
        others = refs(group.of(PREFILL)) or "none"
        return (
            f"request id {request_id} found only in decode pod {refs(decode)} (prefill and"
            f" decode in one pod): no prefill pod logged it (prefill pods: {others})"
        )
    if prefill:
        others = refs(group.of(DECODE)) or "none"
        return (
            f"request id {request_id} found only in prefill pod {refs(prefill)}: no decode pod"
            f" logged it (decode pods: {others})"
        )
    return (
        f"request id {request_id} appears in the logs of none of the pods"
        f" {refs(group.pods)}: the servers must log the request ids they handle (vLLM:"
        " --enable-log-requests; SGLang: --log-requests) for the phases to be traced"
    )


# -- the check -------------------------------------------------------------------------------


MANUAL_EVIDENCE = (
    "attach the framework's objects (pods with their role labels, e.g. kubectl get pods -A -L"
    f" {LLMD_ROLE},{DYNAMO_ROLE}) and one request whose id appears in the logs of a prefill"
    " pod and of a different decode pod"
)


@check(
    "disaggregated_inference",
    test="TestDisaggregatedInference",
    locks=shared(Resource.NODE_CAPACITY),
    options=(
        CheckOption(
            "disaggregated-endpoint",
            "OpenAI-compatible endpoint of the disaggregated deployment: a URL"
            " (http://HOST:PORT) or a Service ([NAMESPACE/]NAME[:PORT]); default: the"
            " framework's frontend Service, Gateway or decode Service",
            "",
        ),
        CheckOption(
            "disaggregated-namespace",
            "comma-separated namespaces to look for the framework in (default: all)",
            "",
        ),
        CheckOption(
            "disaggregated-model",
            "model name of the request (default: the first model of GET /v1/models)",
            "",
        ),
        CheckOption("disaggregated-path", "path of the completions request", "/v1/completions"),
        CheckOption(
            "disaggregated-request-id-header",
            "header carrying the request id the servers log",
            REQUEST_ID_HEADER,
        ),
        CheckOption(
            "disaggregated-client-image",
            "image of the client pod the request is sent from (args `pause`; needs curl)",
            CLIENT_IMAGE,
        ),
        CheckOption(
            "disaggregated-timeout",
            "seconds for the role pods and the client to be Ready, for the answer, and for"
            " the request id to reach the logs",
            "120",
            kind="integer",
        ),
    ),
    permissions=(
        Permission("list", "pods", namespaced=False),
        Permission("get", "pods", subresource="log", namespaced=False),
        Permission("list", "services", namespaced=False),
        Permission("create", "pods"),
        Permission("create", "pods", subresource="exec"),
    ),
    timeout_s=480.0,
)
def disaggregated_inference(ctx: CheckContext) -> None:
    """A disaggregated serving framework runs prefill and decode in separate Ready pods,
    serves a request, and that request's id appears in a prefill and a decode pod's log."""
    Run(ctx).run()


class Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.timeout = int(ctx.option("disaggregated-timeout") or 120)
        raw = (ctx.option("disaggregated-namespace") or "").strip()
        self.namespaces = [n.strip() for n in raw.split(",") if n.strip()] or None
        endpoint = (ctx.option("disaggregated-endpoint") or "").strip()
        self.endpoint_opt = parse_endpoint(endpoint) if endpoint else None
        self.header = (ctx.option("disaggregated-request-id-header") or REQUEST_ID_HEADER).strip()
        path = ctx.option("disaggregated-path") or "/v1/completions"
        self.path = path if path.startswith("/") else "/" + path
        self.request_id = f"kaic-{ctx.run_id}-{secrets.token_hex(4)}".lower()
        self.record: dict[str, Any] = {"request_id": self.request_id}
        self.group: Group | None = None
        self.pods: dict[str, KubeObject] = {}
        self.endpoint: Endpoint | None = None
        self.kept = False

    def list_pods(self) -> list[KubeObject]:
        if self.namespaces is None:
            return self.c.list("v1", "Pod")
        return [p for ns in self.namespaces for p in self.c.list("v1", "Pod", ns)]

    def run(self) -> None:
        ctx = self.ctx
        served, objects = framework_objects(self.c, self.namespaces)
        groups = group_pods(self.list_pods())
        self.record |= {
            "crds_served": served,
            "framework_objects": [
                f"{fw}: {o.get('kind')} {namespace_of(o)}/{name_of(o)}" for fw, o in objects
            ],
            "deployments": [
                {
                    "framework": g.framework,
                    "namespace": g.namespace,
                    "pods": [p.to_json() for p in g.pods],
                }
                for g in groups
            ],
        }
        if not groups and not objects:
            self.keep()
            where = (
                f"namespace(s) {', '.join(self.namespaces)}" if self.namespaces else "any namespace"
            )
            crds = f" (CRDs served: {', '.join(served)}, but no object of them)" if served else ""
            ctx.manual(
                f"no disaggregated serving framework found in {where}: no pod carries a prefill"
                f" or decode role ({LLMD_ROLE}, {DYNAMO_ROLE}, {RBG_ROLE}, SGLang"
                " --disaggregation-mode, vLLM --kv-transfer-config kv_role) and no"
                f" DynamoGraphDeployment, ModelService or RoleBasedGroup exists{crds};"
                f" deploy one, or {MANUAL_EVIDENCE}"
            )
        ns_hint = self.endpoint_opt[1] if self.endpoint_opt else None
        with ctx.subtest("FrameworkDetected") as t:
            for g in groups:
                t.log(g.describe())
            for fw, o in objects:
                t.log(f"{fw}: {o.get('kind')} {namespace_of(o)}/{name_of(o)}")
            if served:
                t.log(f"CRDs served: {', '.join(served)}")
        ctx.step("PrefillDecodeSeparated", lambda t: self.separated(t, groups, ns_hint, objects))
        if ctx.passed("PrefillDecodeSeparated"):
            self.find_endpoint()
            if self.endpoint is None:
                self.keep()
                assert self.group is not None
                ctx.manual(
                    f"{self.group.describe()} runs prefill and decode in separate pods, but no"
                    " endpoint to send a request to was found (no Dynamo frontend Service, no"
                    " HTTPRoute to an InferencePool with a Gateway address, no Service that"
                    " selects the decode pods only): name it with --disaggregated-endpoint,"
                    f" or {MANUAL_EVIDENCE}"
                )
        try:
            ctx.step("RequestServed", self.request, needs=("PrefillDecodeSeparated",))
            ctx.step("PhasesOnDistinctPods", self.phases, needs=("RequestServed",))
        finally:
            self.keep()

    # -- steps ----------------------------------------------------------------------------

    def separated(
        self,
        t: Subtest,
        groups: list[Group],
        ns_hint: str | None,
        objects: list[tuple[str, KubeObject]],
    ) -> None:
        if not groups:
            t.fail(
                "framework objects exist ("
                + "; ".join(f"{o.get('kind')} {namespace_of(o)}/{name_of(o)}" for _, o in objects)
                + ") but no pod carries a prefill or decode role"
            )
        group = choose(groups, ns_hint)
        assert group is not None
        waited = 0.0
        while (
            not group.separated
            and waited < self.timeout
            and (group.of(PREFILL) and group.of(DECODE))
        ):
            # Pods of both roles exist but are not Ready yet: give them the timeout.
            self.ctx.sleep(2)
            waited += 2
            fresh = group_pods(self.c.list("v1", "Pod", group.namespace))
            group = next((g for g in fresh if g.framework == group.framework), group)
        self.group = group
        self.pods = {name_of(p): p for p in self.c.list("v1", "Pod", group.namespace)}
        self.record["tested"] = {"framework": group.framework, "namespace": group.namespace}
        if not group.separated:
            t.fail(self.not_separated(group))
        t.log(
            f"{group.framework} in namespace {group.namespace}: prefill pod(s)"
            f" {', '.join(p.name for p in group.of(PREFILL, True))} and decode pod(s)"
            f" {', '.join(p.name for p in group.of(DECODE, True))} are Ready"
        )

    def not_separated(self, g: Group) -> str:
        where = f"{g.framework} in namespace {g.namespace}"
        both = g.of(BOTH)
        parts = []
        for role in (PREFILL, DECODE):
            pods = g.of(role)
            if not pods:
                parts.append(f"no {role} pod")
            elif not g.of(role, True):
                parts.append(
                    f"{role} pod(s) {', '.join(_pod_state(p) for p in pods)} not Ready after"
                    f" {self.timeout}s"
                )
        if both:
            parts.append(
                "pod(s) "
                + ", ".join(f"{p.ref} ({p.how})" for p in both)
                + " serve prefill and decode in one pod"
            )
        return f"{where}: " + "; ".join(parts)

    def find_endpoint(self) -> None:
        group = self.group
        assert group is not None
        if self.endpoint_opt is None:
            self.endpoint = discover_endpoint(self.c, group, self.pods)
        else:
            kind, ns, name, port = self.endpoint_opt
            if kind == "url":
                self.endpoint = Endpoint(name, "--disaggregated-endpoint")
            else:
                ns = ns or group.namespace
                svc = self.c.get("v1", "Service", name, ns)
                if svc is None:
                    raise UsageError(f"--disaggregated-endpoint: no Service {ns}/{name}")
                url = service_url(svc, port)
                if url is None:
                    raise UsageError(
                        f"--disaggregated-endpoint: Service {ns}/{name} has no cluster IP"
                        + (f" or no port {port}" if port else " or no port")
                    )
                self.endpoint = Endpoint(url, f"Service {ns}/{name} (--disaggregated-endpoint)")
        if self.endpoint:
            self.record["endpoint"] = {"url": self.endpoint.url, "found_as": self.endpoint.how}
            self.ctx.log(f"endpoint {self.endpoint.url}: {self.endpoint.how}")

    def send(self, url: str, body: Mapping[str, Any] | None) -> tuple[int, str]:
        """One request from the client pod. A refused connection is asked again every 2 s
        for up to ``CONNECT_WAIT`` s: a Service's endpoints reach the node's proxy some
        time after its pods are Ready."""
        command = curl_command(url, self.header, self.request_id, body, min(self.timeout, 60))
        limit, waited = min(self.timeout, CONNECT_WAIT), 0.0
        while True:
            r = self.c.exec(
                self.ctx.namespace,
                CLIENT,
                command,
                timeout=self.ctx.budget(min(self.timeout, 60) + 15),
            )
            if r.exit_code != CURL_COULD_NOT_CONNECT or waited >= limit:
                break
            if waited == 0:
                self.ctx.log(f"{url}: connection refused; asking again for up to {limit:g} s")
            self.ctx.sleep(2)
            waited += 2
        if r.exit_code != 0 and not r.stdout.strip():
            return 0, (r.stderr or f"curl exited {r.exit_code}").strip()
        return split_answer(r.stdout)

    def request(self, t: Subtest) -> None:
        assert self.endpoint is not None
        image = self.ctx.option("disaggregated-client-image") or CLIENT_IMAGE
        self.c.create(client_pod(self.ctx.namespace, image))
        try:
            self.c.wait_for(
                "v1",
                "Pod",
                CLIENT,
                self.ctx.namespace,
                pod_ready,
                timeout=self.ctx.budget(self.timeout),
                what=f"client pod {CLIENT} to be Ready",
            )
        except WaitTimeoutError:
            pod = self.c.get("v1", "Pod", CLIENT, self.ctx.namespace)
            t.error(f"client pod {CLIENT} (image {image}) is not Ready (phase {pod_phase(pod)})")
        base = self.endpoint.url
        model = (self.ctx.option("disaggregated-model") or "").strip()
        if not model:
            status, body = self.send(base + "/v1/models", None)
            found = first_model(body) if status == 200 else None
            if found is None:
                t.fail(
                    f"GET {base}/v1/models did not name a model (HTTP {status}:"
                    f" {body.strip()[:200]!r}); name it with --disaggregated-model"
                )
            model = found
        payload = {"model": model, "prompt": PROMPT, "max_tokens": 16, "temperature": 0}
        url = base + self.path
        status, body = self.send(url, payload)
        self.record["request"] = {
            "url": url,
            "headers": {self.header: self.request_id},
            # NOTE: the body as sent, one string: the evidence redaction blanks lines
            # whose key names a token, and max_tokens would be one.
            "body": json.dumps(payload),
        }
        self.record["response"] = {"status": status, "body": body[:4000]}
        why = completion_ok(status, body)
        t.require(why is None, f"POST {url} ({self.header}: {self.request_id}) failed: {why}")
        t.log(f"POST {url} with {self.header}: {self.request_id} (model {model}): HTTP {status}")

    def log_of(self, pod: RolePod, since: int) -> str:
        text = []
        for c in pod.containers or ("",):
            q = f"?container={c}&sinceSeconds={since}" if c else f"?sinceSeconds={since}"
            try:
                text.append(
                    self.c.raw_get(
                        f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/log{q}",
                        timeout=self.ctx.budget(30.0),
                    )
                )
            except ClusterError as e:
                self.ctx.log(f"could not read the log of {pod.ref} container {c}: {e}")
        return "\n".join(text)

    def phases(self, t: Subtest) -> None:
        group = self.group
        assert group is not None
        hits: dict[str, list[RolePod]] = {}
        lines: dict[str, list[str]] = {}
        waited = 0.0
        limit = min(self.timeout, 60)
        while True:
            since = int(self.ctx.clock.timeout_s - self.ctx.remaining()) + 120
            hits, lines = {}, {}
            for p in group.pods:
                found = [ln for ln in self.log_of(p, since).splitlines() if self.request_id in ln]
                if found:
                    hits.setdefault(p.role, []).append(p)
                    lines[p.ref] = found[:20]
            if (hits.get(PREFILL) and hits.get(DECODE)) or waited >= limit:
                break
            # NOTE: a server may write its log line after it answered; logs also travel.
            self.ctx.sleep(3)
            waited += 3
        self.record["log_lines"] = lines
        why = verdict(self.request_id, hits, group)
        if why:
            t.fail(why)
        p, d = hits[PREFILL][0], hits[DECODE][0]
        t.log(
            f"request id {self.request_id} found in prefill pod {p.ref} (node {p.node or '?'})"
            f" and decode pod {d.ref} (node {d.node or '?'})"
        )

    def keep(self) -> None:
        if self.kept:
            return
        self.kept = True
        self.ctx.evidence(
            "disaggregated.json", json.dumps(self.record, indent=2) + "\n", "application/json"
        )
        if self.group is not None:
            pods = [self.pods[p.name] for p in self.group.pods if p.name in self.pods]
            if pods:
                self.ctx.evidence(
                    "role-pods.yaml",
                    yaml.safe_dump_all(pods, sort_keys=False),
                    "application/yaml",
                )
