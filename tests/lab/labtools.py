"""Helpers for the lab tests (importable as ``labtools`` from tests/lab)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from kaic import catalog
from kaic.checks import load_builtin_checks
from kaic.checks.base import CheckContext, run_check
from kaic.cluster.client import connect
from kaic.cluster.tracking import TrackingCluster
from kaic.lab import Lab, programs
from kaic.lab.options import default_version
from kaic.model import CheckResult, SubResult

LabFactory = Callable[..., Lab]

MONITORING_LAB: dict[str, Any] = {
    "accelerators": "device-plugin",
    "nodes": 1,
    "cpu_nodes": 1,
    "gpus_per_node": 2,
    "with_": {"prometheus", "prometheus-adapter"},
}
"""One small lab with the real Prometheus and prometheus-adapter, shared by the tests of
ai_service_metrics and pod_autoscaling (``lab_factory`` starts it once per session)."""


SECURITY_LAB: dict[str, Any] = {
    "accelerators": "none",
    "nodes": 1,
    "cpu_nodes": 1,
    "without": {"admission-policy", "traefik", "jobset-controller", "dcgm-exporter"},
    "with_": {"confidential-runtime"},
}
"""One small lab for the security rows of the extended profile: kube-apiserver without
ValidatingAdmissionPolicy enforcement (ext_supply_chain_policy's FAIL) and the simulated
confidential runtime (ext_confidential_computing's detected case)."""


def require_program(name: str) -> None:
    """Skip the test when lab program ``name`` is not built, unless the lab's programs
    are required (``KAIC_REQUIRE_LAB_PROGRAMS=1``, set by ``make test`` after building
    them all): then a missing binary fails the test instead of hiding it."""
    path = programs.binary_of(name, default_version())
    if os.access(path, os.X_OK):
        return
    message = f"{name} is not built ({path}): run `kaic lab build --only {name}`"
    if os.environ.get("KAIC_REQUIRE_LAB_PROGRAMS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def wait_for(
    cond: Callable[[], Any], *, timeout: float = 60.0, what: str = "condition", fail: bool = True
) -> Any:
    """Poll ``cond`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.2)
    if not fail:
        return last
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def run_check_on_lab(
    lab: Lab,
    requirement: str,
    *,
    timeout: float = 300,
    options: dict[str, str] | None = None,
    catalog_version: str = "1.36",
) -> CheckResult:
    """Run one check like ``kaic run`` would: its own namespace, the real adapter."""
    cluster = connect(str(lab.kubeconfig))
    ns = f"kaic-{requirement.replace('_', '-')[:20]}-{uuid.uuid4().hex[:6]}"
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    spec = load_builtin_checks().find(requirement, catalog_version)
    assert spec is not None, f"no check registered for {requirement}"
    # NOTE: like the runner, a TrackingCluster labels what the check creates.
    ctx = CheckContext(
        cluster=TrackingCluster(cluster, f"lab-{ns}", requirement),
        requirement=catalog.load(catalog_version).lookup(requirement),
        spec=spec,
        catalog_version=catalog_version,
        run_id=f"lab-{ns}",
        namespace=ns,
        options=options or {},
        timeout_s=timeout,
    )
    try:
        return run_check(ctx)
    finally:
        cluster.delete("v1", "Namespace", ns)


def sub(result: CheckResult, name: str) -> SubResult:
    """The sub-result called ``name`` of a check result."""
    return next(s for s in result.subresults if s.name == name)
