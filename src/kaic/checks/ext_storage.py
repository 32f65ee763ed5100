"""ext_storage (extended profile, TestExtStorage): a StorageClass for high-throughput AI
workloads, and a ReadWriteMany volume that pods on two different nodes share.

Owns: the tables of provisioners known for high throughput and for ReadWriteMany, how a
class is marked for high throughput, the claim and the two pods used (a writer and a
reader, kept on different nodes by pod anti-affinity), the procedure and the evidence.
Must not know how any platform (the lab included) provisions volumes.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kaic.checks.base import CheckContext, CheckOption, Permission, Resource, Subtest, check, shared
from kaic.checks.created import keep_with_events
from kaic.checks.predicates import node_has_blocking_taint, node_schedulable, pod_phase
from kaic.checks.waits import dump, last_warning
from kaic.cluster.api import KubeList, KubeObject, name_of
from kaic.errors import ClusterError, PermissionDeniedError, WaitTimeoutError

SC_API = "storage.k8s.io/v1"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
HIGH_THROUGHPUT_ANNOTATION = "kaic.io/high-throughput"
"""A platform marks its class for high-throughput AI use with this annotation ("true")."""
CLAIM = "kaic-rwx"
WRITER, READER = "kaic-rwx-writer", "kaic-rwx-reader"
PAIR_LABEL = "kaic.io/rwx-pair"
FILE = "kaic-rwx.txt"
IMAGE = "docker.io/library/debian:12-slim"

HIGH_THROUGHPUT: Mapping[str, str] = {
    "fsx.csi.aws.com": "Amazon FSx for Lustre",
    "lustre.csi.storage.gke.io": "Google Cloud Managed Lustre",
    "azurelustre.csi.azure.com": "Azure Managed Lustre",
    "exa.csi.ddn.com": "DDN EXAScaler (Lustre)",
    "filestore.csi.storage.gke.io": "Google Cloud Filestore",
    "spectrumscale.csi.ibm.com": "IBM Storage Scale (GPFS)",
    "csi.weka.io": "WEKA",
    "csi.trident.netapp.io": "NetApp Trident (ONTAP)",
    "beegfs.csi.netapp.com": "BeeGFS",
    "csi.vastdata.com": "VAST Data",
}
"""Provisioners of parallel or scale-out file systems sold for high-throughput AI use."""

HIGH_THROUGHPUT_PARAMETERS: Mapping[tuple[str, str], frozenset[str]] = {
    ("pd.csi.storage.gke.io", "type"): frozenset(
        {"hyperdisk-ml", "hyperdisk-throughput", "hyperdisk-extreme", "pd-extreme"}
    ),
}
"""Block-storage classes whose ``parameters`` choose a high-throughput volume type."""

THROUGHPUT_PARAMETERS = frozenset(
    {
        "deploymentType",
        "perUnitStorageThroughput",
        "throughput",
        "provisioned-throughput-on-create",
        "tier",
        "sku-name",
        "type",
    }
)
"""Parameter keys reported as evidence of the throughput a class asks for."""

READ_WRITE_MANY: Mapping[str, str] = {
    **HIGH_THROUGHPUT,
    "efs.csi.aws.com": "Amazon EFS",
    "file.csi.azure.com": "Azure Files",
    "blob.csi.azure.com": "Azure Blob (BlobFuse/NFS)",
    "nfs.csi.k8s.io": "NFS CSI driver",
    "k8s-sigs.io/nfs-subdir-external-provisioner": "NFS subdir external provisioner",
    "cephfs.csi.ceph.com": "CephFS",
    "driver.longhorn.io": "Longhorn (RWX through its share manager)",
    "csi.juicefs.com": "JuiceFS",
    "rancher.io/local-path": "local-path-provisioner (RWX in its shared-filesystem mode only)",
}
"""Provisioners known to serve ReadWriteMany volumes (some only in one configuration;
the check proves it with a claim)."""

OPTIONS = (
    CheckOption(
        "storage-class", "StorageClass to prove ReadWriteMany with (default: the first known)"
    ),
    CheckOption(
        "storage-high-throughput-class",
        "StorageClass the platform documents for high-throughput AI use",
    ),
    CheckOption("storage-image", "image of the writer and reader pods (needs sh)", IMAGE),
    CheckOption("storage-size", "size of the ReadWriteMany claim", "1Gi", kind="text"),
    CheckOption(
        "storage-mount-path", "where the pods mount the volume", "/tmp/kaic-rwx", kind="text"
    ),
    CheckOption("storage-bind-timeout", "seconds for the claim to be bound", "180"),
    CheckOption("storage-pod-timeout", "seconds for the two pods to share the file", "300"),
)


@dataclass(frozen=True)
class ClassInfo:
    """What the API tells about one StorageClass."""

    name: str
    provisioner: str
    parameters: Mapping[str, str]
    annotations: Mapping[str, str]
    binding_mode: str
    default: bool

    @classmethod
    def of(cls, sc: KubeObject) -> ClassInfo:
        md = sc.get("metadata") or {}
        ann = {str(k): str(v) for k, v in (md.get("annotations") or {}).items()}
        return cls(
            name=name_of(sc),
            provisioner=str(sc.get("provisioner") or ""),
            parameters={str(k): str(v) for k, v in (sc.get("parameters") or {}).items()},
            annotations=ann,
            binding_mode=str(sc.get("volumeBindingMode") or "Immediate"),
            default=ann.get(DEFAULT_CLASS_ANNOTATION) == "true",
        )

    def high_throughput(self) -> str | None:
        """Why this class is for high-throughput use, or None."""
        if self.annotations.get(HIGH_THROUGHPUT_ANNOTATION, "").lower() == "true":
            return f"annotated {HIGH_THROUGHPUT_ANNOTATION}=true"
        if self.provisioner in HIGH_THROUGHPUT:
            return f"provisioner {self.provisioner} ({HIGH_THROUGHPUT[self.provisioner]})"
        for (prov, key), values in HIGH_THROUGHPUT_PARAMETERS.items():
            if self.provisioner == prov and self.parameters.get(key) in values:
                return f"provisioner {prov} with {key}={self.parameters[key]}"
        return None

    def read_write_many(self) -> str | None:
        """Why this class may serve ReadWriteMany volumes, or None."""
        if self.provisioner in READ_WRITE_MANY:
            return f"provisioner {self.provisioner} ({READ_WRITE_MANY[self.provisioner]})"
        return None

    def summary(self) -> dict[str, Any]:
        params = {k: v for k, v in self.parameters.items() if k in THROUGHPUT_PARAMETERS}
        return {
            "name": self.name,
            "provisioner": self.provisioner,
            "default": self.default,
            "volumeBindingMode": self.binding_mode,
            "throughputParameters": params,
            "annotations": dict(self.annotations),
            "highThroughput": self.high_throughput(),
            "readWriteMany": self.read_write_many(),
        }

    def label(self) -> str:
        return f"{self.name} ({self.provisioner})"


def claim(namespace: str, storage_class: str, size: str) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CLAIM, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": size}},
        },
    }


def writer_script(path: str, token: str, wait_s: int) -> str:
    """Write ``token`` and the node's name to the shared file, then wait for the
    reader's acknowledgement (exit 3 if it never comes)."""
    d, t = shlex.quote(path), shlex.quote(token)
    return (
        f"set -e; echo {t} from $NODE > {d}/{FILE}.tmp; mv {d}/{FILE}.tmp {d}/{FILE};"
        f' echo "WROTE: $(cat {d}/{FILE})"; i=0;'
        f" while [ ! -f {d}/{FILE}.ack ]; do i=$((i+1));"
        f" if [ $i -gt {wait_s} ]; then echo 'no acknowledgement from the reader' >&2; exit 3; fi;"
        f' sleep 1; done; echo "ACK: $(cat {d}/{FILE}.ack)"'
    )


