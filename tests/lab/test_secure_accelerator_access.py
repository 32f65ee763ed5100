"""secure_accelerator_access on the lab: the real scheduler allocates, kwok runs the pods,
and the lab's device visibility agent shows each container what it was allocated.

PASS in DRA mode and in device-plugin mode; FAIL naming the pod on a lab that leaks
GPUs to containers that requested none (``--with device-leak``, or the visibility mode
switched at run time).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kaic import catalog
from kaic.checks import load_builtin_checks
from kaic.checks.base import CheckContext, run_check
from kaic.cluster.client import connect
from kaic.cluster.tracking import TrackingCluster
from kaic.lab.sims import devices
from kaic.model import CheckResult, Outcome

try:
    from kaic.lab import Lab
except ImportError:  # pragma: no cover - the lab package without its cluster code
    pytest.skip("kaic.lab.Lab is not available", allow_module_level=True)

pytestmark = pytest.mark.lab


def run_secure(lab: Lab, **options: str) -> CheckResult:
    """Run the check like ``kaic run`` would: its own namespace, the real adapter."""
    cluster = connect(str(lab.kubeconfig))
    ns = f"kaic-secure-{uuid.uuid4().hex[:6]}"
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    spec = load_builtin_checks().find("secure_accelerator_access", "1.36")
    assert spec is not None
    ctx = CheckContext(
        cluster=TrackingCluster(cluster, f"lab-{ns}", "secure_accelerator_access"),
        requirement=catalog.load("1.36").get("secure_accelerator_access"),
        spec=spec,
        catalog_version="1.36",
        run_id=f"lab-{ns}",
        namespace=ns,
        options=options,
        timeout_s=240,
    )
    try:
        return run_check(ctx)
    finally:
        cluster.delete("v1", "Namespace", ns)


def sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


def set_mode(lab: Lab, mode: str) -> None:
    """Switch the lab's device visibility mode and wait until the agent has applied it."""
    lab.ctx.request(
        "PATCH",
        f"/api/v1/namespaces/{devices.CONFIGMAP_NAMESPACE}/configmaps/{devices.CONFIGMAP_NAME}",
        {"data": {"mode": mode}},
        content_type="application/merge-patch+json",
    )
    alive = lab.ctx.dir("devices") / devices.ALIVE_FILE
    since = time.time()
    deadline = since + 30
    while time.time() < deadline:
        with contextlib.suppress(OSError):
            if alive.stat().st_mtime > since + 0.1:
                return
        time.sleep(0.2)
    raise AssertionError("the device visibility agent did not reconcile within 30s")


@pytest.fixture(scope="module")
def leaky_lab(lab_factory: Any) -> Lab:
    """A device-plugin lab started with ``--with device-leak``."""
    lab: Lab = lab_factory(
        accelerators="device-plugin", nodes=1, cpu_nodes=1, gpus_per_node=4, with_={"device-leak"}
    )
    return lab


@pytest.fixture
def isolated(leaky_lab: Lab) -> Iterator[Lab]:
    """The leaky lab switched to isolation for one test, then back to leaking."""
    set_mode(leaky_lab, "isolated")
    try:
        yield leaky_lab
    finally:
        set_mode(leaky_lab, "leak-unrequested")


def test_passes_in_dra_mode_with_the_device_the_scheduler_allocated(lab: Lab) -> None:
    result = run_secure(lab, **{"allocation-mode": "dra"})
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.outcome for s in result.subresults] == [Outcome.PASS] * 4
    evidence = {e.name: e.content for e in result.evidence}
    assert "allocation mode used: dra (resource.k8s.io/v1)" in evidence["allocation.txt"]
    assert "RESULT: ACCELERATOR_COUNT=1" in evidence["probe-commands.log"]
    # the UUID seen through exec is the allocated device's (checked by the check itself)
    assert "allocation:" in evidence["resourceclaims.yaml"]
    assert any("was allocated GPU-" in line for line in result.log)


def test_auto_mode_prefers_dra_on_a_lab_with_both(lab: Lab) -> None:
    result = run_secure(lab)
    assert result.outcome is Outcome.PASS, result.reason
    assert "allocation mode used: dra" in next(
        e.content for e in result.evidence if e.name == "allocation.txt"
    )


def test_passes_in_device_plugin_mode(isolated: Lab) -> None:
    result = run_secure(isolated)
    assert result.outcome is Outcome.PASS, result.reason
    assert "allocation mode used: device-plugin" in next(
        e.content for e in result.evidence if e.name == "allocation.txt"
    )


def test_fails_naming_the_pod_when_the_lab_leaks_gpus_to_unrequested_pods(leaky_lab: Lab) -> None:
    result = run_secure(leaky_lab)
    assert result.outcome is Outcome.FAIL
    neg = sub(result, "NegativeIsolationTest")
    assert neg.outcome is Outcome.FAIL
    assert "pod accel-negative (no request) sees 4 accelerator(s)" in neg.reason
    assert "/dev/nvidia0" in neg.reason
    multi = sub(result, "MultiContainerIsolationTest")
    assert multi.outcome is Outcome.FAIL and "container unauthorized" in multi.reason
    assert sub(result, "PositiveAccessTest").outcome is Outcome.PASS


def test_fails_when_only_nvidia_visible_devices_all_leaks(leaky_lab: Lab) -> None:
    set_mode(leaky_lab, "leak-envvar")
    try:
        result = run_secure(leaky_lab)
    finally:
        set_mode(leaky_lab, "leak-unrequested")
    neg = sub(result, "NegativeIsolationTest")
    assert neg.outcome is Outcome.FAIL
    assert "pod accel-negative-envvar (no request, NVIDIA_VISIBLE_DEVICES=all)" in neg.reason
    assert "pod accel-negative " not in neg.reason


def test_fails_cross_pod_when_granted_pods_see_the_whole_node(leaky_lab: Lab) -> None:
    set_mode(leaky_lab, "leak-shared")
    try:
        result = run_secure(leaky_lab)
    finally:
        set_mode(leaky_lab, "leak-unrequested")
    assert sub(result, "CrossPodIsolationTest").outcome is Outcome.FAIL
    assert (
        "pod accel-positive was granted one accelerator but sees 4"
        in sub(result, "PositiveAccessTest").reason
    )
