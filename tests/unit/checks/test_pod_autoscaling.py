"""pod_autoscaling against a fake cluster whose scheduler, Deployment controller, HPA
controller and metrics adapter are small simulations (the real ones are exercised in
tests/lab/)."""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kaic.checks import pod_autoscaling as pod_autoscaling_module
from kaic.checks.pod_autoscaling import identify_adapter, metric_text, set_metric_command
from kaic.cluster.api import ExecResult, KubeObject, condition
from kaic.errors import NotFoundError
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check


def run(requirement: str, cluster: FakeCluster, options: dict[str, str | None]) -> CheckResult:
    return run_fake_check(cluster, requirement, options=options, run_id="run1")


CM_PATH = "/apis/custom.metrics.k8s.io/v1beta2"


def api_service(
    name: str,
    available: bool = True,
    service: str = "custom-metrics-apiserver",
    namespace: str = "custom-metrics",
) -> KubeObject:
    version, _, group = name.partition(".")
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "version": version,
            "service": {"name": service, "namespace": namespace, "port": 443},
        },
        "status": {
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available else "False",
                    "reason": "Passed" if available else "FailedDiscoveryCheck",
                    "message": "all checks passed"
                    if available
                    else "failing or missing response from https://localhost:6444",
                }
            ]
        },
    }


class FakeHPAWorld(FakeCluster):
    """Deployment controller + metrics adapter + HPA controller."""

    def __init__(self, hpa_works: bool = True, adapter_serves: bool = True) -> None:
        super().__init__()
        self.serve("autoscaling/v2", ("horizontalpodautoscalers", "HorizontalPodAutoscaler", True))
        self.serve("apiregistration.k8s.io/v1", ("apiservices", "APIService", False))
        self.values: dict[str, float] = {}
        self.hpa_works = hpa_works
        self.adapter_serves = adapter_serves
        self.pod_seq = 0
        self.exec_handler = self._exec
        self.controllers += [self._deployments, self._hpa]

    def _exec(
        self, namespace: str, pod: str, command: Sequence[str], container: str | None
    ) -> ExecResult:
        m = re.search(r"\n(\S+) ([0-9.eE+-]+)\n", command[2])
        assert m, command
        self.values[pod] = float(m.group(2))
        return ExecResult("", "", 0)

    def raw_get(self, path: str, *, timeout: float = 30.0) -> str:
        if path == CM_PATH:
            return json.dumps(
                {
                    "kind": "APIResourceList",
                    "groupVersion": "custom.metrics.k8s.io/v1beta2",
                    "resources": [{"name": "pods/kaic_hpa_test_metric"}],
                }
            )
        if path.startswith(CM_PATH + "/namespaces/") and self.adapter_serves:
            ns = path.split("/")[5]
            items = [
                {
                    "describedObject": {
                        "kind": "Pod",
                        "name": p["metadata"]["name"],
                        "namespace": ns,
                    },
                    "metric": {"name": "kaic_hpa_test_metric"},
                    "value": f"{int(self.values[p['metadata']['name']] * 1000)}m",
                }
                for p in self.list("v1", "Pod", ns)
                if p["metadata"]["name"] in self.values
            ]
            return json.dumps({"kind": "MetricValueList", "items": items})
        raise NotFoundError(f"the server could not find {path}")

    def _deployments(self, fc: FakeCluster) -> None:
        for dep in self.list("apps/v1", "Deployment"):
            ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
            labels = dep["spec"]["template"]["metadata"]["labels"]
            pods = self.list("v1", "Pod", ns, label_selector=f"app.kubernetes.io/name={name}")
            want = dep["spec"]["replicas"]
            while len(pods) < want:
                self.pod_seq += 1
                pod = self.add(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": f"{name}-{self.pod_seq}",
                            "namespace": ns,
                            "labels": labels,
                        },
                        "spec": {**dep["spec"]["template"]["spec"], "nodeName": "gpu-0"},
                        "status": {"phase": "Running"},
                    }
                )
                pods.append(pod)
            for extra in pods[want:]:
                self.delete("v1", "Pod", extra["metadata"]["name"], ns)
                self.values.pop(extra["metadata"]["name"], None)
            self.patch(
                "apps/v1",
                "Deployment",
                name,
                {"status": {"readyReplicas": want, "replicas": want}},
                ns,
            )

    def _hpa(self, fc: FakeCluster) -> None:
        if not self.hpa_works:
            return
        for hpa in self.list("autoscaling/v2", "HorizontalPodAutoscaler"):
            ns, name = hpa["metadata"]["namespace"], hpa["metadata"]["name"]
            dep = self.get("apps/v1", "Deployment", name, ns)
            assert dep is not None
            pods = self.list("v1", "Pod", ns, label_selector=f"app.kubernetes.io/name={name}")
            vals = [
                self.values[p["metadata"]["name"]]
                for p in pods
                if p["metadata"]["name"] in self.values
            ]
            if not vals:
                continue
            target = float(hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"])
            avg = sum(vals) / len(vals)
            cur = dep["spec"]["replicas"]
            desired = max(
                hpa["spec"]["minReplicas"],
                min(hpa["spec"]["maxReplicas"], math.ceil(cur * avg / target)),
            )
            self.patch("apps/v1", "Deployment", name, {"spec": {"replicas": desired}}, ns)
            self.patch(
                "autoscaling/v2",
                "HorizontalPodAutoscaler",
                name,
                {
                    "status": {
                        "currentReplicas": cur,
                        "desiredReplicas": desired,
                        "currentMetrics": [
                            {
                                "type": "Pods",
                                "pods": {
                                    "metric": {"name": "kaic_hpa_test_metric"},
                                    "current": {"averageValue": f"{avg:g}"},
                                },
                            }
                        ],
                        "conditions": [
                            {
                                "type": "ScalingActive",
                                "status": "True",
                                "reason": "ValidMetricFound",
                                "message": "the HPA was able "
                                "to successfully calculate a replica count from pods metric "
                                "kaic_hpa_test_metric",
                            }
                        ],
                    }
                },
                ns,
            )


HPA_FAST = {
    "hpa-ready-timeout": "5",
    "hpa-metric-timeout": "5",
    "hpa-scale-up-timeout": "5",
    "hpa-scale-down-timeout": "5",
}


def hpa_world(**kw: Any) -> FakeHPAWorld:
    fc = FakeHPAWorld(**kw)
    fc.add(api_service("v1beta2.custom.metrics.k8s.io"))
    return fc


def test_pod_autoscaling_is_not_applicable_without_the_hpa_api() -> None:
    fc = hpa_world()
    fc.unserve("autoscaling/v2")
    result = run("pod_autoscaling", fc, HPA_FAST)
    assert result.outcome is Outcome.SKIP and result.not_applicable
    assert "autoscaling/v2" in result.reason


def test_pod_autoscaling_passes_when_the_hpa_scales_up_and_down() -> None:
    fc = hpa_world()
    result = run("pod_autoscaling", fc, HPA_FAST)
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.name for s in result.subresults] == [
        "CustomMetricsAPIAvailable",
        "AcceleratorWorkloadRunning",
        "CustomMetricServed",
        "ScalingActive",
        "ScaleUp",
        "ScaleDown",
    ]
    names = {e.name for e in result.evidence}
    assert {
        "metrics-apiservices.json",
        "hpa-status.json",
        "phases.json",
        "hpa-scaled-up.json",
    } <= names
    status = json.loads(next(e.content for e in result.evidence if e.name == "hpa-status.json"))
    assert status["conditions"][0]["reason"] == "ValidMetricFound"
    apis = json.loads(
        next(e.content for e in result.evidence if e.name == "metrics-apiservices.json")
    )
    assert apis[0]["adapter"] == "prometheus-adapter"
    # the workload's pods requested one accelerator each
    dep_calls = [c for c in fc.calls if c[0] == "create" and c[1][0] == "Deployment"]
    assert dep_calls
    assert not fc.list("apps/v1", "Deployment", "kaic-t")


