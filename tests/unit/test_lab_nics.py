"""The simulated NICs (``kaic.lab.sims.nics``, ``rdma-nics``): which container gets which
allocated device, the commands that wire it, the claim's networkData, the clean-up."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest

from kaic.lab.apiserver import ApiClient
from kaic.lab.network import Layout
from kaic.lab.sims import nics
from kaic.lab.sims.runtime import NIC_WAIT, sandbox_prefix

CLAIMS = "/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims"


def _pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {
            "resourceClaims": [{"name": "nic", "resourceClaimTemplateName": "t"}],
            "containers": [
                {"name": "side"},
                {"name": "main", "resources": {"claims": [{"name": "nic"}]}},
            ],
            **spec,
        },
        "status": {"resourceClaimStatuses": [{"name": "nic", "resourceClaimName": "p-nic-1"}]},
    }


def _claim(driver: str = "dra.net") -> dict[str, Any]:
    return {
        "metadata": {"name": "p-nic-1", "namespace": "ns", "uid": "c1"},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "nic", "driver": driver, "pool": "gpu-0", "device": "nic-1"}
                    ]
                }
            },
            "devices": [{"driver": "gpu.nvidia.com", "pool": "gpu-0", "device": "gpu-0"}],
        },
    }


SLICE = {
    "spec": {
        "driver": "dra.net",
        "pool": {"name": "gpu-0"},
        "devices": [{"name": "nic-1", "attributes": {"dra.net/ifName": {"string": "eth2"}}}],
    }
}


class _Api:
    def __init__(self, claim: dict[str, Any]) -> None:
        self.claim = claim
        self.patches: list[tuple[str, Any]] = []

    def get(self, path: str) -> Any:
        if path.startswith(CLAIMS):
            return self.claim
        assert path.startswith("/apis/resource.k8s.io/v1/resourceslices")
        return {"items": [SLICE]}

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        self.patches.append((path, body))
        return {}


def test_the_claiming_container_gets_the_device_under_its_interface_name() -> None:
    got = nics.nics_of(_pod(), {"p-nic-1": _claim()}, [SLICE])
    assert [(n.container, n.ifname, n.pool, n.device) for n in got] == [
        ("main", "eth2", "gpu-0", "nic-1")
    ]
    assert got[0].host_if.startswith(nics.HOST_PREFIX) and len(got[0].host_if) <= 15
    assert got[0].mac == nics.nic_mac("gpu-0", "nic-1")
    assert int(got[0].mac.split(":")[0], 16) & 0b11 == 0b10  # local, unicast


def test_without_a_claiming_container_the_first_one_gets_it_and_other_drivers_none() -> None:
    pod = _pod(containers=[{"name": "a"}, {"name": "b"}])
    assert [n.container for n in nics.nics_of(pod, {"p-nic-1": _claim()}, [])] == ["a"]
    assert nics.nics_of(pod, {"p-nic-1": _claim()}, [])[0].ifname == "net1"
    assert nics.nics_of(pod, {"p-nic-1": _claim("gpu.nvidia.com")}, []) == []


def test_attaching_runs_the_wiring_and_writes_network_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def run(argv: Any) -> tuple[int, str]:
        calls.append(list(argv))
        return 0, ""

    api = _Api(_claim())
    att = nics.NicAttacher(
        cast(ApiClient, api), "kaic-lab-1", "198.18.31.0/24", log=lambda m: None, run=run
    )
    planned = att.planned(_pod(), "main")
    assert [n.ifname for n in planned] == ["eth2"]
    assert att.planned(_pod(), "side") == []
    ready = tmp_path / "ready"
    # NOTE: our own pid: a process in another network namespace is what the runtime has;
    # here the wait for it times out at once, which is reported, not raised.
    problems = att.started(_pod(), planned, os.getpid(), ready)
    assert ready.is_file()
    assert problems and "no network namespace of its own" in problems[0]
    monkeypatch.setattr(nics, "wait_for_own_netns", lambda pid, timeout=0.0: None)
    problems = att.started(_pod(), planned, 4242, ready)
    assert problems == []
    host = planned[0].host_if
    joined = [" ".join(c) for c in calls]
    assert any(
        f"ip -n kaic-lab-1 link add {host} type veth peer name eth2 address {planned[0].mac} "
        "netns 4242" in c
        for c in joined
    )
    assert f"ip -n kaic-lab-1 link set dev {host} master kaicnics up" in joined
    assert "nsenter --net=/proc/4242/ns/net ip addr add 198.18.31.1/24 dev eth2" in joined
    path, body = api.patches[-1]
    assert path == f"{CLAIMS}/p-nic-1/status"
    devices = body["status"]["devices"]
    assert devices[0]["driver"] == "gpu.nvidia.com"  # other drivers' entries are kept
    assert devices[1]["networkData"] == {
        "interfaceName": "eth2",
        "ips": ["198.18.31.1/24"],
        "hardwareAddress": planned[0].mac,
    }
    calls.clear()
    att.stopped("u1")
    assert calls == [["ip", "-n", "kaic-lab-1", "link", "del", "dev", host]]
    assert att.addresses == {}


def test_addresses_are_handed_out_once_and_run_out_loudly() -> None:
    att = nics.NicAttacher(
        cast(ApiClient, _Api(_claim())), "ns", "198.18.31.0/30", log=lambda m: None
    )
    a = nics.Nic("ns", "c", "p", "d1", "eth1", "main")
    b = nics.Nic("ns", "c", "p", "d2", "eth1", "main")
    assert (att.address(a), att.address(a), att.address(b)) == (
        "198.18.31.1/30",
        "198.18.31.1/30",
        "198.18.31.2/30",
    )
    c = nics.Nic("ns", "c", "p", "d3", "eth1", "main")
    try:
        att.address(c)
    except OSError as e:
        assert "no free address" in str(e)
    else:
        raise AssertionError("a third address in a /30")


def test_the_nic_range_is_the_last_24_of_the_block_and_overlaps_no_other_range() -> None:
    for lay in (Layout(1), Layout(0, 2), Layout(0, 8)):
        others = (lay.pod_cidr, lay.service_cidr, lay.link, lay.gateway_cidr)
        assert lay.nic_cidr.subnet_of(lay.network)
        assert not any(lay.nic_cidr.overlaps(o) for o in others)
    assert str(Layout(1).nic_cidr) == "198.18.31.0/24"


def test_the_sandbox_waits_for_the_nics_only_when_asked() -> None:
    script = sandbox_prefix({"metadata": {"name": "p"}})[-2]
    assert NIC_WAIT in script and f"unset {nics.READY_ENV}" in script
