"""workload_sandboxing against a fake cluster.

The fake schedules pods onto one node and answers ``exec`` with what the probe would
print in a sandbox with its own kernel (gVisor-like), in a namespace sandbox on the host
kernel, or in a pod that is not isolated at all (sharing the control pod's namespaces and
files).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from kaic.checks import workload_sandboxing as ws
from kaic.cluster.api import ExecResult
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

HOST = {
    "KERNEL_RELEASE": "6.8.0-1019-gke",
    "KERNEL_VERSION": "Linux version 6.8.0-1019-gke",
    "BOOT_ID": "b00t-host",
    "NS_pid": "pid:[100]",
    "NS_net": "net:[200]",
    "NS_mnt": "mnt:[300]",
    "PID_COUNT": "2",
    "NODE_DAEMONS": "",
    "READABLE_MEMORY": "none",
    "NODE_PATHS": "",
    "MARKER": "absent",
    "INTERFACES": "lo eth0",
}
GVISOR = HOST | {
    "KERNEL_RELEASE": "4.4.0",
    "KERNEL_VERSION": "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016",
    "BOOT_ID": "b00t-sentry",
    "NS_pid": "pid:[1]",
    "NS_net": "net:[2]",
}


def render(info: dict[str, str], completed: bool = True) -> str:
    lines = ["SANDBOX_PROBE: SCHEDULING=PASS"] + [f"SANDBOX_INFO: {k}={v}" for k, v in info.items()]
    if completed:
        lines.append("SANDBOX_PROBE: COMPLETED")
    return "\n".join(lines) + "\n"


class Sim:
    def __init__(
        self, sandboxed: dict[str, str] | None = None, *, runtime_classes: bool = True
    ) -> None:
        self.fc = FakeCluster()
        self.sandboxed = GVISOR if sandboxed is None else sandboxed
        self.completed = True
        self.marker_written: list[str] = []
        self.pods: dict[str, dict[str, Any]] = {}
        """Every pod the check created, as first seen."""
        self.fc.serve("node.k8s.io/v1", ("runtimeclasses", "RuntimeClass", False))
        if runtime_classes:
            self.fc.add(
                {
                    "apiVersion": "node.k8s.io/v1",
                    "kind": "RuntimeClass",
                    "metadata": {"name": "gvisor"},
                    "handler": "runsc",
                }
            )
            self.fc.add(
                {
                    "apiVersion": "node.k8s.io/v1",
                    "kind": "RuntimeClass",
                    "metadata": {"name": "nvidia"},
                    "handler": "nvidia",
                }
            )
        self.fc.add(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "n1"},
                "spec": {"taints": [{"key": "sandbox", "effect": "NoSchedule"}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }
        )
        self.fc.controllers.append(self.schedule)
        self.fc.exec_handler = self.exec

    def schedule(self, fc: FakeCluster) -> None:
        for pod in fc.list("v1", "Pod"):
            self.pods.setdefault(pod["metadata"]["name"], pod)
            if not pod["spec"].get("nodeName"):
                md = pod["metadata"]
                fc.patch(
                    "v1",
                    "Pod",
                    md["name"],
                    {"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}},
                    md["namespace"],
                )

    def exec(self, ns: str, pod: str, command: Sequence[str], container: str | None) -> ExecResult:
        assert container == ws.CONTAINER and list(command[:2]) == ["sh", "-c"]
        script = command[2]
        if script.startswith("echo kaic > "):
            self.marker_written.append(script.split("> ", 1)[1])
            return ExecResult("", "", 0)
        info = HOST if pod == "unsandboxed-control-pod" else self.sandboxed
        return ExecResult(render(info, self.completed or pod != "sandboxed-probe-pod"), "", 0)

    def run(self, **options: str) -> CheckResult:
        return run_fake_check(
            self.fc, "workload_sandboxing", options=options, catalog_version="1.37"
        )


def sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


NAMES = [
    "SchedulingAndExecution",
    "ProcessIsolation",
    "KernelAndMemoryIsolation",
    "FilesystemIsolation",
    "NetworkIsolation",
]


def test_workload_sandboxing_passes_for_a_sandbox_with_its_own_kernel() -> None:
    sim = Sim()
    r = sim.run()
    assert r.outcome is Outcome.PASS, r.reason
    assert [s.name for s in r.subresults] == NAMES
    pod = sim.fc.get("v1", "Pod", "sandboxed-probe-pod", "kaic-t")
    assert pod is None  # deleted afterwards
    sandboxed = sim.pods["sandboxed-probe-pod"]
    control = sim.pods["unsandboxed-control-pod"]
    assert sandboxed["spec"]["runtimeClassName"] == "gvisor"
    assert "runtimeClassName" not in control["spec"]
    assert control["spec"]["tolerations"] == [
        {"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert sim.marker_written and sim.marker_written[0].startswith("/tmp/kaic-sandbox-marker-")
    assert any("kernel identity differs" in x for x in sub(r, "KernelAndMemoryIsolation").log)


def test_workload_sandboxing_fails_a_namespace_sandbox_on_the_host_kernel() -> None:
    ns_only = HOST | {"NS_pid": "pid:[9]", "NS_net": "net:[8]", "INTERFACES": "lo"}
    r = Sim(ns_only).run()
    assert r.outcome is Outcome.FAIL
    k = sub(r, "KernelAndMemoryIsolation")
    assert k.outcome is Outcome.FAIL
    assert "same kernel as unsandboxed pod unsandboxed-control-pod on node n1" in k.reason
    assert "handler runsc gives no kernel boundary" in k.reason
    for name in (
        "SchedulingAndExecution",
        "ProcessIsolation",
        "FilesystemIsolation",
        "NetworkIsolation",
    ):
        assert sub(r, name).outcome is Outcome.PASS, name


def test_workload_sandboxing_fails_every_isolation_for_an_unisolated_pod() -> None:
    r = Sim(HOST | {"MARKER": "visible", "NODE_DAEMONS": "kubelet containerd"}).run()
    assert r.outcome is Outcome.FAIL
    assert "it sees node processes: kubelet containerd" in sub(r, "ProcessIsolation").reason
    assert "shares its PID namespace (pid:[100])" in sub(r, "ProcessIsolation").reason
    assert "it sees the file /tmp/kaic-sandbox-marker-" in sub(r, "FilesystemIsolation").reason
    assert "shares its network namespace" in sub(r, "NetworkIsolation").reason


@pytest.mark.parametrize(
    ("extra", "sub_name", "text"),
    [
        ({"READABLE_MEMORY": "/dev/mem"}, "KernelAndMemoryIsolation", "it can read /dev/mem"),
        ({"NODE_PATHS": "/var/lib/kubelet"}, "FilesystemIsolation", "/var/lib/kubelet"),
        ({"INTERFACES": "lo cni0"}, "NetworkIsolation", "node interfaces are visible: cni0"),
    ],
)
def test_workload_sandboxing_fails_each_probe_by_name(
    extra: dict[str, str], sub_name: str, text: str
) -> None:
    r = Sim(GVISOR | extra).run()
    assert r.outcome is Outcome.FAIL
    assert text in sub(r, sub_name).reason


def test_workload_sandboxing_fails_when_the_probe_does_not_complete() -> None:
    sim = Sim()
    sim.completed = False
    r = sim.run()
    assert sub(r, "SchedulingAndExecution").outcome is Outcome.FAIL


def test_workload_sandboxing_fails_without_a_sandbox() -> None:
    r = Sim(runtime_classes=False).run()
    assert r.outcome is Outcome.FAIL
    assert r.reason.startswith("no sandboxing mechanism: no RuntimeClass")
    assert "agents.x-k8s.io" in r.reason


def test_workload_sandboxing_uses_the_named_runtime_class() -> None:
    sim = Sim()
    r = sim.run(**{"sandbox-runtime-class": "nvidia"})
    assert r.outcome is Outcome.PASS
    assert "RuntimeClass nvidia (handler nvidia)" in r.log[0]


def test_workload_sandboxing_rejects_an_unknown_runtime_class_and_type() -> None:
    r = Sim().run(**{"sandbox-runtime-class": "nope"})
    assert r.outcome is Outcome.ERROR and "no such RuntimeClass" in r.reason
    r = Sim().run(**{"sandbox-type": "vm"})
    assert r.outcome is Outcome.ERROR and "--sandbox-type" in r.reason


def test_workload_sandboxing_runs_an_agent_sandbox() -> None:
    sim = Sim(runtime_classes=False)
    sim.fc.serve("agents.x-k8s.io/v1alpha1", ("sandboxes", "Sandbox", True))

    def controller(fc: FakeCluster) -> None:
        for sb in fc.list("agents.x-k8s.io/v1alpha1", "Sandbox"):
            md = sb["metadata"]
            name = f"{md['name']}-pod"
            if fc.get("v1", "Pod", name, md["namespace"]) is None:
                fc.add(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": name,
                            "namespace": md["namespace"],
                            "ownerReferences": [
                                {
                                    "apiVersion": "agents.x-k8s.io/v1alpha1",
                                    "kind": "Sandbox",
                                    "name": md["name"],
                                }
                            ],
                        },
                        "spec": sb["spec"]["podTemplate"]["spec"],
                    }
                )

    sim.fc.controllers.insert(0, controller)
    real_exec = sim.exec

    def exec_(ns: str, pod: str, command: Sequence[str], container: str | None) -> ExecResult:
        return real_exec(
            ns,
            "sandboxed-probe-pod" if pod == "sandboxed-probe-cr-pod" else pod,
            command,
            container,
        )

    sim.fc.exec_handler = exec_
    r = sim.run()
    assert r.outcome is Outcome.PASS, r.reason
    assert "agent-sandbox agents.x-k8s.io/v1alpha1 Sandbox" in r.log[0]
    assert sim.fc.get("agents.x-k8s.io/v1alpha1", "Sandbox", "sandboxed-probe-cr", "kaic-t") is None
