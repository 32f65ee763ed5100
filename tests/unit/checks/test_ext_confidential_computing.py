"""ext_confidential_computing against the fake cluster: confidential RuntimeClasses and
TEE node labels are detected, the test pod is placed by a simulated scheduler, and the
verdict is PASS when everything automated holds, with attestation a SKIP for a reviewer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kaic.checks.ext_confidential_computing import POD, confidential_runtime
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

TDX = "feature.node.kubernetes.io/cpu-security.tdx.enabled"
FAST = {"confidential-schedule-timeout": "0.5"}


def _node(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def _rc(name: str, handler: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": name},
        "handler": handler or name,
        "scheduling": {"nodeSelector": {TDX: "true"}},
    }


def _fake(
    *, runtime: str | None = "kata-qemu-tdx", tee: bool = True, schedule: bool = True
) -> FakeCluster:
    fake = FakeCluster()
    fake.serve("node.k8s.io/v1", ("runtimeclasses", "RuntimeClass", False))
    fake.add(_rc("sandboxed-namespaces", "kaic-unshare"))
    if runtime:
        fake.add(_rc(runtime))
    fake.add(_node("plain", {}))
    fake.add(_node("tee-0", {TDX: "true"} if tee else {}))

    def scheduler(c: FakeCluster) -> None:
        if not schedule:
            return
        for key, pod in c.store.items():
            if key[1] != "Pod" or pod["spec"].get("nodeName"):
                continue
            terms = pod["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]["nodeSelectorTerms"]
            pod["spec"]["nodeName"] = terms[0]["matchFields"][0]["values"][0]
            pod["status"] = {"phase": "Pending"}

    fake.controllers.append(scheduler)
    return fake


def _sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


def test_detected_and_scheduled_passes_with_attestation_left_to_a_reviewer() -> None:
    fake = _fake()
    result = run_fake_check(fake, "ext_confidential_computing", options=FAST)
    assert result.outcome is Outcome.PASS, result.reason
    assert any("bound to TEE node tee-0" in line for line in result.log)
    attest = _sub(result, "RemoteAttestation")
    assert "remote attestation is not automated: attach" in attest.reason
    for name in ("ConfidentialRuntimeClassDetected", "TEENodesDetected", "PodScheduledOnTEENode"):
        assert _sub(result, name).outcome is Outcome.PASS, name
    assert _sub(result, "RemoteAttestation").outcome is Outcome.SKIP
    doc = json.loads(next(e.content for e in result.evidence if e.name == "confidential.json"))
    assert doc["pod"]["node"] == "tee-0" and doc["pod"]["runtimeClassName"] == "kata-qemu-tdx"
    assert doc["tee_nodes"] == {"tee-0": [f"Intel TDX (NFD) ({TDX}=true)"]}
    pod = fake.store[("v1", "Pod", "kaic-t", POD)]
    assert pod["spec"]["runtimeClassName"] == "kata-qemu-tdx"


def test_fails_when_no_confidential_runtime_class_is_installed() -> None:
    result = run_fake_check(_fake(runtime=None), "ext_confidential_computing", options=FAST)
    assert result.outcome is Outcome.FAIL
    reason = _sub(result, "ConfidentialRuntimeClassDetected").reason
    assert "no confidential RuntimeClass" in reason
    assert "sandboxed-namespaces (kaic-unshare)" in reason
    assert _sub(result, "PodScheduledOnTEENode").outcome is Outcome.SKIP


def test_fails_when_no_node_carries_a_tee_label() -> None:
    result = run_fake_check(_fake(tee=False), "ext_confidential_computing", options=FAST)
    assert result.outcome is Outcome.FAIL
    assert "no TEE-capable node" in _sub(result, "TEENodesDetected").reason


def test_a_named_node_label_counts_as_tee() -> None:
    fake = _fake(tee=False)
    fake.add(_node("vendor-tee", {"example.com/tee": "sev-snp"}))
    result = run_fake_check(
        fake,
        "ext_confidential_computing",
        options={**FAST, "confidential-node-label": "example.com/tee=sev-snp"},
    )
    assert result.outcome is Outcome.PASS, result.reason
    assert any("vendor-tee" in line for line in result.log)


def test_fails_when_the_pod_is_not_bound() -> None:
    result = run_fake_check(_fake(schedule=False), "ext_confidential_computing", options=FAST)
    assert result.outcome is Outcome.FAIL
    assert "was not bound to a TEE node (tee-0)" in _sub(result, "PodScheduledOnTEENode").reason


def test_a_named_runtime_class_that_does_not_exist_fails() -> None:
    result = run_fake_check(
        _fake(),
        "ext_confidential_computing",
        options={**FAST, "confidential-runtime-class": "kata-qemu-snp"},
    )
    assert result.outcome is Outcome.FAIL
    assert "kata-qemu-snp" in _sub(result, "ConfidentialRuntimeClassDetected").reason


@pytest.mark.parametrize(
    ("name", "handler", "confidential"),
    [
        ("kata-qemu-tdx", None, True),
        ("kata-qemu-snp", None, True),
        ("kata-qemu-coco-dev", None, True),
        ("kata-qemu-nvidia-gpu-snp", None, True),
        ("kata-remote", None, True),
        ("kata-cc-isolation", None, True),
        ("enclave-cc", None, True),
        ("kata-qemu-se", None, True),
        ("kata-qemu", None, False),
        ("kata-clh", None, False),
        ("gvisor", "runsc", False),
        ("sandboxed-namespaces", "kaic-unshare", False),
        ("secure", "runc", False),
    ],
)
def test_which_runtime_classes_count_as_confidential(
    name: str, handler: str | None, confidential: bool
) -> None:
    assert confidential_runtime(_rc(name, handler)) is confidential
