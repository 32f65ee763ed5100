"""Accelerators: the one vendor table and the one node→accelerator inventory.

Owns: ``ACCELERATORS`` (per vendor: extended resources of its device plugin, DRA
drivers and the ``type`` of whole devices, and, for vendors kaic can probe inside a
container, the DeviceClass, taint key, device nodes and listing tool),
``any_accelerator`` (every vendor at once), the DRA view (``dra_version``,
``dra_pools``: ResourceSlice pools at their newest generation with the nodes each
device is available on, ``allocated_devices``), and ``node_accelerators``: the
accelerators of each node, from ResourceSlices or else from allocatable; the run's shared
reads of every Node and of the accelerator slices (``cluster_nodes``,
``accelerator_inventory``); and the taint of
a dedicated autoscaled pool (``reserved_pool_taint``), whose nodes only cluster_autoscaling
uses. Every check that needs to know where accelerators are asks here. Must not decide
pass or fail.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kaic.checks.base import CheckContext, CheckOption, Permission
from kaic.checks.predicates import BLOCKING_TAINT_EFFECTS, node_selector_matches
from kaic.checks.resources import allocatable
from kaic.cluster.api import ClusterAPI, KubeObject, name_of
from kaic.errors import UsageError

# ---------------------------------------------------------------------------------------
# The vendor table
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceleratorType:
    """One vendor's accelerators: how they are advertised, requested and seen."""

    name: str
    extended_resources: tuple[str, ...]
    """The device plugin's extended resources (the first is the one kaic requests)."""
    drivers: tuple[str, ...] = ()
    """DRA driver names on ResourceSlices (the first is the one kaic claims from)."""
    device_types: tuple[str, ...] = ()
    """Values of a driver's ``type`` attribute for whole devices (others, such as
    partitions, are ignored; a device without the attribute counts). Empty: any."""
    device_class: str = ""
    """The DeviceClass a DRA claim asks for ("" when kaic has no probe for the vendor)."""
    taint_key: str = ""
    """Taint key accelerator nodes commonly carry (tolerated by probe pods)."""
    device_glob: str = ""
    """Shell glob of the per-device nodes a granted container sees."""
    visible_env: str | None = None
    """Env var a runtime may trust to expose devices (the common leak)."""
    list_tool: str | None = None
    """A listing tool the runtime injects into granted containers, if any."""
    list_args: str = ""
    list_prefix: str = ""
    """How each device line the listing tool prints begins."""
    uuid_pattern: str = ""
    """Regex with one group: a device identity in a listed line."""
    uuid_attribute: str = "uuid"
    """The ResourceSlice attribute holding that identity."""

    @property
    def extended_resource(self) -> str:
        return self.extended_resources[0] if self.extended_resources else ""

    @property
    def driver(self) -> str:
        return self.drivers[0] if self.drivers else ""

    @property
    def probeable(self) -> bool:
        """kaic knows how to request one and what a container sees of it."""
        return bool(self.device_class and self.driver and self.device_glob)


ACCELERATORS: dict[str, AcceleratorType] = {
    # NOTE: add other vendors here (the names must match what their device plugin and
    # DRA driver publish); probe-details.md §5.1 lists their device paths. A vendor
    # without a device_glob is counted and its metrics checked, but not probed.
    "nvidia": AcceleratorType(
        name="nvidia",
        extended_resources=("nvidia.com/gpu",),
        drivers=("gpu.nvidia.com",),
        device_types=("gpu",),
        device_class="gpu.nvidia.com",
        taint_key="nvidia.com/gpu",
        device_glob="/dev/nvidia[0-9]*",
        visible_env="NVIDIA_VISIBLE_DEVICES",
        list_tool="nvidia-smi",
        list_args="-L",
        list_prefix="GPU ",
        uuid_pattern=r"\(UUID: ([^)]+)\)",
    ),
    "amd": AcceleratorType("amd", ("amd.com/gpu",), ("gpu.amd.com",), ("gpu",)),
    "intel-gaudi": AcceleratorType("intel-gaudi", ("habana.ai/gaudi",)),
    "intel-gpu": AcceleratorType(
        "intel-gpu", ("gpu.intel.com/i915", "gpu.intel.com/xe"), ("gpu.intel.com",), ("gpu",)
    ),
    "aws-neuron": AcceleratorType(
        "aws-neuron",
        ("aws.amazon.com/neuron", "aws.amazon.com/neurondevice"),
        ("neuron.aws.com",),
        ("neuron",),
    ),
    "google-tpu": AcceleratorType("google-tpu", ("google.com/tpu",), ("tpu.google.com",), ("tpu",)),
    # NOTE: the DRA example driver (kubernetes-sigs/dra-example-driver) publishes GPUs too.
    "dra-example": AcceleratorType("dra-example", (), ("gpu.example.com",), ("gpu",)),
}

