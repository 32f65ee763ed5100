"""The lab's simulated device visibility: who sees which GPU, and the /dev it builds."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kaic.checks.secure_accelerator_access import ACCELERATORS, parse_probe, probe_script
from kaic.lab.sims import devices as d

SLICE = {
    "spec": {
        "driver": d.DRIVER,
        "nodeName": "n0",
        "pool": {"name": "n0", "generation": 1, "resourceSliceCount": 1},
        "devices": [
            {
                "name": f"gpu-{i}",
                "attributes": {
                    "type": {"string": "gpu"},
                    "index": {"int": i},
                    "uuid": {"string": f"GPU-{i}"},
                },
            }
            for i in range(4)
        ],
    }
}
NODE = {"metadata": {"name": "n1"}, "status": {"capacity": {"nvidia.com/gpu": "2"}}}


def pod(
    name: str,
    containers: list[dict[str, Any]],
    node: str = "n0",
    claims: dict[str, str] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    phase: str = "Running",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": node, "containers": containers}
    status: dict[str, Any] = {"phase": phase}
    if claims:
        spec["resourceClaims"] = [{"name": k, "resourceClaimTemplateName": "t"} for k in claims]
        status["resourceClaimStatuses"] = [
            {"name": k, "resourceClaimName": v} for k, v in claims.items()
        ]
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
        },
        "spec": spec,
        "status": status,
    }


def claim(name: str, *results: tuple[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": rq, "driver": d.DRIVER, "pool": "n0", "device": dev}
                        for rq, dev in results
                    ]
                }
            }
        },
    }


def gpus() -> dict[str, list[d.Gpu]]:
    return d.gpus_by_node([NODE], [SLICE], "lab")


def seen(vis: dict[str, dict[str, list[d.Gpu]]], name: str, container: str) -> list[int]:
    return [g.index for g in vis[f"uid-{name}"][container]]


def test_gpus_come_from_node_local_slices_and_from_capacity() -> None:
    g = gpus()
    assert [x.uuid for x in g["n0"]] == ["GPU-0", "GPU-1", "GPU-2", "GPU-3"]
    assert [x.index for x in g["n1"]] == [0, 1]
    assert g["n1"][0].uuid == d.synthetic_uuid("lab", "n1", 0)


def test_dra_grants_go_to_the_containers_that_reference_the_claim_by_request() -> None:
    p = pod(
        "p",
        [
            {"name": "a", "resources": {"claims": [{"name": "gpu", "request": "r1"}]}},
            {"name": "b", "resources": {"claims": [{"name": "gpu", "request": "r2"}]}},
            {"name": "c"},
        ],
        claims={"gpu": "p-gpu"},
    )
    c = claim("p-gpu", ("r1", "gpu-2"), ("r2/sub", "gpu-0"))
    vis = d.visibility([p], [c], gpus(), d.DevicePluginAssigner())
    assert (seen(vis, "p", "a"), seen(vis, "p", "b"), seen(vis, "p", "c")) == ([2], [0], [])


def test_a_container_whose_claim_is_not_seen_allocated_yet_has_no_view() -> None:
    # the agent's pod watch can be ahead of its claim watch: no view (so no "ready" and
    # exec waits) rather than a view of no device
    p = pod(
        "p",
        [{"name": "a", "resources": {"claims": [{"name": "gpu"}]}}, {"name": "b"}],
        claims={"gpu": "p-gpu"},
    )
    pending = {"metadata": {"name": "p-gpu", "namespace": "ns"}, "status": {}}
    for claims in ([], [pending], [claim("p-gpu", ("r", "gpu-9"))]):  # gpu-9: slice unseen
        vis = d.visibility([p], claims, gpus(), d.DevicePluginAssigner())
        assert "a" not in vis["uid-p"] and seen(vis, "p", "b") == []
    vis = d.visibility([p], [claim("p-gpu", ("r", "gpu-1"))], gpus(), d.DevicePluginAssigner())
    assert seen(vis, "p", "a") == [1]


def test_device_plugin_assignment_is_deterministic_and_never_shares_a_device() -> None:
    one = {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    pods = [
        pod("late", [one], node="n1", created="2026-01-02T00:00:00Z"),
        pod("early", [one], node="n1", created="2026-01-01T00:00:00Z"),
        pod("third", [one], node="n1", created="2026-01-03T00:00:00Z"),
    ]
    a = d.DevicePluginAssigner()
    vis = d.visibility(pods, [], gpus(), a)
    assert (seen(vis, "early", "c"), seen(vis, "late", "c"), seen(vis, "third", "c")) == (
        [0],
        [1],
        [],
    )
    assert "third" in a.conflicts[0] and "1 free" not in a.conflicts[0]
    # the early pod finishes: its device goes to the waiting one, the late one keeps its own
    pods[1]["status"]["phase"] = "Succeeded"
    vis = d.visibility(pods, [], gpus(), a)
    assert (seen(vis, "late", "c"), seen(vis, "third", "c")) == ([1], [0])


def test_device_plugin_does_not_hand_out_gpus_that_a_claim_holds() -> None:
    one = {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "2"}}}
    node0 = dict(NODE, metadata={"name": "n0"})
    g = d.gpus_by_node([node0], [SLICE], "lab")
    vis = d.visibility([pod("p", [one])], [claim("x", ("r", "gpu-0"))], g, d.DevicePluginAssigner())
    assert seen(vis, "p", "c") == [1, 2]


@pytest.mark.parametrize(
    ("mode", "plain", "envvar", "granted"),
    [
        ("isolated", [], [], [1]),
        ("leak-unrequested", [0, 1, 2, 3], [0, 1, 2, 3], [1]),
        ("leak-envvar", [], [0, 1, 2, 3], [1]),
        ("leak-shared", [], [], [0, 1, 2, 3]),
    ],
)
def test_leak_modes(mode: str, plain: list[int], envvar: list[int], granted: list[int]) -> None:
    pods = [
        pod("plain", [{"name": "c"}]),
        pod("env", [{"name": "c", "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]}]),
        pod(
            "g",
            [{"name": "c", "resources": {"claims": [{"name": "gpu"}]}}],
            claims={"gpu": "g-gpu"},
        ),
    ]
    vis = d.visibility(
        pods, [claim("g-gpu", ("r", "gpu-1"))], gpus(), d.DevicePluginAssigner(), mode
    )
    assert (seen(vis, "plain", "c"), seen(vis, "env", "c"), seen(vis, "g", "c")) == (
        plain,
        envvar,
        granted,
    )


def test_unbound_and_finished_pods_get_no_view() -> None:
    vis = d.visibility(
        [pod("u", [{"name": "c"}], node=""), pod("f", [{"name": "c"}], phase="Failed")],
        [],
        gpus(),
        d.DevicePluginAssigner(),
    )
    assert vis == {}


def test_exec_rule_has_one_target_per_container_with_the_default_local_settings() -> None:
    p = pod("p", [{"name": "a"}, {"name": "b"}])
    rule = d.exec_rule(
        p, Path("/state/devices"), {"workDir": "/w", "envs": [{"name": "KAIC_LAB", "value": "x"}]}
    )
    assert rule["kind"] == "Exec" and rule["metadata"]["name"] == "p"
    assert rule["metadata"]["ownerReferences"][0]["uid"] == "uid-p"
    targets = rule["spec"]["execs"]
    assert [t["containers"] for t in targets] == [["a"], ["b"]]
    assert targets[1]["local"]["workDir"] == "/w"
    assert targets[1]["local"]["envs"] == [
        {"name": "KAIC_LAB", "value": "x"},
        {"name": "KAIC_DEVICE_DIR", "value": "/state/devices/pods/uid-p/b"},
    ]


def test_write_state_writes_views_and_removes_pods_that_are_gone(tmp_path: Path) -> None:
    p = pod("p", [{"name": "c"}])
    g = gpus()["n0"]
    d.write_state(tmp_path, {"uid-p": {"c": [g[2]]}}, [p])
    cdir = d.container_dir(tmp_path, "uid-p", "c")
    assert (cdir / "devices").read_text() == "nvidia2\n"
    assert (cdir / "ready").exists()
    assert "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-2)" in (cdir / "bin" / "nvidia-smi").read_text()
    d.write_state(tmp_path, {}, [])
    assert not (tmp_path / "pods" / "uid-p").exists()


def test_write_state_writes_a_view_again_only_when_it_changed(tmp_path: Path) -> None:
    p = pod("p", [{"name": "c"}])
    g = gpus()["n0"]
    written: dict[tuple[str, str], Any] = {}
    d.write_state(tmp_path, {"uid-p": {"c": [g[2]]}}, [p], written=written)
    devices = d.container_dir(tmp_path, "uid-p", "c") / "devices"
    devices.write_text("tampered\n")
    d.write_state(tmp_path, {"uid-p": {"c": [g[2]]}}, [p], written=written)
    assert devices.read_text() == "tampered\n"  # the same view: not read back or written
    d.write_state(tmp_path, {"uid-p": {"c": [g[1]]}}, [p], written=written)
    assert devices.read_text() == "nvidia1\n"
    written.clear()  # a full resync checks the files on disk again
    devices.write_text("tampered\n")
    d.write_state(tmp_path, {"uid-p": {"c": [g[1]]}}, [p], written=written)
    assert devices.read_text() == "nvidia1\n"
    d.write_state(tmp_path, {}, [], written=written)
    assert written == {}


def test_a_node_heartbeat_is_no_reason_to_reconcile(tmp_path: Path) -> None:
    agent = d.Agent(FakeApi({}), tmp_path, "lab", log=lambda m: None)  # type: ignore[arg-type]
    node = {
        "metadata": {"name": "n0", "labels": {"a": "b"}},
        "status": {
            "capacity": {"nvidia.com/gpu": "8"},
            "conditions": [{"type": "Ready", "lastHeartbeatTime": "2026-01-01T00:00:00Z"}],
        },
    }
    agent.on_node_event("ADDED", node)
    assert agent.dirty.is_set() and agent.health_dirty.is_set()
    agent.dirty.clear()
    agent.health_dirty.clear()
    beat = {**node, "status": {**node["status"], "conditions": [{"type": "Ready"}]}}
    agent.on_node_event("MODIFIED", beat)
    assert not agent.dirty.is_set() and not agent.health_dirty.is_set()
    fault = {**beat, "metadata": {**beat["metadata"], "annotations": {"kaic.io/device-fault": "1"}}}
    agent.on_node_event("MODIFIED", fault)
    assert agent.dirty.is_set() and agent.health_dirty.is_set()
    agent.dirty.clear()
    agent.on_node_event("DELETED", fault)
    assert agent.dirty.is_set()


def test_a_rule_found_right_is_not_compared_again_until_it_changes(tmp_path: Path) -> None:
    g = pod("g", [{"name": "c"}])
    base = {"workDir": "/w"}
    api = FakeApi(
        {
            "/pods": [g],
            "/nodes": [],
            "/resourceslices": [],
            "/resourceclaims": [],
            "/clusterexecs": [{"spec": {"execs": [{"local": base}]}}],
            "/execs": [],
        }
    )
    agent = d.Agent(api, tmp_path, "lab", log=lambda m: None)  # type: ignore[arg-type]
    agent.reconcile()
    assert len(api.writes) == 1
    rule = api.writes[0][2]
    rule["metadata"]["resourceVersion"] = "7"
    api.objects["/execs"] = [rule]
    compared = []
    real_rule = agent.rule
    agent.rule = lambda p: compared.append(p) or real_rule(p)  # type: ignore[method-assign]
    agent.reconcile()
    agent.reconcile()
    assert len(api.writes) == 1 and len(compared) == 1  # compared once, then remembered
    rule["metadata"]["resourceVersion"] = "8"
    rule["spec"]["execs"] = []  # changed by someone else: written again
    agent.reconcile()
    assert len(api.writes) == 2


def _can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    args = ["unshare", "-m", "true"] if os.geteuid() == 0 else ["unshare", "-m", "-r", "true"]
    return subprocess.run(args, capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs unshare with mount namespaces")
def test_the_sh_wrapper_shows_a_container_exactly_its_devices(tmp_path: Path) -> None:
    root, exec_bin = tmp_path / "devices", tmp_path / "exec-bin"
    d.install_programs(root, exec_bin)
    g = gpus()["n0"]
    p = pod("p", [{"name": "a"}, {"name": "b"}])
    d.write_state(root, {"uid-p": {"a": [g[3]], "b": []}}, [p])
    acc = ACCELERATORS["nvidia"]
    out = {}
    for c in ("a", "b"):
        env = dict(
            os.environ,
            PATH=f"{exec_bin}:{os.environ['PATH']}",
            KAIC_DEVICE_DIR=str(d.container_dir(root, "uid-p", c)),
        )
        r = subprocess.run(
            ["sh", "-c", "echo x > /dev/null; " + probe_script(acc)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
        out[c] = parse_probe(r.stdout, acc)
    assert out["a"] is not None and out["b"] is not None
    assert (out["a"].count, out["a"].devices, out["a"].uuids) == (1, ("/dev/nvidia3",), ("GPU-3",))
    assert (out["b"].count, out["b"].devices, out["b"].uuids) == (0, (), ())
    # without KAIC_DEVICE_DIR the wrapper is plain sh
    r = subprocess.run(
        ["sh", "-c", "echo plain"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PATH=f"{exec_bin}:{os.environ['PATH']}"),
    )
    assert r.stdout == "plain\n"


def test_the_wrapper_gives_up_when_the_agent_never_marks_the_container_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(d, "WAIT_READY_S", 0.3)
    root, exec_bin = tmp_path / "devices", tmp_path / "exec-bin"
    d.install_programs(root, exec_bin)
    env = dict(
        os.environ,
        PATH=f"{exec_bin}:{os.environ['PATH']}",
        KAIC_DEVICE_DIR=str(tmp_path / "missing"),
    )
    r = subprocess.run(
        ["sh", "-c", "echo never"], env=env, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 126 and "not ready" in r.stderr


class FakeApi:
    """Answers the agent's REST calls from dicts; records what it writes."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]], mode: str | None = None) -> None:
        self.objects = objects
        self.mode = mode
        self.writes: list[tuple[str, str, Any]] = []

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        if method != "GET":
            self.writes.append((method, path, body))
            return body
        if path.endswith(f"/configmaps/{d.CONFIGMAP_NAME}"):
            if self.mode is None:
                raise d.ApiError(404, "not found")
            return {"data": {"mode": self.mode}}
        for suffix, items in self.objects.items():
            if path.endswith(suffix):
                return {"items": items}
        raise d.ApiError(404, f"no {path}")


