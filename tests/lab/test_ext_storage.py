"""The storage rows of the extended profile on the lab.

ext_storage: the real local-path-provisioner (shared-filesystem mode) provisions a
ReadWriteMany volume that a pod on one node writes and a pod on another reads back, both
run by the lab's container runtime on one shared directory (PASS); a lab without the
provisioner has no StorageClass (FAIL). ext_image_pull and ext_data_cache: the default
lab runs none of the systems they look for (MANUAL, naming what to attach)."""

from __future__ import annotations

import json

import pytest
from tests.lab.labtools import LabFactory, require_program, run_check_on_lab, sub

from kaic.lab.lab import Lab
from kaic.model import Outcome

pytestmark = pytest.mark.lab


def test_ext_storage_passes_with_the_real_shared_filesystem_provisioner(lab: Lab) -> None:
    require_program("local-path-provisioner")
    result = run_check_on_lab(lab, "ext_storage", timeout=400)
    assert result.outcome is Outcome.PASS, result.reason
    assert sub(result, "HighThroughputClass").outcome is Outcome.SKIP
    log = "\n".join(result.log)
    assert "proving ReadWriteMany with StorageClass kaic-shared-rwx (rancher.io/local-path)" in log
    record = json.loads(next(e.content for e in result.evidence if e.name == "storage.json"))
    writer, reader = record["pods"]["kaic-rwx-writer"], record["pods"]["kaic-rwx-reader"]
    assert writer["node"] != reader["node"]
    assert writer["phase"] == reader["phase"] == "Succeeded"
    assert record["read"] == record["expected"] and record["read"].endswith(writer["node"])
    assert record["volume"]["accessModes"] == ["ReadWriteMany"]


def test_ext_storage_fails_on_a_lab_without_a_storage_class(lab_factory: LabFactory) -> None:
    bare = lab_factory(without={"local-path-provisioner"}, accelerators="none")
    result = run_check_on_lab(bare, "ext_storage", timeout=120)
    assert result.outcome is Outcome.FAIL
    assert sub(result, "HighThroughputClass").reason == "no StorageClass exists"
    assert "no StorageClass exists" in sub(result, "ReadWriteManyClass").reason
    assert sub(result, "ClaimProvisioned").outcome is Outcome.SKIP


def test_ext_image_pull_is_manual_on_the_default_lab(lab: Lab) -> None:
    result = run_check_on_lab(lab, "ext_image_pull", timeout=60)
    assert result.outcome is Outcome.MANUAL
    assert "no image-pull optimisation is visible through the API" in result.reason
    assert "could not read" not in result.reason
    evidence = next(e.content for e in result.evidence if e.name == "image-pull.json")
    assert "kwok-" in evidence  # each node's containerRuntimeVersion is kept


def test_ext_data_cache_is_manual_on_the_default_lab(lab: Lab) -> None:
    result = run_check_on_lab(lab, "ext_data_cache", timeout=60)
    assert result.outcome is Outcome.MANUAL
    assert "no data cache close to the compute nodes is visible" in result.reason
    evidence = next(e.content for e in result.evidence if e.name == "data-cache.json")
    assert "jobset.x-k8s.io" in evidence