ANY_DEVICE_TYPES = ("gpu", "accelerator", "tpu", "neuron")

NIC_DRIVERS = (
    "dra.net",  # kubernetes-sigs/dranet
    "sriovnetwork.k8snetworkplumbingwg.io",
    "rdma.nvidia.com",
)
"""DRA drivers that publish network interfaces (high-performance NICs)."""

TOPOLOGY_ATTRIBUTES = (
    "pcieRoot",
    "numaNode",
    "numa",
    "cliqueId",
    "cliqueID",
    "nvlinkDomain",
    "interconnectDomain",
    "xgmiHiveId",
)
"""Device attributes (bare, or qualified by the driver or ``resource.kubernetes.io``)
that describe where a device sits: its PCIe root complex, NUMA node, or direct
interconnect domain. ``resource.kubernetes.io/pcieRoot`` is the standard one."""


def nic_devices() -> AcceleratorType:
    """The NIC drivers as an ``AcceleratorType`` (for ``dra_pools``), every device type."""
    return AcceleratorType("nic", (), NIC_DRIVERS, ())


def any_accelerator(resource: str | None = None, driver: str | None = None) -> AcceleratorType:
    """Every vendor of the table at once, for counting accelerators of any kind; or only
    the extended resource and/or DRA driver given."""
    resources = tuple(r for a in ACCELERATORS.values() for r in a.extended_resources)
    drivers = tuple(d for a in ACCELERATORS.values() for d in a.drivers)
    # NOTE: every vendor's device types too, so that the devices of a vendor are those
    # of "any" restricted to its drivers (SliceInventory.of).
    types = (*ANY_DEVICE_TYPES, *(t for a in ACCELERATORS.values() for t in a.device_types))
    return AcceleratorType(
        "any",
        (resource,) if resource else resources,
        (driver,) if driver else drivers,
        tuple(dict.fromkeys(types)),
    )


def accelerator_taint_tolerations(resource: str) -> list[KubeObject]:
    """Tolerations for the taint accelerator pools commonly carry."""
    # NOTE: accelerator pools are commonly tainted with the resource name as key
    # (nvidia.com/gpu:NoSchedule); the upstream test tolerates that taint too.
    return [{"key": resource, "operator": "Exists", "effect": "NoSchedule"}]


POOL_TAINT_OPTION = "autoscaler-pool-taint"
"""The check option naming the taint of a dedicated autoscaled accelerator pool."""
_TAINT = re.compile(
    r"^(?P<key>(?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)"
    r"(?:=(?P<value>[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?)?:(?P<effect>[A-Za-z]+)$"
)


def parse_taint(text: str, flag: str = POOL_TAINT_OPTION) -> dict[str, str]:
    """``key[=value]:Effect`` (as ``kubectl taint`` writes it) → a core/v1 Taint. Only
    NoSchedule and NoExecute keep other pods away, so only they are accepted."""
    m = _TAINT.match(text.strip())
    if m is None:
        raise UsageError(f"--{flag} must be key[=value]:NoSchedule or :NoExecute, got {text!r}")
    if m["effect"] not in BLOCKING_TAINT_EFFECTS:
        raise UsageError(
            f"--{flag}: effect {m['effect']!r} does not keep other pods away; "
            "use NoSchedule or NoExecute"
        )
    taint = {"key": m["key"], "effect": m["effect"]}
    if m["value"] is not None:
        taint["value"] = m["value"]
    return taint


def reserved_pool_taint(options: Mapping[str, str | None]) -> dict[str, str] | None:
    """The taint of the dedicated autoscaled pool when the run names one (and the pool):
    its nodes are cluster_autoscaling's alone, so a check that tolerates whatever taints
    a node carries must not place pods on a node with this taint."""
    raw = options.get(POOL_TAINT_OPTION)
    if not raw or not options.get("autoscaler-node-pool-label"):
        return None
    return parse_taint(raw)


