"""pod_autoscaling (TestAcceleratorHorizontalPodAutoscaling): a HorizontalPodAutoscaler
scales accelerator pods up and down on a custom metric served through
custom.metrics.k8s.io.

Owns: finding the custom metrics APIService and the adapter behind it, the test
workload (a Deployment of accelerator pods serving a metric that the check sets through
``exec``), the HPA and the procedure (served, ScalingActive, scale up, scale down), its
options and evidence. Must not import the Kubernetes client or know how the lab
simulates anything: it talks to the cluster only through ``ClusterAPI``.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from typing import Any

from kaic.checks.accelerators import ACCELERATORS, accelerator_taint_tolerations
from kaic.checks.base import (
    CheckContext,
    CheckOption,
    Permission,
    Resource,
    Subtest,
    check,
    exclusive,
)
from kaic.checks.predicates import pod_running, pod_terminating
from kaic.checks.waits import Phases, dump, poll
from kaic.cluster import parse_quantity
from kaic.cluster.api import KubeList, KubeObject, condition, has_condition, name_of
from kaic.errors import KaicError, UsageError, WaitTimeoutError

DEFAULT_RESOURCE = ACCELERATORS["nvidia"].extended_resource
METRIC_IMAGE = "docker.io/library/busybox:1.37"


REPLICAS_CHART = "replicas"
METRIC_CHART = "custom metric"
"""The report's phase charts of this check: the HPA's replicas, and its metric against
the target."""

CUSTOM_METRICS = ("v1beta2.custom.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io")
EXTERNAL_METRICS = ("v1beta1.external.metrics.k8s.io",)
METRIC_PORT = 8080
METRIC_ROOT = "kaic-metrics"
"""Directory, relative to the metric container's working directory, that holds
``<namespace>/<pod>/metrics.txt``; the container serves that directory over HTTP, so the
metric is ``/metrics.txt`` (busybox httpd sends ``text/plain`` for ``.txt`` only, and
Prometheus 3 rejects scrapes without a known Content-Type)."""
METRIC_FILE = "metrics.txt"
SET_METRIC_ATTEMPTS = 3
SET_METRIC_RETRY_S = 2.0

HPA_OPTIONS = (
    CheckOption(
        "hpa-custom-metric-name",
        "name of the per-pod custom metric the test workload exposes and the HPA scales on",
        "kaic_hpa_test_metric",
    ),
    CheckOption("hpa-resource", "extended resource each test pod requests (one)", DEFAULT_RESOURCE),
    CheckOption("hpa-target-value", "the HPA's target average value of the metric", "10"),
    CheckOption("hpa-max-replicas", "the HPA's maxReplicas (scale-up goes to this)", "2"),
    CheckOption(
        "hpa-image", "image of the test workload (needs sh and busybox httpd)", METRIC_IMAGE
    ),
    CheckOption("hpa-ready-timeout", "seconds for the test Deployment to be ready", "300"),
    CheckOption(
        "hpa-metric-timeout",
        "seconds for the metric to appear in custom.metrics.k8s.io and for the HPA to find it",
        "300",
    ),
    CheckOption("hpa-scale-up-timeout", "seconds for the HPA to scale up", "300"),
    CheckOption("hpa-scale-down-timeout", "seconds for the HPA to scale down", "600"),
    CheckOption(
        "hpa-scale-down-stabilization", "the HPA's scaleDown stabilizationWindowSeconds", "15"
    ),
)

_ADAPTERS = (
    ("prometheus-adapter", ("prometheus-adapter", "custom-metrics-apiserver")),
    ("KEDA", ("keda-metrics-apiserver", "keda-operator-metrics-apiserver", "keda")),
    ("Google Cloud (custom-metrics-stackdriver-adapter)", ("stackdriver",)),
    ("Azure (azure-k8s-metrics-adapter)", ("azure-k8s-metrics-adapter", "azure")),
    ("AWS CloudWatch adapter", ("cloudwatch",)),
    ("Datadog Cluster Agent", ("datadog",)),
)


def identify_adapter(api_service: KubeObject, service: KubeObject | None) -> str:
    """Which adapter serves an APIService, from its Service's name, namespace, labels."""
    svc_ref = api_service.get("spec", {}).get("service")
    if not svc_ref:
        return "kube-apiserver (local)"
    hay = " ".join(
        [
            str(svc_ref.get("namespace", "")),
            str(svc_ref.get("name", "")),
            *(
                f"{k}={v}"
                for k, v in ((service or {}).get("metadata", {}).get("labels") or {}).items()
            ),
            *(f"{k}={v}" for k, v in (api_service.get("metadata", {}).get("labels") or {}).items()),
        ]
    ).lower()
    for name, needles in _ADAPTERS:
        if any(n in hay for n in needles):
            return name
    return f"other ({svc_ref.get('namespace')}/{svc_ref.get('name')})"


