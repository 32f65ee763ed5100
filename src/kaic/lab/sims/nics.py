"""Simulated secondary NICs: what a container gets when its pod's ResourceClaim was
allocated a device of the simulated network DRA driver (``dra.net``, ``rdma-nics``).

Owns: finding the ``dra.net`` devices allocated to a pod's claims, giving each to one
container as a real second interface (a veth pair: one end moved into the container's
network namespace under the device's ``dra.net/ifName``, with an address of the lab's
NIC range; the other end on a bridge inside the lab's network namespace, so that two
such containers reach each other), writing the claim's ``status.devices`` with the
``networkData`` DRANET reports (KEP-4817: interface name, addresses, hardware address),
and removing the host ends when the pod goes. Called by the container runtime
(``kaic.lab.sims.runtime``) around the start of a container; must not start container
processes nor touch interfaces it did not create. Nothing outside the lab's own
namespaces is touched: the bridge and the host ends live in the lab's namespace, the
other ends in the containers'.

A device goes to the first container that lists its claim in ``resources.claims``
(DRANET attaches it to the pod's sandbox, which every container shares; the lab's
containers each have a network namespace of their own), else to the first container.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kaic.lab.apiserver import ApiClient, ApiError

DRIVER = "dra.net"
IFNAME_ATTRIBUTE = "dra.net/ifName"
BRIDGE = "kaicnics"
"""The bridge inside the lab's namespace that every NIC's host end is attached to."""
HOST_PREFIX = "kn"
"""Host ends are ``kn<8 hex>`` (inside the lab's namespace)."""
READY_ENV = "KAIC_NIC_READY"
"""File the container's sandbox waits for before it runs the command (the interfaces
are in place, or could not be put there)."""
NETNS_WAIT_S = 5.0


@dataclass(frozen=True)
class Nic:
    """One allocated NIC device as one container's interface."""

    claim_ns: str
    claim: str
    pool: str
    device: str
    ifname: str
    container: str

    @property
    def key(self) -> str:
        return f"{self.claim_ns}/{self.claim}/{self.pool}/{self.device}"

    @property
    def host_if(self) -> str:
        return HOST_PREFIX + hashlib.sha256(self.key.encode()).hexdigest()[:8]

    @property
    def mac(self) -> str:
        return nic_mac(self.pool, self.device)


def nic_mac(pool: str, device: str) -> str:
    """The stable, locally administered unicast MAC of a simulated NIC (its slice's
    ``dra.net/mac``, the interface's address in the container)."""
    h = hashlib.sha256(f"kaic-lab-nic/{pool}/{device}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *h[:5]))


def pod_claims(pod: Mapping[str, Any]) -> dict[str, str]:
    """The pod's claim references (``spec.resourceClaims[].name``) → claim names
    (templates resolved through ``status.resourceClaimStatuses``)."""
    spec = pod.get("spec") or {}
    generated = {
        str(s.get("name")): s.get("resourceClaimName")
        for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []
    }
    out = {}
    for rc in spec.get("resourceClaims") or []:
        name = rc.get("resourceClaimName") or generated.get(str(rc.get("name")))
        if name:
            out[str(rc.get("name"))] = str(name)
    return out


def container_for(pod: Mapping[str, Any], ref: str) -> str:
    """The container that gets the devices of claim reference ``ref``."""
    containers = (pod.get("spec") or {}).get("containers") or []
    for c in containers:
        if any(x.get("name") == ref for x in (c.get("resources") or {}).get("claims") or []):
            return str(c.get("name"))
    return str(containers[0].get("name")) if containers else ""


def _ifname(slices: Sequence[Mapping[str, Any]], pool: str, device: str, n: int) -> str:
    for s in slices:
        spec = s.get("spec") or {}
        if spec.get("driver") != DRIVER or (spec.get("pool") or {}).get("name") != pool:
            continue
        for d in spec.get("devices") or []:
            if d.get("name") == device:
                v = ((d.get("attributes") or {}).get(IFNAME_ATTRIBUTE) or {}).get("string")
                if v and len(str(v)) <= 15:
                    return str(v)
    return f"net{n + 1}"


def nics_of(
    pod: Mapping[str, Any],
    claims: Mapping[str, Mapping[str, Any]],
    slices: Sequence[Mapping[str, Any]],
) -> list[Nic]:
    """The ``dra.net`` devices allocated to ``pod``'s claims (``claims``: claim name →
    object), each with the container that gets it."""
    ns = str((pod.get("metadata") or {}).get("namespace", ""))
    out: list[Nic] = []
    for ref, name in pod_claims(pod).items():
        claim = claims.get(name)
        if claim is None:
            continue
        results = ((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}
        for r in results.get("results") or []:
            if r.get("driver") != DRIVER:
                continue
            pool, device = str(r.get("pool", "")), str(r.get("device", ""))
            ifname = _ifname(slices, pool, device, len(out))
            if any(n.ifname == ifname and n.container == container_for(pod, ref) for n in out):
                ifname = f"net{len(out) + 1}"
            out.append(Nic(ns, name, pool, device, ifname, container_for(pod, ref)))
    return out


def device_status(nic: Nic, address: str) -> dict[str, Any]:
    """The claim's ``status.devices`` entry for ``nic`` (KEP-4817 ``networkData``)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "driver": DRIVER,
        "pool": nic.pool,
        "device": nic.device,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "InterfaceAttached",
                "message": f"{nic.ifname} in container {nic.container}",
                "lastTransitionTime": now,
            }
        ],
        "networkData": {
            "interfaceName": nic.ifname,
            "ips": [address],
            "hardwareAddress": nic.mac,
        },
    }


Runner = Callable[[Sequence[str]], tuple[int, str]]


def _run(argv: Sequence[str]) -> tuple[int, str]:
    try:
        r = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, str(e)
    return r.returncode, (r.stderr or r.stdout).strip()


class NicAttacher:
    """Gives containers their allocated NICs; one per runtime."""

    def __init__(
        self,
        api: ApiClient,
        netns: str,
        cidr: str,
        *,
        log: Callable[[str], None],
        run: Runner = _run,
    ) -> None:
        self.api = api
        self.netns = netns
        self.network = ipaddress.ip_network(cidr)
        self.log = log
        self.run = run
        self.addresses: dict[str, str] = {}
        """NIC key → its address (``a.b.c.d/len``), while its pod runs."""
        self.attached: dict[str, list[Nic]] = {}
        """Pod uid → the NICs attached to its containers."""

    # -- what a container gets -----------------------------------------------------------
    def planned(self, pod: Mapping[str, Any], container: str) -> list[Nic]:
        """The NICs ``container`` of ``pod`` gets (empty: none; errors: none either)."""
        refs = pod_claims(pod)
        if not refs:
            return []
        ns = str((pod.get("metadata") or {}).get("namespace", ""))
        claims: dict[str, Mapping[str, Any]] = {}
        try:
            for name in refs.values():
                claims[name] = self.api.get(
                    f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims/{quote(name)}"
                )
            if not any(
                r.get("driver") == DRIVER
                for c in claims.values()
                for r in (
                    ((c.get("status") or {}).get("allocation") or {}).get("devices") or {}
                ).get("results")
                or []
            ):
                return []
            slices = self.api.get(
                "/apis/resource.k8s.io/v1/resourceslices?fieldSelector=spec.driver%3D" + DRIVER
            ).get("items", [])
        except ApiError as e:
            self.log(
                f"cannot read the claims of {ns}/{(pod.get('metadata') or {}).get('name')}: {e}"
            )
            return []
        return [n for n in nics_of(pod, claims, slices) if n.container == container]

    def address(self, nic: Nic) -> str:
        if nic.key not in self.addresses:
            used = {a.split("/")[0] for a in self.addresses.values()}
            free = next((str(h) for h in self.network.hosts() if str(h) not in used), None)
            if free is None:
                raise OSError(f"no free address in {self.network}")
            self.addresses[nic.key] = f"{free}/{self.network.prefixlen}"
        return self.addresses[nic.key]

    # -- kernel objects ------------------------------------------------------------------
    def _do(self, *argv: str) -> None:
        code, out = self.run(argv)
        if code != 0:
            raise OSError(f"{' '.join(argv)}: {out or code}")

    def attach(self, nic: Nic, pid: int) -> str:
        """Put ``nic`` into the network namespace of process ``pid``; its address."""
        addr = self.address(nic)
        wait_for_own_netns(pid)
        lab = ("ip", "-n", self.netns)
        inside = ("nsenter", f"--net=/proc/{pid}/ns/net")
        self.run([*lab, "link", "del", "dev", nic.host_if])
        self._do(
            *lab,
            "link",
            "add",
            nic.host_if,
            "type",
            "veth",
            "peer",
            "name",
            nic.ifname,
            "address",
            nic.mac,
            "netns",
            str(pid),
        )
        # NOTE: no IPv6 on either end, so nothing (router solicitations, DAD) is sent.
        off = "echo 1 > /proc/sys/net/ipv6/conf/{}/disable_ipv6"
        self.run(["ip", "netns", "exec", self.netns, "sh", "-c", off.format(nic.host_if)])
        self.run([*inside, "sh", "-c", off.format(nic.ifname)])
        self._do(*lab, "link", "set", "dev", nic.host_if, "master", BRIDGE, "up")
        self._do(*inside, "ip", "addr", "add", addr, "dev", nic.ifname)
        self._do(*inside, "ip", "link", "set", "dev", nic.ifname, "up")
        return addr

    def write_status(self, nics: Sequence[Nic], addrs: Mapping[str, str]) -> None:
        """Add the NICs' entries to their claims' ``status.devices`` (others kept)."""
        by_claim: dict[tuple[str, str], list[Nic]] = {}
        for n in nics:
            by_claim.setdefault((n.claim_ns, n.claim), []).append(n)
        for (ns, name), group in by_claim.items():
            path = f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims/{quote(name)}"
            try:
                claim = self.api.get(path)
                mine = {(n.pool, n.device) for n in group}
                keep = [
                    d
                    for d in (claim.get("status") or {}).get("devices") or []
                    if d.get("driver") != DRIVER or (d.get("pool"), d.get("device")) not in mine
                ]
                devices = keep + [device_status(n, addrs[n.key]) for n in group if n.key in addrs]
                self.api.request(
                    "PATCH",
                    f"{path}/status",
                    {"metadata": {"uid": claim["metadata"]["uid"]}, "status": {"devices": devices}},
                    content_type="application/merge-patch+json",
                )
            except (ApiError, KeyError) as e:
                self.log(f"cannot write the device status of claim {ns}/{name}: {e}")

    # -- the runtime's hooks -------------------------------------------------------------
    def started(
        self, pod: Mapping[str, Any], nics: Sequence[Nic], pid: int, ready: Path
    ) -> list[str]:
        """After the process ``pid`` of the container that gets ``nics`` (``planned``)
        started: attach them, then write ``ready`` (always, so the container never waits
        long). Problems, one a line."""
        md = pod.get("metadata") or {}
        uid = str(md.get("uid", ""))
        problems: list[str] = []
        done: list[Nic] = []
        addrs: dict[str, str] = {}
        try:
            for nic in nics:
                try:
                    addrs[nic.key] = self.attach(nic, pid)
                    done.append(nic)
                    self.log(
                        f"{md.get('namespace')}/{md.get('name')}/{nic.container}: {nic.ifname} "
                        f"{addrs[nic.key]} ({nic.pool}/{nic.device})"
                    )
                except OSError as e:
                    problems.append(f"device {nic.pool}/{nic.device}: {e}")
        finally:
            with contextlib.suppress(OSError):
                ready.parent.mkdir(parents=True, exist_ok=True)
                ready.write_text("\n".join(problems) + "\n")
        if done:
            have = self.attached.setdefault(uid, [])
            have += [n for n in done if n not in have]
            self.write_status(done, addrs)
        return problems

    def stopped(self, uid: str) -> None:
        """The pod is gone or stopping: remove its NICs' host ends, free the addresses."""
        for nic in self.attached.pop(uid, []):
            self.run(["ip", "-n", self.netns, "link", "del", "dev", nic.host_if])
            self.addresses.pop(nic.key, None)


def wait_for_own_netns(pid: int, timeout: float = NETNS_WAIT_S) -> None:
    """Wait until process ``pid`` runs in a network namespace other than ours (the
    sandbox's ``unshare --net`` has happened); OSError if it does not."""
    mine = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != mine:
                return
        except OSError as e:
            raise OSError(f"process {pid} is gone: {e}") from e
        if time.monotonic() >= deadline:
            raise OSError(f"process {pid} has no network namespace of its own")
        time.sleep(0.02)
