"""The lab's simulated DCGM exporter text, the porter stand-in and the Prometheus config."""

from __future__ import annotations

import ipaddress
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kaic.lab.components import prometheus
from kaic.lab.network import LabNet, Layout
from kaic.lab.sims import dcgm, porter

GPUS = [dcgm.Gpu(i, f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd") for i in range(4)]


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    # NOTE: the parser adds ``_total`` to counter samples; report names as exposed.
    return [
        (
            fam.name if fam.type == "counter" and f"{fam.name}_total" not in text else s.name,
            dict(s.labels),
            s.value,
        )
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def test_dcgm_text_parses_and_has_every_field_for_every_gpu() -> None:
    samples = _samples(dcgm.render("kaic-gpu-0", GPUS, now=1000.0))
    names = {n for n, _, _ in samples}
    for field in (
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    ):
        assert field in names
        gpus = {lbl["gpu"] for n, lbl, _ in samples if n == field}
        assert gpus == {"0", "1", "2", "3"}


def test_dcgm_labels_are_those_of_dcgm_exporter() -> None:
    samples = _samples(dcgm.render("kaic-gpu-1", GPUS[:1], now=0.0))
    _, labels, _ = next(s for s in samples if s[0] == "DCGM_FI_DEV_GPU_UTIL")
    assert labels["gpu"] == "0"
    assert labels["UUID"] == GPUS[0].uuid
    assert labels["device"] == "nvidia0"
    assert labels["Hostname"] == "kaic-gpu-1"
    assert labels["modelName"] == "NVIDIA H100 80GB HBM3"
    assert re.fullmatch(r"[0-9A-F]{8}:[0-9A-F]{2}:00\.0", labels["pci_bus_id"])


def test_dcgm_memory_adds_up_to_the_card_and_utilization_is_a_percentage() -> None:
    for now in (0.0, 17.0, 123.5):
        samples = _samples(dcgm.render("n", GPUS, now=now))
        for g in GPUS:
            get = {n: v for n, lbl, v in samples if lbl["gpu"] == str(g.index)}
            assert (
                get["DCGM_FI_DEV_FB_USED"]
                + get["DCGM_FI_DEV_FB_FREE"]
                + get["DCGM_FI_DEV_FB_RESERVED"]
                == dcgm.FB_TOTAL_MIB
            )
            assert 0 <= get["DCGM_FI_DEV_GPU_UTIL"] <= 100


def test_dcgm_fault_omits_memory_of_exactly_one_gpu(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    dcgm.write_faults(faults, omit_memory=["n/2"])
    samples = _samples(dcgm.render("n", GPUS, faults=dcgm.Faults.load(faults)))
    used = {lbl["gpu"] for n, lbl, _ in samples if n == "DCGM_FI_DEV_FB_USED"}
    util = {lbl["gpu"] for n, lbl, _ in samples if n == "DCGM_FI_DEV_GPU_UTIL"}
    assert used == {"0", "1", "3"}
    assert util == {"0", "1", "2", "3"}
    other = _samples(dcgm.render("m", GPUS, faults=dcgm.Faults.load(faults)))
    assert {lbl["gpu"] for n, lbl, _ in other if n == "DCGM_FI_DEV_FB_USED"} == {"0", "1", "2", "3"}
    dcgm.write_faults(faults)
    assert dcgm.Faults.load(faults) == dcgm.Faults()


def test_dcgm_server_serves_on_loopback_only() -> None:
    with pytest.raises(SystemExit, match="non-loopback"):
        dcgm.serve("n", GPUS, "0.0.0.0", 0, None)


def _free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def _get(url: str) -> bytes | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as r:
            body: bytes = r.read()
            return body
    except OSError:
        return None


def _exporter_pod(uid: str, node: str, ip: str | None, **md: object) -> dict[str, object]:
    return {
        "metadata": {"uid": uid, "namespace": "gpu-operator", "name": f"dcgm-{uid}", **md},
        "spec": {"nodeName": node},
        "status": {"phase": "Running", **({"podIP": ip} if ip else {})},
    }


class _Api:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []

    def request(self, method: str, path: str, body: object = None, **_: object) -> None:
        self.calls.append((method, path, body))


def test_dcgm_exporters_listen_at_each_pod_ip_from_one_thread_and_stop_when_it_goes() -> None:
    import threading
    import time

    from kaic.lab.sims import http as sim_http

    port = _free_port()
    listeners = sim_http.Listeners()
    api = _Api()
    # NOTE: the lab's pod range exists only inside its namespace; loopback stands in here.
    ex = dcgm.Exporters(
        [dcgm.NodeExporter("kaic-gpu-0", tuple(GPUS[:2])), dcgm.NodeExporter("kaic-gpu-1", ())],
        ipaddress.IPv4Network("127.0.0.0/8"),
        listeners,
        api=api,  # type: ignore[arg-type]
        port=port,
    )
    stop = threading.Event()
    thread = threading.Thread(target=listeners.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        ex.pod(_exporter_pod("a", "kaic-gpu-0", None))  # no IP yet: nothing
        ex.pod(_exporter_pod("b", "kaic-cpu-0", "127.0.0.3"))  # no GPUs there: nothing
        ex.pod(_exporter_pod("c", "kaic-gpu-1", "10.0.0.5"))  # outside the pod range
        assert ex.served == {} and api.calls == []
        ex.pod(_exporter_pod("a", "kaic-gpu-0", "127.0.0.2"))
        assert set(ex.served) == {"a"}
        body = None
        for _ in range(50):
            body = _get(f"http://127.0.0.2:{port}/metrics")
            if body:
                break
            time.sleep(0.1)
        assert body is not None and b'Hostname="kaic-gpu-0"' in body
        assert body.count(b"DCGM_FI_DEV_GPU_UTIL{") == 2
        ((method, path, pf),) = api.calls
        assert method == "POST" and path.endswith("/namespaces/gpu-operator/portforwards")
        assert pf["metadata"]["name"] == "dcgm-a"  # type: ignore[index]
        assert pf["metadata"]["ownerReferences"][0]["uid"] == "a"  # type: ignore[index]
        fwd = pf["spec"]["forwards"][0]  # type: ignore[index]
        assert fwd == {"ports": [9400], "target": {"address": "127.0.0.2", "port": port}}
        ex.pod(_exporter_pod("a", "kaic-gpu-0", "127.0.0.2"))  # again: nothing new
        assert len(api.calls) == 1
        ex.pod(_exporter_pod("a", "kaic-gpu-0", "127.0.0.2", deletionTimestamp="now"))
        assert ex.served == {}
        for _ in range(50):
            if _get(f"http://127.0.0.2:{port}/metrics") is None:
                break
            time.sleep(0.1)
        assert _get(f"http://127.0.0.2:{port}/metrics") is None
        # a recreated pod that gets the recycled IP is served again; a list without it
        # ends it
        ex.sync([_exporter_pod("d", "kaic-gpu-0", "127.0.0.2")])
        assert set(ex.served) == {"d"} and len(api.calls) == 2
        ex.sync([])
        assert ex.served == {}
    finally:
        stop.set()
        thread.join(timeout=5)


def test_dcgm_exporter_port_forward_targets_the_pod_ip() -> None:
    pod = _exporter_pod("u", "kaic-gpu-0", "198.18.0.7")
    pf = dcgm.pod_port_forward(pod, "198.18.0.7")
    assert pf["spec"]["forwards"] == [
        {"ports": [9400], "target": {"address": "198.18.0.7", "port": 9400}}
    ]
    assert dcgm.pod_ip(pod, ipaddress.IPv4Network("198.18.0.0/21")) == "198.18.0.7"
    assert dcgm.pod_ip(pod, ipaddress.IPv4Network("198.18.16.0/21")) is None


def _porter_pod(
    ip: str = "127.70.0.5",
    image: str = "registry.k8s.io/e2e-test-images/agnhost:2.53",
    args: tuple[str, ...] = ("porter",),
) -> dict[str, object]:
    return {
        "metadata": {"uid": "u1", "namespace": "ns", "name": "p"},
        "spec": {
            "containers": [
                {
                    "image": image,
                    "args": list(args),
                    "env": [
                        {"name": "SERVE_PORT_18080", "value": "hello 1\n"},
                        {"name": "OTHER", "value": "x"},
                    ],
                }
            ]
        },
        "status": {"phase": "Running", "podIP": ip},
    }


def test_porter_reads_serve_port_variables_of_agnhost_porter_only() -> None:
    assert porter.porter_ports(_porter_pod()) == {18080: "hello 1\n"}
    assert porter.porter_ports(_porter_pod(args=("netexec",))) == {}
    assert porter.porter_ports(_porter_pod(image="busybox")) == {}


def test_porter_ignores_pods_whose_ip_is_outside_the_lab_pod_range() -> None:
    p = porter.Porter(ipaddress.IPv4Network("198.18.0.0/21"))
    try:
        p.sync([_porter_pod(ip="10.0.0.5"), _porter_pod(ip="198.18.8.1")])  # type: ignore[list-item]
        assert p.servers == {}
    finally:
        p.close()


def test_porter_serves_the_value_at_the_pod_ip_and_stops_when_the_pod_goes() -> None:
    # NOTE: the lab's pod range exists only inside its namespace; loopback stands in here.
    p = porter.Porter(ipaddress.IPv4Network("127.0.0.0/8"))
    pod = _porter_pod(ip="127.0.0.1")
    pod["spec"]["containers"][0]["env"][0]["name"] = "SERVE_PORT_0"  # type: ignore[index]
    try:
        # port 0 is not how porter is used, so pick a free one the way the pod would
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        pod["spec"]["containers"][0]["env"][0]["name"] = f"SERVE_PORT_{port}"  # type: ignore[index]
        p.sync([pod])  # type: ignore[list-item]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert r.read() == b"hello 1\n"
            assert r.headers["Content-Type"].startswith("text/plain")
        p.sync([])
        assert p.servers == {}
    finally:
        p.close()


def test_prometheus_config_keeps_only_loopback_targets_as_its_last_address_step() -> None:
    cfg = prometheus.config(Path("/x/kubeconfig"))
    job = cfg["scrape_configs"][0]  # type: ignore[index]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": "/x/kubeconfig"}]
    steps = job["relabel_configs"]
    addr = [
        i
        for i, s in enumerate(steps)
        if "__address__" in (s.get("source_labels") or []) or s.get("target_label") == "__address__"
    ]
    last = steps[addr[-1]]
    assert last["action"] == "keep" and last["source_labels"] == ["__address__"]
    rx = re.compile(f"^(?:{last['regex']})$")  # Prometheus anchors relabel regexes
    assert rx.match("127.70.0.5:8080") and rx.match("127.0.0.1:9400")
    for bad in (
        "10.0.0.5:8080",
        "192.168.1.1:80",
        "1127.0.0.1:80",
        "127.0.0.1",
        "[::1]:80",
        "172.16.0.1:8080",
        "example.com:80",
    ):
        assert not rx.match(bad), bad


def test_prometheus_config_also_keeps_the_lab_network_block_and_nothing_else() -> None:
    net = LabNet("unit", "/x", Layout(1))
    cfg = prometheus.config(Path("k"), lab_addresses=net.address_regex())
    last = [s for s in cfg["scrape_configs"][0]["relabel_configs"] if s.get("action") == "keep"][-1]  # type: ignore[index]
    rx = re.compile(f"^(?:{last['regex']})$")
    assert rx.match("127.0.0.1:80") and rx.match("198.18.16.5:8080") and rx.match("198.18.31.9:1")
    for bad in ("198.18.0.5:80", "198.18.32.1:80", "198.19.16.5:80", "10.0.0.1:80"):
        assert not rx.match(bad), bad


def test_prometheus_fault_config_collects_nothing() -> None:
    assert prometheus.config(Path("k"), scrape_pods=False)["scrape_configs"] == []


def test_netexec_stand_in_reads_the_http_port_of_agnhost_netexec_only() -> None:
    assert porter.netexec_port(_porter_pod(args=("netexec", "--http-port=8081"))) == 8081
    assert porter.netexec_port(_porter_pod(args=("netexec", "--http-port", "9000"))) == 9000
    assert porter.netexec_port(_porter_pod(args=("netexec",))) == 8080
    assert porter.netexec_port(_porter_pod()) is None
    assert porter.netexec_port(_porter_pod(image="busybox", args=("netexec",))) is None


def test_netexec_stand_in_answers_hostname_with_the_pod_name_at_the_pod_ip() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    pod = _porter_pod(ip="127.0.0.1", args=("netexec", f"--http-port={port}"))
    p = porter.Porter(ipaddress.IPv4Network("127.0.0.0/8"))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        p.sync([pod])  # type: ignore[list-item]
        with opener.open(f"http://127.0.0.1:{port}/hostname", timeout=5) as r:
            assert r.read() == b"p"
        with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.HTTPError):
            opener.open(f"http://127.0.0.1:{port}/other", timeout=5)
    finally:
        p.close()