# ---------------------------------------------------------------------------------------
# What the checks that probe accelerators inside pods share
# ---------------------------------------------------------------------------------------

ALLOCATION_MODES = ("auto", "dra", "device-plugin")


def accelerator_type_option() -> CheckOption:
    """``--accelerator-type``: the vendor whose devices a probe pod looks for."""
    return CheckOption(
        "accelerator-type",
        "accelerator vendor: " + ", ".join(a for a in ACCELERATORS if ACCELERATORS[a].probeable),
        default="nvidia",
    )


ALLOCATION_MODE_OPTION = CheckOption(
    "allocation-mode",
    "how accelerators are requested: auto (DRA when a complete ResourceSlice pool of the "
    "driver is on a Ready node, else the device plugin), dra or device-plugin",
    default="auto",
)


def probe_pod_permissions(*extra: Permission) -> tuple[Permission, ...]:
    """What a check needs that finds accelerators (nodes and DRA objects of the whole
    cluster) and runs probe pods in its namespace (create, read, delete, exec), with
    ``extra``."""
    return (
        Permission("list", "nodes", namespaced=False),
        Permission("create", "pods"),
        Permission("get", "pods"),
        Permission("delete", "pods"),
        Permission("create", "pods", subresource="exec"),
        Permission("list", "resourceslices", "resource.k8s.io", namespaced=False),
        Permission("list", "resourceclaims", "resource.k8s.io", namespaced=False),
        Permission("list", "deviceclasses", "resource.k8s.io", namespaced=False),
        *extra,
    )


def probed_accelerator(
    ctx: CheckContext, what: str, hint: str = "verify by hand"
) -> AcceleratorType:
    """The ``--accelerator-type`` vendor; a SKIP (``RESULT: STATUS=UNKNOWN``) naming
    ``what`` kaic cannot do for a vendor it does not probe, with ``hint``."""
    vendor = (ctx.option("accelerator-type") or "nvidia").lower()
    acc = ACCELERATORS.get(vendor)
    if acc is None or not acc.probeable:
        ctx.log("RESULT: STATUS=UNKNOWN")
        ctx.skip(
            f"UNKNOWN: accelerator type {vendor!r} has no automated {what} "
            f"(kaic tests nvidia); {hint}"
        )
    return acc


def one_device_claim_template(
    api_version: str,
    name: str,
    namespace: str,
    request: str,
    device_class: str,
    cel: str | None = None,
) -> KubeObject:
    """A ResourceClaimTemplate whose one request ``request`` asks for exactly one device
    of ``device_class`` (and, with ``cel``, matching that selector)."""
    exactly: dict[str, Any] = {
        "deviceClassName": device_class,
        "allocationMode": "ExactCount",
        "count": 1,
    }
    if cel:
        exactly["selectors"] = [{"cel": {"expression": cel}}]
    return {
        "apiVersion": api_version,
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"spec": {"devices": {"requests": [{"name": request, "exactly": exactly}]}}},
    }


# ---------------------------------------------------------------------------------------
# DRA: ResourceSlice pools and allocations
# ---------------------------------------------------------------------------------------

DRA_VERSIONS = ("resource.k8s.io/v1", "resource.k8s.io/v1beta2")
"""DRA API versions with the v1 object shape (``exactly`` requests, flat device fields),
in order of preference. A cluster serving only v1beta1 is treated as having no DRA."""
DRA_KINDS = ("ResourceSlice", "ResourceClaim", "ResourceClaimTemplate", "DeviceClass")


def dra_version(cluster: ClusterAPI, kinds: Sequence[str] = DRA_KINDS) -> str | None:
    """The preferred DRA version that serves every kind of ``kinds``, if any."""
    for av in DRA_VERSIONS:
        served = {r.kind for r in cluster.api_resources(av)}
        if set(kinds) <= served:
            return av
    return None


def slices_of(cluster: ClusterAPI, av: str, acc: AcceleratorType) -> Iterator[KubeObject]:
    """The ResourceSlices of ``acc``'s drivers, a page at a time, one driver after
    another: the apiserver filters them (``spec.driver`` field selector), so that the
    slices of other drivers (NICs, other vendors) are neither sent nor parsed."""
    for driver in dict.fromkeys(acc.drivers):
        yield from cluster.iterate(av, "ResourceSlice", field_selector=f"spec.driver={driver}")


