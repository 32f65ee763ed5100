"""CRD sets: API extensions installed from the manifests of a Go module download, and
waiting for CRDs to be established.

Owns: the ``CrdSet`` component base (one subclass per set, in ``components/``: Gateway
API, JobSet, Kueue, the Inference Extension), the source annotation that lets a running
lab skip sets already applied, and ``wait_established``. Must not run the sets'
controllers (those are components of their own).
"""

from __future__ import annotations

from typing import Any, ClassVar

from kaic.lab import programs
from kaic.lab.binaries import manifests
from kaic.lab.component import Component
from kaic.lab.context import LabContext

SOURCE_ANNOTATION = "kaic.io/lab-source"


def applied_from(ctx: LabContext, stamp: str) -> set[str]:
    """Names of the CRDs in the lab whose source annotation is ``stamp``."""
    items = ctx.request(
        "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        accept="application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
    return {c["metadata"]["name"] for c in items.get("items") or []
            if (c["metadata"].get("annotations") or {}).get(SOURCE_ANNOTATION) == stamp}


class CrdSet(Component):
    """CRDs (and companion objects) read from a Go module's source tree: the ``crds``
    manifests of program ``program`` in ``programs.toml``."""

    program: ClassVar[str] = ""
    group: ClassVar[str] = ""
    order = 60
    after = ("kube-apiserver",)

    def documents(self, ctx: LabContext) -> list[dict[str, Any]]:
        return manifests(self.program, "crds", ctx.options.version)

    def source(self, ctx: LabContext) -> str:
        p = programs.program(self.program)
        return f"{p.module}@{p.resolved_version(ctx.options.version)}"

    def crd_names(self, ctx: LabContext) -> list[str]:
        return [d["metadata"]["name"] for d in self.documents(ctx)
                if d.get("kind") == "CustomResourceDefinition"]

    def start(self, ctx: LabContext) -> None:
        docs = self.documents(ctx)
        if not docs:
            raise RuntimeError(f"no manifests found for {self.name} in {self.source(ctx)}")
        names = [d["metadata"]["name"] for d in docs
                 if d.get("kind") == "CustomResourceDefinition"]
        stamp = self.source(ctx)
        for d in docs:
            d.setdefault("metadata", {}).setdefault("annotations", {})[SOURCE_ANNOTATION] = stamp
        # On a running lab, objects already applied from the same module version are
        # left alone (re-applying megabytes of CRD schema costs seconds).
        present = applied_from(ctx, stamp)
        ctx.apply([d for d in docs if not (d.get("kind") == "CustomResourceDefinition"
                                           and d["metadata"]["name"] in present)])
        wait_established(ctx, names)

    def healthy(self, ctx: LabContext) -> bool:
        return ctx.exists(f"/apis/{self.group}")


def wait_established(ctx: LabContext, names: list[str], timeout: float = 60.0) -> None:
    """Wait until every CRD in ``names`` is Established."""
    pending = set(names)

    def done() -> bool:
        for n in sorted(pending):
            crd = ctx.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}")
            conds = {c["type"]: c["status"]
                     for c in (crd.get("status") or {}).get("conditions") or []}
            if conds.get("Established") != "True":
                return False
            pending.discard(n)
        return True

    ctx.wait(f"CRDs to be established ({len(names)})", done, timeout=timeout)
