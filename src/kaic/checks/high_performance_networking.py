"""high_performance_networking (TestHighPerformanceNetworking): specialized network
devices (RDMA NICs) are managed and exposed through DRA, their characteristics are
discoverable, a pod that claims one is scheduled where one is and gets it as a second
interface, and two such pods exchange data over it.

Owns: finding the network devices (ResourceSlices of a network DRA driver: DRANET's
``dra.net``, SR-IOV's, NVIDIA's RDMA one), the claim template and the two pods (a
listener and a sender, each claiming one NIC), the procedure and the evidence. Must not
import the Kubernetes client, another requirement's module, or know anything about the
lab.

Procedure (KAR-0010 test plan; there is no upstream test yet, so the sub-test names are
kaic's):

1. ``NetworkDevicesDiscoverable`` — ResourceSlices of the NIC driver publish devices with
   their characteristics (interface name, RDMA, PCI address, NUMA node, PCIe root, …);
   FAIL when none does (Multus NetworkAttachmentDefinitions are reported, but the
   requirement asks for DRA).
2. ``ClaimScheduledOnNicNode`` — a pod claiming one NIC (a ResourceClaimTemplate of the
   driver's DeviceClass) runs, on a node that publishes the device allocated to it.
3. ``InterfaceInPod`` — the claim's ``status.devices[].networkData`` (KEP-4817) and the
   interfaces the pod lists: the claimed interface is there, beyond loopback and the pod
   network, with an address that is not the pod IP.
4. ``PodToPodOverSecondaryInterface`` — a second pod claiming a NIC connects to the first
   one's NIC address and sends a token; the listener's log shows the token arrived on
   that address.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from kaic.checks.accelerators import (
    NIC_DRIVERS,
    AcceleratorType,
    dra_pools,
    dra_version,
    one_device_claim_template,
)
from kaic.checks.base import (
    CheckContext,
    CheckOption,
    Permission,
    Resource,
    Subtest,
    check,
    exclusive,
    shared,
)
from kaic.checks.created import trimmed
from kaic.checks.predicates import pod_started
from kaic.checks.waits import last_warning, poll
from kaic.cluster.api import ClusterAPI, KubeObject, name_of, namespace_of
from kaic.errors import ClusterError

TEMPLATE = "kaic-hpn-nic"
LISTENER = "kaic-hpn-listener"
SENDER = "kaic-hpn-sender"
CLAIM_REF = "nic"
PORT = 40123
IMAGE = "docker.io/library/python:3.12-slim"
NAD_GROUP = "k8s.cni.cncf.io/v1"
CHARACTERISTICS = (
    "ifName",
    "interfaceName",
    "rdma",
    "pciAddress",
    "pciBusID",
    "pcieRoot",
    "numaNode",
    "mac",
    "mtu",
    "pciVendor",
    "pciDevice",
    "linkSpeed",
    "bandwidth",
    "encapsulation",
    "virtual",
    "sriov",
)
"""Device attributes (bare or qualified) that describe a NIC, reported when present."""
DEFAULT_INTERFACE = "eth0"
"""The usual name of a pod's primary (pod network) interface."""

OPTIONS = (
    CheckOption(
        "nic-driver",
        "DRA driver of the network devices (default: the first of "
        + ", ".join(NIC_DRIVERS)
        + " that publishes any)",
        default="",
    ),
    CheckOption(
        "nic-device-class",
        "DeviceClass the NIC claims ask for (default: the first whose CEL selector names the"
        " driver)",
        default="",
    ),
    CheckOption("nic-image", "image of the two pods (needs sh, and python3 or busybox nc)", IMAGE),
    CheckOption("nic-namespace", "existing namespace for the pods (default: the check's own)", ""),
    CheckOption("nic-timeout", "seconds for each pod to run and each exchange", "180"),
)

# -- the pods' commands ------------------------------------------------------------------

