"""dra_support against the fake cluster: served and dry-run-creatable, or a clear FAIL."""

from __future__ import annotations

from typing import Any

from kaic.errors import RejectedError
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

DRA = "resource.k8s.io/v1"


def _serve_dra(fake: FakeCluster, version: str = DRA) -> None:
    fake.serve(
        version,
        ("deviceclasses", "DeviceClass", False),
        ("resourceclaims", "ResourceClaim", True),
        ("resourceclaimtemplates", "ResourceClaimTemplate", True),
        ("resourceslices", "ResourceSlice", False),
    )


def _run(fake: FakeCluster) -> CheckResult:
    return run_fake_check(
        fake, "dra_support", catalog_version="1.35", run_id="r1", namespace="kaic-ns", timeout=300.0
    )


def test_passes_when_every_kind_is_served_and_dry_run_creates_are_accepted() -> None:
    fake = FakeCluster()
    _serve_dra(fake)
    fake.add({"apiVersion": DRA, "kind": "DeviceClass", "metadata": {"name": "gpu.example.com"}})
    result = _run(fake)
    assert result.outcome is Outcome.PASS, result.reason
    assert [s.name for s in result.subresults] == [
        "APIServed",
        "DryRunCreateDeviceClass",
        "DryRunCreateResourceClaim",
        "DryRunCreateResourceClaimTemplate",
        "DryRunCreateResourceSlice",
    ]
    dry_runs = [args for call, args in fake.calls if call == "create"]
    assert len(dry_runs) == 4 and all(dry for _, _, dry in dry_runs)
    assert all(k[1] != "ResourceClaim" for k in fake.store)  # nothing created for real
    evidence = {e.name: e.content for e in result.evidence}
    assert "gpu.example.com" in evidence["deviceclasses.yaml"]
    assert "no ResourceSlice present" in evidence["resourceslices.yaml"]


def test_fails_naming_the_group_when_dra_is_not_served() -> None:
    result = _run(FakeCluster())
    assert result.outcome is Outcome.FAIL
    assert (
        "does not serve resource.k8s.io/v1 (no resource.k8s.io version is served)" in result.reason
    )


def test_fails_naming_the_beta_version_when_only_a_beta_is_served() -> None:
    fake = FakeCluster()
    _serve_dra(fake, "resource.k8s.io/v1beta1")
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    assert "serves only resource.k8s.io/v1beta1" in result.reason


def test_fails_naming_a_missing_kind() -> None:
    fake = FakeCluster()
    fake.serve(
        DRA, ("deviceclasses", "DeviceClass", False), ("resourceclaims", "ResourceClaim", True)
    )
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    assert "does not serve ResourceClaimTemplate, ResourceSlice" in result.reason


def test_fails_when_the_server_refuses_a_dry_run_create() -> None:
    fake = FakeCluster()
    _serve_dra(fake)

    def refuse(obj: dict[str, Any], dry_run: bool) -> None:
        if obj["kind"] == "ResourceSlice":
            raise RejectedError("ResourceSlice is invalid: spec.driver: Required value")

    fake.on_create.append(refuse)
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    assert result.reason.startswith("DryRunCreateResourceSlice: server-side dry-run create")