def test_pod_autoscaling_fails_when_no_custom_metrics_apiservice_exists() -> None:
    fc = FakeHPAWorld()
    result = run("pod_autoscaling", fc, HPA_FAST)
    assert result.outcome is Outcome.FAIL
    assert "no APIService for custom.metrics.k8s.io" in result.reason


def test_pod_autoscaling_fails_when_the_apiservice_is_unavailable() -> None:
    fc = FakeHPAWorld()
    fc.add(api_service("v1beta2.custom.metrics.k8s.io", available=False))
    result = run("pod_autoscaling", fc, HPA_FAST)
    assert result.outcome is Outcome.FAIL
    assert "v1beta2.custom.metrics.k8s.io is not Available (FailedDiscoveryCheck" in result.reason
    assert (
        "its adapter, prometheus-adapter behind Service custom-metrics/custom-metrics-apiserver, "
        "does not serve it" in result.reason
    )


def test_pod_autoscaling_fails_when_the_metric_never_reaches_the_api() -> None:
    result = run(
        "pod_autoscaling", hpa_world(adapter_serves=False), {**HPA_FAST, "hpa-metric-timeout": "1"}
    )
    assert result.outcome is Outcome.FAIL
    assert "did not serve metric kaic_hpa_test_metric" in result.reason


def test_pod_autoscaling_fails_when_the_hpa_never_acts() -> None:
    result = run(
        "pod_autoscaling", hpa_world(hpa_works=False), {**HPA_FAST, "hpa-metric-timeout": "1"}
    )
    assert result.outcome is Outcome.FAIL
    assert "the HPA did not become ScalingActive within 1s" in result.reason


