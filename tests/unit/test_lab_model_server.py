"""The simulated prefill/decode model servers of the lab, on loopback."""

from __future__ import annotations

import ipaddress
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

from kaic.lab.components.disaggregated_serving import deployment
from kaic.lab.sims import http
from kaic.lab.sims.model_server import ModelServers, Server, server_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pod(role: str, connector: bool, name: str) -> dict[str, Any]:
    tmpl = deployment(role, connector)["spec"]["template"]
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", **tmpl["metadata"]},
        "spec": tmpl["spec"],
    }


def _serve(models: ModelServers, s: Server) -> None:
    http.start(http.server(s.ip, s.port, models.answer(s)))


def _post(s: Server, rid: str, model: str = "kaic/tiny-llm") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://{s.ip}:{s.port}/v1/completions",
        data=json.dumps({"model": model, "prompt": "hi", "max_tokens": 4}).encode(),
        headers={"Content-Type": "application/json", "x-request-id": rid},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _servers(tmp_path: Path, connector: bool) -> tuple[ModelServers, Server, Server]:
    models = ModelServers(ipaddress.IPv4Network("127.0.0.0/8"), tmp_path, None)
    p = server_of(_pod("prefill", True, "ms-prefill-0"), "127.0.0.1")
    d = server_of(_pod("decode", connector, "ms-decode-0"), "127.0.0.1")
    assert p is not None and d is not None
    p = Server(**{**p.__dict__, "port": _free_port()})
    d = Server(**{**d.__dict__, "port": _free_port()})
    models.update([p, d])
    _serve(models, p)
    _serve(models, d)
    return models, p, d


def test_pods_of_the_lab_component_are_model_servers() -> None:
    s = server_of(_pod("decode", True, "d"), "198.18.16.5")
    assert s is not None
    assert (s.role, s.port, s.model, s.connector, s.container) == (
        "decode",
        8000,
        "kaic/tiny-llm",
        "NixlConnector",
        "vllm",
    )
    other = _pod("decode", True, "x")
    other["spec"]["containers"][0]["image"] = "busybox:1.36"
    assert server_of(other, "198.18.16.5") is None
    unlabelled = _pod("decode", True, "y")
    unlabelled["metadata"]["labels"].pop("llm-d.ai/role")
    assert server_of(unlabelled, "198.18.16.5") is None


def test_the_decode_server_asks_a_prefill_pod_and_both_log_the_request_id(tmp_path: Path) -> None:
    models, p, d = _servers(tmp_path, connector=True)
    status, doc = _post(d, "rid-1")
    assert status == 200 and doc["choices"][0]["text"]
    prefill_log = models.log_file(p).read_text()
    decode_log = models.log_file(d).read_text()
    assert "Received request rid-1: prefill, KV blocks kept" in prefill_log
    assert "Received request rid-1: prefill done by ns/ms-prefill-0" in decode_log
    assert " stdout F " in decode_log.splitlines()[0]


def test_a_decode_server_without_a_connector_runs_both_phases_itself(tmp_path: Path) -> None:
    models, p, d = _servers(tmp_path, connector=False)
    status, _ = _post(d, "rid-2")
    assert status == 200
    assert "rid-2" not in models.log_file(p).read_text()
    assert "rid-2: prefill and decode in this pod" in models.log_file(d).read_text()


def test_an_unknown_model_is_a_404_and_no_prefill_is_a_503(tmp_path: Path) -> None:
    models, _p, d = _servers(tmp_path, connector=True)
    assert _post(d, "rid-3", model="other")[0] == 404
    models.update([d])
    status, doc = _post(d, "rid-4")
    assert status == 503 and "no prefill server" in doc["error"]["message"]
