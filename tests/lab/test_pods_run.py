"""Pods that run: on the lab, a container's command runs as a local process (the lab's
stand-in for a container runtime); ``kubectl logs`` shows its output, its exit code decides
the pod's phase, deleting the pod stops it, and ``kaic lab down`` leaves nothing behind.
The lab's own workloads come from a DaemonSet and a StatefulSet, as on a real platform.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
from typing import Any

import pytest
from labtools import LabFactory, wait_for

from kaic.cluster.client import connect
from kaic.lab import Lab, LabOptions, proc
from kaic.lab.components.container_runtime import container_pids
from kaic.lab.components.dcgm_exporter import DCGM_NAMESPACE, gpu_nodes
from kaic.lab.sims import devices, runtime
from kaic.lab.sims.runtime import RUNTIME_ANNOTATION

pytestmark = pytest.mark.lab

IMAGE = "ubuntu:22.04"


def job(name: str, script: str, **pod_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {"name": "main", "image": IMAGE, "command": ["sh", "-c", script]}
                    ],
                    **pod_spec,
                }
            },
        },
    }


def pod(name: str, script: str, image: str = IMAGE, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": image, "command": ["sh", "-c", script], **container}
            ],
        },
    }


def create(lab: Lab, ns: str, obj: dict[str, Any]) -> None:
    obj["metadata"]["namespace"] = ns
    lab.ctx.apply([obj])


def job_pod(lab: Lab, ns: str, name: str) -> dict[str, Any]:
    items = lab.ctx.get(f"/api/v1/namespaces/{ns}/pods?labelSelector=job-name%3D{name}")["items"]
    return items[0] if items else {}


def phase_of(lab: Lab, ns: str, name: str, *, job_name: bool = False) -> str:
    if job_name:
        p = job_pod(lab, ns, name)
    else:
        try:
            p = lab.ctx.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        except Exception:
            return ""
    return str((p.get("status") or {}).get("phase", ""))


def job_condition(lab: Lab, ns: str, name: str) -> str:
    j = lab.ctx.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")
    for c in (j.get("status") or {}).get("conditions") or []:
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return str(c["type"])
    return ""


def logs(lab: Lab, ns: str, target: str, *extra: str) -> str:
    return lab.ctx.kubectl("logs", "-n", ns, target, *extra).stdout


def test_a_job_that_prints_and_exits_0_succeeds_and_its_line_is_in_kubectl_logs(
    lab: Lab, namespace: str
) -> None:
    create(lab, namespace, job("hello", "echo hello from $(hostname); echo to-stderr >&2"))
    wait_for(lambda: job_condition(lab, namespace, "hello"), what="the Job to finish")
    assert job_condition(lab, namespace, "hello") == "Complete"
    p = job_pod(lab, namespace, "hello")
    assert p["status"]["phase"] == "Succeeded"
    assert p["metadata"]["annotations"][RUNTIME_ANNOTATION] == runtime.LOCAL
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (0, "Completed")
    out = logs(lab, namespace, "job/hello")
    assert f"hello from {p['metadata']['name']}" in out.splitlines()
    assert "to-stderr" in out


def test_a_job_that_exits_3_fails_with_exit_code_3(lab: Lab, namespace: str) -> None:
    create(lab, namespace, job("three", "echo about to fail; exit 3"))
    wait_for(lambda: job_condition(lab, namespace, "three"), what="the Job to finish")
    assert job_condition(lab, namespace, "three") == "Failed"
    p = job_pod(lab, namespace, "three")
    assert p["status"]["phase"] == "Failed"
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")
    assert "about to fail" in logs(lab, namespace, p["metadata"]["name"])


def test_the_container_gets_the_pods_environment_and_its_service_account_token(
    lab: Lab, namespace: str
) -> None:
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = (
        'echo "name=$POD_NAME ns=$POD_NAMESPACE node=$NODE greeting=$GREETING"; '
        f'echo "sa-namespace=$(cat {sa}/namespace)"; '
        f"test -s {sa}/token && test -s {sa}/ca.crt && echo token-mounted"
    )
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "WHO", "value": "lab"},
        {"name": "GREETING", "value": "hi-$(WHO)"},
    ]
    obj = pod("envy", script, env=env)
    obj["spec"]["restartPolicy"] = "Never"
    create(lab, namespace, obj)
    wait_for(lambda: phase_of(lab, namespace, "envy") == "Succeeded", what="the pod to succeed")
    node = lab.ctx.get(f"/api/v1/namespaces/{namespace}/pods/envy")["spec"]["nodeName"]
    out = logs(lab, namespace, "envy").splitlines()
    assert f"name=envy ns={namespace} node={node} greeting=hi-lab" in out
    assert f"sa-namespace={namespace}" in out
    assert "token-mounted" in out


def _listed_gpus(text: str) -> list[str]:
    return sorted(line.strip() for line in text.splitlines() if line.startswith("/dev/nvidia"))


def test_a_pod_sees_exactly_the_gpus_it_was_allocated(lab: Lab, namespace: str) -> None:
    gpu_pod = pod(
        "gpus",
        "ls /dev/nvidia* 2>/dev/null; echo done",
        resources={"limits": {"nvidia.com/gpu": "2"}},
    )
    gpu_pod["spec"]["restartPolicy"] = "Never"
    gpu_pod["spec"]["nodeSelector"] = {"kaic.io/accelerator-pool": "gpu"}
    plain = pod("nogpu", "ls /dev/nvidia* 2>/dev/null; echo done")
    plain["spec"]["restartPolicy"] = "Never"
    for p in (gpu_pod, plain):
        create(lab, namespace, p)
    for name in ("gpus", "nogpu"):
        wait_for(lambda n=name: phase_of(lab, namespace, n) == "Succeeded", what=f"{name}")
    got = _listed_gpus(logs(lab, namespace, "gpus"))
    uid = lab.ctx.get(f"/api/v1/namespaces/{namespace}/pods/gpus")["metadata"]["uid"]
    granted = devices.container_dir(lab.ctx.dir("devices"), uid, "main") / "devices"
    assert len(got) == 2, got
    assert got == sorted(f"/dev/{n}" for n in granted.read_text().split()), got
    assert _listed_gpus(logs(lab, namespace, "nogpu")) == []


def test_on_the_device_leak_lab_a_pod_without_a_grant_sees_every_gpu_of_its_node(
    lab_factory: LabFactory,
) -> None:
    # NOTE: the same options as the leaky lab of test_secure_accelerator_access (one lab).
    leaky = lab_factory(
        accelerators="device-plugin", nodes=1, cpu_nodes=1, gpus_per_node=4, with_={"device-leak"}
    )
    ns = "t-leak-runs"
    leaky.ctx.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}])
    wait_for(
        lambda: leaky.ctx.exists(f"/api/v1/namespaces/{ns}/serviceaccounts/default"),
        what="the default ServiceAccount",
    )
    try:
        p = pod("peek", "ls /dev/nvidia* 2>/dev/null; echo done")
        p["spec"]["restartPolicy"] = "Never"
        p["spec"]["nodeSelector"] = {"kaic.io/accelerator-pool": "gpu"}
        create(leaky, ns, p)
        wait_for(lambda: phase_of(leaky, ns, "peek") == "Succeeded", what="the pod to succeed")
        assert _listed_gpus(logs(leaky, ns, "peek")) == [f"/dev/nvidia{i}" for i in range(4)]
    finally:
        leaky.ctx.request("DELETE", f"/api/v1/namespaces/{ns}")


def test_restart_policy_always_restarts_a_container_that_exits(lab: Lab, namespace: str) -> None:
    create(lab, namespace, pod("again", "echo run; exit 1"))

    def restarts() -> int:
        p = lab.ctx.get(f"/api/v1/namespaces/{namespace}/pods/again")
        cs = (p.get("status") or {}).get("containerStatuses") or [{}]
        return int(cs[0].get("restartCount", 0))

    wait_for(lambda: restarts() >= 2, what="two restarts", timeout=60)
    p = lab.ctx.get(f"/api/v1/namespaces/{namespace}/pods/again")
    assert p["status"]["phase"] == "Running"
    last = p["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 1
    assert "run" in logs(lab, namespace, "again", "--previous")


def test_deleting_a_pod_stops_its_process(lab: Lab, namespace: str) -> None:
    before = set(container_pids(lab.ctx))
    create(lab, namespace, pod("sleeper", "echo up; exec sleep 3600"))
    wait_for(
        lambda: "up" in lab.ctx.kubectl("logs", "-n", namespace, "sleeper", check=False).stdout,
        what="the container to start",
    )
    mine = wait_for(lambda: set(container_pids(lab.ctx)) - before, what="its process")
    assert any("sleep" in (proc.command(p) or "") for p in mine)
    lab.ctx.kubectl("delete", "pod", "-n", namespace, "sleeper", "--wait=true")
    wait_for(lambda: not any(proc.alive(p) for p in mine), what="the process to stop", timeout=20)


def test_a_pod_of_an_image_the_lab_does_not_run_keeps_kwok_behaviour_and_says_so(
    lab: Lab, namespace: str
) -> None:
    j = job("paused", "")
    j["spec"]["template"]["spec"]["containers"] = [
        {"name": "main", "image": "registry.k8s.io/pause:3.10"}
    ]
    create(lab, namespace, j)
    wait_for(lambda: job_condition(lab, namespace, "paused"), what="the Job to finish")
    assert job_condition(lab, namespace, "paused") == "Complete"
    p = job_pod(lab, namespace, "paused")
    ann = p["metadata"]["annotations"]
    assert ann[RUNTIME_ANNOTATION] == runtime.KWOK
    assert "registry.k8s.io/pause:3.10" in ann[runtime.REASON_ANNOTATION]
    said = logs(lab, namespace, p["metadata"]["name"])
    assert "did not run" in said and "registry.k8s.io/pause:3.10" in said
    events = lab.ctx.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    assert any(
        e["reason"] == "NotRun" and e["involvedObject"]["name"] == p["metadata"]["name"]
        for e in events
    )


def test_python_images_run_python_and_a_container_reaches_nothing_outside_its_sandbox(
    lab: Lab, namespace: str
) -> None:
    port = lab.ctx.port("kube-apiserver")
    py = pod("py", "", image="python:3.12-slim")
    py["spec"]["containers"][0]["command"] = ["python", "-c", "import sys; print('py', 3)"]
    probe = pod(
        "dial",
        f"if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo reached; "
        "else echo isolated; fi; hostname",
    )
    probe["spec"]["containers"][0]["command"][0] = "bash"
    for p in (py, probe):
        p["spec"]["restartPolicy"] = "Never"
        create(lab, namespace, p)
    for name in ("py", "dial"):
        wait_for(lambda n=name: phase_of(lab, namespace, n) == "Succeeded", what=name)
    assert logs(lab, namespace, "py").splitlines() == ["py 3"]
    assert logs(lab, namespace, "dial").splitlines() == ["isolated", "dial"]


def test_the_dcgm_exporters_are_daemonset_pods_on_every_gpu_node(lab: Lab) -> None:
    pods = lab.ctx.get(f"/api/v1/namespaces/{DCGM_NAMESPACE}/pods")["items"]
    owners = {p["spec"]["nodeName"]: p["metadata"]["ownerReferences"][0]["kind"] for p in pods}
    assert owners == dict.fromkeys(gpu_nodes(lab.ctx), "DaemonSet")


def test_a_recreated_dcgm_exporter_pod_gets_its_port_forward(lab: Lab) -> None:
    def pods() -> dict[str, str]:
        items = lab.ctx.get(f"/api/v1/namespaces/{DCGM_NAMESPACE}/pods")["items"]
        return {
            p["spec"]["nodeName"]: p["metadata"]["name"]
            for p in items
            if not p["metadata"].get("deletionTimestamp") and p["spec"].get("nodeName")
        }

    node = gpu_nodes(lab.ctx)[0]
    old = pods()[node]
    lab.ctx.request("DELETE", f"/api/v1/namespaces/{DCGM_NAMESPACE}/pods/{old}")
    new = wait_for(lambda: (pods().get(node) or old) != old and pods()[node], what="a new pod")
    pf_path = f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{DCGM_NAMESPACE}/portforwards/{new}"
    pf = wait_for(lambda: lab.ctx.exists(pf_path) and lab.ctx.get(pf_path), what="its PortForward")
    target = pf["spec"]["forwards"][0]["target"]
    pod = lab.ctx.get(f"/api/v1/namespaces/{DCGM_NAMESPACE}/pods/{new}")
    ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(ip) in lab.ctx.net.layout.pod_cidr
    assert target == {"address": ip, "port": 9400}
    # the simulator serves the new pod at its IP, and no longer the old one's
    wait_for(lambda: (ip, 9400) in lab.listening()["dcgm-exporter"], what="its listener")


def test_lab_down_leaves_no_container_process_even_after_the_runtime_was_killed() -> None:
    lab = Lab(
        LabOptions(
            name=f"pytest-{os.getpid()}-rt",
            nodes=0,
            cpu_nodes=1,
            accelerators="none",
            without=frozenset({"gateway-api", "kueue", "jobset", "inference-extension"}),
        )
    )
    try:
        lab.up()
        # NOTE: the background sleep is not the container's main process, so only the
        # recorded process group finds it once the runtime is gone.
        create(lab, "default", pod("sleeper", "sleep 3600 & exec sleep 3601"))
        wait_for(lambda: container_pids(lab.ctx), what="the container's process")
        pids = container_pids(lab.ctx)
        rt = lab.ctx.pid("container-runtime")
        assert rt is not None
        os.kill(rt, signal.SIGKILL)  # a crashed runtime: its containers are orphans
        wait_for(lambda: not proc.alive(rt), what="the runtime to die")
    finally:
        with contextlib.suppress(Exception):
            lab.down()
    assert not [p for p in pids if proc.alive(p)]


def test_exec_of_a_command_that_exits_3_reports_exit_code_3_with_its_output(
    lab: Lab, namespace: str
) -> None:
    create(lab, namespace, pod("execd", "sleep 3600"))
    wait_for(lambda: phase_of(lab, namespace, "execd") == "Running", what="the pod to run")
    cluster = connect(str(lab.kubeconfig))
    r = cluster.exec(namespace, "execd", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_code, r.stdout.strip(), r.stderr.strip()) == (3, "out", "err")
    assert cluster.exec(namespace, "execd", ["true"]).exit_code == 0