PY_INTERFACES = r"""
import fcntl, socket, struct
print("KAIC-HPN-INTERFACES-BEGIN")
for _, name in socket.if_nameindex():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
        addr = socket.inet_ntoa(raw[20:24])
    except OSError:
        addr = ""
    s.close()
    print("KAIC-HPN-IF", name, addr)
print("KAIC-HPN-INTERFACES-END", flush=True)
"""

SH_INTERFACES = r"""echo KAIC-HPN-INTERFACES-BEGIN
for n in $(ip -o link 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//'); do
  a=$(ip -o -4 addr show dev "$n" 2>/dev/null | awk '{print $4}' | head -n 1)
  echo "KAIC-HPN-IF $n ${a%/*}"
done
echo KAIC-HPN-INTERFACES-END
"""

PY_LISTEN = r"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", PORT))
s.listen(8)
print("KAIC-HPN-LISTENING", flush=True)
while True:
    c, peer = s.accept()
    c.settimeout(10)
    data = b""
    try:
        while not data.endswith(b"\n") and len(data) < 256:
            got = c.recv(256)
            if not got:
                break
            data += got
    except OSError:
        pass
    local = c.getsockname()[0]
    c.close()
    text = data.decode(errors="replace").strip()
    print("KAIC-HPN-RECEIVED", text, "local=" + local, "peer=" + peer[0], flush=True)
"""

PY_SEND = r"""
import socket, sys
from time import monotonic, sleep
deadline = monotonic() + WAIT
err = ""
while monotonic() < deadline:
    try:
        c = socket.create_connection((ADDR, PORT), timeout=5)
        local = c.getsockname()[0]
        c.sendall((TOKEN + "\n").encode())
        c.close()
        print("KAIC-HPN-SENT", "local=" + local, flush=True)
        # NOTE: the pod stays running (until the check deletes it) so that its claim
        # stays allocated: a finished pod's claim is deallocated.
        sleep(3600)
        sys.exit(0)
    except OSError as e:
        err = str(e)
        sleep(2)
