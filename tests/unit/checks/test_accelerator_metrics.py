"""accelerator_metrics against a fake cluster."""

from __future__ import annotations

import threading
from typing import Any

from kaic.checks import accelerator_metrics as m
from kaic.checks.base import CheckContext, run_check
from kaic.cluster.api import KubeObject
from kaic.errors import ClusterError
from kaic.lab.sims import dcgm
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, fake_check_context


def _ctx(
    fc: FakeCluster, req: str, options: dict[str, str | None] | None = None, timeout: float = 30.0
) -> CheckContext:
    return fake_check_context(
        fc, req, options=options, timeout=timeout, run_id="run1", namespace="kaic-test"
    )


def _sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


def _uuid(node: str, i: int) -> str:
    return f"GPU-{abs(hash((node, i))) % 10**8:08d}-0000-4000-8000-000000000000"


def _gpu_node(name: str, gpus: int) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {}},
        "status": {"allocatable": {"cpu": "96", "nvidia.com/gpu": str(gpus)}},
    }


def _exporter_pod(node: str) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"nvidia-dcgm-exporter-{node}",
            "namespace": "gpu-operator",
            "labels": {"app.kubernetes.io/name": "dcgm-exporter"},
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "exporter",
                    "image": "nvcr.io/nvidia/k8s/dcgm-exporter:4.2",
                    "ports": [{"name": "metrics", "containerPort": 9400}],
                }
            ],
        },
        "status": {"phase": "Running", "podIP": "127.64.0.9"},
    }


class GpuCluster(FakeCluster):
    """Two GPU nodes with a DCGM exporter pod each; ``text`` decides what it serves."""

    def __init__(
        self, nodes: int = 2, gpus: int = 4, *, dra: bool = False, exporters: bool = True
    ) -> None:
        super().__init__()
        self.serve("resource.k8s.io/v1", ("resourceslices", "ResourceSlice", False))
        self.gpus = gpus
        self.omit_memory: dict[str, set[int]] = {}
        self.scrapes: list[tuple[str, str, int, str]] = []
        self.add(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "cpu-0"},
                "status": {"allocatable": {"cpu": "8"}},
            }
        )
        for n in range(nodes):
            node = f"gpu-{n}"
            self.add(_gpu_node(node, 0 if dra else gpus))
            if dra:
                self.add(
                    {
                        "apiVersion": "resource.k8s.io/v1",
                        "kind": "ResourceSlice",
                        "metadata": {"name": f"{node}-gpu.nvidia.com"},
                        "spec": {
                            "driver": "gpu.nvidia.com",
                            "nodeName": node,
                            "devices": [
                                {
                                    "name": f"gpu-{i}",
                                    "attributes": {
                                        "type": {"string": "gpu"},
                                        "index": {"int": i},
                                        "uuid": {"string": _uuid(node, i)},
                                    },
                                }
                                for i in range(gpus)
                            ],
                        },
                    }
                )
            if exporters:
                self.add(_exporter_pod(node))
        self.http_handler = self._serve

    def text(self, node: str) -> str:
        gpus = [dcgm.Gpu(i, _uuid(node, i)) for i in range(self.gpus)]
        return dcgm.render(
            node,
            gpus,
            faults=dcgm.Faults(
                omit_memory=frozenset(f"{node}/{i}" for i in self.omit_memory.get(node, set()))
            ),
            now=100.0,
        )

    def _serve(self, ns: str, pod: str, port: int, path: str) -> str:
        self.scrapes.append((ns, pod, port, path))
        if port != 9400 or path != "/metrics":
            raise ClusterError(f"connection refused on {port}")
        return self.text(pod.removeprefix("nvidia-dcgm-exporter-"))


