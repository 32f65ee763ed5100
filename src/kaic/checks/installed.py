"""What software a cluster runs, as its API shows it: workloads by container image, CRDs
by API group, CSIDriver objects, RuntimeClass handlers, node labels and annotations.

Owns: ``Signature`` (how one product shows itself), ``Inventory`` (one read of those
objects, taken once per check) and ``Inventory.find`` (which signatures it matches, each
with where it was seen). Must not decide pass or fail: checks decide what a finding means
for their requirement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaic.cluster.api import ClusterAPI, KubeObject, name_of, namespace_of
from kaic.errors import ClusterError, PermissionDeniedError

WORKLOAD_KINDS = ("DaemonSet", "Deployment", "StatefulSet")


@dataclass(frozen=True)
class Signature:
    """How one product shows itself through the API (any one match finds it)."""

    name: str
    images: tuple[str, ...] = ()
    """Parts of a container image's repository path (``spegel-org/spegel``), lower case."""
    crd_groups: tuple[str, ...] = ()
    """API groups of its CRDs (a CRD of the group or of a subgroup ``x.<group>``)."""
    csi_drivers: tuple[str, ...] = ()
    """Names of its CSIDriver objects."""
    runtime_handlers: tuple[str, ...] = ()
    """Words in the handler of a RuntimeClass (``nydus``)."""
    node_words: tuple[str, ...] = ()
    """Words in a node label's or annotation's key or value (``stargz``)."""


@dataclass(frozen=True)
class Finding:
    """One product found, and where."""

    name: str
    where: str

    def __str__(self) -> str:
        return f"{self.name} ({self.where})"


def image_repository(image: str) -> str:
    """``ghcr.io/spegel-org/spegel:v0.3@sha256:…`` → ``ghcr.io/spegel-org/spegel``."""
    name = image.split("@", 1)[0].lower()
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def pod_spec_images(spec: KubeObject) -> list[str]:
    return [
        str(c.get("image") or "")
        for key in ("initContainers", "containers")
        for c in spec.get(key) or []
    ]


@dataclass
class Inventory:
    """One read of what the API shows about installed software."""

    workloads: list[tuple[str, KubeObject]] = field(default_factory=list)
    crds: list[KubeObject] = field(default_factory=list)
    csi_drivers: list[str] = field(default_factory=list)
    runtime_classes: list[tuple[str, str]] = field(default_factory=list)
    nodes: list[KubeObject] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    """What could not be read (not served, or not permitted), each with the reason."""

    @classmethod
    def read(cls, cluster: ClusterAPI, *, nodes: bool = False) -> Inventory:
        inv = cls()

        def listed(api_version: str, kind: str) -> list[KubeObject]:
            try:
                if not any(r.kind == kind for r in cluster.api_resources(api_version)):
                    inv.unread.append(f"{kind} ({api_version} not served)")
                    return []
                return list(cluster.list(api_version, kind))
            except PermissionDeniedError as e:
                inv.unread.append(f"{kind} (not permitted: {e})")
            except ClusterError as e:
                inv.unread.append(f"{kind} ({e})")
            return []

        for kind in WORKLOAD_KINDS:
            inv.workloads += [(kind, o) for o in listed("apps/v1", kind)]
        inv.crds = listed("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        inv.csi_drivers = [name_of(d) for d in listed("storage.k8s.io/v1", "CSIDriver")]
        inv.runtime_classes = [
            (name_of(rc), str(rc.get("handler") or ""))
            for rc in listed("node.k8s.io/v1", "RuntimeClass")
        ]
        if nodes:
            inv.nodes = listed("v1", "Node")
        return inv

    def images(self) -> list[tuple[str, str]]:
        """(``Kind namespace/name``, image) of every workload container."""
        return [
            (f"{kind} {namespace_of(o)}/{name_of(o)}", image)
            for kind, o in self.workloads
            for image in pod_spec_images(o.get("spec", {}).get("template", {}).get("spec", {}))
        ]

    def find(self, signatures: Iterable[Signature]) -> list[Finding]:
        """Every signature matched, with the first place it was seen (one finding per
        product and kind of evidence)."""
        out: list[Finding] = []
        images = self.images()
        groups = sorted({str(c.get("spec", {}).get("group") or "") for c in self.crds})
        for sig in signatures:
            hits: list[str] = []
            for where, image in images:
                repo = image_repository(image)
                if any(part in repo for part in sig.images):
                    hits.append(f"{where} runs {image}")
                    break
            for g in groups:
                if any(g == sg or g.endswith(f".{sg}") for sg in sig.crd_groups):
                    crds = [name_of(c) for c in self.crds if c.get("spec", {}).get("group") == g]
                    hits.append(f"CRDs of {g}: {', '.join(sorted(crds))}")
            hits += [f"CSIDriver {d}" for d in self.csi_drivers if d in sig.csi_drivers]
            hits += [
                f"RuntimeClass {n} (handler {h})"
                for n, h in self.runtime_classes
                if any(w in h.lower() for w in sig.runtime_handlers)
            ]
            if sig.node_words:
                hits += node_hits(self.nodes, sig.node_words)
            out += [Finding(sig.name, h) for h in hits]
        return out

    def summary(self) -> dict[str, Any]:
        """The inventory as evidence: images, CRD groups, CSI drivers, RuntimeClasses and
        each node's container runtime."""
        return {
            "workloadImages": sorted({f"{w}: {i}" for w, i in self.images()}),
            "crdGroups": sorted({str(c.get("spec", {}).get("group") or "") for c in self.crds}),
            "csiDrivers": sorted(self.csi_drivers),
            "runtimeClasses": [{"name": n, "handler": h} for n, h in self.runtime_classes],
            "containerRuntimes": {
                name_of(n): n.get("status", {}).get("nodeInfo", {}).get("containerRuntimeVersion")
                for n in self.nodes
            },
            "unread": list(self.unread),
        }


def node_hits(nodes: Sequence[KubeObject], words: Sequence[str]) -> list[str]:
    """``node N label K=V`` for the first node label or annotation naming one of
    ``words`` (keys and values, lower case), and how many nodes carry it."""
    found: dict[str, list[str]] = {}
    for n in nodes:
        md = n.get("metadata") or {}
        for what in ("labels", "annotations"):
            for k, v in (md.get(what) or {}).items():
                text = f"{k}={v}".lower()
                if any(w in text for w in words):
                    found.setdefault(f"node {what[:-1]} {k}={v}", []).append(name_of(n))
        runtime = str(n.get("status", {}).get("nodeInfo", {}).get("containerRuntimeVersion") or "")
        if any(w in runtime.lower() for w in words):
            found.setdefault(f"containerRuntimeVersion {runtime}", []).append(name_of(n))
    return [
        f"{what} on {len(names)} node(s), e.g. {names[0]}" for what, names in sorted(found.items())
    ]