def metric_text(metric: str, value: float) -> str:
    """The Prometheus text the test workload serves for one value."""
    return f"# TYPE {metric} gauge\n{metric} {value:g}\n"


def workload_command(metric: str) -> list[str]:
    """The test container's command: write the metric's starting value, then serve the
    pod's metric directory with busybox httpd (``POD_NAMESPACE``/``POD_NAME`` come from
    the downward API)."""
    d = f"{METRIC_ROOT}/$POD_NAMESPACE/$POD_NAME"
    start = shlex.quote(metric_text(metric, 0))
    return [
        "sh",
        "-c",
        f"mkdir -p {d} && printf %s {start} > {d}/{METRIC_FILE} && "
        f"exec httpd -f -p {METRIC_PORT} -h {d}",
    ]


def set_metric_command(namespace: str, pod: str, metric: str, value: float) -> list[str]:
    """The command run in a test pod (pods/exec) to change the metric it exposes.

    The new text goes to a temporary file named after the shell's pid and is renamed
    over the served file, so that a scrape never reads half a file and two writers
    (an exec retried while the first still runs) never move each other's file away.
    """
    d = shlex.quote(f"{METRIC_ROOT}/{namespace}/{pod}")
    text = shlex.quote(metric_text(metric, value))
    return [
        "sh",
        "-c",
        f"mkdir -p {d} && printf %s {text} > {d}/.{METRIC_FILE}.$$ && "
        f"mv -f {d}/.{METRIC_FILE}.$$ {d}/{METRIC_FILE}",
    ]


@check(
    "pod_autoscaling",
    test="TestAcceleratorHorizontalPodAutoscaling",
    locks=exclusive(Resource.ACCELERATORS),
    options=HPA_OPTIONS,
    permissions=(
        Permission("list", "apiservices", "apiregistration.k8s.io", namespaced=False),
        Permission("get", "services"),
        Permission("create", "deployments", "apps"),
        Permission("delete", "deployments", "apps"),
        Permission("create", "horizontalpodautoscalers", "autoscaling"),
        Permission("delete", "horizontalpodautoscalers", "autoscaling"),
        Permission("list", "pods"),
        Permission("create", "pods", subresource="exec"),
        Permission("get", "pods", "custom.metrics.k8s.io"),
        Permission("list", "events"),
    ),
    timeout_s=2400.0,
)
def pod_autoscaling(ctx: CheckContext) -> None:
    """A HorizontalPodAutoscaler scales a Deployment of accelerator pods up and down on
    a per-pod custom metric served through custom.metrics.k8s.io."""
    if not any(
        r.kind == "HorizontalPodAutoscaler" for r in ctx.cluster.api_resources("autoscaling/v2")
    ):
        ctx.not_applicable(
            "the platform does not serve HorizontalPodAutoscaler in "
            "autoscaling/v2, so it does not support the HPA"
        )
    _PodAutoscaling(ctx).run()


