"""The lab's custom-metrics adapter answers discovery and per-pod values from the
Prometheus text that pods wrote (no server, no apiserver: pods are listed by a stub)."""

from __future__ import annotations

from pathlib import Path

from kaic.checks.pod_autoscaling import metric_text
from kaic.lab.sims.metrics_adapter import Adapter, read_metrics


class StubAdapter(Adapter):
    def __init__(self, root: Path, running: list[str]) -> None:
        self.root = root
        self.running = running
        self.selectors: list[str] = []

    def pods(self, namespace: str, selector: str) -> list[str]:
        self.selectors.append(selector)
        return self.running


def write(root: Path, ns: str, pod: str, text: str) -> None:
    d = root / "kaic-metrics" / ns / pod
    d.mkdir(parents=True)
    (d / "metrics").write_text(text)


def test_values_come_from_the_text_each_pod_wrote(tmp_path: Path) -> None:
    write(tmp_path, "ns", "a", metric_text("m", 30))
    write(tmp_path, "ns", "b", metric_text("m", 0.5))
    write(tmp_path, "ns", "gone", metric_text("m", 99))
    adapter = StubAdapter(tmp_path, ["a", "b", "c"])
    code, body = adapter.answer(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/%2A/m", {"labelSelector": ["app=x"]}
    )
    assert code == 200 and adapter.selectors == ["app=x"]
    assert [
        (i["describedObject"]["name"], i["value"], i["metric"]["name"]) for i in body["items"]
    ] == [("a", "30000m", "m"), ("b", "500m", "m")]


def test_v1beta1_uses_the_flat_metric_name(tmp_path: Path) -> None:
    write(tmp_path, "ns", "a", metric_text("m", 1))
    code, body = StubAdapter(tmp_path, ["a"]).answer(
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/ns/pods/a/m", {}
    )
    assert code == 200 and body["items"][0]["metricName"] == "m"


def test_discovery_lists_every_metric_written(tmp_path: Path) -> None:
    write(tmp_path, "ns", "a", metric_text("m1", 1) + metric_text("m2", 2))
    code, body = StubAdapter(tmp_path, []).answer("/apis/custom.metrics.k8s.io/v1beta2", {})
    assert code == 200 and body["kind"] == "APIResourceList"
    assert [r["name"] for r in body["resources"]] == ["pods/m1", "pods/m2"]


def test_unknown_paths_and_missing_values_are_404(tmp_path: Path) -> None:
    adapter = StubAdapter(tmp_path, [])
    assert adapter.answer("/apis/metrics.k8s.io/v1beta1", {})[0] == 404
    assert (
        adapter.answer("/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/services/s/m", {})[0]
        == 404
    )
    assert (
        adapter.answer("/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/p/m", {})[0] == 404
    )


def test_garbage_text_yields_no_values(tmp_path: Path) -> None:
    write(tmp_path, "ns", "a", "this is { not prometheus")
    assert read_metrics(tmp_path, "ns", "a") == {}