def test_accelerator_metrics_passes_with_a_dcgm_exporter_on_every_gpu_node() -> None:
    fc = GpuCluster()
    result = run_check(_ctx(fc, "accelerator_metrics"))
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.name for s in result.subresults] == [
        "MetricsEndpointReachable",
        "PerAcceleratorUtilizationMetric",
        "PerAcceleratorMemoryMetric",
        "OptionalMetrics",
        "OpenTelemetryNaming",
    ]
    assert _sub(result, "OptionalMetrics").outcome is Outcome.PASS
    # DCGM names are vendor names: the OpenTelemetry sub-result is a SKIP with the mapping
    otel = _sub(result, "OpenTelemetryNaming")
    assert otel.outcome is Outcome.SKIP and "hw.gpu.utilization" in otel.reason
    assert {(s[0], s[1], s[2]) for s in fc.scrapes} == {
        ("gpu-operator", "nvidia-dcgm-exporter-gpu-0", 9400),
        ("gpu-operator", "nvidia-dcgm-exporter-gpu-1", 9400),
    }
    table = next(e for e in result.evidence if e.name == "per-accelerator.md").content
    assert table.count("DCGM_FI_DEV_FB_USED") == 8  # 2 nodes x 4 GPUs, values in bytes


def test_accelerator_metrics_fails_naming_the_gpu_whose_memory_is_missing() -> None:
    fc = GpuCluster()
    fc.omit_memory["gpu-1"] = {2}
    result = run_check(_ctx(fc, "accelerator_metrics"))
    assert result.outcome is Outcome.FAIL
    mem = _sub(result, "PerAcceleratorMemoryMetric")
    assert mem.outcome is Outcome.FAIL
    assert "1 of 8 accelerators" in mem.reason and "gpu-1/nvidia.com/gpu#2" in mem.reason
    assert _sub(result, "PerAcceleratorUtilizationMetric").outcome is Outcome.PASS


def test_accelerator_metrics_names_the_missing_device_by_uuid_with_dra() -> None:
    fc = GpuCluster(dra=True)
    fc.omit_memory["gpu-0"] = {3}
    result = run_check(_ctx(fc, "accelerator_metrics"))
    mem = _sub(result, "PerAcceleratorMemoryMetric")
    assert mem.outcome is Outcome.FAIL
    assert _uuid("gpu-0", 3) in mem.reason and "gpu-0/gpu-3" in mem.reason


def test_accelerator_metrics_fails_when_a_gpu_node_has_no_exporter() -> None:
    fc = GpuCluster()
    fc.delete("v1", "Pod", "nvidia-dcgm-exporter-gpu-1", "gpu-operator")
    result = run_check(_ctx(fc, "accelerator_metrics"))
    assert result.outcome is Outcome.FAIL
    util = _sub(result, "PerAcceleratorUtilizationMetric")
    assert "4 of 8 accelerators" in util.reason and "gpu-1/" in util.reason


def test_accelerator_metrics_fails_when_no_exporter_exists() -> None:
    result = run_check(_ctx(GpuCluster(exporters=False), "accelerator_metrics"))
    assert result.outcome is Outcome.FAIL
    assert "no accelerator metrics endpoint found" in result.reason


def test_accelerator_metrics_fails_when_the_exporter_cannot_be_reached() -> None:
    fc = GpuCluster()

    def refuse(ns: str, pod: str, port: int, path: str) -> str:
        raise ClusterError("port-forward failed: connection refused")

    fc.http_handler = refuse
    result = run_check(_ctx(fc, "accelerator_metrics"))
    assert result.outcome is Outcome.FAIL
    assert "connection refused" in _sub(result, "MetricsEndpointReachable").reason


def test_accelerator_metrics_is_not_applicable_without_accelerators() -> None:
    result = run_check(_ctx(GpuCluster(nodes=0), "accelerator_metrics"))
    assert result.outcome is Outcome.SKIP and result.not_applicable