print("KAIC-HPN-SEND-FAILED", err, flush=True)
sys.exit(1)
"""


def _py(program: str, **values: object) -> str:
    head = "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
    return f"python3 -c {shlex.quote(head + program)}"


def listener_script() -> str:
    """Lists the pod's interfaces, then prints every line sent to ``PORT`` with the
    local address it arrived on."""
    nc = (
        "echo KAIC-HPN-LISTENING; while true; do nc -l -p "
        f'{PORT} | while read -r l; do echo "KAIC-HPN-RECEIVED $l"; done; done'
    )
    return (
        "if command -v python3 >/dev/null 2>&1; then "
        f"{_py(PY_INTERFACES)}; exec {_py(PY_LISTEN, PORT=PORT)}; "
        f"else\n{SH_INTERFACES}{nc}\nfi\n"
    )


def sender_script(address: str, token: str, wait: float) -> str:
    """Lists the pod's interfaces, then sends ``token`` to ``address``:``PORT``."""
    tries = max(1, int(wait // 3))
    nc = (
        f"i=0; until echo {shlex.quote(token)} | nc -w 3 {shlex.quote(address)} {PORT}; do "
        f"i=$((i+1)); if [ $i -ge {tries} ]; then echo KAIC-HPN-SEND-FAILED; exit 1; fi; "
        "sleep 2; done; echo KAIC-HPN-SENT; exec sleep 3600"
    )
    py = _py(PY_SEND, ADDR=address, PORT=PORT, TOKEN=token, WAIT=float(wait))
    return (
        "if command -v python3 >/dev/null 2>&1; then "
        f"{_py(PY_INTERFACES)}; exec {py}; "
        f"else\n{SH_INTERFACES}{nc}\nfi\n"
    )


# -- parsing -----------------------------------------------------------------------------


@dataclass
class Listing:
    """What a pod printed: its interfaces (name → IPv4 address or "") and more lines."""

    interfaces: dict[str, str] = field(default_factory=dict)
    complete: bool = False
    lines: list[str] = field(default_factory=list)


def parse_log(text: str) -> Listing:
    out = Listing()
    for line in text.splitlines():
        line = line.strip()
        out.lines.append(line)
        if line.startswith("KAIC-HPN-IF "):
            parts = line.split()
            out.interfaces[parts[1]] = parts[2] if len(parts) > 2 else ""
        elif line == "KAIC-HPN-INTERFACES-END":
            out.complete = True
    return out


_RECEIVED = re.compile(r"^KAIC-HPN-RECEIVED (\S+)(?: local=(\S+))?(?: peer=(\S+))?")


def received(text: str) -> list[tuple[str, str, str]]:
    """(token, local address, peer address) of every line the listener got."""
    out = []
    for line in text.splitlines():
        m = _RECEIVED.match(line.strip())
        if m:
            out.append((m.group(1), m.group(2) or "", m.group(3) or ""))
    return out


# -- discovery ---------------------------------------------------------------------------


def describe_device(dev: Any) -> dict[str, Any]:
    attrs = {}
    for k in CHARACTERISTICS:
        v = dev.attribute(k)
        if v is not None:
            attrs[k] = v
    return attrs


def pick_driver(slices: Sequence[KubeObject], wanted: str) -> str:
    if wanted:
        return wanted
    have = {str((s.get("spec") or {}).get("driver")) for s in slices}
    return next((d for d in NIC_DRIVERS if d in have), NIC_DRIVERS[0])


def device_class_for(classes: Sequence[KubeObject], driver: str) -> str | None:
    """The DeviceClass whose CEL selectors name ``driver`` (one named like it first)."""
    naming = []
    for c in classes:
        exprs = [
            str(((s or {}).get("cel") or {}).get("expression", ""))
            for s in (c.get("spec") or {}).get("selectors") or []
        ]
        if any(re.search(rf"""['"]{re.escape(driver)}['"]""", e) for e in exprs):
            naming.append(name_of(c))
    for n in naming:
        if n == driver:
            return n
    return naming[0] if naming else None


def claim_template(
    namespace: str, device_class: str, driver: str, api_version: str = "resource.k8s.io/v1"
) -> KubeObject:
    return one_device_claim_template(
        api_version, TEMPLATE, namespace, CLAIM_REF, device_class, f"device.driver == '{driver}'"
    )


def nic_pod(namespace: str, name: str, image: str, script: str) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kaic.io/hpn-role": name},
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "resourceClaims": [{"name": CLAIM_REF, "resourceClaimTemplateName": TEMPLATE}],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 50,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {
                                    "matchExpressions": [
                                        {"key": "kaic.io/hpn-role", "operator": "Exists"}
                                    ]
                                },
                            },
                        }
                    ]
                }
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": ["sh", "-c", script],
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "32Mi"},
                        "claims": [{"name": CLAIM_REF}],
                    },
                }
            ],
        },
    }


def network_data(claim: KubeObject | None, driver: str) -> list[dict[str, Any]]:
    """``status.devices[]`` entries of ``driver`` with their ``networkData``."""
    return [
        d
        for d in ((claim or {}).get("status") or {}).get("devices") or []
        if d.get("driver") == driver
    ]


def _bare(ip: str) -> str:
    return ip.split("/", 1)[0]


# -- the run -----------------------------------------------------------------------------


