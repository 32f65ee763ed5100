"""ext_data_cache against the fake cluster: Fluid, Alluxio, JuiceFS found by CRDs, CSI
drivers or workloads; nothing visible is MANUAL with what to attach."""

from __future__ import annotations

from typing import Any

import pytest

from kaic.checks.installed import image_repository
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check


def _fake(*objs: dict[str, Any]) -> FakeCluster:
    fake = FakeCluster()
    fake.serve("apps/v1", ("daemonsets", "DaemonSet", True), ("statefulsets", "StatefulSet", True))
    fake.serve(
        "apiextensions.k8s.io/v1",
        ("customresourcedefinitions", "CustomResourceDefinition", False),
    )
    fake.serve("storage.k8s.io/v1", ("csidrivers", "CSIDriver", False))
    fake.add(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "jobsets.jobset.x-k8s.io"},
            "spec": {"group": "jobset.x-k8s.io"},
        }
    )
    for o in objs:
        fake.add(o)
    return fake


def _run(fake: FakeCluster) -> CheckResult:
    return run_fake_check(fake, "ext_data_cache")


def test_ext_data_cache_is_manual_naming_what_to_attach_when_nothing_is_visible() -> None:
    result = _run(_fake())
    assert result.outcome is Outcome.MANUAL
    assert "no data cache close to the compute nodes is visible" in result.reason
    assert "documentation of its dataset cache" in result.reason
    assert result.subresults[0].outcome is Outcome.SKIP
    evidence = next(e.content for e in result.evidence if e.name == "data-cache.json")
    assert "jobset.x-k8s.io" in evidence


@pytest.mark.parametrize(
    ("obj", "expect"),
    [
        (
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": "datasets.data.fluid.io"},
                "spec": {"group": "data.fluid.io"},
            },
            "Fluid (CRDs of data.fluid.io: datasets.data.fluid.io)",
        ),
        (
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "CSIDriver",
                "metadata": {"name": "csi.juicefs.com"},
            },
            "JuiceFS (CSIDriver csi.juicefs.com)",
        ),
        (
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "alluxio-master", "namespace": "alluxio"},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "m", "image": "docker.io/alluxio/alluxio:2.9"}]
                        }
                    }
                },
            },
            "Alluxio (StatefulSet alluxio/alluxio-master runs docker.io/alluxio/alluxio:2.9)",
        ),
    ],
)
def test_ext_data_cache_finds_a_cache_by_crd_csi_driver_or_workload(
    obj: dict[str, Any], expect: str
) -> None:
    result = _run(_fake(obj))
    assert result.outcome is Outcome.PASS, result.reason
    assert expect in "\n".join(result.log)


def test_image_repositories_drop_tag_and_digest() -> None:
    assert image_repository("ghcr.io/a/b:v1@sha256:00") == "ghcr.io/a/b"
    assert image_repository("localhost:5000/x/y") == "localhost:5000/x/y"
    assert image_repository("busybox:1.37") == "busybox"
