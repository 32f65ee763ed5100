"""ext_image_pull (extended profile, TestExtImagePull): large images are pulled faster
through in-cluster replication or caching, lazy-pulling snapshotters or registry mirrors.

Owns: the signatures of peer-to-peer image distribution and in-cluster image caches
(Spegel, Dragonfly, Kraken, kube-fledged, OpenKruise image pre-download, Harbor), of
lazy-pulling snapshotters (stargz, SOCI, Nydus, GKE image streaming) and of registry
mirror configuration the API shows (OpenShift's mirror sets), and what to attach when
none is visible. Reads only; creates nothing. Must not judge how fast images are pulled.
"""

from __future__ import annotations

from kaic.checks.base import CheckContext, Permission, Resource, Subtest, check, shared
from kaic.checks.installed import Finding, Inventory, Signature
from kaic.checks.waits import dump
from kaic.cluster.api import name_of
from kaic.errors import ClusterError

PEER_TO_PEER = (
    Signature("Spegel", images=("spegel-org/spegel", "/spegel")),
    Signature(
        "Dragonfly",
        images=("dragonflyoss/dfdaemon", "dragonflyoss/client", "dragonflyoss/scheduler"),
        crd_groups=("dragonfly.io", "d7y.io"),
    ),
    Signature("Kraken", images=("kraken-agent", "kraken-origin", "kraken-tracker")),
    Signature("kube-fledged", images=("kube-fledged",), crd_groups=("kubefledged.io",)),
    Signature("OpenKruise image pre-download", images=("openkruise/kruise-daemon",)),
    Signature("Harbor (in-cluster registry or proxy cache)", images=("goharbor/harbor-core",)),
)
"""Peer-to-peer image distribution and in-cluster image mirrors or caches."""

LAZY_PULLING = (
    Signature(
        "stargz snapshotter (eStargz)",
        images=("stargz-snapshotter",),
        runtime_handlers=("stargz",),
        node_words=("stargz",),
    ),
    Signature(
        "SOCI snapshotter (seekable OCI)",
        images=("soci-snapshotter",),
        runtime_handlers=("soci",),
        node_words=("soci-snapshotter", "soci."),
    ),
    Signature(
        "Nydus snapshotter",
        images=("nydus-snapshotter", "nydus"),
        runtime_handlers=("nydus",),
        node_words=("nydus",),
    ),
    Signature("GKE image streaming", node_words=("image-streaming", "imagestreaming", "gcfs")),
)
"""Lazy-pulling snapshotters, seen as their workloads, RuntimeClasses or node metadata."""

MIRROR_KINDS = (
    ("config.openshift.io/v1", "ImageDigestMirrorSet"),
    ("config.openshift.io/v1", "ImageTagMirrorSet"),
    ("operator.openshift.io/v1alpha1", "ImageContentSourcePolicy"),
)
"""Registry mirrors configured through API objects (OpenShift's mirror sets)."""

EVIDENCE_TO_ATTACH = (
    "each node's container runtime configuration (containerd's config.toml with its"
    " snapshotter and its registry mirrors or hosts.toml, or CRI-O's registries.conf), the"
    " platform's documentation of image streaming or caching, or a timed pull of a large"
    " image before and after"
)


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.inv = Inventory.read(ctx.cluster, nodes=True)
        self.found: dict[str, list[Finding]] = {}

    def report(self, t: Subtest, key: str, findings: list[Finding], none: str) -> None:
        self.found[key] = findings
        if not findings:
            t.skip(none)
        for f in findings:
            t.log(str(f))

    def peer_to_peer(self, t: Subtest) -> None:
        self.report(
            t,
            "peerToPeerOrMirror",
            self.inv.find(PEER_TO_PEER),
            "no peer-to-peer image distribution or in-cluster image cache is visible"
            " (Spegel, Dragonfly, Kraken, kube-fledged, OpenKruise, Harbor)",
        )

    def lazy_pulling(self, t: Subtest) -> None:
        self.report(
            t,
            "lazyPulling",
            self.inv.find(LAZY_PULLING),
            "no lazy-pulling snapshotter is visible (stargz, SOCI, Nydus, image streaming)"
            " in workloads, RuntimeClasses, node labels, annotations or runtime versions",
        )

    def mirrors(self, t: Subtest) -> None:
        findings = []
        for api_version, kind in MIRROR_KINDS:
            try:
                if not any(r.kind == kind for r in self.ctx.cluster.api_resources(api_version)):
                    continue
                objs = self.ctx.cluster.list(api_version, kind)
            except ClusterError as e:
                self.inv.unread.append(f"{kind} ({e})")
                continue
            for obj in objs:
                spec = obj.get("spec") or {}
                sources = [
                    str(m.get("source"))
                    for key in ("imageDigestMirrors", "imageTagMirrors", "repositoryDigestMirrors")
                    for m in spec.get(key) or []
                ]
                findings.append(
                    Finding(
                        "registry mirror",
                        f"{kind} {name_of(obj)} mirrors {', '.join(sources) or 'nothing'}",
                    )
                )
        self.report(
            t,
            "registryMirrors",
            findings,
            "no registry mirror is configured through the API (ImageDigestMirrorSet,"
            " ImageTagMirrorSet, ImageContentSourcePolicy); mirrors in the nodes' runtime"
            " configuration are not visible through it",
        )


@check(
    "ext_image_pull",
    test="TestExtImagePull",
    locks=shared(Resource.NODE_POOL),
    permissions=(
        Permission("list", "daemonsets", "apps", namespaced=False),
        Permission("list", "deployments", "apps", namespaced=False),
        Permission("list", "statefulsets", "apps", namespaced=False),
        Permission("list", "customresourcedefinitions", "apiextensions.k8s.io", namespaced=False),
        Permission("list", "csidrivers", "storage.k8s.io", namespaced=False),
        Permission("list", "runtimeclasses", "node.k8s.io", namespaced=False),
        Permission("list", "nodes", namespaced=False),
    ),
    timeout_s=120.0,
)
def ext_image_pull(ctx: CheckContext) -> None:
    """An image-pull optimisation (peer-to-peer distribution, an in-cluster mirror, a
    lazy-pulling snapshotter or a registry mirror) is visible through the API."""
    run = _Run(ctx)
    try:
        ctx.step("PeerToPeerOrInClusterMirror", run.peer_to_peer)
        ctx.step("LazyPullingSnapshotter", run.lazy_pulling)
        ctx.step("RegistryMirror", run.mirrors)
    finally:
        ctx.evidence(
            "image-pull.json",
            dump(
                {
                    "found": {k: [str(f) for f in v] for k, v in run.found.items()},
                    "inventory": run.inv.summary(),
                }
            ),
            "application/json",
        )
    if not any(run.found.values()):
        unread = f" (could not read: {'; '.join(run.inv.unread)})" if run.inv.unread else ""
        ctx.manual(
            "no image-pull optimisation is visible through the API"
            f"{unread}: attach {EVIDENCE_TO_ATTACH}"
        )