def test_accelerator_metrics_fails_when_series_have_no_device_label() -> None:
    fc = GpuCluster(nodes=1, gpus=2)
    fc.http_handler = lambda ns, pod, port, path: "gpu_util 50\nfb_memory_used 1000\n"
    result = run_check(_ctx(fc, "accelerator_metrics"))
    assert result.outcome is Outcome.FAIL
    assert "no device label" in _sub(result, "PerAcceleratorUtilizationMetric").reason


def test_accelerator_metrics_accepts_opentelemetry_names_and_normalises_units() -> None:
    fc = GpuCluster(nodes=1, gpus=2)
    text = "".join(
        f'hw_gpu_utilization_ratio{{hw_id="GPU-{i}",hw_type="gpu"}} 0.{i + 1}\n'
        f'hw_gpu_memory_usage_bytes{{hw_id="GPU-{i}"}} {1 << 30}\n'
        for i in range(2)
    )
    fc.http_handler = lambda ns, pod, port, path: text
    result = run_check(_ctx(fc, "accelerator_metrics"))
    assert result.outcome is Outcome.PASS, result.reason
    assert _sub(result, "OpenTelemetryNaming").outcome is Outcome.PASS
    assert _sub(result, "OptionalMetrics").outcome is Outcome.SKIP  # SHOULD part only
    table = next(e for e in result.evidence if e.name == "per-accelerator.md").content
    assert "1.074e+09" in table and "0.1 (hw_gpu_utilization_ratio)" in table


def test_accelerator_metrics_uses_a_given_pod_endpoint() -> None:
    fc = GpuCluster(nodes=1, exporters=False)
    fc.add(_exporter_pod("gpu-0") | {"metadata": {"name": "custom", "namespace": "mon"}})
    fc.http_handler = lambda ns, pod, port, path: (
        fc.text("gpu-0") if (ns, pod, port, path) == ("mon", "custom", 9500, "/x") else ""
    )
    result = run_check(_ctx(fc, "accelerator_metrics", {"metrics-endpoint": "mon/custom:9500/x"}))
    assert result.outcome is Outcome.PASS, result.reason


def test_accelerator_metrics_rejects_a_malformed_endpoint_option() -> None:
    result = run_check(
        _ctx(GpuCluster(nodes=1), "accelerator_metrics", {"metrics-endpoint": "not an endpoint"})
    )
    assert result.outcome is Outcome.ERROR
    assert "--metrics-endpoint 'not an endpoint'" in result.reason


def test_dcgm_counter_names_are_kept_as_exposed() -> None:
    text = dcgm.render("n", [dcgm.Gpu(0, "GPU-1")], now=1.0)
    names = {s.name for s in m.parse_samples(text)}
    assert "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL" in names
    assert "hw_gpu_io_bytes_total" in {
        s.name
        for s in m.parse_samples(
            '# TYPE hw_gpu_io_bytes counter\nhw_gpu_io_bytes_total{hw_id="a"} 1\n'
        )
    }


def test_metric_names_are_classified_with_units_and_lookalikes_are_ignored() -> None:
    from kaic.checks._metric_names import Concept, classify

    util = classify("DCGM_FI_DEV_GPU_UTIL")
    assert util is not None and util.concept is Concept.UTILIZATION and util.factor == 0.01
    mem = classify("DCGM_FI_DEV_FB_USED")
    assert mem is not None and mem.factor == 1024 * 1024
    gaudi = classify("habanalabs_power_mW")
    assert gaudi is not None and gaudi.concept is Concept.POWER and gaudi.factor == 1e-3
    assert classify("DCGM_FI_DEV_MEM_COPY_UTIL") is None
    assert classify("DCGM_FI_DEV_FB_FREE") is None
    other = classify("acme_npu_hbm_used_bytes")
    assert other is not None and other.concept is Concept.MEMORY_USED and other.vendor == "unknown"
    assert classify("acme_npu_memory_total_bytes") is None
    given = classify("acme_busy", utilization="acme_busy")
    assert given is not None and given.vendor == "given"


