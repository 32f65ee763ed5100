"""What a lab is made of: the options of ``kaic lab up`` and where its state lives.

Owns: option validation and defaults. Must not start anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kaic.errors import UsageError

ACCELERATOR_MODES = ("dra", "device-plugin", "both", "none")
MAX_NODES = 5000
"""The most GPU (or CPU) nodes a lab has: a large lab for scale runs (docs/lab.md)."""
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_VERSION = re.compile(r"^v1\.(\d+)\.(\d+)$")


def cache_root() -> Path:
    """``$KAIC_CACHE`` or ``$XDG_CACHE_HOME/kaic`` or ``~/.cache/kaic``."""
    if os.environ.get("KAIC_CACHE"):
        return Path(os.environ["KAIC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kaic"


def default_state_dir(name: str) -> Path:
    return cache_root() / "lab" / name


def default_version() -> str:
    """``$KAIC_KUBE_VERSION``, else the default of ``programs.toml``."""
    if os.environ.get("KAIC_KUBE_VERSION"):
        return os.environ["KAIC_KUBE_VERSION"]
    from kaic.lab.programs import catalog  # programs.py imports this module

    return catalog().default_kube


@dataclass(frozen=True)
class LabOptions:
    """The shape of one lab. Two labs with different names can run side by side."""

    name: str = "default"
    version: str = field(default_factory=default_version)
    nodes: int = 2
    """Number of GPU nodes (the accelerator pool)."""
    cpu_nodes: int = 1
    """Number of nodes without accelerators."""
    gpus_per_node: int = 8
    accelerators: str = "both"
    without: frozenset[str] = frozenset()
    with_: frozenset[str] = frozenset()
    """Optional components that are off by default and asked for."""
    state_dir: Path | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise UsageError(
                f"invalid lab name {self.name!r}: use lower-case letters, digits "
                "and '-', at most 40 characters"
            )
        if not _VERSION.match(self.version):
            raise UsageError(
                f"invalid Kubernetes version {self.version!r}: expected vMAJOR."
                "MINOR.PATCH, e.g. v1.36.0"
            )
        if self.minor < 34:
            raise UsageError(
                f"Kubernetes {self.version} is too old for the lab: resource.k8s.io"
                "/v1 needs v1.34 or newer"
            )
        if self.accelerators not in ACCELERATOR_MODES:
            raise UsageError(
                f"invalid --accelerators {self.accelerators!r}: choose one of "
                + ", ".join(ACCELERATOR_MODES)
            )
        if not 0 <= self.nodes <= MAX_NODES:
            raise UsageError(f"--nodes must be between 0 and {MAX_NODES}, got {self.nodes}")
        if not 0 <= self.cpu_nodes <= MAX_NODES:
            raise UsageError(f"--cpu-nodes must be between 0 and {MAX_NODES}, got {self.cpu_nodes}")
        if not 1 <= self.gpus_per_node <= 64:
            raise UsageError(f"--gpus-per-node must be between 1 and 64, got {self.gpus_per_node}")

    @property
    def node_lease_s(self) -> int:
        """How long a node's heartbeat Lease lasts (kwok renews it every quarter of this).

        40 s, as a kubelet has it, up to 200 nodes; above that it grows with the node
        count (one renewal per 5 nodes a second at most: 5,000 nodes renew 20 Leases a
        second, which the 2-core lab machine carries beside everything else)."""
        return max(40, (self.nodes + self.cpu_nodes) // 5)

    @property
    def node_status_scale(self) -> int:
        """How many times longer than upstream's stage (10 min) kwok waits between two
        node status heartbeats: 1 up to 1,000 nodes, then one more per 1,000 nodes.

        A node's liveness is its Lease; the status heartbeat only refreshes its
        conditions' ``lastHeartbeatTime`` (a kubelet sends one every 5 min). Each status
        write reaches every node watcher, and a node's heartbeats come in groups of up
        to three (as many as its initialisation writes), so a 5,000-node lab wrote about
        28 node statuses a second with upstream's stage."""
        return max(1, (self.nodes + self.cpu_nodes) // 1000)

    @property
    def node_grace_s(self) -> int:
        """kube-controller-manager's ``--node-monitor-grace-period``: a node whose Lease
        was not renewed for this long is NotReady (two renewals may be missed)."""
        return max(60, self.node_lease_s * 3 // 4)

    @property
    def minor(self) -> int:
        m = _VERSION.match(self.version)
        assert m is not None
        return int(m.group(1))

    @property
    def state(self) -> Path:
        return self.state_dir if self.state_dir is not None else default_state_dir(self.name)

    @property
    def device_plugin(self) -> bool:
        return self.accelerators in ("device-plugin", "both")

    @property
    def dra(self) -> bool:
        return self.accelerators in ("dra", "both")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["without"] = sorted(self.without)
        d["with_"] = sorted(self.with_)
        d["state_dir"] = str(self.state)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LabOptions:
        d = dict(d)
        d["without"] = frozenset(d.get("without", ()))
        d["with_"] = frozenset(d.get("with_", ()))
        d["state_dir"] = Path(d["state_dir"]) if d.get("state_dir") else None
        return cls(**d)

    def same_shape(self, other: LabOptions) -> bool:
        """True if ``other`` describes the same lab (what ``up`` may reuse)."""
        a, b = self.to_json(), other.to_json()
        return a == b