class _Placement:
    """Nodes a slice (or a device with per-device placement) is available on; the names
    of all nodes are worked out once, for every ``allNodes`` slice."""

    def __init__(self, nodes: Sequence[KubeObject]) -> None:
        self.nodes = nodes
        self._all: frozenset[str] | None = None

    def of(self, spec: Mapping[str, Any]) -> frozenset[str] | None:
        """None when ``spec`` names no placement."""
        if spec.get("nodeName"):
            return frozenset((str(spec["nodeName"]),))
        if spec.get("allNodes"):
            if self._all is None:
                self._all = frozenset(name_of(n) for n in self.nodes)
            return self._all
        if spec.get("nodeSelector"):
            return frozenset(
                name_of(n) for n in self.nodes if node_selector_matches(spec["nodeSelector"], n)
            )
        return None


_VALUE_TYPES = ("string", "int", "bool", "version")
"""The members of a DRA device attribute that hold its value."""


@dataclass(frozen=True)
class SliceDevice:
    """One device published in a ResourceSlice, with the nodes it can be used from."""

    driver: str
    pool: str
    name: str
    attributes: Mapping[str, Any]
    nodes: frozenset[str]
    node_name: str | None = None
    """The one node the device is on, when its slice (or the device) names it."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.driver, self.pool, self.name)

    def attribute(self, name: str) -> Any:
        """An attribute's value, by bare name or qualified by the driver or by
        ``resource.kubernetes.io``."""
        # NOTE: called for every attribute of every device of a large cluster (tens of
        # thousands): values are JSON objects, so a dict check, not the Mapping ABC's.
        attrs = self.attributes
        for k in (name, f"{self.driver}/{name}", f"resource.kubernetes.io/{name}"):
            v = attrs.get(k)
            if v.__class__ is dict:
                for t in _VALUE_TYPES:
                    if t in v:
                        return v[t]
        return None


@dataclass
class Pool:
    """A ResourceSlice pool of one driver at its newest generation."""

    driver: str
    name: str
    generation: int
    expected_slices: int
    slices: list[str] = field(default_factory=list)
    devices: list[SliceDevice] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.slices) >= self.expected_slices

    def describe(self) -> str:
        state = "complete" if self.complete else "INCOMPLETE"
        nodes = sorted({n for d in self.devices for n in d.nodes})
        return (
            f"pool {self.name} (driver {self.driver}, generation {self.generation}): "
            f"{len(self.slices)}/{self.expected_slices} slices, {state}, "
            f"{len(self.devices)} devices, nodes {', '.join(nodes) or 'none'}"
        )


class _Values:
    """One object per distinct attribute value (``{"string": "Hopper"}``) of a read, so
    that the 40,000 devices of a large cluster, whose attributes mostly repeat (product,
    driver version, type), do not each hold their own copies."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, Any], Any] = {}

    def one(self, value: Any) -> Any:
        if not isinstance(value, dict) or len(value) != 1:
            return value
        ((t, v),) = value.items()
        if not isinstance(v, str | int | bool | float):
            return value
        return self._seen.setdefault((t, v), value)


def _kept(
    attributes: Mapping[str, Any], names: Collection[str] | None, values: _Values
) -> Mapping[str, Any]:
    """``attributes`` limited to those whose bare name (after the last ``/``) is one of
    ``names`` (all of them when ``names`` is None), their values shared (``_Values``)."""
    return {
        k: values.one(v)
        for k, v in attributes.items()
        if names is None or k.rpartition("/")[2] in names
    }


def _of_type(dev: SliceDevice, acc: AcceleratorType) -> bool:
    """Whether ``dev`` is a whole device of ``acc``'s types (a device without a ``type``
    attribute counts)."""
    dtype = dev.attribute("type")
    return not acc.device_types or dtype is None or dtype in acc.device_types