def test_agent_writes_rules_and_views_and_leaves_foreign_exec_rules_alone(tmp_path: Path) -> None:
    g = pod(
        "g", [{"name": "c", "resources": {"claims": [{"name": "gpu"}]}}], claims={"gpu": "g-gpu"}
    )
    other = pod("other", [{"name": "c"}])
    base = {
        "workDir": "/w",
        "envs": [
            {"name": "KAIC_LAB", "value": "x"},
            {"name": "KAIC_DEVICE_DIR", "value": "/r/no-rule"},
        ],
    }
    api = FakeApi(
        {
            "/pods": [g, other],
            "/nodes": [],
            "/resourceslices": [SLICE],
            "/resourceclaims": [claim("g-gpu", ("r", "gpu-3"))],
            "/clusterexecs": [{"spec": {"execs": [{"local": base}]}}],
            "/execs": [{"metadata": {"name": "other", "namespace": "ns"}, "spec": {}}],
        },
        mode="leak-unrequested",
    )
    agent = d.Agent(api, tmp_path, "lab", log=lambda m: None)  # type: ignore[arg-type]
    agent.reconcile()
    assert [w[1].split("?")[0] for w in api.writes] == [
        "/apis/kwok.x-k8s.io/v1alpha1/namespaces/ns/execs/g"
    ]
    rule = api.writes[0][2]
    assert rule["spec"]["execs"][0]["local"]["envs"] == [
        {"name": "KAIC_LAB", "value": "x"},
        {"name": "KAIC_DEVICE_DIR", "value": str(tmp_path / "pods" / "uid-g" / "c")},
    ]
    assert (d.container_dir(tmp_path, "uid-g", "c") / "devices").read_text() == "nvidia3\n"
    # leak-unrequested: the pod without a grant sees the whole node
    assert (d.container_dir(tmp_path, "uid-other", "c") / "devices").read_text().split() == [
        "nvidia0",
        "nvidia1",
        "nvidia2",
        "nvidia3",
    ]
    assert (tmp_path / d.ALIVE_FILE).exists()