@dataclass
class PodView:
    pod: KubeObject | None = None
    claim: KubeObject | None = None
    log: str = ""
    listing: Listing = field(default_factory=Listing)
    nic_if: str = ""
    nic_addr: str = ""


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c: ClusterAPI = ctx.cluster
        self.ns = ctx.option("nic-namespace") or ctx.namespace
        self.image = ctx.option("nic-image") or IMAGE
        self.timeout = ctx.float_option("nic-timeout") or 180.0
        self.driver = ""
        self.dra = "resource.k8s.io/v1"
        self.devices: dict[str, list[Any]] = {}
        self.node_devices: dict[tuple[str, str, str], frozenset[str]] = {}
        self.created: list[tuple[str, str]] = []
        self.views: dict[str, PodView] = {LISTENER: PodView(), SENDER: PodView()}
        self.token = "kaic-hpn-" + secrets.token_hex(8)
        self.record: dict[str, Any] = {}
        self.log_errors: dict[str, str] = {}

    # 1 -----------------------------------------------------------------------------------
    def discoverable(self, t: Subtest) -> None:
        dra = dra_version(self.c, ("ResourceSlice", "ResourceClaimTemplate", "DeviceClass"))
        nads = self.nads()
        if dra is not None:
            self.dra = dra
        else:
            t.fail(
                "the cluster serves no DRA API (resource.k8s.io/v1 ResourceSlice, "
                "ResourceClaimTemplate, DeviceClass): network devices cannot be exposed "
                "through DRA" + nads
            )
        slices = self.c.list(dra, "ResourceSlice")
        nodes = self.c.list("v1", "Node")
        self.driver = pick_driver(slices, self.ctx.option("nic-driver") or "")
        pools = dra_pools(slices, AcceleratorType("nic", (), (self.driver,), ()), nodes)
        devices = [d for p in pools for d in p.devices]
        if not devices:
            others = sorted({str((s.get("spec") or {}).get("driver")) for s in slices})
            t.fail(
                f"no network device is published through DRA: no ResourceSlice device of "
                f"driver {self.driver}"
                + (f" (ResourceSlices of {', '.join(others)} only)" if others else "")
                + (
                    ""
                    if self.ctx.option("nic-driver")
                    else f"; looked for {', '.join(NIC_DRIVERS)}, name another with --nic-driver"
                )
                + nads
            )
        table: dict[str, Any] = {}
        bare = []
        for d in devices:
            self.node_devices[d.key] = d.nodes
            for n in sorted(d.nodes) or ["(no node)"]:
                self.devices.setdefault(n, []).append(d)
            attrs = describe_device(d)
            if not d.attributes:
                bare.append(f"{d.pool}/{d.name}")
            table[f"{d.driver}/{d.pool}/{d.name}"] = {
                "nodes": sorted(d.nodes),
                "characteristics": attrs,
                "attributes": dict(d.attributes),
            }
        self.record["devices"] = table
        node_names = {name_of(n) for n in nodes}
        without = sorted(node_names - set(self.devices))
        for n in sorted(self.devices):
            devs = self.devices[n]
            shown = ", ".join(
                f"{d.name}({', '.join(f'{k}={v}' for k, v in describe_device(d).items())})"
                for d in devs
            )
            t.log(f"node {n}: {len(devs)} NIC(s) of {self.driver}: {shown}")
        if without:
            t.log(f"nodes without a NIC of {self.driver}: {', '.join(without)}")
        if nads:
            t.log(nads.lstrip("; "))
        if bare:
            t.fail(
                f"devices of {self.driver} publish no characteristics (no attributes): "
                + ", ".join(bare)
            )
        if not any(describe_device(d) for d in devices):
            t.fail(
                f"the devices of {self.driver} publish none of the usual NIC characteristics"
                f" ({', '.join(CHARACTERISTICS)})"
            )

    def nads(self) -> str:
        """``; …`` naming the Multus NetworkAttachmentDefinitions, or ``""``."""
        if not any(
            r.kind == "NetworkAttachmentDefinition" for r in self.c.api_resources(NAD_GROUP)
        ):
            return ""
        try:
            found = self.c.list(NAD_GROUP, "NetworkAttachmentDefinition")
        except ClusterError as e:
            return f"; NetworkAttachmentDefinitions could not be listed: {e}"
        if not found:
            return ""
        names = ", ".join(f"{namespace_of(n)}/{name_of(n)}" for n in found[:10])
        return (
            f"; {len(found)} Multus NetworkAttachmentDefinition(s) ({names}) attach secondary"
            " networks, but not through DRA"
        )

    # 2 -----------------------------------------------------------------------------------
    def scheduled(self, t: Subtest) -> None:
        cls = self.ctx.option("nic-device-class") or ""
        if not cls:
            found = device_class_for(self.c.list(self.dra, "DeviceClass"), self.driver)
            if found is None:
                t.fail(
                    f"no DeviceClass selects driver {self.driver}, so no claim can ask for a "
                    "NIC; name one with --nic-device-class"
                )
            cls = found
        elif self.c.get(self.dra, "DeviceClass", cls) is None:
            t.fail(f"DeviceClass {cls} (--nic-device-class) does not exist")
        t.log(f"claims ask for DeviceClass {cls}, driver {self.driver}")
        self.c.create(claim_template(self.ns, cls, self.driver, self.dra))
        self.created.append(("ResourceClaimTemplate", TEMPLATE))
        self.start_pod(t, LISTENER, listener_script())

    def start_pod(self, t: Subtest, name: str, script: str) -> None:
        try:
            self.c.create(nic_pod(self.ns, name, self.image, script))
        except ClusterError as e:
            t.fail(f"pod {name} was not accepted: {e}")
        self.created.append(("Pod", name))
        try:
            got = self.c.wait_for(
                "v1",
                "Pod",
                name,
                self.ns,
                pod_started,
                timeout=self.ctx.budget(self.timeout),
                what=f"pod {name} to run",
            )
        except ClusterError as e:
            t.fail(f"pod {name} did not run: {e}{last_warning(self.c, self.ns, name)}")
        assert got is not None
        pod = got
        view = self.views[name]
        view.pod = pod
        node = str((pod.get("spec") or {}).get("nodeName", ""))
        claim_name = next(
            (
                s.get("resourceClaimName")
                for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []
                if s.get("name") == CLAIM_REF
            ),
            None,
        )
        claim = (
            self.c.get(self.dra, "ResourceClaim", str(claim_name), self.ns) if claim_name else None
        )
        view.claim = claim
        results = [
            r
            for r in (
                (((claim or {}).get("status") or {}).get("allocation") or {}).get("devices") or {}
            ).get("results")
            or []
            if r.get("driver") == self.driver
        ]
        if not results:
            t.fail(
                f"pod {name} runs on node {node} but its claim {claim_name or '(none)'} holds no"
                f" device of {self.driver}"
            )
        for r in results:
            key = (self.driver, str(r.get("pool")), str(r.get("device")))
            where = self.node_devices.get(key)
            if where is None or node not in where:
                t.fail(
                    f"pod {name} was scheduled on node {node}, which does not publish device "
                    f"{key[1]}/{key[2]} of {self.driver} allocated to it"
                    + (f" (published on {', '.join(sorted(where))})" if where else "")
                )
            t.log(f"pod {name} runs on node {node} with {self.driver} device {key[1]}/{key[2]}")

    # 3 -----------------------------------------------------------------------------------
    def read_log(self, name: str) -> str:
        """The pod's log ("" while there is none yet: the last error is kept)."""
        try:
            text = self.c.raw_get(
                f"/api/v1/namespaces/{self.ns}/pods/{name}/log?container=main",
                timeout=self.ctx.budget(30.0),
            )
        except ClusterError as e:
            self.log_errors[name] = str(e)
            return ""
        self.log_errors.pop(name, None)
        return text

    def interface_of(self, t: Subtest, name: str) -> None:
        view = self.views[name]

        def listed() -> bool:
            view.log = self.read_log(name)
            view.listing = parse_log(view.log)
            return view.listing.complete

        if not poll(self.ctx, self.ctx.budget(self.timeout), listed, interval=2.0):
            why = self.log_errors.get(name) or view.log.strip()[-300:] or "empty"
            t.fail(f"pod {name} printed no interface listing in {self.timeout:.0f}s (log: {why})")
        pod = view.pod or {}
        node = (pod.get("spec") or {}).get("nodeName", "")
        pod_ip = str((pod.get("status") or {}).get("podIP") or "")
        ifs = view.listing.interfaces
        shown = ", ".join(f"{k} {v}".strip() for k, v in ifs.items()) or "none"
        claim = view.claim
        if claim is not None:
            fresh = self.c.get(self.dra, "ResourceClaim", name_of(claim), self.ns)
            view.claim = claim = fresh or claim
        data = [d.get("networkData") or {} for d in network_data(claim, self.driver)]
        data = [d for d in data if d]
        if data:
            nd = data[0]
            want = str(nd.get("interfaceName") or "")
            ips = [_bare(str(i)) for i in nd.get("ips") or []]
            t.log(
                f"claim {name_of(claim or {})} networkData: interface {want or '?'}, ips "
                f"{', '.join(nd.get('ips') or []) or 'none'}, hardware address "
                f"{nd.get('hardwareAddress') or '?'}"
            )
            if want and want not in ifs:
                t.fail(
                    f"pod {name} on node {node}: its claim reports interface {want}, but the pod"
                    f" has only: {shown}"
                )
            secondary = want or next((i for i, a in ifs.items() if a and a in ips), "")
            addr = next((ip for ip in ips if ":" not in ip), "") or ifs.get(secondary, "")
        else:
            t.log(
                f"claim {name_of(claim or {})} has no networkData of {self.driver} "
                "(status.devices, KEP-4817); judging by the pod's interfaces"
            )
            primary = {i for i, a in ifs.items() if pod_ip and a == pod_ip}
            if not primary and DEFAULT_INTERFACE in ifs:
                primary = {DEFAULT_INTERFACE}
            extra = [i for i in ifs if i != "lo" and i not in primary]
            if not extra:
                t.fail(
                    f"pod {name} on node {node} has no interface beyond loopback and the pod "
                    f"network ({shown}): the claimed NIC was not attached"
                )
            secondary = next((i for i in extra if ifs[i]), extra[0])
            addr = ifs.get(secondary, "")
        if not addr:
            t.fail(
                f"pod {name} on node {node}: interface {secondary or '?'} has no IPv4 address"
                f" ({shown})"
            )
        if pod_ip and addr == pod_ip:
            t.fail(
                f"pod {name}: the NIC address {addr} is the pod IP: the data would go over the"
                " pod network"
            )
        if secondary and ifs.get(secondary) and ifs[secondary] != addr:
            t.fail(
                f"pod {name}: interface {secondary} has address {ifs[secondary]}, not the "
                f"claim's {addr}"
            )
        view.nic_if, view.nic_addr = secondary, addr
        t.log(
            f"pod {name} on node {node} has interface {secondary} {addr} (pod IP "
            f"{pod_ip or 'none'}); interfaces: {shown}"
        )

    def in_pod(self, t: Subtest) -> None:
        self.interface_of(t, LISTENER)

    # 4 -----------------------------------------------------------------------------------
    def exchange(self, t: Subtest) -> None:
        target = self.views[LISTENER].nic_addr
        self.start_pod(t, SENDER, sender_script(target, self.token, self.timeout))
        self.interface_of(t, SENDER)
        sender = self.views[SENDER]
        got: list[tuple[str, str, str]] = []

        def arrived() -> bool:
            nonlocal got
            got = [g for g in received(self.read_log(LISTENER)) if g[0] == self.token]
            if got:
                return True
            sender.log = self.read_log(SENDER)
            return "KAIC-HPN-SEND-FAILED" in sender.log

        poll(self.ctx, self.ctx.budget(self.timeout), arrived, interval=2.0)
        self.views[LISTENER].log = self.read_log(LISTENER)
        sender.log = self.read_log(SENDER)
        if not got:
            failed = next(
                (ln for ln in sender.log.splitlines() if "KAIC-HPN-SEND-FAILED" in ln), ""
            )
            t.fail(
                f"the token sent by pod {SENDER} to {target}:{PORT} (pod {LISTENER}'s "
                f"{self.views[LISTENER].nic_if}) did not arrive in {self.timeout:.0f}s"
                + (f": {failed.strip()}" if failed else "")
            )
        _, local, peer = got[0]
        listener_ip = str(((self.views[LISTENER].pod or {}).get("status") or {}).get("podIP") or "")
        if local and local != target:
            t.fail(
                f"the token arrived at pod {LISTENER} on {local}, not on its NIC address {target}"
            )
        if local and listener_ip and local == listener_ip:
            t.fail(f"the token arrived on the pod IP {local}, not over the secondary interface")
        t.log(
            f"pod {SENDER} ({sender.nic_if} {sender.nic_addr}) sent a token to "
            f"{target}:{PORT}; pod {LISTENER} received it"
            + (f" on {local} from {peer}" if local else "")
            + f"; pod IP of {LISTENER}: {listener_ip or 'none'}"
        )
        self.record["exchange"] = {"to": target, "local": local, "peer": peer}

    # -- evidence and cleanup -------------------------------------------------------------
    def keep_evidence(self) -> None:
        self.ctx.evidence(
            "nics.json", json.dumps(self.record, indent=2, default=str) + "\n", "application/json"
        )
        for name, view in self.views.items():
            if view.log:
                self.ctx.evidence(f"{name}.log", view.log)
        objs: list[Any] = []
        for view in self.views.values():
            objs += [trimmed(o) for o in (view.pod, view.claim) if o is not None]
        if objs:
            self.ctx.evidence(
                "objects.yaml", yaml.safe_dump_all(objs, sort_keys=False), "application/yaml"
            )

    def delete_all(self) -> None:
        for kind, name in reversed(self.created):
            av = "v1" if kind == "Pod" else self.dra
            try:
                self.c.delete(av, kind, name, self.ns)
            except ClusterError as e:
                self.ctx.log(f"could not delete {kind} {name}: {e}")


