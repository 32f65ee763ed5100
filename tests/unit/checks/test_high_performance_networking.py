"""high_performance_networking against the fake cluster: a simulated scheduler, claim
allocator and network driver play what the cluster would do with the check's pods."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kaic.checks import load_builtin_checks
from kaic.checks.high_performance_networking import (
    LISTENER,
    SENDER,
    device_class_for,
    listener_script,
    parse_log,
    received,
    sender_script,
)
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

DRA = "resource.k8s.io/v1"
NS = "kaic-t"
REQ = "high_performance_networking"


def _nic_slice(node: str, n: int = 2, attrs: bool = True) -> dict[str, Any]:
    devices = []
    for i in range(n):
        a = (
            {
                "dra.net/ifName": {"string": f"eth{i + 1}"},
                "dra.net/rdma": {"bool": True},
                "dra.net/pciAddress": {"string": f"0000:{0x1A + i:02x}:00.0"},
                "dra.net/numaNode": {"int": i % 2},
            }
            if attrs
            else {}
        )
        devices.append({"name": f"nic-{i}", "attributes": a})
    return {
        "apiVersion": DRA,
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-dra.net"},
        "spec": {
            "driver": "dra.net",
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


@dataclass
class Sim:
    """What the simulated platform does; each flag breaks one thing."""

    nics: bool = True
    device_class: bool = True
    schedule_on: str | None = None
    """Bind every pod to this node instead of the one with the allocated device."""
    attach: bool = True
    network_data: bool = True
    nic_is_pod_ip: bool = False
    deliver: bool = True
    local_address: str | None = None
    attrs: bool = True
    unschedulable: bool = False

    def fake(self) -> FakeCluster:
        fake = FakeCluster()
        fake.serve(
            DRA,
            ("resourceslices", "ResourceSlice", False),
            ("deviceclasses", "DeviceClass", False),
            ("resourceclaims", "ResourceClaim", True),
            ("resourceclaimtemplates", "ResourceClaimTemplate", True),
        )
        for n in ("gpu-0", "gpu-1", "cpu-0"):
            fake.add({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}})
        fake.add(
            {
                "apiVersion": DRA,
                "kind": "ResourceSlice",
                "metadata": {"name": "gpu-0-gpu.nvidia.com"},
                "spec": {
                    "driver": "gpu.nvidia.com",
                    "nodeName": "gpu-0",
                    "pool": {"name": "gpu-0", "generation": 1, "resourceSliceCount": 1},
                    "devices": [{"name": "gpu-0", "attributes": {"type": {"string": "gpu"}}}],
                },
            }
        )
        if self.nics:
            fake.add(_nic_slice("gpu-0", attrs=self.attrs))
            fake.add(_nic_slice("gpu-1", attrs=self.attrs))
        if self.device_class:
            fake.add(
                {
                    "apiVersion": DRA,
                    "kind": "DeviceClass",
                    "metadata": {"name": "dranet"},
                    "spec": {"selectors": [{"cel": {"expression": "device.driver == 'dra.net'"}}]},
                }
            )
        self.n = 0
        fake.on_create.append(lambda obj, dry: self.created(fake, obj))
        return fake

    def created(self, fake: FakeCluster, obj: dict[str, Any]) -> None:
        if obj["kind"] != "Pod":
            return
        name = obj["metadata"]["name"]
        node = "gpu-0" if name == LISTENER else "gpu-1"
        if self.unschedulable:
            fake.add(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": f"{name}.1", "namespace": NS},
                    "involvedObject": {"kind": "Pod", "name": name},
                    "type": "Warning",
                    "reason": "FailedScheduling",
                    "message": "0/3 nodes are available: 3 cannot allocate all claims.",
                }
            )
            obj["status"] = {"phase": "Pending"}
            return
        self.n += 1
        pod_ip = f"10.0.0.{self.n}"
        nic_ip = pod_ip if self.nic_is_pod_ip else f"198.18.31.{self.n}"
        claim_name = f"{name}-nic-x"
        claim = {
            "apiVersion": DRA,
            "kind": "ResourceClaim",
            "metadata": {"name": claim_name, "namespace": NS},
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {"request": "nic", "driver": "dra.net", "pool": node, "device": "nic-0"}
                        ]
                    }
                }
            },
        }
        if self.network_data and self.attach:
            claim["status"]["devices"] = [
                {
                    "driver": "dra.net",
                    "pool": node,
                    "device": "nic-0",
                    "networkData": {
                        "interfaceName": "eth1",
                        "ips": [f"{nic_ip}/24"],
                        "hardwareAddress": "02:00:00:00:00:01",
                    },
                }
            ]
        fake.add(claim)
        obj["spec"]["nodeName"] = self.schedule_on or node
        obj["status"] = {
            "phase": "Running",
            "podIP": pod_ip,
            "resourceClaimStatuses": [{"name": "nic", "resourceClaimName": claim_name}],
        }
        ifs = "KAIC-HPN-INTERFACES-BEGIN\nKAIC-HPN-IF lo 127.0.0.1\n"
        ifs += f"KAIC-HPN-IF eth0 {pod_ip}\n"
        if self.attach:
            ifs += f"KAIC-HPN-IF eth1 {nic_ip}\n"
        ifs += "KAIC-HPN-INTERFACES-END\n"
        path = f"/api/v1/namespaces/{NS}/pods/{{}}/log?container=main"
        script = obj["spec"]["containers"][0]["command"][-1]
        if name == LISTENER:
            fake.raw[path.format(name)] = ifs + "KAIC-HPN-LISTENING\n"
            return
        fake.raw[path.format(name)] = ifs + "KAIC-HPN-SENT local=x\n"
        token = re.search(r"kaic-hpn-[0-9a-f]{16}", script)
        addr = re.search(r'ADDR = "([^"]+)"', script)
        assert token and addr
        if self.deliver:
            local = self.local_address or addr.group(1)
            fake.raw[path.format(LISTENER)] += (
                f"KAIC-HPN-RECEIVED {token.group(0)} local={local} peer={nic_ip}\n"
            )


def _run(sim: Sim, **options: str) -> CheckResult:
    opts = {"nic-timeout": "3", **options}
    return run_fake_check(sim.fake(), REQ, options=opts, catalog_version="1.37")


def _sub(r: CheckResult, name: str) -> Any:
    return next(s for s in r.subresults if s.name == name)


def test_passes_when_nics_are_published_attached_and_carry_data() -> None:
    r = _run(Sim())
    assert r.outcome is Outcome.PASS, r.reason
    assert [s.name for s in r.subresults] == [
        "NetworkDevicesDiscoverable",
        "ClaimScheduledOnNicNode",
        "InterfaceInPod",
        "PodToPodOverSecondaryInterface",
    ]
    log = "\n".join(r.log)
    assert "node gpu-0: 2 NIC(s) of dra.net" in log and "rdma=True" in log
    assert "nodes without a NIC of dra.net: cpu-0" in log
    assert "pod kaic-hpn-listener runs on node gpu-0 with dra.net device gpu-0/nic-0" in log
    assert "received it on 198.18.31.1" in log
    names = {e.name for e in r.evidence}
    assert {"nics.json", "objects.yaml", f"{LISTENER}.log", f"{SENDER}.log"} <= names


def test_passes_without_network_data_judging_by_the_interfaces() -> None:
    r = _run(Sim(network_data=False))
    assert r.outcome is Outcome.PASS, r.reason
    assert "has no networkData of dra.net" in "\n".join(_sub(r, "InterfaceInPod").log)


def test_fails_without_network_devices_naming_the_drivers_seen() -> None:
    r = _run(Sim(nics=False))
    assert r.outcome is Outcome.FAIL
    s = _sub(r, "NetworkDevicesDiscoverable")
    assert "no network device is published through DRA" in s.reason
    assert "ResourceSlices of gpu.nvidia.com only" in s.reason
    assert _sub(r, "ClaimScheduledOnNicNode").outcome is Outcome.SKIP


def test_fails_when_the_cluster_serves_no_dra() -> None:
    fake = FakeCluster()
    r = run_fake_check(fake, REQ, catalog_version="1.37")
    assert r.outcome is Outcome.FAIL
    assert "serves no DRA API" in r.subresults[0].reason


def test_multus_attachments_are_reported_but_not_enough() -> None:
    fake = Sim(nics=False).fake()
    fake.serve(
        "k8s.cni.cncf.io/v1",
        ("network-attachment-definitions", "NetworkAttachmentDefinition", True),
    )
    fake.add(
        {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "rdma-net", "namespace": "default"},
        }
    )
    r = run_fake_check(fake, REQ, catalog_version="1.37")
    assert r.outcome is Outcome.FAIL
    assert "default/rdma-net" in r.subresults[0].reason
    assert "not through DRA" in r.subresults[0].reason


def test_fails_when_devices_publish_no_characteristics() -> None:
    r = _run(Sim(attrs=False))
    assert r.outcome is Outcome.FAIL
    assert "publish no characteristics" in _sub(r, "NetworkDevicesDiscoverable").reason


def test_fails_without_a_device_class_for_the_driver() -> None:
    r = _run(Sim(device_class=False))
    s = _sub(r, "ClaimScheduledOnNicNode")
    assert s.outcome is Outcome.FAIL
    assert "no DeviceClass selects driver dra.net" in s.reason


def test_fails_naming_the_pod_and_node_without_the_allocated_device() -> None:
    r = _run(Sim(schedule_on="cpu-0"))
    s = _sub(r, "ClaimScheduledOnNicNode")
    assert s.outcome is Outcome.FAIL
    assert "pod kaic-hpn-listener was scheduled on node cpu-0" in s.reason
    assert "gpu-0/nic-0" in s.reason and "published on gpu-0" in s.reason


def test_fails_naming_the_unschedulable_pod_and_the_schedulers_word() -> None:
    r = _run(Sim(unschedulable=True))
    s = _sub(r, "ClaimScheduledOnNicNode")
    assert s.outcome is Outcome.FAIL
    assert "pod kaic-hpn-listener did not run" in s.reason
    assert "cannot allocate all claims" in s.reason


def test_fails_when_the_interface_is_not_in_the_pod() -> None:
    r = _run(Sim(attach=False))
    s = _sub(r, "InterfaceInPod")
    assert s.outcome is Outcome.FAIL
    assert "pod kaic-hpn-listener on node gpu-0 has no interface beyond loopback" in s.reason
    assert _sub(r, "PodToPodOverSecondaryInterface").outcome is Outcome.SKIP


def test_fails_when_the_nic_address_is_the_pod_ip() -> None:
    r = _run(Sim(nic_is_pod_ip=True))
    s = _sub(r, "InterfaceInPod")
    assert s.outcome is Outcome.FAIL
    assert "is the pod IP" in s.reason


def test_fails_when_the_token_does_not_arrive() -> None:
    r = _run(Sim(deliver=False))
    s = _sub(r, "PodToPodOverSecondaryInterface")
    assert s.outcome is Outcome.FAIL
    assert "did not arrive" in s.reason and "kaic-hpn-sender" in s.reason


def test_fails_when_the_token_arrives_on_another_address() -> None:
    r = _run(Sim(local_address="10.0.0.1"))
    s = _sub(r, "PodToPodOverSecondaryInterface")
    assert s.outcome is Outcome.FAIL
    assert "on 10.0.0.1, not on its NIC address 198.18.31.1" in s.reason


def test_a_missing_named_device_class_fails() -> None:
    r = _run(Sim(), **{"nic-device-class": "nope"})
    assert "DeviceClass nope (--nic-device-class) does not exist" in (
        _sub(r, "ClaimScheduledOnNicNode").reason
    )


def test_another_driver_can_be_named() -> None:
    r = _run(Sim(), **{"nic-driver": "sriovnetwork.k8snetworkplumbingwg.io"})
    assert r.outcome is Outcome.FAIL
    assert "driver sriovnetwork.k8snetworkplumbingwg.io" in r.subresults[0].reason


def test_bad_options_are_refused_before_the_run() -> None:
    spec = load_builtin_checks().find(REQ, "1.37")
    assert spec is not None
    opts = {o.name: o for o in spec.options}
    assert (
        opts["nic-timeout"].problem("soon")
        == "--nic-timeout must be a number of 0 or more, got 'soon'"
    )
    assert opts["nic-timeout"].problem("30") is None
    assert set(opts) == {
        "nic-driver",
        "nic-device-class",
        "nic-image",
        "nic-namespace",
        "nic-timeout",
    }


def test_the_check_applies_to_1_36_too() -> None:
    r = run_fake_check(Sim().fake(), REQ, options={"nic-timeout": "3"}, catalog_version="1.36")
    assert r.outcome is Outcome.PASS, r.reason


def test_scripts_and_parsers() -> None:
    listing = parse_log(
        "KAIC-HPN-INTERFACES-BEGIN\nKAIC-HPN-IF lo 127.0.0.1\nKAIC-HPN-IF eth1\n"
        "KAIC-HPN-INTERFACES-END\n"
    )
    assert listing.complete and listing.interfaces == {"lo": "127.0.0.1", "eth1": ""}
    assert received("KAIC-HPN-RECEIVED tok local=1.2.3.4 peer=5.6.7.8\nother\n") == [
        ("tok", "1.2.3.4", "5.6.7.8")
    ]
    assert received("KAIC-HPN-RECEIVED tok\n") == [("tok", "", "")]
    assert "python3 -c" in listener_script() and "nc -l -p" in listener_script()
    s = sender_script("198.18.31.1", "kaic-hpn-0123456789abcdef", 30)
    assert 'ADDR = "198.18.31.1"' in s and "nc -w 3 198.18.31.1" in s
    classes = [
        {"metadata": {"name": "other"}, "spec": {"selectors": []}},
        {
            "metadata": {"name": "nics"},
            "spec": {"selectors": [{"cel": {"expression": 'device.driver == "dra.net"'}}]},
        },
    ]
    assert device_class_for(classes, "dra.net") == "nics"
    assert device_class_for(classes, "rdma.nvidia.com") is None
