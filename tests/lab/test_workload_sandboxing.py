"""workload_sandboxing on the lab: RuntimeClass ``sandboxed-namespaces`` (component
``sandbox-runtime``) whose pods' ``exec`` the lab runs in new PID, network, mount, UTS and
IPC namespaces with a private root, beside an unsandboxed control pod on the same node.

The lab cannot show a PASS: no runtime with its own kernel runs here, and a namespace
sandbox shares the host's kernel, so ``KernelAndMemoryIsolation`` FAILs with that reason
while the four other sub-tests really PASS. With the sandbox switched off (pods of the
RuntimeClass run unisolated) ``ProcessIsolation``, ``FilesystemIsolation`` and
``NetworkIsolation`` FAIL as well.
"""

from __future__ import annotations

import json

import pytest
from labtools import run_check_on_lab, sub

from kaic.lab.sims import devices
from kaic.model import Outcome

try:
    from kaic.lab import Lab
except ImportError:  # pragma: no cover - the lab package without its cluster code
    pytest.skip("kaic.lab.Lab is not available", allow_module_level=True)

pytestmark = pytest.mark.lab
ID = "workload_sandboxing"


def sandbox_mode(lab: Lab, mode: str) -> None:
    lab.ctx.kubectl(
        "patch",
        f"configmap/{devices.CONFIGMAP_NAME}",
        "-n",
        devices.CONFIGMAP_NAMESPACE,
        "--type",
        "merge",
        "-p",
        json.dumps({"data": {"sandbox": mode}}),
    )


def test_workload_sandboxing_isolates_but_shares_the_kernel_in_the_lab(lab: Lab) -> None:
    r = run_check_on_lab(lab, ID, catalog_version="1.37")
    assert r.outcome is Outcome.FAIL
    for name in (
        "SchedulingAndExecution",
        "ProcessIsolation",
        "FilesystemIsolation",
        "NetworkIsolation",
    ):
        assert sub(r, name).outcome is Outcome.PASS, (name, sub(r, name).reason)
    k = sub(r, "KernelAndMemoryIsolation")
    assert k.outcome is Outcome.FAIL
    assert "runs on the same kernel as unsandboxed pod unsandboxed-control-pod" in k.reason
    assert "handler kaic-unshare gives no kernel boundary" in k.reason
    assert "RuntimeClass sandboxed-namespaces" in r.log[0]


def test_workload_sandboxing_fails_when_the_runtime_class_does_not_isolate(lab: Lab) -> None:
    sandbox_mode(lab, "off")
    try:
        r = run_check_on_lab(lab, ID, catalog_version="1.37")
    finally:
        sandbox_mode(lab, "isolated")
    assert r.outcome is Outcome.FAIL
    assert "shares its PID namespace" in sub(r, "ProcessIsolation").reason
    assert "it sees the file /tmp/kaic-sandbox-marker-" in sub(r, "FilesystemIsolation").reason
    assert "shares its network namespace" in sub(r, "NetworkIsolation").reason
