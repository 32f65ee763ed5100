"""virtualized_accelerator on the lab: the simulated DRA driver publishes vGPUs
(``--with virtual-gpus``), the real scheduler allocates a claim for one, and the device
visibility agent shows containers what they hold.

PASS on a lab with ``virtual-gpus``; FAIL naming the pod without a claim when the
visibility agent leaks devices (mode ``leak-unrequested``, set at run time); not
applicable, with the reason, on the default lab (no virtual accelerators).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from labtools import LabFactory, run_check_on_lab, sub

from kaic.lab.sims import devices
from kaic.model import Outcome

try:
    from kaic.lab import Lab
except ImportError:  # pragma: no cover - the lab package without its cluster code
    pytest.skip("kaic.lab.Lab is not available", allow_module_level=True)

pytestmark = pytest.mark.lab
ID = "virtualized_accelerator"


@contextlib.contextmanager
def visibility_mode(lab: Lab, mode: str) -> Iterator[None]:
    cm = f"configmap/{devices.CONFIGMAP_NAME}"
    ns = ("-n", devices.CONFIGMAP_NAMESPACE)

    def put(m: str) -> None:
        lab.ctx.kubectl(
            "patch", cm, *ns, "--type", "merge", "-p", json.dumps({"data": {"mode": m}})
        )

    put(mode)
    try:
        yield
    finally:
        put("isolated")


@pytest.fixture(scope="module")
def vlab(lab_factory: LabFactory) -> Lab:
    return lab_factory(with_={"virtual-gpus"}, without={"dcgm-exporter"})


def test_virtualized_accelerator_passes_on_a_lab_with_vgpus(vlab: Lab) -> None:
    r = run_check_on_lab(vlab, ID, catalog_version="1.37")
    assert r.outcome is Outcome.PASS, r.reason
    iso = sub(r, "VirtualAcceleratorIsolation")
    assert any(line.startswith("pod virtual-none sees 0") for line in iso.log)
    assert any(line.startswith("pod virtual-a sees 1: /dev/nvidia") for line in iso.log)


def test_virtualized_accelerator_fails_when_vgpus_leak_to_pods_without_a_claim(
    vlab: Lab,
) -> None:
    with visibility_mode(vlab, "leak-unrequested"):
        r = run_check_on_lab(vlab, ID, catalog_version="1.37")
    assert r.outcome is Outcome.FAIL
    reason = sub(r, "VirtualAcceleratorIsolation").reason
    assert "pod virtual-none (no claim) sees" in reason and "kaic-gpu-vgpu-0" in reason


def test_virtualized_accelerator_is_not_applicable_on_the_default_lab(lab: Lab) -> None:
    r = run_check_on_lab(lab, ID, catalog_version="1.37")
    assert r.outcome is Outcome.SKIP and r.not_applicable
    assert "no virtualized accelerators" in r.reason