def test_accelerator_metrics_scrapes_a_given_url_and_attributes_series_by_hostname() -> None:
    fc = GpuCluster(exporters=False)
    servers = []
    try:
        for node in ("gpu-0", "gpu-1"):
            gpus = [dcgm.Gpu(i, _uuid(node, i)) for i in range(4)]
            srv = dcgm.make_server(node, gpus, "127.0.0.1", 0, None)
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            servers.append(srv)
        urls = ",".join(f"http://127.0.0.1:{s.server_address[1]}/metrics" for s in servers)
        result = run_check(_ctx(fc, "accelerator_metrics", {"metrics-endpoint": urls}))
        assert result.outcome is Outcome.PASS, result.reason
        # only one node's exporter: the other node's four GPUs are named as missing
        result = run_check(
            _ctx(fc, "accelerator_metrics", {"metrics-endpoint": urls.split(",")[0]})
        )
        util = _sub(result, "PerAcceleratorUtilizationMetric")
        assert util.outcome is Outcome.FAIL and "4 of 8" in util.reason and "gpu-1/" in util.reason
    finally:
        for s in servers:
            s.shutdown()


def test_accelerator_metrics_scrapes_every_pod_behind_a_given_service() -> None:
    fc = GpuCluster(exporters=False)
    for node in ("gpu-0", "gpu-1"):
        pod = _exporter_pod(node)
        pod["metadata"]["labels"] = {"app": "gpu-mon"}
        pod["metadata"]["name"] = f"mon-{node}"
        fc.add(pod)
    fc.add(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "gpu-mon", "namespace": "gpu-operator"},
            "spec": {
                "selector": {"app": "gpu-mon"},
                "ports": [{"name": "scrape", "port": 80, "targetPort": "metrics"}],
            },
        }
    )
    fc.http_handler = lambda ns, pod, port, path: (
        fc.text(pod.removeprefix("mon-")) if (port, path) == (9400, "/metrics") else ""
    )
    result = run_check(
        _ctx(fc, "accelerator_metrics", {"metrics-endpoint": "service/gpu-operator/gpu-mon:scrape"})
    )
    assert result.outcome is Outcome.PASS, result.reason


def test_accelerator_metrics_samples_many_exporters_and_says_which() -> None:
    fc = GpuCluster(nodes=10)
    # sorted by node name: gpu-0, gpu-1, gpu-2, ..., gpu-9; 3 spread over them
    result = run_check(_ctx(fc, "accelerator_metrics", {"metrics-max-endpoints": "3"}))
    assert result.outcome is Outcome.PASS, result.reason
    scraped = sorted(p for _, p, _, _ in fc.scrapes)
    assert scraped == [f"nvidia-dcgm-exporter-gpu-{i}" for i in (0, 4, 9)]
    sampled = next(e for e in result.evidence if e.name == "sampled.txt").content
    assert sampled.startswith("sampled 3 of 10 exporter endpoints")
    assert "the 12 on the sampled nodes" in sampled
    assert "gpu-4" in sampled and "gpu-5" not in sampled


def test_accelerator_metrics_sample_still_fails_on_a_sampled_gap_and_a_node_without_exporter() -> (
    None
):
    fc = GpuCluster(nodes=10)
    fc.omit_memory["gpu-4"] = {1}  # a sampled node
    result = run_check(_ctx(fc, "accelerator_metrics", {"metrics-max-endpoints": "3"}))
    mem = _sub(result, "PerAcceleratorMemoryMetric")
    assert mem.outcome is Outcome.FAIL and "gpu-4/nvidia.com/gpu#1" in mem.reason

    fc = GpuCluster(nodes=10)
    fc.delete("v1", "Pod", "nvidia-dcgm-exporter-gpu-6", "gpu-operator")
    result = run_check(_ctx(fc, "accelerator_metrics", {"metrics-max-endpoints": "3"}))
    util = _sub(result, "PerAcceleratorUtilizationMetric")
    assert util.outcome is Outcome.FAIL and "gpu-6/" in util.reason
