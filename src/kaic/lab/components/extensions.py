"""API extensions installed from Go module downloads: Gateway API (standard channel),
JobSet, Kueue and the Gateway API Inference Extension.

Owns: which program of ``programs.toml`` each CRD set comes from. Must not run their
controllers (operators are separate components). Each set can be left out with
``--without NAME`` to build a lab where a requirement does not hold.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kaic.lab import programs
from kaic.lab.binaries import manifests
from kaic.lab.component import Component, register
from kaic.lab.components.core import wait_established
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


@register
class GatewayApi(CrdSet):
    name = "gateway-api"
    program = "gateway-api"
    description = "Gateway API standard channel CRDs (gateway.networking.k8s.io/v1)"
    group = "gateway.networking.k8s.io"


@register
class JobSet(CrdSet):
    name = "jobset"
    program = "jobset"
    description = "JobSet CRD (jobset.x-k8s.io/v1alpha2)"
    group = "jobset.x-k8s.io"


@register
class Kueue(CrdSet):
    name = "kueue"
    program = "kueue"
    description = "Kueue CRDs (kueue.x-k8s.io v1beta1/v1beta2, no conversion webhook)"
    group = "kueue.x-k8s.io"


@register
class InferenceExtension(CrdSet):
    name = "inference-extension"
    program = "inference-extension"
    description = ("Gateway API Inference Extension CRDs (InferencePool, "
                   "inference.networking.k8s.io/v1)")
    group = "inference.networking.k8s.io"
