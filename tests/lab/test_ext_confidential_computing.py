"""ext_confidential_computing on the lab: with the simulated confidential runtime
(``--with confidential-runtime``: RuntimeClass kata-qemu-tdx and the NFD TDX label on one
node, no TEE hardware) the RuntimeClass and the node are detected and the pod is bound
there by the real scheduler, so the verdict is PASS (attestation: a SKIP sub-test); the
default lab has neither (FAIL, not detected)."""

from __future__ import annotations

import json

import pytest
from tests.lab.labtools import SECURITY_LAB, LabFactory, run_check_on_lab, sub

from kaic.lab.lab import Lab
from kaic.model import Outcome

pytestmark = pytest.mark.lab


def test_ext_confidential_computing_is_not_detected_in_the_default_lab(lab: Lab) -> None:
    result = run_check_on_lab(lab, "ext_confidential_computing")
    assert result.outcome is Outcome.FAIL, result.reason
    reason = sub(result, "ConfidentialRuntimeClassDetected").reason
    assert "no confidential RuntimeClass" in reason
    assert "sandboxed-namespaces (kaic-unshare)" in reason
    assert "no TEE-capable node" in sub(result, "TEENodesDetected").reason
    assert sub(result, "PodScheduledOnTEENode").outcome is Outcome.SKIP


def test_ext_confidential_computing_is_detected_and_scheduled_with_the_simulated_runtime(
    lab_factory: LabFactory,
) -> None:
    lab = lab_factory(**SECURITY_LAB)
    result = run_check_on_lab(lab, "ext_confidential_computing")
    assert result.outcome is Outcome.PASS, result.reason
    assert any("kata-qemu-tdx was bound to TEE node kaic-gpu-0" in line for line in result.log)
    assert "remote attestation is not automated" in sub(result, "RemoteAttestation").reason
    assert sub(result, "PodScheduledOnTEENode").outcome is Outcome.PASS
    doc = json.loads(next(e.content for e in result.evidence if e.name == "confidential.json"))
    assert doc["pod"]["node"] == "kaic-gpu-0"
    assert doc["tee_nodes"]["kaic-gpu-0"] == [
        "Intel TDX (NFD) (feature.node.kubernetes.io/cpu-security.tdx.enabled=true)"
    ]