def dra_pools(
    slices: Iterable[KubeObject],
    acc: AcceleratorType,
    nodes: Sequence[KubeObject],
    *,
    attributes: Collection[str] | None = None,
) -> list[Pool]:
    """The pools of ``acc``'s drivers at their newest generation, with the devices of the
    vendor's device types and the nodes each is available on (``nodeName``,
    ``allNodes``, ``nodeSelector`` or per-device placement).

    One pass over ``slices`` (an iterator of pages does): a pool restarts when a newer
    generation of it appears. With ``attributes``, each device keeps only the attributes
    of those bare names (and ``type``), so that a large inventory stays small."""
    keep = None if attributes is None else {a.rpartition("/")[2] for a in attributes} | {"type"}
    placement = _Placement(nodes)
    values = _Values()
    pools: dict[tuple[str, str], Pool] = {}
    for s in slices:
        spec = s.get("spec") or {}
        driver = spec.get("driver")
        if driver not in acc.drivers:
            continue
        p = spec.get("pool") or {}
        key = (str(driver), str(p.get("name", "")))
        generation = int(p.get("generation", 0))
        pool = pools.get(key)
        if pool is not None and generation < pool.generation:
            continue
        if pool is None or generation > pool.generation:
            expected = int(p.get("resourceSliceCount", 1) or 1)
            pool = pools[key] = Pool(key[0], key[1], generation, expected)
        pool.slices.append(name_of(s))
        slice_nodes = placement.of(spec)
        for d in spec.get("devices") or []:
            dev_nodes = placement.of(d)
            where = dev_nodes if dev_nodes is not None else (slice_nodes or frozenset())
            one = d.get("nodeName") if dev_nodes is not None else spec.get("nodeName")
            dev = SliceDevice(
                key[0],
                key[1],
                str(d.get("name", "")),
                _kept(d.get("attributes") or {}, keep, values),
                where,
                str(one) if one else None,
            )
            if _of_type(dev, acc):
                pool.devices.append(dev)
    return sorted(pools.values(), key=lambda p: (p.name, p.driver))


def allocated_devices(claims: Iterable[KubeObject]) -> set[tuple[str, str, str]]:
    """(driver, pool, device) of every device some ResourceClaim holds."""
    out = set()
    for c in claims:
        alloc = (c.get("status") or {}).get("allocation") or {}
        for r in (alloc.get("devices") or {}).get("results") or []:
            out.add((str(r.get("driver")), str(r.get("pool")), str(r.get("device"))))
    return out


# ---------------------------------------------------------------------------------------
# The node→accelerator inventory
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accelerator:
    """One accelerator a node advertises (from a ResourceSlice or its allocatable count)."""

    node: str
    name: str
    index: int | None = None
    uuid: str | None = None

    def __str__(self) -> str:
        extra = [f"index {self.index}"] if self.index is not None else []
        if self.uuid:
            extra.append(self.uuid)
        return f"{self.node}/{self.name}" + (f" ({', '.join(extra)})" if extra else "")


def cluster_nodes(ctx: CheckContext) -> list[KubeObject]:
    """Every Node of the cluster, from the run's shared read (``CheckContext.shared_read``:
    on a large cluster each check listing them itself costs seconds of the apiserver's
    time). Read-only; a check that needs the state of now lists Nodes itself."""
    return ctx.shared_read("nodes", "Nodes", lambda: ctx.cluster.list("v1", "Node"))


def accelerator_inventory(ctx: CheckContext) -> SliceInventory:
    """The ResourceSlices of every accelerator vendor's drivers (``any_accelerator``) with
    all their attributes, placed on ``cluster_nodes``, from the run's shared read. A
    vendor's view is ``.of(vendor)``, a node's accelerators ``.accelerators(vendor,
    nodes)``. Read-only."""
    # NOTE: the Nodes only when the slices are read: a kept read of the slices needs
    # none (and a Node read that has aged out meanwhile is not made again for nothing).
    return ctx.shared_read(
        "accelerator-slices",
        "ResourceSlices of the accelerator drivers",
        lambda: SliceInventory.read(ctx.cluster, any_accelerator(), cluster_nodes(ctx)),
    )


def node_accelerators(
    cluster: ClusterAPI, acc: AcceleratorType, nodes: Sequence[KubeObject]
) -> tuple[dict[str, list[Accelerator]], list[str]]:
    """The accelerators of each of ``nodes`` and how they were counted (for the log).

    A node's devices come from ResourceSlices of ``acc``'s drivers that place them on
    that one node (DRA: each device with its index and UUID), or else from its
    allocatable count of the first of ``acc``'s extended resources it has. Devices
    shared by several nodes (``allNodes``, ``nodeSelector``) belong to no one node."""
    inventory = SliceInventory.read(cluster, acc, nodes, ("index", "minor", acc.uuid_attribute))
    return inventory.accelerators(acc, nodes)