def test_agent_gives_a_new_pod_its_rule_from_the_watch_event_at_once(tmp_path: Path) -> None:
    api = FakeApi({})
    agent = d.Agent(api, tmp_path, "lab", log=lambda m: None)  # type: ignore[arg-type]
    agent._base = {"workDir": "/w"}
    p = pod("new", [{"name": "c"}], node="")
    agent.on_pod_event("ADDED", p)
    assert api.writes and api.writes[0][1].startswith(
        "/apis/kwok.x-k8s.io/v1alpha1/namespaces/ns/execs/new?"
    )
    agent.on_pod_event("MODIFIED", p)
    assert len(api.writes) == 1


def test_the_default_cluster_exec_gets_the_no_rule_marker(tmp_path: Path) -> None:
    ce = {
        "kind": "ClusterExec",
        "spec": {"execs": [{"local": {"envs": [{"name": "KAIC_LAB", "value": "x"}]}}]},
    }
    out = d.with_no_rule_marker(ce, tmp_path)
    assert out["spec"]["execs"][0]["local"]["envs"][-1] == {
        "name": "KAIC_DEVICE_DIR",
        "value": str(tmp_path / "no-rule"),
    }
    assert ce["spec"]["execs"][0]["local"]["envs"] == [{"name": "KAIC_LAB", "value": "x"}]


def test_the_wrapper_refuses_an_exec_that_matched_no_per_pod_rule(tmp_path: Path) -> None:
    root, exec_bin = tmp_path / "devices", tmp_path / "exec-bin"
    d.install_programs(root, exec_bin)
    env = dict(
        os.environ, PATH=f"{exec_bin}:{os.environ['PATH']}", KAIC_DEVICE_DIR=str(root / d.NO_RULE)
    )
    r = subprocess.run(["sh", "-c", "ls /dev"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 126 and "no device view for this pod yet" in r.stderr