def test_a_failed_metric_exec_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pod_autoscaling_module, "SET_METRIC_RETRY_S", 0.0)
    fc = hpa_world()
    works = fc._exec
    calls: list[str] = []

    def flaky(namespace: str, pod: str, command: Sequence[str], container: str | None) -> Any:
        calls.append(pod)
        if len(calls) == 1:
            return ExecResult("", "mv: cannot stat 'x': No such file or directory", 1)
        return works(namespace, pod, command, container)

    fc.exec_handler = flaky
    result = run("pod_autoscaling", fc, HPA_FAST)
    assert result.outcome is Outcome.PASS, result.reason
    assert calls[0] == calls[1]


def test_pod_autoscaling_reports_the_last_exec_failure_as_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pod_autoscaling_module, "SET_METRIC_RETRY_S", 0.0)
    fc = hpa_world()
    fc.exec_handler = lambda *_a: ExecResult("", "sh: read-only file system", 2)
    result = run("pod_autoscaling", fc, HPA_FAST)
    assert result.outcome is Outcome.ERROR
    assert "failed 3 time(s); last: exit 2: sh: read-only file system" in result.reason


def test_the_metric_command_writes_prometheus_text_for_one_pod(tmp_path: Path) -> None:
    cmd = set_metric_command("ns1", "pod-a", "m", 30)
    assert cmd[:2] == ["sh", "-c"]
    subprocess.run(cmd, cwd=tmp_path, check=True)
    assert (tmp_path / "kaic-metrics/ns1/pod-a/metrics.txt").read_text() == metric_text("m", 30)
    assert [p.name for p in (tmp_path / "kaic-metrics/ns1/pod-a").iterdir()] == ["metrics.txt"]


def test_concurrent_metric_commands_in_one_pod_all_succeed(tmp_path: Path) -> None:
    # Two writers used to share one temporary file: the second `mv` found it gone.
    procs = [
        subprocess.Popen(set_metric_command("ns1", "pod-a", "m", v), cwd=tmp_path)
        for v in range(40)
    ]
    assert [p.wait() for p in procs] == [0] * 40
    text = (tmp_path / "kaic-metrics/ns1/pod-a/metrics.txt").read_text()
    assert text in {metric_text("m", v) for v in range(40)}


@pytest.mark.parametrize(
    ("service", "namespace", "expected"),
    [
        ("custom-metrics-apiserver", "custom-metrics", "prometheus-adapter"),
        ("prometheus-adapter", "monitoring", "prometheus-adapter"),
        ("keda-operator-metrics-apiserver", "keda", "KEDA"),
        ("custom-metrics-stackdriver-adapter", "custom-metrics", "Google Cloud"),
        ("my-adapter", "team", "other (team/my-adapter)"),
    ],
)
def test_the_adapter_is_named_from_its_service(service: str, namespace: str, expected: str) -> None:
    api = api_service("v1beta1.external.metrics.k8s.io", service=service, namespace=namespace)
    assert identify_adapter(api, None).startswith(expected)


def test_unavailable_reason_is_taken_from_the_available_condition() -> None:
    api = api_service("v1beta2.custom.metrics.k8s.io", available=False)
    assert (condition(api, "Available") or {})["reason"] == "FailedDiscoveryCheck"


def _changes(points: tuple[tuple[float, float], ...]) -> list[float]:
    out: list[float] = []
    for _, v in points:
        if not out or out[-1] != v:
            out.append(v)
    return out


def test_pod_autoscaling_samples_replicas_and_the_metric_against_its_target() -> None:
    result = run("pod_autoscaling", hpa_world(), HPA_FAST)
    assert result.outcome is Outcome.PASS, result.reason
    series = {(s.chart, s.name): s for s in result.series}
    desired = series[("replicas", "desiredReplicas")]
    assert _changes(desired.points) == [1.0, 2.0, 1.0]
    assert desired.unit == "pods"
    read = series[("custom metric", "average the HPA reads")]
    assert read.target == 10.0 and read.unit == "kaic_hpa_test_metric"
    assert max(v for _, v in read.points) > 10.0
    assert _changes(series[("custom metric", "value set in the pods")].points) == [30.0, 0.0]
    assert "samples.json" in {e.name for e in result.evidence}


def test_pod_autoscaling_samples_show_an_hpa_that_never_acts() -> None:
    result = run(
        "pod_autoscaling", hpa_world(hpa_works=False), {**HPA_FAST, "hpa-metric-timeout": "1"}
    )
    assert result.outcome is Outcome.FAIL
    # the HPA never reported replicas nor read the metric: nothing to chart, no samples
    assert result.series == ()
    assert "samples.json" not in {e.name for e in result.evidence}
