"""The lab's container runtime (``kaic.lab.sims.runtime``): which images it runs, a
container's environment and command line, its state after an exit, the pod's phase, and
the log format kwok serves."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kaic.lab.sims import runtime
from kaic.lab.sims.runtime import ConfigError, ContainerState

HOST = {"bash": "/bin/bash", "python3": "/usr/bin/python3"}


def which(name: str) -> str | None:
    return HOST.get(name)


def a_pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u-1",
            "labels": {"app": "x"},
            "annotations": {"a": "b"},
        },
        "spec": {"nodeName": "kaic-gpu-0", "serviceAccountName": "sa", **spec},
        "status": {"podIP": "127.64.0.9", "hostIP": "127.0.0.1"},
    }


@pytest.mark.parametrize(
    ("image", "repo"),
    [
        ("docker.io/library/busybox:1.36", "busybox"),
        ("busybox", "busybox"),
        ("registry.k8s.io/e2e-test-images/busybox:1.29-4", "busybox"),
        ("nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", "cuda"),
        ("ubuntu@sha256:abcd", "ubuntu"),
        ("localhost:5000/Python:3.12", "python"),
    ],
)
def test_the_image_repository_is_the_last_path_part_without_tag_or_digest(
    image: str, repo: str
) -> None:
    assert runtime.image_repository(image) == repo


def test_ubuntu_is_run_and_pause_is_left_to_kwok_with_the_reason() -> None:
    profile, why = runtime.understood("ubuntu:22.04", which)
    assert profile is not None and why == ""
    profile, why = runtime.understood("registry.k8s.io/pause:3.10", which)
    assert profile is None
    assert "registry.k8s.io/pause:3.10" in why and "understood: busybox" in why


def test_busybox_needs_the_host_busybox_and_says_which_package() -> None:
    profile, why = runtime.understood("busybox:1.36", which)
    assert profile is None
    assert "busybox" in why and "Debian package busybox" in why
    profile, _ = runtime.understood("busybox:1.36", lambda n: f"/bin/{n}")
    assert profile is not None and profile.busybox_applets


def test_a_pod_runs_only_when_every_container_is_understood_and_it_has_no_init_containers() -> None:
    ok = a_pod(containers=[{"name": "a", "image": "ubuntu"}, {"name": "b", "image": "python:3"}])
    assert runtime.pod_decision(ok, which) == (True, "")
    mixed = a_pod(containers=[{"name": "a", "image": "ubuntu"}, {"name": "b", "image": "nginx"}])
    run, why = runtime.pod_decision(mixed, which)
    assert not run and why.startswith("container b:")
    init = a_pod(containers=[{"name": "a", "image": "ubuntu"}], initContainers=[{"name": "i"}])
    assert runtime.pod_decision(init, which)[0] is False


def lookup(kind: str, ns: str, name: str) -> Mapping[str, str] | None:
    data = {("configmaps", "cfg"): {"MODE": "fast", "LEVEL": "3"}, ("secrets", "s"): {"pw": "x"}}
    return data.get((kind, name))


def test_the_environment_has_field_refs_resource_refs_config_and_expansion() -> None:
    c = {
        "name": "main",
        "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}},
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "C_"}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": "APP",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}},
            },
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {
                "name": "MEM_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "GREETING", "value": "$(POD_NAME) in $(NS), $$(NS) $(UNSET)"},
        ],
    }
    env = runtime.container_env(a_pod(), c, lookup, {"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert (env["POD_NAME"], env["NS"], env["IP"], env["APP"]) == ("p", "ns", "127.64.0.9", "x")
    assert (env["CPU"], env["MEM_MI"], env["PW"]) == ("2", "1024", "x")
    assert (env["C_MODE"], env["C_LEVEL"]) == ("fast", "3")
    assert env["GREETING"] == "p in ns, $(NS) $(UNSET)"


def test_a_missing_config_map_stops_the_container_unless_optional() -> None:
    ref = {"configMapKeyRef": {"name": "absent", "key": "k"}}
    c = {"name": "main", "env": [{"name": "X", "valueFrom": ref}]}
    with pytest.raises(ConfigError, match="absent"):
        runtime.container_env(a_pod(), c, lookup, {})
    ref["configMapKeyRef"]["optional"] = True  # type: ignore[index]
    assert "X" not in runtime.container_env(a_pod(), c, lookup, {})


def test_command_and_args_follow_the_image_defaults() -> None:
    profile = runtime.IMAGES["ubuntu"]
    env = {"N": "3"}
    assert runtime.container_argv({}, profile, env) == ["bash"]
    assert runtime.container_argv({"args": ["sh", "-c", "x"]}, profile, env) == ["sh", "-c", "x"]
    assert runtime.container_argv({"command": ["sleep"], "args": ["$(N)"]}, profile, env) == [
        "sleep",
        "3",
    ]


def test_the_sandbox_prefix_gives_a_private_network_and_the_pods_hostname() -> None:
    prefix = runtime.sandbox_prefix(a_pod(hostname="worker-0"))
    assert prefix[:3] == ["unshare", "--net", "--uts"]
    assert prefix[-1] == "worker-0"


def test_an_exit_under_never_is_final_and_decides_the_phase() -> None:
    a, b = ContainerState("a", "ubuntu"), ContainerState("b", "ubuntu")
    runtime.exited(a, 0, "Never")
    assert runtime.pod_phase([a, b]) == "Running"
    runtime.exited(b, 3, "Never")
    assert (b.state, b.exit_code, b.reason, b.restart_at) == ("terminated", 3, "Error", None)
    assert runtime.pod_phase([a, b]) == "Failed"
    status = runtime.pod_status([a, b])
    assert status["phase"] == "Failed"
    assert status["containerStatuses"][1]["state"]["terminated"]["exitCode"] == 3
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"


def test_a_killed_process_reports_128_plus_the_signal() -> None:
    c = ContainerState("a", "ubuntu")
    runtime.exited(c, -9, "Never")
    assert c.exit_code == 137


@pytest.mark.parametrize(
    ("policy", "code", "restarts"),
    [("Always", 0, True), ("Always", 1, True), ("OnFailure", 1, True), ("OnFailure", 0, False)],
)
def test_restart_policy_decides_whether_an_exited_container_comes_back(
    policy: str, code: int, restarts: bool
) -> None:
    c = ContainerState("a", "ubuntu")
    runtime.exited(c, code, policy)
    assert (c.restart_at is not None) is restarts
    if restarts:
        assert c.state == "waiting" and c.reason == "CrashLoopBackOff"
        assert c.last is not None and c.last["exitCode"] == code
        assert runtime.pod_phase([c]) == "Running"
    else:
        assert runtime.pod_phase([c]) == "Succeeded"


def test_log_lines_are_in_the_cri_format() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    assert runtime.cri_line("stdout", "hi", when) == (
        "2026-01-02T03:04:05.678901000Z stdout F hi\n"
    )


def test_recorded_process_groups_are_found_and_killed(tmp_path: Path) -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        (tmp_path / "u_main").write_text(f"{p.pid}\n")
        assert p.pid in runtime.recorded_pids(tmp_path)
        assert runtime.kill_recorded(tmp_path) == [p.pid]
        p.wait(timeout=10)
        assert not list(tmp_path.iterdir())
    finally:
        if p.poll() is None:
            p.kill()


def a_runtime(tmp_path: Path, which_: Any = which, **kw: Any) -> runtime.Runtime:
    return runtime.Runtime(None, tmp_path, which=which_, **kw)  # type: ignore[arg-type]


def test_busybox_images_get_every_applet_of_the_host_busybox_first_on_path(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "host" / "busybox"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf 'httpd\\nwget\\nsh\\n'\n")
    fake.chmod(0o755)
    rt = a_runtime(tmp_path / "rt", lambda n: str(fake) if n == "busybox" else None)
    d = Path(rt.path_dir(runtime.IMAGES["busybox"]))
    assert sorted(p.name for p in d.iterdir()) == ["httpd", "sh", "wget"]
    assert (d / "httpd").resolve() == fake.resolve()
    assert rt.path_dir(runtime.IMAGES["ubuntu"]) == ""
    py = Path(a_runtime(tmp_path / "rt2").path_dir(runtime.IMAGES["python"])) / "python"
    assert str(py.readlink()) == "/usr/bin/python3"


def run_of(uid: str = "u-1") -> runtime.PodRun:
    pod = a_pod(containers=[{"name": "main", "image": "ubuntu"}])
    return runtime.PodRun(uid, "ns", "p", pod, [ContainerState("main", "ubuntu")])


def test_the_command_line_goes_through_the_sandbox_the_mounts_and_the_device_view(
    tmp_path: Path,
) -> None:
    exec_bin = tmp_path / "exec-bin"
    exec_bin.mkdir()
    (exec_bin / "sh").write_text("#!/bin/sh\n")
    rt = a_runtime(tmp_path / "rt", devices_root=tmp_path / "devices", exec_bin=exec_bin)
    vol = tmp_path / "vol"
    line, extra = rt.command_line(run_of(), "main", ["ls", "/dev"], [(vol, runtime.SA_MOUNT, True)])
    assert line[:2] == ["unshare", "--net"]
    i = line.index(str(rt.root / "mounts.sh"))
    assert line[i + 1 : i + 5] == [str(vol), runtime.SA_MOUNT, "ro", "--"]
    assert line[i + 5] == str(exec_bin / "sh")
    assert line[-2:] == ["ls", "/dev"]
    assert extra == {runtime.DEVICE_DIR_ENV: str(tmp_path / "devices" / "pods" / "u-1" / "main")}
    plain, extra = a_runtime(tmp_path / "rt3").command_line(run_of(), "main", ["true"], [])
    assert "/bin/sh" in plain and not extra and "mounts.sh" not in " ".join(plain)


def test_the_stop_grace_is_the_pods_but_at_most_ten_seconds() -> None:
    assert runtime.grace_of(a_pod(terminationGracePeriodSeconds=0)) == 0
    assert runtime.grace_of(a_pod(terminationGracePeriodSeconds=3)) == 3
    assert runtime.grace_of(a_pod()) == runtime.STOP_GRACE_CAP_S


class _Api:
    """The objects ``host_directory`` reads, by path."""

    def __init__(self, objects: Mapping[str, Any]) -> None:
        self.objects = objects

    def get(self, path: str) -> Any:
        if path not in self.objects:
            raise runtime.ApiError(404, f"{path} not found")
        return self.objects[path]


def claim_pod(tmp_path: Path, pv_spec: Mapping[str, Any], phase: str = "Bound") -> Any:
    api = _Api(
        {
            "/api/v1/namespaces/ns/persistentvolumeclaims/shared": {
                "spec": {"volumeName": "pv-1"},
                "status": {"phase": phase},
            },
            "/api/v1/persistentvolumes/pv-1": {"spec": pv_spec},
        }
    )
    rt = runtime.Runtime(api, tmp_path / "rt", host_path_root=tmp_path / "lab")  # type: ignore[arg-type]
    pod = a_pod(
        containers=[
            {
                "name": "main",
                "image": "debian",
                "volumeMounts": [{"name": "data", "mountPath": "/tmp/data"}],
            }
        ],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}],
    )
    run = runtime.PodRun("u-1", "ns", "p", pod, [ContainerState("main", "debian")])
    return rt, run, pod["spec"]["containers"][0]


def test_a_claim_bound_to_a_host_path_volume_under_the_lab_is_mounted_read_write(
    tmp_path: Path,
) -> None:
    d = tmp_path / "lab" / "shared" / "pvc-1"
    rt, run, c = claim_pod(tmp_path, {"hostPath": {"path": str(d), "type": "DirectoryOrCreate"}})
    assert rt.volume_mounts(run, c) == [(d, "/tmp/data", False)]
    assert d.is_dir()
    line, _ = rt.command_line(run, "main", ["true"], rt.volume_mounts(run, c))
    i = line.index(str(rt.root / "mounts.sh"))
    assert line[i + 1 : i + 5] == [str(d), "/tmp/data", "rw", "--"]


def test_host_directories_outside_the_lab_or_unbound_claims_are_refused(tmp_path: Path) -> None:
    rt, run, c = claim_pod(tmp_path, {"hostPath": {"path": "/etc"}})
    with pytest.raises(ConfigError, match="only under its own directory"):
        rt.volume_mounts(run, c)
    rt, run, c = claim_pod(tmp_path, {"local": {"path": str(tmp_path / "lab" / ".." / "x")}})
    with pytest.raises(ConfigError, match="only under its own directory"):
        rt.volume_mounts(run, c)
    rt, run, c = claim_pod(tmp_path, {"nfs": {"server": "x", "path": "/"}})
    with pytest.raises(ConfigError, match="neither hostPath nor local"):
        rt.volume_mounts(run, c)
    rt, run, c = claim_pod(tmp_path, {"hostPath": {"path": str(tmp_path / "lab")}}, "Pending")
    with pytest.raises(ConfigError, match="is not bound"):
        rt.volume_mounts(run, c)


def test_a_read_only_host_path_volume_is_mounted_read_only(tmp_path: Path) -> None:
    d = tmp_path / "lab" / "data"
    d.mkdir(parents=True)
    rt = runtime.Runtime(None, tmp_path / "rt", host_path_root=tmp_path / "lab")  # type: ignore[arg-type]
    pod = a_pod(
        containers=[
            {
                "name": "main",
                "image": "debian",
                "volumeMounts": [{"name": "h", "mountPath": str(d), "readOnly": True}],
            }
        ],
        volumes=[{"name": "h", "hostPath": {"path": str(d)}}, {"name": "e", "emptyDir": {}}],
    )
    run = runtime.PodRun("u-1", "ns", "p", pod, [ContainerState("main", "debian")])
    assert rt.volume_mounts(run, pod["spec"]["containers"][0]) == [(d, str(d), True)]
    no_root = runtime.Runtime(None, tmp_path / "rt2")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="only under its own directory"):
        no_root.volume_mounts(run, pod["spec"]["containers"][0])
