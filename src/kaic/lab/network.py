"""The lab network: one network namespace per lab, numbered from 198.18.0.0/15.

Owns: the address plan of a lab (a /20 block of 198.18.0.0/15 for pods, Services, the
link to the host, the lab's data planes and its simulated NICs), the machine-wide
allocation of those blocks (so that two labs side by side never overlap, whoever's
cache they live in), and creating and removing
the kernel objects: the namespace ``kaic-<lab>-<id>``, a veth pair (host end
``kaic<id>``, alias ``kaic-lab <lab> <state dir>``; namespace end ``eth0``), the
namespace's local routes and the host's one route to the block. Must not start
processes (components do) nor touch anything the lab did not create.

Inside the namespace every pod IP and every ClusterIP of the lab is local (``ip route
add local <cidr> dev lo``), so a server bound to a pod IP accepts connections there,
kube-proxy's DNAT from a ClusterIP to a pod IP stays inside, and nothing addressed to
the lab ever leaves it. The host reaches the block through the veth.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kaic.errors import LabError

LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
BLOCK_PREFIX = 20
"""Each lab gets one /20 (4096 addresses): pods /21, Services /22, the host link /30,
data planes' own addresses /24, simulated NICs /24 (a large lab: 2 or 4 blocks, each
range but the link scaled alike, ``span_for``)."""
BLOCKS = 2 ** (BLOCK_PREFIX - LAB_RANGE.prefixlen)
NS_IF = "eth0"
REGISTRY_ENV = "KAIC_NET_REGISTRY"
DEFAULT_REGISTRY = Path("/run/kaic-lab/net")
_THREAD_LOCK = threading.Lock()


def registry_dir() -> Path:
    """Where blocks are handed out: machine-wide (``/run``, cleared on reboot like the
    namespaces themselves), not per cache, so labs of different caches never collide."""
    return Path(os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)


SPANS = (1, 2, 4, 8)
"""How many consecutive blocks a lab may take: one, or more for a large lab (whose pods
need more than the /21's addresses: ``span_for``)."""


def span_for(pods: int) -> int:
    """The blocks a lab whose pods need ``pods`` addresses takes (pod range of one block:
    2046 addresses; of eight: 16382)."""
    for span in SPANS:
        if pods <= Layout(0, span).pod_cidr.num_addresses - 2:
            return span
    raise LabError(
        f"a lab with {pods} pods needs more addresses than {SPANS[-1]} blocks of the lab "
        "network hold"
    )


@dataclass(frozen=True)
class Layout:
    """The addresses of block ``block`` of 198.18.0.0/15, or of the ``span`` consecutive
    blocks from it (every range scaled alike, except the link)."""

    block: int
    span: int = 1

    def __post_init__(self) -> None:
        if self.span not in SPANS:
            raise ValueError(f"span {self.span} is not one of {SPANS}")
        if not 0 <= self.block <= BLOCKS - self.span or self.block % self.span:
            raise ValueError(f"block {self.block} outside 0..{BLOCKS - 1} (or not aligned)")

    @property
    def blocks(self) -> range:
        return range(self.block, self.block + self.span)

    @property
    def _bits(self) -> int:
        return self.span.bit_length() - 1

    @property
    def network(self) -> ipaddress.IPv4Network:
        base = int(LAB_RANGE.network_address) + self.block * 2 ** (32 - BLOCK_PREFIX)
        prefix = BLOCK_PREFIX - self._bits
        return ipaddress.IPv4Network(f"{ipaddress.IPv4Address(base)}/{prefix}")

    def _sub(self, offset: int, prefix: int) -> ipaddress.IPv4Network:
        addr = ipaddress.IPv4Address(int(self.network.network_address) + offset * self.span)
        return ipaddress.IPv4Network(f"{addr}/{prefix}")

    @property
    def pod_cidr(self) -> ipaddress.IPv4Network:
        return self._sub(0, 21 - self._bits)

    @property
    def service_cidr(self) -> ipaddress.IPv4Network:
        return self._sub(2048, 22 - self._bits)

    @property
    def link(self) -> ipaddress.IPv4Network:
        return self._sub(3072, 30)

    @property
    def gateway_cidr(self) -> ipaddress.IPv4Network:
        """Addresses for the lab's own data planes (e.g. a Gateway's address): local
        inside the namespace like pod IPs, reached from the host through the veth."""
        return self._sub(3328, 24)

    @property
    def gateway_ip(self) -> ipaddress.IPv4Address:
        return self.gateway_cidr.network_address + 1

    @property
    def nic_cidr(self) -> ipaddress.IPv4Network:
        """Addresses of the simulated secondary NICs that pods get (``rdma-nics``): on
        a bridge inside the namespace, not local there (the last /24 of the block)."""
        return self._sub(3840, 24 - self._bits)

    @property
    def host_addr(self) -> ipaddress.IPv4Address:
        return self.link.network_address + 1

    @property
    def ns_addr(self) -> ipaddress.IPv4Address:
        """The namespace's own address on the link (kube-proxy's node IP and health port)."""
        return self.link.network_address + 2


@dataclass(frozen=True)
class LabNet:
    """One lab's network: its names and its block."""

    lab: str
    state: str
    layout: Layout

    @property
    def id(self) -> str:
        return lab_id(self.state)

    @property
    def netns(self) -> str:
        return f"kaic-{self.lab}-{self.id}"

    @property
    def host_if(self) -> str:
        return f"kaic{self.id}"

    @property
    def alias(self) -> str:
        return f"kaic-lab {self.lab} {self.state}"

    @property
    def pod_cidr(self) -> str:
        return str(self.layout.pod_cidr)

    @property
    def service_cidr(self) -> str:
        return str(self.layout.service_cidr)

    def contains(self, address: str) -> bool:
        """True if ``address`` lies in this lab's block."""
        try:
            return ipaddress.ip_address(address) in self.layout.network
        except ValueError:
            return False

    def address_regex(self) -> str:
        """A regex (anchored by its user, e.g. Prometheus) matching ``host:port`` for any
        host of this lab's block."""
        net = self.layout.network
        first, last = net.network_address.packed, net.broadcast_address.packed
        thirds = "|".join(str(c) for c in range(first[2], last[2] + 1))
        return rf"{first[0]}\.{first[1]}\.({thirds})\.[0-9]{{1,3}}:[0-9]+"

    def in_netns(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the lab's namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"lab": self.lab, "state": self.state, "block": self.layout.block}
        if self.layout.span != 1:
            d["span"] = self.layout.span
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> LabNet:
        span = int(str(d.get("span", 1)))
        return cls(str(d["lab"]), str(d["state"]), Layout(int(str(d["block"])), span))


def lab_id(state: str) -> str:
    """Eight hex digits that tell labs apart on this machine (from the state directory:
    two caches may each hold a lab named ``default``)."""
    return hashlib.sha256(state.encode()).hexdigest()[:8]


# ---- allocation ----------------------------------------------------------------------


@contextlib.contextmanager
def _registry_locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCK, open(root / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _entries(root: Path) -> dict[int, LabNet]:
    out: dict[int, LabNet] = {}
    for f in root.glob("block-*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            net = LabNet.from_json(json.loads(f.read_text()))
            out[net.layout.block] = net
    return out


def _owner_alive(net: LabNet) -> bool:
    """A block stays taken while its lab's state directory exists (a crashed lab keeps
    its block until its next ``up`` or ``down``)."""
    return (Path(net.state) / "state.json").is_file()


def allocate(lab: str, state: Path, *, root: Path | None = None, span: int = 1) -> LabNet:
    """The block of the lab in ``state``: the one it holds, else the first free one (the
    first ``span`` free consecutive ones, aligned, for a large lab).

    A block whose lab's state directory is gone is stale: its kernel objects (if any)
    are removed and the block is handed out again.
    """
    root = root or registry_dir()
    key = str(state.resolve())
    with _registry_locked(root):
        entries = _entries(root)
        for net in entries.values():
            if net.state == key:
                return net
        holder = {b: net for net in entries.values() for b in net.layout.blocks}
        used = host_routes_in_range()
        for block in range(0, BLOCKS, span):
            layout = Layout(block, span)
            olds = {holder[b].layout.block: holder[b] for b in layout.blocks if b in holder}
            if any(_owner_alive(old) for old in olds.values()):
                continue
            theirs = [old.layout.network for old in olds.values()]
            if any(r.overlaps(layout.network) for r in used if r not in theirs):
                continue  # someone else's route: leave that block alone
            for old in olds.values():
                remove(old)
                (root / f"block-{old.layout.block}.json").unlink(missing_ok=True)
            net = LabNet(lab, key, layout)
            (root / f"block-{block}.json").write_text(json.dumps(net.to_json()) + "\n")
            return net
    raise LabError(
        f"no free lab network block in {LAB_RANGE} ({BLOCKS} labs use them); take a lab down"
    )


def release(net: LabNet, *, root: Path | None = None) -> None:
    """Give the block back (after ``remove``)."""
    root = root or registry_dir()
    with _registry_locked(root):
        f = root / f"block-{net.layout.block}.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            if LabNet.from_json(json.loads(f.read_text())).state == net.state:
                f.unlink()


def load(path: Path) -> LabNet | None:
    try:
        return LabNet.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError):
        return None


# ---- kernel objects ------------------------------------------------------------------


def missing_prerequisites() -> list[str]:
    """What the lab network needs and this machine lacks (empty: all there)."""
    out = []
    if os.geteuid() != 0:
        out.append("root (network namespaces, veth links and nftables need it)")
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            out.append(f"`{tool}` (Debian: apt-get install -y {package})")
    return out


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LabError(f"ip {' '.join(args[:4])}: {e}") from e
    if check and r.returncode != 0:
        raise LabError(f"ip {' '.join(args)} failed: {r.stderr.strip() or r.returncode}")
    return r


def netns_names() -> list[str]:
    r = _ip("-j", "netns", "list", check=False)
    try:
        return [str(n["name"]) for n in json.loads(r.stdout or "[]")]
    except (ValueError, KeyError, TypeError):
        return []


def pids_in(net: LabNet) -> list[int]:
    """Processes running inside the lab's namespace (empty if it does not exist)."""
    r = _ip("netns", "pids", net.netns, check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()] if r.returncode == 0 else []


def link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def host_routes_in_range() -> list[ipaddress.IPv4Network]:
    """Routes of the host (main table) inside 198.18.0.0/15."""
    r = _ip("-j", "-4", "route", "show", "table", "main", check=False)
    out = []
    with contextlib.suppress(ValueError, TypeError):
        for route in json.loads(r.stdout or "[]"):
            dst = route.get("dst", "")
            if dst in ("", "default"):
                continue
            with contextlib.suppress(ValueError):
                n = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
                if isinstance(n, ipaddress.IPv4Network) and n.overlaps(LAB_RANGE):
                    out.append(n)
    return out


def _write(path: str, value: str) -> None:
    with contextlib.suppress(OSError), open(path, "w") as f:
        f.write(value)


def create(net: LabNet) -> None:
    """Create (or complete) the lab's namespace, link and routes; idempotent."""
    missing = missing_prerequisites()
    if missing:
        raise LabError("the lab network needs " + ", ".join(missing))
    lay = net.layout
    if net.netns not in netns_names():
        _ip("netns", "add", net.netns)
    ns = ("-n", net.netns)
    _ip(*ns, "link", "set", "lo", "up")
    if not link_exists(net.host_if):
        _ip("link", "add", net.host_if, "type", "veth", "peer", "name", NS_IF, "netns", net.netns)
    _ip("link", "set", "dev", net.host_if, "alias", net.alias)
    # NOTE: no IPv6 on the link, so nothing (router solicitations, DAD) is ever sent.
    _write(f"/proc/sys/net/ipv6/conf/{net.host_if}/disable_ipv6", "1")
    subprocess.run(
        net.in_netns(["sh", "-c", f"echo 1 > /proc/sys/net/ipv6/conf/{NS_IF}/disable_ipv6"]),
        capture_output=True,
        timeout=30,
        check=False,
    )
    _ip("addr", "replace", f"{lay.host_addr}/{lay.link.prefixlen}", "dev", net.host_if)
    _ip(*ns, "addr", "replace", f"{lay.ns_addr}/{lay.link.prefixlen}", "dev", NS_IF)
    _ip("link", "set", "dev", net.host_if, "up")
    _ip(*ns, "link", "set", "dev", NS_IF, "up")
    for cidr in (lay.pod_cidr, lay.service_cidr, lay.gateway_cidr):
        _ip(*ns, "route", "replace", "local", str(cidr), "dev", "lo")
    _ip("route", "replace", str(lay.network), "via", str(lay.ns_addr), "dev", net.host_if)


def remove(net: LabNet) -> None:
    """Remove the lab's link (its route and addresses go with it) and namespace (its
    nftables tables go with it); nothing is left if they are already gone."""
    if link_exists(net.host_if):
        _ip("link", "del", "dev", net.host_if, check=False)
    if net.netns in netns_names():
        _ip("netns", "del", net.netns, check=False)


def leftovers(net: LabNet) -> list[str]:
    """What of the lab's network still exists on this machine (empty after ``remove``)."""
    out = []
    if net.netns in netns_names():
        out.append(f"network namespace {net.netns}")
    if link_exists(net.host_if):
        out.append(f"link {net.host_if}")
    out += [f"route {r}" for r in host_routes_in_range() if r.overlaps(net.layout.network)]
    return out