class _PodAutoscaling:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.ns = ctx.namespace
        self.metric = ctx.option("hpa-custom-metric-name") or "kaic_hpa_test_metric"
        self.resource = ctx.option("hpa-resource") or DEFAULT_RESOURCE
        self.target = ctx.float_option("hpa-target-value")
        self.max_replicas = int(ctx.float_option("hpa-max-replicas"))
        if self.target <= 0 or self.max_replicas < 2:
            raise UsageError("--hpa-target-value must be > 0 and --hpa-max-replicas >= 2")
        self.name = "kaic-hpa-workload"
        self.selector = f"app.kubernetes.io/name={self.name}"
        self.phases = Phases()
        self.version = ""
        self.high = self.target * 3
        self.low = 0.0
        self.group_version = ""
        self.last_metrics: KubeObject = {}
        self.last_error = ""

    def timeout(self, option: str) -> float:
        return self.ctx.budget(self.ctx.float_option(option))

    def run(self) -> None:
        ctx = self.ctx
        try:
            ctx.step("CustomMetricsAPIAvailable", self.detect)
            ctx.step(
                "AcceleratorWorkloadRunning", self.deploy, needs=("CustomMetricsAPIAvailable",)
            )
            ctx.step(
                "CustomMetricServed", self.metric_served, needs=("AcceleratorWorkloadRunning",)
            )
            ctx.step("ScalingActive", self.scaling_active, needs=("CustomMetricServed",))
            ctx.step("ScaleUp", self.scale_up, needs=("ScalingActive",))
            ctx.step("ScaleDown", self.scale_down, needs=("ScaleUp",))
        finally:
            self.final_evidence()
            self.cleanup()

    # -- detection -----------------------------------------------------------------
    def detect(self, t: Subtest) -> None:
        report: list[dict[str, Any]] = []
        usable: list[str] = []
        problems: list[str] = []
        for name in (*CUSTOM_METRICS, *EXTERNAL_METRICS):
            api = self.c.get("apiregistration.k8s.io/v1", "APIService", name)
            if api is None:
                report.append({"apiService": name, "present": False})
                continue
            svc_ref = api.get("spec", {}).get("service") or {}
            svc = None
            if svc_ref:
                try:
                    svc = self.c.get("v1", "Service", svc_ref["name"], svc_ref["namespace"])
                except KaicError:
                    svc = None
            avail = condition(api, "Available") or {}
            entry: dict[str, Any] = {
                "apiService": name,
                "present": True,
                "service": svc_ref or None,
                "adapter": identify_adapter(api, svc),
                "available": avail.get("status"),
                "reason": avail.get("reason"),
                "message": avail.get("message"),
            }
            if avail.get("status") == "True":
                group_version = f"{api['spec']['group']}/{api['spec']['version']}"
                try:
                    listing = json.loads(
                        self.c.raw_get(f"/apis/{group_version}", timeout=self.ctx.budget(30.0))
                    )
                    entry["metrics"] = sorted(
                        r.get("name", "") for r in listing.get("resources", [])
                    )
                except (KaicError, ValueError) as e:
                    entry["listError"] = str(e)
                if name in CUSTOM_METRICS and "listError" not in entry:
                    usable.append(name)
                elif name in CUSTOM_METRICS:
                    problems.append(
                        f"{name} is Available but listing its metrics failed: {entry['listError']}"
                    )
            elif name in CUSTOM_METRICS:
                problems.append(
                    f"APIService {name} is not Available "
                    f"({avail.get('reason') or 'no Available condition'}"
                    + (f": {avail['message']}" if avail.get("message") else "")
                    + ")"
                    + (
                        f"; its adapter, {entry['adapter']} behind Service "
                        f"{svc_ref.get('namespace')}/{svc_ref.get('name')}, does not serve it"
                        if svc_ref
                        else ""
                    )
                )
            report.append(entry)
        self.ctx.evidence("metrics-apiservices.json", dump(report), "application/json")
        for item in report:
            if item["present"]:
                t.log(
                    f"{item['apiService']}: Available={item['available']}, adapter: "
                    f"{item['adapter']}, {len(item.get('metrics', []))} metric(s) listed"
                )
        if not any(r["present"] for r in report if r["apiService"] in CUSTOM_METRICS):
            t.fail(
                "no APIService for custom.metrics.k8s.io (v1beta2 or v1beta1) is "
                "registered: the HPA cannot read custom metrics"
            )
        if not usable:
            t.fail("; ".join(problems))
        self.version = usable[0].split(".", 1)[0]
        self.group_version = f"custom.metrics.k8s.io/{self.version}"
        adapter = next(r["adapter"] for r in report if r["apiService"] == usable[0])
        t.log(f"using {self.group_version} served by {adapter}")

    # -- workload ------------------------------------------------------------------
    def deployment(self) -> KubeObject:
        labels = {"app.kubernetes.io/name": self.name}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": self.ns, "labels": dict(labels)},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": dict(labels),
                        # NOTE: the usual Prometheus pod-scrape annotations, so that a
                        # Prometheus + prometheus-adapter pipeline picks the metric up.
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(METRIC_PORT),
                            "prometheus.io/path": f"/{METRIC_FILE}",
                        },
                    },
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "tolerations": accelerator_taint_tolerations(self.resource),
                        "containers": [
                            {
                                "name": "metric",
                                "image": self.ctx.option("hpa-image"),
                                "workingDir": "/kaic",
                                "command": workload_command(self.metric),
                                "ports": [{"name": "metrics", "containerPort": METRIC_PORT}],
                                "env": [
                                    {
                                        "name": "POD_NAME",
                                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                    },
                                    {
                                        "name": "POD_NAMESPACE",
                                        "valueFrom": {
                                            "fieldRef": {"fieldPath": "metadata.namespace"}
                                        },
                                    },
                                ],
                                "resources": {
                                    "requests": {self.resource: "1"},
                                    "limits": {self.resource: "1"},
                                },
                            }
                        ],
                    },
                },
            },
        }

    def pods(self) -> KubeList:
        return [
            p
            for p in self.c.list("v1", "Pod", self.ns, label_selector=self.selector)
            if not pod_terminating(p)
        ]

    def wait_replicas(self, count: int, timeout: float, what: str) -> KubeList:
        """Wait until the Deployment has exactly ``count`` ready pods, then return them
        (each Running on a node, so its accelerator request was granted)."""
        deadline = time.monotonic() + timeout

        def ready(dep: KubeObject | None) -> bool:
            st = (dep or {}).get("status", {})
            return (
                int((dep or {}).get("spec", {}).get("replicas") or 0) == count
                and int(st.get("replicas") or 0) == count
                and int(st.get("readyReplicas") or 0) == count
            )

        self.c.wait_for(
            "apps/v1", "Deployment", self.name, self.ns, ready, timeout=timeout, what=what
        )
        left = max(deadline - time.monotonic(), 1.0)
        return self.c.wait_list(
            "v1",
            "Pod",
            self.ns,
            lambda ps: (
                len([p for p in ps if not pod_terminating(p)]) == count
                and all(
                    pod_running(p) and p["spec"].get("nodeName")
                    for p in ps
                    if not pod_terminating(p)
                )
            ),
            timeout=left,
            what=what,
            label_selector=self.selector,
        )

    def deploy(self, t: Subtest) -> None:
        self.c.create(self.deployment())
        timeout = self.timeout("hpa-ready-timeout")
        with self.phases.timed("workload-ready", timeout):
            try:
                pods = self.wait_replicas(1, timeout, "the test Deployment to be ready")
            except WaitTimeoutError:
                pods = self.pods()
                t.error(
                    f"the test Deployment (1 pod requesting 1 {self.resource}) was not "
                    f"ready within {timeout:.0f}s: {self.describe_pods(pods)}"
                )
        t.log(
            f"pod {name_of(pods[0])} runs on {pods[0]['spec']['nodeName']} with 1 {self.resource}"
        )

    def describe_pods(self, pods: KubeList) -> str:
        if not pods:
            return "no pods"
        out = []
        for p in pods:
            sched = condition(p, "PodScheduled") or {}
            out.append(
                f"{name_of(p)} {p.get('status', {}).get('phase', 'Pending')}"
                + (f" ({sched.get('message')})" if sched.get("status") == "False" else "")
            )
        return "; ".join(out)

    def set_metric(self, value: float, pods: KubeList | None = None) -> None:
        for pod in pods if pods is not None else self.pods():
            if not pod_running(pod):
                continue
            self.set_pod_metric(name_of(pod), value)
            self.ctx.log(f"set {self.metric}={value:g} in pod {name_of(pod)}")

    def set_pod_metric(self, pod: str, value: float) -> None:
        """Run the (idempotent) metric command in ``pod``; an exec that fails, e.g. while
        the container restarts, is tried again, up to ``SET_METRIC_ATTEMPTS`` times."""
        command = set_metric_command(self.ns, pod, self.metric, value)
        failures: list[str] = []
        for attempt in range(SET_METRIC_ATTEMPTS):
            if attempt:
                self.ctx.sleep(SET_METRIC_RETRY_S)
            try:
                res = self.c.exec(
                    self.ns, pod, command, container="metric", timeout=self.ctx.budget(60.0)
                )
            except WaitTimeoutError:
                raise
            except KaicError as e:
                failures.append(str(e)[:300])
                continue
            if res.exit_code == 0:
                return
            failures.append(f"exit {res.exit_code}: {res.stderr.strip()[:200] or 'no stderr'}")
        raise _ExecFailed(
            f"setting the metric in pod {pod} failed {len(failures)} time(s); last: {failures[-1]}"
        )

    def metric_values(self) -> dict[str, float]:
        path = (
            f"/apis/{self.group_version}/namespaces/{self.ns}/pods/*/{self.metric}"
            f"?labelSelector={self.selector.replace('/', '%2F')}"
        )
        body = json.loads(self.c.raw_get(path, timeout=self.ctx.budget(30.0)))
        self.last_metrics = body
        out: dict[str, float] = {}
        for item in body.get("items", []):
            name = item.get("describedObject", {}).get("name", "")
            out[name] = float(parse_quantity(item.get("value", "0")))
        return out

    def poll(self, timeout: float, probe: Callable[[], bool], interval: float = 2.0) -> bool:
        """Poll ``probe`` (an aggregated API cannot be watched) until it holds."""

        def remember(e: Exception) -> None:
            self.last_error = str(e)

        return poll(
            self.ctx,
            timeout,
            probe,
            interval=interval,
            on_error=remember,
            errors=(KaicError, ValueError),
        )

    def metric_served(self, t: Subtest) -> None:
        pods = self.pods()
        try:
            self.set_metric(self.low, pods)
        except _ExecFailed as e:
            t.error(str(e))
        timeout = self.timeout("hpa-metric-timeout")
        names = {name_of(p) for p in pods}
        with self.phases.timed("metric-served", timeout):
            if not self.poll(timeout, lambda: names <= set(self.metric_values())):
                t.fail(
                    f"{self.group_version} did not serve metric {self.metric} for the "
                    f"test pods within {timeout:.0f}s"
                    + (f" (last error: {self.last_error})" if self.last_error else "")
                )
        self.ctx.evidence("metric-values-initial.json", dump(self.last_metrics), "application/json")
        t.log(f"{self.group_version} serves {self.metric} for {', '.join(sorted(names))}")

    # -- HPA -----------------------------------------------------------------------
    def hpa(self) -> KubeObject:
        window = int(self.ctx.float_option("hpa-scale-down-stabilization"))
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": self.name, "namespace": self.ns},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": self.name,
                },
                "minReplicas": 1,
                "maxReplicas": self.max_replicas,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": self.metric},
                            "target": {"type": "AverageValue", "averageValue": f"{self.target:g}"},
                        },
                    }
                ],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0},
                    "scaleDown": {"stabilizationWindowSeconds": window},
                },
            },
        }

    def get_hpa(self) -> KubeObject:
        return self.c.get("autoscaling/v2", "HorizontalPodAutoscaler", self.name, self.ns) or {}

    def hpa_summary(self, hpa: KubeObject) -> str:
        st = hpa.get("status", {})
        conds = ", ".join(
            f"{c.get('type')}={c.get('status')}/{c.get('reason')}"
            for c in st.get("conditions") or []
        )
        return (
            f"currentReplicas={st.get('currentReplicas')}, "
            f"desiredReplicas={st.get('desiredReplicas')}, conditions: {conds or 'none'}"
        )

    def scaling_active(self, t: Subtest) -> None:
        self.c.create(self.hpa())
        timeout = self.timeout("hpa-metric-timeout")
        with self.phases.timed("scaling-active", timeout):
            try:
                hpa = self.c.wait_for(
                    "autoscaling/v2",
                    "HorizontalPodAutoscaler",
                    self.name,
                    self.ns,
                    lambda h: has_condition(self.observed(h), "ScalingActive"),
                    timeout=timeout,
                    what="the HPA to be ScalingActive",
                )
            except WaitTimeoutError:
                hpa = self.get_hpa()
                c = condition(hpa, "ScalingActive") or {}
                t.fail(
                    f"the HPA did not become ScalingActive within {timeout:.0f}s"
                    + (f": {c.get('reason')}: {c.get('message')}" if c else "")
                )
        c = condition(hpa, "ScalingActive") or {}
        self.ctx.evidence("hpa-active.json", dump(hpa), "application/json")
        t.log(f"ScalingActive=True ({c.get('reason')}): {c.get('message', '')}")

    def scale_up(self, t: Subtest) -> None:
        try:
            self.set_metric(self.high)
        except _ExecFailed as e:
            t.error(str(e))
        self.sample_set(self.high)
        timeout = self.timeout("hpa-scale-up-timeout")
        want = self.max_replicas
        deadline = time.monotonic() + timeout
        with self.phases.timed("scale-up", timeout):
            try:
                self.c.wait_for(
                    "autoscaling/v2",
                    "HorizontalPodAutoscaler",
                    self.name,
                    self.ns,
                    lambda h: (
                        int((self.observed(h) or {}).get("status", {}).get("desiredReplicas") or 0)
                        >= want
                    ),
                    timeout=timeout,
                    what="the HPA to scale up",
                )
            except WaitTimeoutError:
                t.fail(
                    f"the HPA did not scale up within {timeout:.0f}s after the metric "
                    f"rose to {self.high:g} (target {self.target:g}): "
                    f"{self.hpa_summary(self.get_hpa())}"
                )
            rest = max(self.ctx.budget(deadline - time.monotonic()), 1.0)
            try:
                pods = self.wait_replicas(want, rest, f"{want} test pods to run")
            except WaitTimeoutError:
                t.fail(
                    f"the HPA asked for {want} replicas but they did not all run on "
                    f"accelerator nodes within {timeout:.0f}s: "
                    f"{self.describe_pods(self.pods())}"
                )
        self.ctx.evidence("hpa-scaled-up.json", dump(self.get_hpa()), "application/json")
        t.log(
            f"scaled up to {want}: "
            + ", ".join(f"{name_of(p)} on {p['spec']['nodeName']}" for p in pods)
        )

    def scale_down(self, t: Subtest) -> None:
        try:
            self.set_metric(self.low)
        except _ExecFailed as e:
            t.error(str(e))
        self.sample_set(self.low)
        timeout = self.timeout("hpa-scale-down-timeout")
        deadline = time.monotonic() + timeout
        with self.phases.timed("scale-down", timeout):
            try:
                self.c.wait_for(
                    "autoscaling/v2",
                    "HorizontalPodAutoscaler",
                    self.name,
                    self.ns,
                    lambda h: (
                        int((self.observed(h) or {}).get("status", {}).get("desiredReplicas") or 0)
                        == 1
                    ),
                    timeout=timeout,
                    what="the HPA to scale down",
                )
                self.wait_replicas(
                    1,
                    max(self.ctx.budget(deadline - time.monotonic()), 1.0),
                    "the test Deployment to shrink to 1 pod",
                )
            except WaitTimeoutError:
                t.fail(
                    f"the HPA did not scale down to 1 within {timeout:.0f}s after the "
                    f"metric fell to {self.low:g}: {self.hpa_summary(self.get_hpa())}"
                )
        t.log("scaled down to 1")

    # -- samples for the report's phase charts ------------------------------------
    def observed(self, hpa: KubeObject | None) -> KubeObject | None:
        """``hpa`` as a wait just saw it; its replicas and its reading of the metric are
        kept as samples (charts ``replicas`` and ``custom metric``)."""
        st = (hpa or {}).get("status") or {}
        for key in ("currentReplicas", "desiredReplicas"):
            if isinstance(st.get(key), int):
                self.ctx.sample(REPLICAS_CHART, key, st[key], unit="pods")
        for m in st.get("currentMetrics") or []:
            pods = (m or {}).get("pods") or {}
            if (pods.get("metric") or {}).get("name") != self.metric:
                continue
            try:
                value = float(parse_quantity(str((pods.get("current") or {})["averageValue"])))
            except (KeyError, ValueError, ArithmeticError):
                continue
            self.ctx.sample(
                METRIC_CHART,
                "average the HPA reads",
                value,
                unit=self.metric,
                target=self.target,
            )
        return hpa

    def sample_set(self, value: float) -> None:
        """The value the check just set in every test pod (chart ``custom metric``)."""
        self.ctx.sample(METRIC_CHART, "value set in the pods", value, unit=self.metric)

    # -- evidence and cleanup ------------------------------------------------------
    def final_evidence(self) -> None:
        self.phases.save(self.ctx)
        try:
            hpa = self.get_hpa()
            if hpa:
                st = hpa.get("status", {})
                self.ctx.evidence(
                    "hpa-status.json",
                    dump(
                        {
                            "conditions": st.get("conditions"),
                            "currentMetrics": st.get("currentMetrics"),
                            "currentReplicas": st.get("currentReplicas"),
                            "desiredReplicas": st.get("desiredReplicas"),
                            "lastScaleTime": st.get("lastScaleTime"),
                        }
                    ),
                    "application/json",
                )
                events = self.c.events(self.ns, self.name)
                self.ctx.evidence(
                    "hpa-events.json",
                    dump(
                        [
                            {k: e.get(k) for k in ("type", "reason", "message", "count")}
                            for e in events
                            if e.get("involvedObject", {}).get("kind")
                            in (None, "HorizontalPodAutoscaler")
                        ]
                    ),
                    "application/json",
                )
        except KaicError as e:
            self.ctx.log(f"collecting HPA evidence: {e}")

    def cleanup(self) -> None:
        for api_version, kind in (
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("apps/v1", "Deployment"),
        ):
            try:
                if self.version:
                    self.c.delete(api_version, kind, self.name, self.ns)
            except KaicError as e:
                self.ctx.log(f"cleanup of {kind} {self.name}: {e}")


class _ExecFailed(Exception):
    """Setting the metric inside a test pod failed."""


__all__ = [
    "identify_adapter",
    "metric_text",
    "pod_autoscaling",
    "set_metric_command",
    "workload_command",
]
