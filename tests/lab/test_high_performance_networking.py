"""high_performance_networking on the lab: the simulated RDMA NICs (``rdma-nics``, on by
default) are published like dranet's, the real scheduler allocates them, and the
container runtime gives each claiming container a real veth on a bridge inside the lab's
namespace, over which the two pods exchange a token (PASS). Without the NICs the check
names the missing devices; with NICs that are never attached, the pod without them
(FAIL).
"""

from __future__ import annotations

import subprocess
import time

import pytest
from labtools import LabFactory, run_check_on_lab, sub

from kaic.lab.sims.nics import BRIDGE, HOST_PREFIX
from kaic.model import Outcome

try:
    from kaic.lab import Lab
except ImportError:  # pragma: no cover - the lab package without its cluster code
    pytest.skip("kaic.lab.Lab is not available", allow_module_level=True)

pytestmark = pytest.mark.lab

REQ = "high_performance_networking"
SMALL = {"nodes": 1, "cpu_nodes": 1, "gpus_per_node": 4, "without": {"dcgm-exporter"}}
"""A small lab for the negative cases (one GPU node: two NICs)."""


def _links(netns: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-n", netns, "-o", "link"], capture_output=True, text=True, check=False
    ).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def test_two_pods_exchange_data_over_their_claimed_nics(lab: Lab) -> None:
    r = run_check_on_lab(lab, REQ, catalog_version="1.37")
    assert r.outcome is Outcome.PASS, r.reason
    found = sub(r, "NetworkDevicesDiscoverable")
    assert any("node kaic-gpu-0: 4 NIC(s) of dra.net" in line for line in found.log)
    assert any("rdma=True" in line and "pciAddress=" in line for line in found.log)
    assert any("nodes without a NIC of dra.net: kaic-cpu-0" in line for line in found.log)
    placed = sub(r, "ClaimScheduledOnNicNode")
    assert any("runs on node kaic-gpu-" in line for line in placed.log)
    nic = lab.ctx.net.layout.nic_cidr
    seen = sub(r, "InterfaceInPod")
    prefix = str(nic.network_address).rsplit(".", 1)[0] + "."
    assert any("networkData: interface eth" in line and prefix in line for line in seen.log)
    data = sub(r, "PodToPodOverSecondaryInterface")
    assert any("received it on " in line for line in data.log), data.log
    # the host ends of the NICs go with the pods; the bridge stays until `lab down`
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        links = _links(lab.ctx.net.netns)
        if not [x for x in links if x.startswith(HOST_PREFIX)]:
            break
        time.sleep(1)
    assert BRIDGE in links
    assert not [x for x in links if x.startswith(HOST_PREFIX)], links


def test_fails_naming_the_missing_devices_without_nics(lab_factory: LabFactory) -> None:
    bare = lab_factory(**{**SMALL, "without": {"dcgm-exporter", "rdma-nics"}})
    r = run_check_on_lab(bare, REQ, catalog_version="1.37")
    assert r.outcome is Outcome.FAIL
    s = sub(r, "NetworkDevicesDiscoverable")
    assert s.outcome is Outcome.FAIL
    assert "no network device is published through DRA" in s.reason
    assert "driver dra.net" in s.reason and "gpu.nvidia.com only" in s.reason
    assert sub(r, "ClaimScheduledOnNicNode").outcome is Outcome.SKIP


def test_fails_at_the_interface_when_nics_are_not_attached(lab_factory: LabFactory) -> None:
    unwired = lab_factory(**{**SMALL, "with_": {"nics-unattached"}})
    r = run_check_on_lab(unwired, REQ, catalog_version="1.37")
    assert r.outcome is Outcome.FAIL
    assert sub(r, "ClaimScheduledOnNicNode").outcome is Outcome.PASS
    s = sub(r, "InterfaceInPod")
    assert s.outcome is Outcome.FAIL
    assert "pod kaic-hpn-listener on node kaic-gpu-0" in s.reason
    assert "no interface beyond loopback" in s.reason
    assert sub(r, "PodToPodOverSecondaryInterface").outcome is Outcome.SKIP
