"""Simulated RDMA NICs (``rdma-nics``, on by default): network devices published through
DRA as kubernetes-sigs/dranet publishes a host's NICs, and a real second interface for
every container whose pod was allocated one.

Owns: the DeviceClass ``dranet`` and one ResourceSlice of driver ``dra.net`` per GPU
node (DRA mode): one NIC per PCIe root of its GPUs (two GPUs per root), with DRANET's
attribute names (``dra.net/ifName``, ``dra.net/rdma``, ``dra.net/pciAddress``,
``dra.net/numaNode``, ``dra.net/mac``, …) and the standard
``resource.kubernetes.io/pcieRoot``; the bridge ``kaicnics`` inside the lab's network
namespace; and the container runtime's NIC flags (``runtime_args``): the runtime
(``kaic.lab.sims.nics``) gives a container its allocated NICs as veth ends with
addresses of the lab's NIC range (``ctx.net.layout.nic_cidr``) and writes the claims'
``networkData``. CPU nodes have no NIC. Must not start processes.

``--without rdma-nics`` publishes no NIC (and attaches none); ``--with nics-unattached``
publishes them but never attaches one (a driver that allocates without wiring the pod).
"""

from __future__ import annotations

import subprocess
from typing import Any

from kaic.errors import LabError
from kaic.lab import network
from kaic.lab.component import Component, register
from kaic.lab.components.nodes import GPUS_PER_PCIE_ROOT, POOL_LABEL, node_slice, pcie_root
from kaic.lab.context import NET_FILE, LabContext
from kaic.lab.sims.nics import BRIDGE, DRIVER, nic_mac

NAME = "rdma-nics"
UNATTACHED = "nics-unattached"
DEVICE_CLASS = "dranet"
PCI_VENDOR = "Mellanox Technologies"
PCI_DEVICE = "MT2910 Family [ConnectX-7]"
MTU = 9000
BULK_WORKERS = 8


def nic_device_class() -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": DEVICE_CLASS, "labels": {"app.kubernetes.io/managed-by": "kaic-lab"}},
        "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{DRIVER}'"}}]},
    }


def nic_slice(ctx: LabContext, node: str, node_uid: str) -> dict[str, Any]:
    """One ResourceSlice with the node's simulated RDMA NICs, one per PCIe root of its
    GPUs, with the attributes dranet publishes (the PCIe root is the alignment key)."""
    roots = (ctx.options.gpus_per_node + GPUS_PER_PCIE_ROOT - 1) // GPUS_PER_PCIE_ROOT
    devices = []
    for n in range(roots):
        pci = f"0000:{0x1A + n * 0x20:02x}:00.0"
        devices.append(
            {
                "name": f"nic-{n}",
                "attributes": {
                    "dra.net/ifName": {"string": f"eth{n + 1}"},
                    "dra.net/rdma": {"bool": True},
                    "dra.net/sriov": {"bool": False},
                    "dra.net/virtual": {"bool": False},
                    "dra.net/numaNode": {"int": 0 if n < (roots + 1) // 2 else 1},
                    "dra.net/pciAddress": {"string": pci},
                    "dra.net/pciVendor": {"string": PCI_VENDOR},
                    "dra.net/pciDevice": {"string": PCI_DEVICE},
                    "dra.net/mac": {"string": nic_mac(node, f"nic-{n}")},
                    "dra.net/mtu": {"int": MTU},
                    "dra.net/encapsulation": {"string": "ether"},
                    "dra.net/state": {"string": "up"},
                    "dra.net/type": {"string": "device"},
                    "resource.kubernetes.io/pcieRoot": {"string": pcie_root(n)},
                    "resource.kubernetes.io/pciBusID": {"string": pci},
                },
            }
        )
    return node_slice(node, node_uid, DRIVER, devices)


def runtime_args(ctx: LabContext) -> list[str]:
    """The container runtime's flags that make it attach allocated NICs (none when the
    component is off or ``nics-unattached`` is on)."""
    if NAME not in ctx.enabled or UNATTACHED in ctx.enabled:
        return []
    return [f"--nic-netns={ctx.net.netns}", f"--nic-cidr={ctx.net.layout.nic_cidr}"]


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LabError(f"ip {' '.join(args[:5])}: {e}") from e


def bridge_exists(ctx: LabContext) -> bool:
    return _ip("-n", ctx.net.netns, "link", "show", "dev", BRIDGE).returncode == 0


@register
class RdmaNics(Component):
    name = NAME
    description = (
        "simulated RDMA NICs published through DRA like dranet's (driver dra.net, one per "
        "PCIe root of a GPU node); pods allocated one get a real second interface"
    )
    order = 72
    after = ("network", "nodes")
    optional = True
    default = True

    def start(self, ctx: LabContext) -> None:
        ns = ctx.net.netns
        if not bridge_exists(ctx):
            r = _ip("-n", ns, "link", "add", BRIDGE, "type", "bridge")
            if r.returncode != 0 and not bridge_exists(ctx):
                raise LabError(f"cannot create the NIC bridge in {ns}: {r.stderr.strip()}")
        subprocess.run(
            ctx.net.in_netns(
                ["sh", "-c", f"echo 1 > /proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6"]
            ),
            capture_output=True,
            timeout=30,
            check=False,
        )
        _ip("-n", ns, "link", "set", "dev", BRIDGE, "up")
        if not ctx.options.dra or ctx.options.accelerators == "none":
            return
        uids = {
            n["metadata"]["name"]: n["metadata"]["uid"]
            for n in ctx.get(f"/api/v1/nodes?labelSelector={POOL_LABEL}%3Dgpu")["items"]
        }
        slices = [nic_slice(ctx, n, uid) for n, uid in sorted(uids.items())]
        ctx.apply([nic_device_class(), *slices], workers=BULK_WORKERS)

    def stop(self, ctx: LabContext) -> None:
        net = network.load(ctx.state / NET_FILE)
        if net is not None and net.netns in network.netns_names():
            _ip("-n", net.netns, "link", "del", "dev", BRIDGE)

    def healthy(self, ctx: LabContext) -> bool:
        return bridge_exists(ctx)
