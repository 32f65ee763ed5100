"""CRD sets: API extensions installed from the manifests of a Go module download, and
waiting for CRDs to be established.

Owns: the ``CrdSet`` component base (one subclass per set, in ``components/``: Gateway
API, JobSet, Kueue, the Inference Extension), the source annotation that lets a running
lab skip sets already applied, and ``wait_established``. Must not run the sets'
controllers (those are components of their own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from kaic.lab import programs
from kaic.lab.apiserver import ApiError
from kaic.lab.binaries import manifests
from kaic.lab.component import Component
from kaic.lab.context import LabContext, object_path

SOURCE_ANNOTATION = "kaic.io/lab-source"
STREAMS = 2
"""Concurrent requests that apply one set of manifests."""


def apply_all(ctx: LabContext, docs: Sequence[dict[str, Any]], streams: int = STREAMS) -> None:
    """Apply ``docs`` (CRDs and their companions) over a few concurrent requests."""
    # NOTE: the apiserver validates a large CRD (its schema, every CEL rule) on one core
    # for up to a second; a few requests at a time keep every core busy.
    direct = [d for d in docs if object_path(d) is not None]
    rest = [d for d in docs if object_path(d) is None]
    if len(direct) > 1 and streams > 1:
        with ThreadPoolExecutor(max_workers=min(streams, len(direct))) as pool:
            for f in [pool.submit(ctx.apply, [d]) for d in direct]:
                f.result()
    else:
        ctx.apply(direct)
    if rest:
        ctx.apply(rest)


def applied_from(ctx: LabContext, stamp: str) -> set[str]:
    """Names of the CRDs in the lab whose source annotation is ``stamp``."""
    items = ctx.request(
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        accept="application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )
    return {
        c["metadata"]["name"]
        for c in items.get("items") or []
        if (c["metadata"].get("annotations") or {}).get(SOURCE_ANNOTATION) == stamp
    }


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
        return [
            d["metadata"]["name"]
            for d in self.documents(ctx)
            if d.get("kind") == "CustomResourceDefinition"
        ]

    def start(self, ctx: LabContext) -> None:
        docs = self.documents(ctx)
        if not docs:
            raise RuntimeError(f"no manifests found for {self.name} in {self.source(ctx)}")
        stamp = self.source(ctx)
        for d in docs:
            d.setdefault("metadata", {}).setdefault("annotations", {})[SOURCE_ANNOTATION] = stamp
        # On a running lab, objects already applied from the same module version are
        # left alone (re-applying megabytes of CRD schema costs seconds).
        present = applied_from(ctx, stamp)
        crd = "CustomResourceDefinition"
        apply_all(
            ctx,
            [d for d in docs if not (d.get("kind") == crd and d["metadata"]["name"] in present)],
        )
        wait_established(ctx, docs)

    def healthy(self, ctx: LabContext) -> bool:
        return ctx.exists(f"/apis/{self.group}")


def wait_established(
    ctx: LabContext, docs: Sequence[Mapping[str, Any]], timeout: float = 180.0
) -> None:
    """Wait until every CRD of ``docs`` is Established and discoverable: its resource is
    listed under every version it serves (``/apis/<group>/<version>``)."""
    # NOTE: the apiserver's discovery lists a CRD only once it is Established, so this
    # is the stronger condition (clients that discover APIs find it), and each poll is
    # a small discovery document instead of the whole CRD (hundreds of KiB for Kueue's).
    pending: dict[str, set[str]] = {}
    for d in docs:
        if d.get("kind") != "CustomResourceDefinition":
            continue
        spec = d["spec"]
        for v in spec.get("versions") or []:
            if v.get("served", True):
                pending.setdefault(f"{spec['group']}/{v['name']}", set()).add(
                    spec["names"]["plural"]
                )
    count = sum(1 for d in docs if d.get("kind") == "CustomResourceDefinition")

    def done() -> bool:
        for gv in sorted(pending):
            try:
                listed = {r.get("name") for r in ctx.get(f"/apis/{gv}").get("resources") or []}
            except ApiError as e:
                if e.status == 404:
                    return False
                raise
            pending[gv] -= listed
            if pending[gv]:
                return False
            del pending[gv]
        return True

    ctx.wait(f"CRDs to be established ({count})", done, timeout=timeout)