@check(
    "high_performance_networking",
    test="TestHighPerformanceNetworking",
    locks=exclusive(Resource.ACCELERATORS) + shared(Resource.NODE_POOL, Resource.NODE_CAPACITY),
    options=OPTIONS,
    permissions=(
        Permission("list", "nodes", namespaced=False),
        Permission("list", "resourceslices", "resource.k8s.io", namespaced=False),
        Permission("list", "deviceclasses", "resource.k8s.io", namespaced=False),
        Permission("create", "resourceclaimtemplates", "resource.k8s.io"),
        Permission("delete", "resourceclaimtemplates", "resource.k8s.io"),
        Permission("get", "resourceclaims", "resource.k8s.io"),
        Permission("create", "pods"),
        Permission("get", "pods"),
        Permission("delete", "pods"),
        Permission("get", "pods", subresource="log"),
    ),
    timeout_s=600.0,
)
def high_performance_networking(ctx: CheckContext) -> None:
    """Network devices are published through DRA with their characteristics; a pod that
    claims one runs on a node that has it and gets it as a second interface; two such
    pods exchange data over it."""
    run = _Run(ctx)
    try:
        ctx.step("NetworkDevicesDiscoverable", run.discoverable)
        ctx.step("ClaimScheduledOnNicNode", run.scheduled, needs=("NetworkDevicesDiscoverable",))
        ctx.step("InterfaceInPod", run.in_pod, needs=("ClaimScheduledOnNicNode",))
        ctx.step("PodToPodOverSecondaryInterface", run.exchange, needs=("InterfaceInPod",))
    finally:
        run.keep_evidence()
        run.delete_all()
