"""ext_data_cache (extended profile, TestExtDataCache): frequently used data is cached
close to the compute nodes.

Owns: the signatures of dataset caching systems (Fluid, Alluxio, JuiceFS, Vineyard,
Datashim, and object-storage CSI drivers with a node-local cache), and what to attach
when none is visible. Reads only; creates nothing. Must not judge how well data is
cached.
"""

from __future__ import annotations

from kaic.checks.base import CheckContext, Permission, Resource, Subtest, check, shared
from kaic.checks.installed import Finding, Inventory, Signature
from kaic.checks.waits import dump

CACHES = (
    Signature(
        "Fluid",
        images=("fluidcloudnative/",),
        crd_groups=("data.fluid.io",),
        csi_drivers=("fuse.csi.fluid.io",),
    ),
    Signature(
        "Alluxio",
        images=("alluxio/alluxio", "alluxio/operator", "alluxio/alluxio-operator"),
        crd_groups=("k8s-operator.alluxio.com", "alluxio.com"),
        csi_drivers=("alluxio", "csi.alluxio.com"),
    ),
    Signature(
        "JuiceFS",
        images=("juicedata/juicefs-csi-driver", "juicedata/mount", "juicedata/juicefs"),
        crd_groups=("juicefs.io",),
        csi_drivers=("csi.juicefs.com",),
    ),
    Signature("Vineyard", images=("vineyardcloudnative/",), crd_groups=("k8s.v6d.io",)),
    Signature("Datashim", images=("datashim-io/",), crd_groups=("datashim.io", "com.ie.ibm.hpsys")),
    Signature(
        "Cloud Storage FUSE (file cache per volume)", csi_drivers=("gcsfuse.csi.storage.gke.io",)
    ),
    Signature("Mountpoint for Amazon S3 (local cache option)", csi_drivers=("s3.csi.aws.com",)),
)
"""Dataset caching systems, seen as their workloads, CRDs or CSI drivers."""

EVIDENCE_TO_ATTACH = (
    "the platform's documentation of its dataset cache (which system, where it caches: node"
    " disks or memory, how workloads use it) and a read of a dataset from the cache next to"
    " the same read from its remote source"
)


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.inv = Inventory.read(ctx.cluster)
        self.found: list[Finding] = []

    def detect(self, t: Subtest) -> None:
        self.found = self.inv.find(CACHES)
        if not self.found:
            t.skip(
                "no dataset cache is visible (Fluid, Alluxio, JuiceFS, Vineyard, Datashim,"
                " caching CSI drivers) in workloads, CRDs or CSIDriver objects"
            )
        for f in self.found:
            t.log(str(f))


@check(
    "ext_data_cache",
    test="TestExtDataCache",
    locks=shared(Resource.NODE_POOL),
    permissions=(
        Permission("list", "daemonsets", "apps", namespaced=False),
        Permission("list", "deployments", "apps", namespaced=False),
        Permission("list", "statefulsets", "apps", namespaced=False),
        Permission("list", "customresourcedefinitions", "apiextensions.k8s.io", namespaced=False),
        Permission("list", "csidrivers", "storage.k8s.io", namespaced=False),
    ),
    timeout_s=120.0,
)
def ext_data_cache(ctx: CheckContext) -> None:
    """A dataset caching system close to the compute nodes (Fluid, Alluxio, JuiceFS, …) is
    visible through its workloads, CRDs or CSI drivers."""
    run = _Run(ctx)
    try:
        ctx.step("DataCacheDetected", run.detect)
    finally:
        ctx.evidence(
            "data-cache.json",
            dump({"found": [str(f) for f in run.found], "inventory": run.inv.summary()}),
            "application/json",
        )
    if not run.found:
        unread = f" (could not read: {'; '.join(run.inv.unread)})" if run.inv.unread else ""
        ctx.manual(
            f"no data cache close to the compute nodes is visible through the API{unread}:"
            f" attach {EVIDENCE_TO_ATTACH}"
        )
