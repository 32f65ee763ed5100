"""secure_accelerator_access against a fake cluster with a simulated scheduler.

The fake schedules probe pods onto the node their affinity names, allocates DRA claims
from the ResourceSlices (or counts ``nvidia.com/gpu``), and answers ``exec`` with what the
probe would print, from the lab's visibility rules (``kaic.lab.sims.devices``) in a chosen
mode, or from a hand-written view for the special cases.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from kaic.checks import predicates
from kaic.checks import secure_accelerator_access as aa
from kaic.checks.base import CheckContext, run_check
from kaic.checks.resources import requests_by_node
from kaic.cluster.api import ExecResult
from kaic.lab.sims import devices
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, fake_check_context

DRA = "resource.k8s.io/v1"
NVIDIA = aa.ACCELERATORS["nvidia"]


def gpu_device(i: int, node: str) -> dict[str, Any]:
    return {
        "name": f"gpu-{i}",
        "attributes": {
            "type": {"string": "gpu"},
            "index": {"int": i},
            "minor": {"int": i},
            "uuid": {"string": devices.synthetic_uuid("t", node, i)},
            "productName": {"string": "NVIDIA H100 80GB HBM3"},
        },
    }


def node_obj(
    name: str,
    gpus: int,
    *,
    device_plugin: bool,
    ready: bool = True,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    cap = {"cpu": "8"} | ({"nvidia.com/gpu": str(gpus)} if device_plugin else {})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {"pool": "gpu"}},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
        "status": {
            "capacity": cap,
            "allocatable": cap,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


class Sim:
    """A fake cluster with accelerator nodes, a scheduler and an exec handler."""

    def __init__(
        self,
        *,
        dra: bool = True,
        device_plugin: bool = False,
        nodes: int = 2,
        gpus: int = 4,
        mode: str = "isolated",
    ) -> None:
        self.fc = FakeCluster()
        self.mode = mode
        self.assigner = devices.DevicePluginAssigner()
        self.view: Callable[[dict[str, Any], str], list[devices.Gpu]] | None = None
        self.execs: list[tuple[str, str, str | None]] = []
        if dra:
            self.fc.serve(
                DRA,
                ("deviceclasses", "DeviceClass", False),
                ("resourceslices", "ResourceSlice", False),
                ("resourceclaims", "ResourceClaim", True),
                ("resourceclaimtemplates", "ResourceClaimTemplate", True),
            )
            self.fc.add(
                {
                    "apiVersion": DRA,
                    "kind": "DeviceClass",
                    "metadata": {"name": "gpu.nvidia.com"},
                    "spec": {},
                }
            )
        for i in range(nodes):
            name = f"gpu-{i}"
            self.fc.add(node_obj(name, gpus, device_plugin=device_plugin))
            if dra:
                self.fc.add(
                    {
                        "apiVersion": DRA,
                        "kind": "ResourceSlice",
                        "metadata": {"name": f"{name}-slice"},
                        "spec": {
                            "driver": "gpu.nvidia.com",
                            "nodeName": name,
                            "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
                            "devices": [gpu_device(j, name) for j in range(gpus)],
                        },
                    }
                )
        self.fc.add(node_obj("cpu-0", 0, device_plugin=False, labels={"pool": "cpu"}))
        self.fc.controllers.append(self.schedule)
        self.fc.exec_handler = self.exec

    # -- the simulated control plane ---------------------------------------------------------
    def _objs(self, api: str, kind: str) -> list[dict[str, Any]]:
        try:
            return self.fc.list(api, kind)
        except Exception:
            return []

    def schedule(self, fc: FakeCluster) -> None:
        for pod in fc.list("v1", "Pod"):
            if pod["spec"].get("nodeName"):
                continue
            md = pod["metadata"]
            terms = pod["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]["nodeSelectorTerms"]
            node = terms[0]["matchFields"][0]["values"][0]
            statuses, claims = [], []
            for rc in pod["spec"].get("resourceClaims") or []:
                cname = f"{md['name']}-{rc['name']}"
                claim = fc.get(DRA, "ResourceClaim", cname, md["namespace"])
                if claim is None:
                    tpl = fc.get(
                        DRA,
                        "ResourceClaimTemplate",
                        rc["resourceClaimTemplateName"],
                        md["namespace"],
                    )
                    assert tpl is not None
                    claim = fc.add(
                        {
                            "apiVersion": DRA,
                            "kind": "ResourceClaim",
                            "metadata": {"name": cname, "namespace": md["namespace"]},
                            "spec": copy.deepcopy(tpl["spec"]["spec"]),
                        }
                    )
                statuses.append({"name": rc["name"], "resourceClaimName": cname})
                claims.append(claim)
            for claim in claims:
                if (claim.get("status") or {}).get("allocation"):
                    continue
                taken = aa.allocated_devices(fc.list(DRA, "ResourceClaim"))
                pools = aa.dra_pools(fc.list(DRA, "ResourceSlice"), NVIDIA, fc.list("v1", "Node"))
                free = [
                    d for p in pools for d in p.devices if node in d.nodes and d.key not in taken
                ]
                if not free:
                    return
                d = free[0]
                fc.patch(
                    DRA,
                    "ResourceClaim",
                    claim["metadata"]["name"],
                    {
                        "status": {
                            "allocation": {
                                "devices": {
                                    "results": [
                                        {
                                            "request": "single-accelerator",
                                            "driver": d.driver,
                                            "pool": d.pool,
                                            "device": d.name,
                                        }
                                    ]
                                }
                            }
                        }
                    },
                    md["namespace"],
                )
            want = sum(devices._requested(c) for c in pod["spec"]["containers"])
            if want:
                cap = int(
                    fc.get("v1", "Node", node)["status"]["allocatable"].get("nvidia.com/gpu", 0)
                )
                used = requests_by_node(fc.list("v1", "Pod"), "nvidia.com/gpu")
                if used.get(node, 0) + want > cap:
                    continue
            fc.patch(
                "v1",
                "Pod",
                md["name"],
                {
                    "spec": {"nodeName": node},
                    "status": {"phase": "Running", "resourceClaimStatuses": statuses},
                },
                md["namespace"],
            )

    def seen(self, pod: dict[str, Any], container: str) -> list[devices.Gpu]:
        if self.view is not None:
            return self.view(pod, container)
        gpus = devices.gpus_by_node(
            self.fc.list("v1", "Node"), self._objs(DRA, "ResourceSlice"), "t"
        )
        vis = devices.visibility(
            self.fc.list("v1", "Pod"),
            self._objs(DRA, "ResourceClaim"),
            gpus,
            self.assigner,
            self.mode,
        )
        return vis[pod["metadata"]["uid"]][container]

    def exec(self, ns: str, pod: str, command: Sequence[str], container: str | None) -> ExecResult:
        assert list(command[:2]) == ["sh", "-c"] and command[2] == aa.probe_script(NVIDIA)
        self.execs.append((ns, pod, container))
        obj = self.fc.get("v1", "Pod", pod, ns)
        assert obj is not None and container is not None
        return ExecResult(probe_output(self.seen(obj, container)), "", 0)

    # -- running the check -------------------------------------------------------------------
    def run(self, **options: str) -> CheckResult:
        return run_check(context(self.fc, options))


def context(fc: FakeCluster, options: dict[str, str], timeout_s: float = 60) -> CheckContext:
    return fake_check_context(
        fc,
        "secure_accelerator_access",
        options=options,
        timeout=timeout_s,
        run_id="r1",
        namespace="kaic-secure",
    )


def probe_output(seen: Sequence[devices.Gpu], env: str = "<unset>") -> str:
    lines = [f"DEVICE: /dev/{g.dev_name}" for g in seen]
    lines += [f"LIST: GPU {i}: {g.product} (UUID: {g.uuid})" for i, g in enumerate(seen)]
    lines += [
        f"ENV: NVIDIA_VISIBLE_DEVICES={env}",
        f"RESULT: DEVICE_NODES={len(seen)} LISTED={len(seen)}",
        f"RESULT: ACCELERATOR_COUNT={len(seen)}",
    ]
    return "\n".join(lines) + "\n"


def sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


def evidence(result: CheckResult, name: str) -> str:
    return next(e.content for e in result.evidence if e.name == name)


# -----------------------------------------------------------------------------------------
# PASS cases
# -----------------------------------------------------------------------------------------


def test_isolated_dra_cluster_passes_all_four_subtests_and_prefers_dra() -> None:
    sim = Sim(dra=True, device_plugin=True)
    result = sim.run()
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.name for s in result.subresults] == [
        "PositiveAccessTest",
        "NegativeIsolationTest",
        "MultiContainerIsolationTest",
        "CrossPodIsolationTest",
    ]
    assert "allocation mode used: dra" in evidence(result, "allocation.txt")
    log = evidence(result, "probe-commands.log")
    assert "kubectl exec -n kaic-secure accel-positive -c probe -- sh -c" in log
    assert "RESULT: ACCELERATOR_COUNT=1" in log
    assert "accel-multi-accelerator" in evidence(result, "resourceclaims.yaml")
    assert ("kaic-secure", "accel-multi", "unauthorized") in sim.execs
    # every probe pod ran on one node, the one with the most free accelerators
    nodes = {p["spec"]["nodeName"] for p in sim.fc.store.values() if p["kind"] == "Pod"}
    assert nodes == set() or nodes == {"gpu-0"}


def test_device_plugin_cluster_passes_with_extended_resource_requests() -> None:
    sim = Sim(dra=False, device_plugin=True)
    created: list[dict[str, Any]] = []
    sim.fc.on_create.append(lambda obj, dry: created.append(obj))
    result = sim.run()
    assert result.outcome is Outcome.PASS, result.reason
    assert "allocation mode used: device-plugin" in evidence(result, "allocation.txt")
    pos = next(o for o in created if o["metadata"]["name"] == "accel-positive")
    assert pos["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert "resourceClaims" not in pos["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists"} in pos["spec"]["tolerations"]


def test_forced_device_plugin_mode_is_used_even_when_dra_is_available() -> None:
    result = Sim(dra=True, device_plugin=True).run(**{"allocation-mode": "device-plugin"})
    assert result.outcome is Outcome.PASS, result.reason
    assert "allocation mode used: device-plugin" in evidence(result, "allocation.txt")


def test_probe_pods_are_labelled_for_cleanup_and_deleted_at_the_end() -> None:
    sim = Sim()
    created: list[dict[str, Any]] = []
    sim.fc.on_create.append(lambda obj, dry: created.append(obj))
    sim.run()
    pods = [o for o in created if o["kind"] == "Pod"]
    assert len(pods) == 6
    for p in pods:
        assert p["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kaic"
        assert p["metadata"]["labels"]["kaic.io/run-id"] == "r1"
    assert not [k for k in sim.fc.store if k[1] == "Pod"]


def test_one_free_accelerator_runs_subtests_one_after_another_and_skips_cross_pod() -> None:
    sim = Sim(dra=False, device_plugin=True, nodes=1, gpus=1)
    result = sim.run()
    assert result.outcome is Outcome.PASS, result.reason
    cross = sub(result, "CrossPodIsolationTest")
    assert cross.outcome is Outcome.SKIP and "two free accelerators" in cross.reason


# -----------------------------------------------------------------------------------------
# FAIL cases: leaks, wrong counts
# -----------------------------------------------------------------------------------------


def test_leak_to_unrequested_pods_fails_naming_the_pod_and_the_container() -> None:
    result = Sim(mode="leak-unrequested").run()
    assert result.outcome is Outcome.FAIL
    neg = sub(result, "NegativeIsolationTest")
    assert neg.outcome is Outcome.FAIL
    assert "pod accel-negative (no request) sees 4 accelerator(s)" in neg.reason
    assert "/dev/nvidia0" in neg.reason
    multi = sub(result, "MultiContainerIsolationTest")
    assert multi.outcome is Outcome.FAIL and "container unauthorized" in multi.reason
    assert sub(result, "PositiveAccessTest").outcome is Outcome.PASS


def test_envvar_leak_is_caught_even_though_the_plain_negative_pod_sees_nothing() -> None:
    result = Sim(mode="leak-envvar").run()
    neg = sub(result, "NegativeIsolationTest")
    assert neg.outcome is Outcome.FAIL
    assert "pod accel-negative-envvar (no request, NVIDIA_VISIBLE_DEVICES=all)" in neg.reason
    assert "pod accel-negative " not in neg.reason
    assert result.outcome is Outcome.FAIL


def test_granted_pods_seeing_the_whole_node_fail_positive_and_cross_pod() -> None:
    result = Sim(mode="leak-shared", dra=False, device_plugin=True).run()
    pos = sub(result, "PositiveAccessTest")
    assert pos.outcome is Outcome.FAIL
    assert "pod accel-positive was granted one accelerator but sees 4" in pos.reason
    cross = sub(result, "CrossPodIsolationTest")
    assert cross.outcome is Outcome.FAIL and "pod accel-cross-a" in cross.reason


def test_cross_pod_leak_names_the_pod_that_sees_the_other_pods_allocated_device() -> None:
    sim = Sim()

    def view(pod: dict[str, Any], container: str) -> list[devices.Gpu]:
        gpus = devices.gpus_by_node(
            sim.fc.list("v1", "Node"), sim.fc.list(DRA, "ResourceSlice"), "t"
        )
        vis = devices.visibility(
            sim.fc.list("v1", "Pod"), sim.fc.list(DRA, "ResourceClaim"), gpus, sim.assigner
        )
        mine = vis[pod["metadata"]["uid"]][container]
        if pod["metadata"]["name"] == "accel-cross-b":
            a = next(
                p for p in sim.fc.list("v1", "Pod") if p["metadata"]["name"] == "accel-cross-a"
            )
            return mine + vis[a["metadata"]["uid"]]["probe"]
        return mine

    sim.view = view
    result = sim.run()
    cross = sub(result, "CrossPodIsolationTest")
    assert cross.outcome is Outcome.FAIL
    assert cross.reason.startswith("pod accel-cross-b sees GPU-")
    assert "allocated to pod accel-cross-a" in cross.reason
    assert "pod accel-cross-a sees" not in cross.reason


def test_two_pods_shown_the_same_device_fail_cross_pod_in_device_plugin_mode() -> None:
    sim = Sim(dra=False, device_plugin=True)
    same = devices.Gpu("gpu-0", 0, "GPU-same")
    sim.view = lambda pod, c: (
        [same]
        if pod["metadata"]["name"].startswith(("accel-cross", "accel-positive"))
        or c == "authorized"
        else []
    )
    result = sim.run()
    cross = sub(result, "CrossPodIsolationTest")
    assert cross.outcome is Outcome.FAIL
    assert "pods accel-cross-a and accel-cross-b both see /dev/nvidia0, GPU-same" in cross.reason


def test_a_pod_granted_one_accelerator_that_sees_none_fails_positive() -> None:
    sim = Sim()
    sim.view = lambda pod, c: []
    result = sim.run()
    pos = sub(result, "PositiveAccessTest")
    assert pos.outcome is Outcome.FAIL and "sees 0: nothing" in pos.reason


def test_seeing_a_device_other_than_the_allocated_one_fails_positive() -> None:
    sim = Sim()
    sim.view = lambda pod, c: (
        [devices.Gpu("gpu-0", 7, "GPU-not-mine")]
        if c in ("probe", "authorized") and "negative" not in pod["metadata"]["name"]
        else []
    )
    result = sim.run()
    pos = sub(result, "PositiveAccessTest")
    assert pos.outcome is Outcome.FAIL
    assert "sees GPU-not-mine but was allocated GPU-" in pos.reason


# -----------------------------------------------------------------------------------------
# Could not decide, not applicable, bad input
# -----------------------------------------------------------------------------------------


def test_no_accelerators_in_auto_mode_is_a_skip_with_the_reason() -> None:
    sim = Sim(dra=False, device_plugin=False)
    result = sim.run()
    assert result.outcome is Outcome.SKIP
    assert "no Ready node has nvidia.com/gpu allocatable" in result.reason


def test_forced_dra_mode_without_slices_is_an_error_not_a_pass() -> None:
    result = Sim(dra=False, device_plugin=True).run(**{"allocation-mode": "dra"})
    assert result.outcome is Outcome.ERROR
    assert "resource.k8s.io/v1 (or v1beta2) is not served" in result.reason


def test_device_plugin_mode_is_refused_when_the_resource_is_dra_backed() -> None:
    sim = Sim(dra=True, device_plugin=True)
    sim.fc.patch(
        DRA, "DeviceClass", "gpu.nvidia.com", {"spec": {"extendedResourceName": "nvidia.com/gpu"}}
    )
    result = sim.run(**{"allocation-mode": "device-plugin"})
    assert result.outcome is Outcome.ERROR and "backed by DRA" in result.reason


def test_a_pod_that_never_runs_is_an_error_with_the_scheduler_event() -> None:
    sim = Sim()
    sim.fc.controllers.clear()
    sim.fc.add(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e1", "namespace": "kaic-secure"},
            "involvedObject": {"name": "accel-positive"},
            "type": "Warning",
            "reason": "FailedScheduling",
            "message": "0/3 nodes are available",
        }
    )
    result = run_check(context(sim.fc, {"probe-pod-timeout": "0.2"}, timeout_s=30))
    pos = sub(result, "PositiveAccessTest")
    assert pos.outcome is Outcome.ERROR
    assert "FailedScheduling: 0/3 nodes are available" in pos.reason
    assert result.outcome is Outcome.ERROR


def test_a_probe_without_result_line_is_an_error() -> None:
    sim = Sim()
    sim.fc.exec_handler = lambda ns, pod, cmd, c: ExecResult("", "sh: not found", 127)
    result = sim.run()
    assert result.outcome is Outcome.ERROR
    assert "printed no RESULT line" in result.reason


@pytest.mark.parametrize(
    ("option", "value"), [("allocation-mode", "magic"), ("accelerator-type", "abacus")]
)
def test_bad_options_are_errors_naming_the_option(option: str, value: str) -> None:
    result = Sim().run(**{option: value})
    assert result.outcome is Outcome.ERROR
    assert f"--{option} must be one of" in result.reason


# -----------------------------------------------------------------------------------------
# Pools: nodeName, allNodes, nodeSelector, completeness
# -----------------------------------------------------------------------------------------


def _nodes() -> list[dict[str, Any]]:
    return [
        node_obj("a", 0, device_plugin=False, labels={"rack": "r1"}),
        node_obj("b", 0, device_plugin=False, labels={"rack": "r2"}),
    ]


def _slice(name: str, pool: str, count: int = 1, **placement: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "driver": "gpu.nvidia.com",
            "pool": {"name": pool, "generation": 1, "resourceSliceCount": count},
            "devices": [gpu_device(0, "x"), gpu_device(1, "x")],
            **placement,
        },
    }


def test_all_nodes_slices_make_their_devices_available_on_every_node() -> None:
    pools = aa.dra_pools([_slice("s", "net", allNodes=True)], NVIDIA, _nodes())
    assert pools[0].complete
    assert all(d.nodes == {"a", "b"} for d in pools[0].devices)


def test_node_selector_slices_are_matched_against_node_labels_and_fields() -> None:
    sel = {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "rack", "operator": "In", "values": ["r2"]}]}
        ]
    }
    pools = aa.dra_pools([_slice("s", "p", nodeSelector=sel)], NVIDIA, _nodes())
    assert {n for d in pools[0].devices for n in d.nodes} == {"b"}
    by_name = {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["b"]}]}
        ]
    }
    pools = aa.dra_pools([_slice("s", "p", nodeSelector=by_name)], NVIDIA, _nodes())
    assert {n for d in pools[0].devices for n in d.nodes} == {"a"}


def test_an_empty_node_selector_term_selects_nothing() -> None:
    assert not predicates.node_selector_matches({"nodeSelectorTerms": [{}]}, _nodes()[0])


def test_per_device_placement_overrides_the_slice() -> None:
    s = _slice("s", "p", perDeviceNodeSelection=True)
    s["spec"]["devices"][0]["nodeName"] = "a"
    s["spec"]["devices"][1]["allNodes"] = True
    pools = aa.dra_pools([s], NVIDIA, _nodes())
    assert [sorted(d.nodes) for d in pools[0].devices] == [["a"], ["a", "b"]]


def test_a_pool_missing_slices_is_incomplete_and_not_used() -> None:
    pools = aa.dra_pools([_slice("s1", "p", count=2, nodeName="a")], NVIDIA, _nodes())
    assert not pools[0].complete and "INCOMPLETE" in pools[0].describe()


def test_only_the_newest_generation_of_a_pool_counts() -> None:
    old = _slice("old", "p", nodeName="a")
    new = _slice("new", "p", nodeName="b")
    new["spec"]["pool"]["generation"] = 2
    pools = aa.dra_pools([old, new], NVIDIA, _nodes())
    assert pools[0].slices == ["new"]


def test_devices_of_another_type_are_not_counted() -> None:
    s = _slice("s", "p", nodeName="a")
    s["spec"]["devices"][1]["attributes"]["type"] = {"string": "mig"}
    assert len(aa.dra_pools([s], NVIDIA, _nodes())[0].devices) == 1


def test_check_passes_with_an_all_nodes_pool_and_picks_a_ready_node() -> None:
    sim = Sim(dra=True, nodes=0)
    for n in ("a", "b"):
        sim.fc.add(node_obj(n, 0, device_plugin=False, ready=(n == "b")))
    sim.fc.add(
        {
            "apiVersion": DRA,
            "kind": "ResourceSlice",
            "metadata": {"name": "net"},
            "spec": {
                "driver": "gpu.nvidia.com",
                "allNodes": True,
                "pool": {"name": "net", "generation": 1, "resourceSliceCount": 1},
                "devices": [gpu_device(i, "net") for i in range(4)],
            },
        }
    )

    def view(pod: dict[str, Any], container: str) -> list[devices.Gpu]:
        if container not in ("probe", "authorized") or "negative" in pod["metadata"]["name"]:
            return []
        st = pod["status"]["resourceClaimStatuses"][0]
        claim = sim.fc.get(DRA, "ResourceClaim", st["resourceClaimName"], "kaic-secure")
        dev = claim["status"]["allocation"]["devices"]["results"][0]["device"]
        i = int(dev.split("-")[1])
        return [devices.Gpu(pod["spec"]["nodeName"], i, devices.synthetic_uuid("t", "net", i))]

    sim.view = view
    result = sim.run()
    assert result.outcome is Outcome.PASS, result.reason
    assert "node: b (4 free)" in evidence(result, "allocation.txt")


def test_allocated_devices_are_not_counted_as_free() -> None:
    sim = Sim(dra=True, nodes=1, gpus=2)
    sim.fc.add(
        {
            "apiVersion": DRA,
            "kind": "ResourceClaim",
            "metadata": {"name": "busy", "namespace": "other"},
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {"driver": "gpu.nvidia.com", "pool": "gpu-0", "device": "gpu-0"}
                        ]
                    }
                }
            },
        }
    )
    p = aa.choose_placement(sim.fc, NVIDIA, "auto")
    assert (p.mode, p.free) == ("dra", 1)


# -----------------------------------------------------------------------------------------
# The probe itself
# -----------------------------------------------------------------------------------------


def test_probe_output_is_parsed_into_count_devices_and_uuids() -> None:
    out = (
        "DEVICE: /dev/nvidia3\nLIST: GPU 0: NVIDIA H100 (UUID: GPU-abc)\n"
        "RESULT: ACCELERATOR_COUNT=1\n"
    )
    r = aa.parse_probe(out, NVIDIA)
    assert r is not None
    assert (r.count, r.devices, r.uuids) == (1, ("/dev/nvidia3",), ("GPU-abc",))
    assert aa.parse_probe("sh: 1: nope\n", NVIDIA) is None


def test_probe_script_is_posix_sh_that_counts_what_it_sees(tmp_path: Any) -> None:
    import shutil
    import subprocess

    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    script = aa.probe_script(NVIDIA)
    r = subprocess.run([sh, "-n", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # run it with a fake nvidia-smi on PATH listing two GPUs
    tool = tmp_path / "nvidia-smi"
    tool.write_text("#!/bin/sh\necho 'GPU 0: X (UUID: GPU-1)'\necho 'GPU 1: X (UUID: GPU-2)'\n")
    tool.chmod(0o755)
    r = subprocess.run(
        [sh, "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "NVIDIA_VISIBLE_DEVICES": "all"},
    )
    parsed = aa.parse_probe(r.stdout, NVIDIA)
    assert parsed is not None and r.returncode == 0
    assert parsed.uuids == ("GPU-1", "GPU-2")
    assert parsed.count >= 2
    assert "ENV: NVIDIA_VISIBLE_DEVICES=all" in r.stdout


RESERVED = {"key": "pool.example/autoscaled", "value": "true", "effect": "NoSchedule"}


@pytest.mark.parametrize("dra", [True, False])
def test_the_dedicated_autoscaled_pool_is_never_chosen(dra: bool) -> None:
    sim = Sim(dra=dra, device_plugin=not dra, nodes=2, gpus=4)
    node = sim.fc.get("v1", "Node", "gpu-0")
    assert node is not None
    sim.fc.patch("v1", "Node", "gpu-0", {"spec": {"taints": [*node["spec"]["taints"], RESERVED]}})
    assert aa.choose_placement(sim.fc, NVIDIA, "auto").node_name == "gpu-0"  # the tie's first
    p = aa.choose_placement(sim.fc, NVIDIA, "auto", RESERVED)
    assert p.node_name == "gpu-1"
    assert any("1 node(s) of the dedicated autoscaled pool" in n for n in p.notes)
    # the check leaves it out when the run names the pool and its taint
    options = {
        "autoscaler-node-pool-label": "pool=gpu",
        "autoscaler-pool-taint": "pool.example/autoscaled=true:NoSchedule",
    }
    result = sim.run(**options)
    assert result.outcome is Outcome.PASS, result.reason
    assert "node gpu-1" in result.log[0]
