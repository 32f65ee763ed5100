"""gpu_sharing on the lab: the real scheduler places time-sliced shares and allocates
MIG-like partitions from a DRA pool with shared counters (``--with gpu-sharing``); the
device visibility agent shows each share's physical GPU.

PASS on a lab with ``gpu-sharing`` (both mechanisms exercised); FAIL on the default lab,
whose GPUs are whole (no replicas, no partitions), naming its GPU nodes.
"""

from __future__ import annotations

import pytest
from labtools import LabFactory, run_check_on_lab, sub

from kaic.model import Outcome

try:
    from kaic.lab import Lab
except ImportError:  # pragma: no cover - the lab package without its cluster code
    pytest.skip("kaic.lab.Lab is not available", allow_module_level=True)

pytestmark = pytest.mark.lab


def test_gpu_sharing_passes_on_a_lab_with_shared_gpus(lab_factory: LabFactory) -> None:
    shared = lab_factory(with_={"gpu-sharing"}, without={"dcgm-exporter"})
    r = run_check_on_lab(shared, "gpu_sharing", catalog_version="1.37")
    assert r.outcome is Outcome.PASS, r.reason
    ts = sub(r, "TimeSlicedSharesShareOneGPU")
    assert ts.outcome is Outcome.PASS
    assert any("share GPU GPU-" in line and "kaic-gpu-ts-0" in line for line in ts.log)
    parts = sub(r, "PartitionsShareOnePhysicalDevice")
    assert parts.outcome is Outcome.PASS
    assert any("claim partition-3 stayed unallocated" in line for line in parts.log)
    got = [line for line in parts.log if " got gpu-0-mig-3g40gb-" in line]
    assert len(got) == 2


def test_gpu_sharing_fails_on_the_default_lab_with_whole_gpus(lab: Lab) -> None:
    r = run_check_on_lab(lab, "gpu_sharing", catalog_version="1.37")
    assert r.outcome is Outcome.FAIL
    s = sub(r, "SharingMechanismExposed")
    assert "only whole GPUs" in s.reason
    for node in ("kaic-gpu-0", "kaic-gpu-1"):
        assert f"node {node}: 8 nvidia.com/gpu on 8 physical GPU(s)" in s.reason