@dataclass
class SliceInventory:
    """The pools of one read of the ResourceSlices (``read``), from which several views
    of the same inventory come without reading it again (``of``, ``accelerators``)."""

    pools: list[Pool]
    shared_slices: int = 0
    """Slices of the read drivers that name no one node (``allNodes``, ``nodeSelector``)."""

    @classmethod
    def read(
        cls,
        cluster: ClusterAPI,
        acc: AcceleratorType,
        nodes: Sequence[KubeObject],
        attributes: Collection[str] | None = None,
    ) -> SliceInventory:
        """The pools of ``acc``'s drivers (``dra_pools``, devices with ``attributes``)."""
        av = dra_version(cluster, ("ResourceSlice",))
        if av is None:
            return cls([])
        shared = 0

        def counted(slices: Iterable[KubeObject]) -> Iterator[KubeObject]:
            nonlocal shared
            for s in slices:
                shared += not (s.get("spec") or {}).get("nodeName")
                yield s

        pools = dra_pools(counted(slices_of(cluster, av, acc)), acc, nodes, attributes=attributes)
        return cls(pools, shared_slices=shared)

    def of(self, acc: AcceleratorType) -> list[Pool]:
        """The pools of ``acc``'s drivers, each with only the devices of its types."""
        return [
            replace(p, devices=[d for d in p.devices if _of_type(d, acc)])
            for p in self.pools
            if p.driver in acc.drivers
        ]

    def accelerators(
        self, acc: AcceleratorType, nodes: Sequence[KubeObject]
    ) -> tuple[dict[str, list[Accelerator]], list[str]]:
        """``node_accelerators`` from this inventory (``acc``: what was read, or a vendor
        of it)."""
        notes: list[str] = []
        node_names = {name_of(n) for n in nodes}
        found: dict[str, list[Accelerator]] = {}
        for pool in self.of(acc):
            for d in pool.devices:
                if d.node_name is None or d.node_name not in node_names:
                    continue
                idx = d.attribute("index")
                if idx is None:
                    idx = d.attribute("minor")
                uuid = d.attribute(acc.uuid_attribute)
                found.setdefault(d.node_name, []).append(
                    Accelerator(
                        d.node_name,
                        d.name,
                        int(idx) if idx is not None else None,
                        str(uuid) if uuid else None,
                    )
                )
        if found:
            notes.append(
                f"counted from ResourceSlices of {', '.join(acc.drivers)}: "
                + ", ".join(f"{n}={len(v)}" for n, v in sorted(found.items()))
            )
        if self.shared_slices:
            notes.append(
                f"{self.shared_slices} ResourceSlice(s) with allNodes/nodeSelector were "
                "not counted (they do not name one node)"
            )
        for n in nodes:
            name = name_of(n)
            if name in found:
                continue
            for res in acc.extended_resources:
                count = int(allocatable(n, res))
                if count > 0:
                    found[name] = [Accelerator(name, f"{res}#{i}", i) for i in range(count)]
                    notes.append(f"{name}: {count} from allocatable {res}")
                    break
        return found, notes


def device_count_lines(acc: AcceleratorType, *, list_exit: bool = False) -> list[str]:
    """POSIX shell lines that count the accelerators a container sees: ``n`` device nodes
    matching ``acc.device_glob`` (a ``DEVICE:`` line each), ``m`` devices the vendor's
    listing tool reports (a ``LIST:`` line per line it prints); with ``list_exit``, ``rc``
    is the tool's exit code (``none`` without the tool). The probes of the checks that
    look inside containers end with their own ``RESULT:`` lines."""
    lines = [
        "n=0",
        f"for d in {acc.device_glob}; do",
        '  if [ -e "$d" ]; then echo "DEVICE: $d"; n=$((n+1)); fi',
        "done",
        "m=0; rc=none" if list_exit else "m=0",
    ]
    if acc.list_tool:
        tool = shlex.quote(acc.list_tool)
        lines += [
            f"if command -v {tool} >/dev/null 2>&1; then",
            f"  out=$({tool} {acc.list_args} 2>&1)" + ("; rc=$?" if list_exit else ""),
            "  set -f; old=$IFS; IFS='",
            "'",
            "  for line in $out; do",
            '    echo "LIST: $line"',
            f'    case "$line" in {shlex.quote(acc.list_prefix)}*) m=$((m+1));; esac',
            "  done",
            "  IFS=$old; set +f",
            "fi",
        ]
    return lines