def reader_script(path: str, wait_s: int) -> str:
    """Wait for the shared file, print what it holds and acknowledge it (exit 3 if it
    never appears)."""
    d = shlex.quote(path)
    return (
        f"set -e; i=0; while [ ! -f {d}/{FILE} ]; do i=$((i+1));"
        f" if [ $i -gt {wait_s} ]; then echo 'the shared file never appeared' >&2; exit 3; fi;"
        f' sleep 1; done; echo "READ: $(cat {d}/{FILE})"; echo read by $NODE > {d}/{FILE}.ack'
    )


def pod(namespace: str, name: str, image: str, script: str, mount_path: str) -> KubeObject:
    """A pod mounting the claim, kept off nodes where the other pod of the pair runs."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {PAIR_LABEL: CLAIM}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "affinity": {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {"matchLabels": {PAIR_LABEL: CLAIM}},
                            "topologyKey": "kubernetes.io/hostname",
                        }
                    ]
                }
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": ["sh", "-c", script],
                    "env": [
                        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
                    ],
                    "volumeMounts": [{"name": "shared", "mountPath": mount_path}],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
            "volumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": CLAIM}}],
        },
    }


def line_after(text: str, prefix: str) -> str | None:
    """The rest of the last line of ``text`` that starts with ``prefix``."""
    found = [ln[len(prefix) :].strip() for ln in text.splitlines() if ln.startswith(prefix)]
    return found[-1] if found else None


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.ns = ctx.namespace
        self.classes: list[ClassInfo] = []
        self.chosen: ClassInfo | None = None
        self.token = f"kaic-{secrets.token_hex(8)}"
        self.record: dict[str, Any] = {}

    # -- StorageClasses ---------------------------------------------------------------
    def load_classes(self) -> None:
        self.classes = sorted(
            (ClassInfo.of(sc) for sc in self.c.list(SC_API, "StorageClass")),
            key=lambda c: (not c.default, c.name),
        )
        self.record["storageClasses"] = [c.summary() for c in self.classes]

    def named(self, t: Subtest, name: str) -> ClassInfo:
        for c in self.classes:
            if c.name == name:
                return c
        t.fail(f"StorageClass {name} does not exist" + self.found())

    def found(self) -> str:
        return f" (StorageClasses: {', '.join(c.label() for c in self.classes)})"

    def high_throughput(self, t: Subtest) -> None:
        self.load_classes()
        if not self.classes:
            t.fail("no StorageClass exists")
        asked = self.ctx.option("storage-high-throughput-class")
        if asked:
            c = self.named(t, asked)
            why = c.high_throughput() or "named by --storage-high-throughput-class"
            self.record["highThroughputClass"] = {"name": c.name, "why": why}
            t.log(f"StorageClass {c.label()} is the platform's high-throughput class: {why}")
            return
        hits = [(c, w) for c in self.classes if (w := c.high_throughput()) is not None]
        if not hits:
            t.skip(
                "no StorageClass is marked for high-throughput AI use or has a provisioner"
                " known for it" + self.found() + ": attach the platform's documentation of"
                f" its high-throughput storage, or annotate the class {HIGH_THROUGHPUT_ANNOTATION}"
                "=true, or name it with --storage-high-throughput-class"
            )
        self.record["highThroughputClass"] = [{"name": c.name, "why": w} for c, w in hits]
        for c, found_why in hits:
            params = c.summary()["throughputParameters"]
            t.log(
                f"StorageClass {c.name}: {found_why}"
                + (
                    f"; parameters {', '.join(f'{k}={v}' for k, v in params.items())}"
                    if params
                    else ""
                )
            )

    def rwx_class(self, t: Subtest) -> None:
        if not self.classes:
            self.load_classes()
        if not self.classes:
            t.fail("no StorageClass exists, so no ReadWriteMany volume can be provisioned")
        asked = self.ctx.option("storage-class")
        if asked:
            self.chosen = self.named(t, asked)
            why = self.chosen.read_write_many() or "named by --storage-class"
        else:
            known = [c for c in self.classes if c.read_write_many()]
            if not known:
                t.fail(
                    "no StorageClass has a provisioner known to serve ReadWriteMany volumes"
                    + self.found()
                    + "; name one to prove with --storage-class"
                )
            self.chosen = known[0]
            why = known[0].read_write_many() or ""
        self.record["readWriteManyClass"] = {"name": self.chosen.name, "why": why}
        t.log(f"proving ReadWriteMany with StorageClass {self.chosen.label()}: {why}")

    # -- the claim and the two pods ---------------------------------------------------
    def provisioned(self, t: Subtest) -> None:
        assert self.chosen is not None
        nodes = [
            n
            for n in self.c.list("v1", "Node")
            if node_schedulable(n) and not node_has_blocking_taint(n)
        ]
        if len(nodes) < 2:
            t.error(
                f"the cluster has {len(nodes)} schedulable untainted node(s): two are needed"
                " to show a volume shared across nodes"
            )
        size = self.ctx.option("storage-size") or "1Gi"
        path = self.ctx.option("storage-mount-path") or "/tmp/kaic-rwx"
        image = self.ctx.option("storage-image") or IMAGE
        wait_s = int(self.ctx.float_option("storage-pod-timeout"))
        try:
            self.c.create(claim(self.ns, self.chosen.name, size))
            self.c.create(
                pod(self.ns, WRITER, image, writer_script(path, self.token, wait_s), path)
            )
            self.c.create(pod(self.ns, READER, image, reader_script(path, wait_s), path))
        except PermissionDeniedError:
            raise
        except ClusterError as e:
            t.fail(f"the ReadWriteMany claim or its pods were not accepted: {e}")
        timeout = self.ctx.budget(self.ctx.float_option("storage-bind-timeout"))
        try:
            self.c.wait_for(
                "v1",
                "PersistentVolumeClaim",
                CLAIM,
                self.ns,
                lambda o: (o or {}).get("status", {}).get("phase") == "Bound",
                timeout=timeout,
                what=f"claim {CLAIM} to be bound",
            )
            bound = True
        except WaitTimeoutError:
            bound = False
        pvc = self.c.get("v1", "PersistentVolumeClaim", CLAIM, self.ns) or {}
        self.record["claim"] = {"spec": pvc.get("spec"), "status": pvc.get("status")}
        if not bound:
            t.fail(
                f"the ReadWriteMany claim of StorageClass {self.chosen.name} was not bound"
                f" within {timeout:.0f}s (phase {pvc.get('status', {}).get('phase')})"
                + last_warning(self.c, self.ns, CLAIM)
            )
        pv_name = str(pvc.get("spec", {}).get("volumeName") or "")
        pv = self.c.get("v1", "PersistentVolume", pv_name) if pv_name else None
        modes = (pv or {}).get("spec", {}).get("accessModes") or []
        self.record["volume"] = {"name": pv_name, "accessModes": modes}
        if pv is not None and "ReadWriteMany" not in modes:
            t.fail(f"PersistentVolume {pv_name} was provisioned with access modes {modes}")
        t.log(f"claim {CLAIM} bound to PersistentVolume {pv_name} ({', '.join(modes) or '?'})")

    def shared(self, t: Subtest) -> None:
        timeout = self.ctx.budget(self.ctx.float_option("storage-pod-timeout"))
        pods: dict[str, KubeObject] = {}

        def done(objs: KubeList) -> bool:
            pods.update({name_of(p): p for p in objs if name_of(p) in (WRITER, READER)})
            return len(pods) == 2 and all(
                pod_phase(p) in ("Succeeded", "Failed") for p in pods.values()
            )

        try:
            self.c.wait_list(
                "v1",
                "Pod",
                self.ns,
                done,
                timeout=timeout,
                what="the writer and reader pods to finish",
                label_selector=f"{PAIR_LABEL}={CLAIM}",
            )
            finished = True
        except WaitTimeoutError:
            finished = False
        for n in (WRITER, READER):
            pods[n] = self.c.get("v1", "Pod", n, self.ns) or {}
        nodes = {n: str(p.get("spec", {}).get("nodeName") or "") for n, p in pods.items()}
        self.record["pods"] = {
            n: {"node": nodes[n], "phase": pod_phase(p)} for n, p in pods.items()
        }
        for n in pods:
            if not nodes[n]:
                t.fail(
                    f"pod {n} was not scheduled within {timeout:.0f}s"
                    + last_warning(self.c, self.ns, n)
                )
        if nodes[WRITER] == nodes[READER]:
            t.fail(f"both pods ran on node {nodes[WRITER]} despite their anti-affinity")
        logs = {n: self.logs(n) for n in pods}
        read = line_after(logs[READER], "READ:")
        self.record["read"] = read
        self.record["expected"] = f"{self.token} from {nodes[WRITER]}"
        if not finished:
            states = ", ".join(f"{n} {pod_phase(p) or '?'} on {nodes[n]}" for n, p in pods.items())
            t.fail(
                f"the pods did not finish within {timeout:.0f}s ({states})"
                + last_warning(self.c, self.ns, READER)
                + last_warning(self.c, self.ns, WRITER)
            )
        failed = [n for n, p in pods.items() if pod_phase(p) != "Succeeded"]
        if read != self.record["expected"]:
            t.fail(
                f"the reader on node {nodes[READER]} did not read what the writer on node"
                f" {nodes[WRITER]} wrote: expected {self.record['expected']!r}, read {read!r}"
                + (f" (pods that failed: {', '.join(failed)})" if failed else "")
            )
        if failed:
            t.fail(
                f"pod(s) {', '.join(failed)} failed after the file was shared"
                f" (writer log: {logs[WRITER].strip()[-200:]!r})"
            )
        t.log(
            f"writer on node {nodes[WRITER]} wrote the file, reader on node {nodes[READER]}"
            f" read it back: {read!r}; the writer saw the reader's acknowledgement"
        )

    def logs(self, name: str) -> str:
        try:
            return self.c.raw_get(
                f"/api/v1/namespaces/{self.ns}/pods/{name}/log?container=main",
                timeout=self.ctx.budget(30.0),
            )
        except ClusterError as e:
            self.ctx.log(f"could not read the logs of {name}: {e}")
            return ""

    def keep_evidence(self) -> None:
        self.ctx.evidence("storage.json", dump(self.record), "application/json")
        try:
            objs: list[Any] = []
            pvc = self.c.get("v1", "PersistentVolumeClaim", CLAIM, self.ns)
            if pvc is None:
                return
            objs.append(pvc)
            pv_name = pvc.get("spec", {}).get("volumeName")
            pv = self.c.get("v1", "PersistentVolume", pv_name) if pv_name else None
            if pv is not None:
                objs.append(pv)
            objs += self.c.list("v1", "Pod", self.ns)
            keep_with_events(self.ctx, objs)
        except ClusterError as e:
            self.ctx.log(f"could not keep the claim's objects as evidence: {e}")


@check(
    "ext_storage",
    test="TestExtStorage",
    locks=shared(Resource.NODE_CAPACITY),
    options=OPTIONS,
    permissions=(
        Permission("list", "storageclasses", "storage.k8s.io", namespaced=False),
        Permission("create", "persistentvolumeclaims"),
        Permission("get", "persistentvolumeclaims"),
        Permission("get", "persistentvolumes", namespaced=False),
        Permission("create", "pods"),
        Permission("get", "pods"),
        Permission("get", "pods", subresource="log"),
        Permission("list", "nodes", namespaced=False),
        Permission("list", "events"),
    ),
    timeout_s=600.0,
)
def ext_storage(ctx: CheckContext) -> None:
    """A ReadWriteMany volume of a RWX-capable StorageClass is written by a pod on one node
    and read back by a pod on another, beside a StorageClass for high-throughput use."""
    run = _Run(ctx)
    try:
        ctx.step("HighThroughputClass", run.high_throughput)
        ctx.step("ReadWriteManyClass", run.rwx_class)
        ctx.step("ClaimProvisioned", run.provisioned, needs=("ReadWriteManyClass",))
        ctx.step("SharedAcrossNodes", run.shared, needs=("ClaimProvisioned",))
    finally:
        run.keep_evidence()
