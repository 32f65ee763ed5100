"""driver_runtime_management on the lab: the simulated driver publishes its version (DRA
attributes and GPU Feature Discovery labels), the device visibility agent's
``nvidia-smi`` reports the one installed on each node, and the real scheduler and kwok
run the probe pods.

PASS on the default lab (DRA and device-plugin mode); FAIL naming the node when one
node's installed driver differs from what it publishes (set at run time in the agent's
ConfigMap); FAIL naming every GPU node on a lab whose driver publishes nothing
(``--with driver-unpublished``).
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
ID = "driver_runtime_management"


@contextlib.contextmanager
def installed_driver(lab: Lab, node: str, version: str) -> Iterator[None]:
    """The simulated driver installed on ``node`` is ``version`` while in the block."""
    key = f"driver-version.{node}"
    cm = f"configmap/{devices.CONFIGMAP_NAME}"
    ns = ("-n", devices.CONFIGMAP_NAMESPACE)
    lab.ctx.kubectl("patch", cm, *ns, "--type", "merge", "-p", json.dumps({"data": {key: version}}))
    try:
        yield
    finally:
        lab.ctx.kubectl(
            "patch",
            cm,
            *ns,
            "--type",
            "json",
            "-p",
            json.dumps([{"op": "remove", "path": f"/data/{key}"}]),
        )


@pytest.mark.parametrize("mode", ["dra", "device-plugin"])
def test_driver_runtime_management_passes_on_the_lab(lab: Lab, mode: str) -> None:
    r = run_check_on_lab(lab, ID, catalog_version="1.37", options={"allocation-mode": mode})
    assert r.outcome is Outcome.PASS, r.reason
    compat = sub(r, "DriverAndRuntimeCompatibility")
    probed = [line for line in compat.log if f", {mode}): sees 1 device(s)" in line]
    assert len(probed) == 2, compat.log
    assert all("driver 580.82.07" in line for line in probed)


def test_driver_runtime_management_fails_naming_the_node_whose_driver_differs(lab: Lab) -> None:
    with installed_driver(lab, "kaic-gpu-1", "570.195.03"):
        r = run_check_on_lab(lab, ID, catalog_version="1.37")
    assert r.outcome is Outcome.FAIL
    s = sub(r, "DriverAndRuntimeCompatibility")
    assert s.outcome is Outcome.FAIL
    assert "node kaic-gpu-1" in s.reason and "runs driver 570.195.03" in s.reason
    assert "kaic-gpu-0" not in s.reason


def test_driver_runtime_management_fails_when_the_driver_publishes_nothing(
    lab_factory: LabFactory,
) -> None:
    quiet = lab_factory(with_={"driver-unpublished"}, without={"dcgm-exporter"})
    r = run_check_on_lab(quiet, ID, catalog_version="1.37")
    assert r.outcome is Outcome.FAIL
    s = sub(r, "VerifiableMechanismExposed")
    for node in ("kaic-gpu-0", "kaic-gpu-1"):
        assert f"node {node} publishes no driver version" in s.reason
