"""ext_storage against the fake cluster: a shared-filesystem provisioner whose volume two
pods on different nodes share (PASS); no StorageClass, no RWX-capable class, a class that
refuses ReadWriteMany, pods on one node, a reader that reads something else (FAIL); one
node (ERROR); high-throughput classes found by provisioner, parameter or annotation."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kaic.checks.ext_storage import CLAIM, READER, WRITER, ClassInfo
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

NS = "kaic-t"


def _sc(name: str, provisioner: str, **extra: Any) -> dict[str, Any]:
    ann = extra.pop("annotations", {})
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": ann},
        "provisioner": provisioner,
        **extra,
    }


def _node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


class Platform:
    """A provisioner, scheduler and kubelets that share one directory between nodes."""

    def __init__(
        self,
        fake: FakeCluster,
        *,
        rwx: bool = True,
        same_node: bool = False,
        share: bool = True,
    ) -> None:
        self.fake, self.rwx, self.same_node, self.share = fake, rwx, same_node, share
        self.files: dict[str, str] = {}
        fake.controllers.append(self.act)

    def act(self, c: FakeCluster) -> None:
        pvc = c.get("v1", "PersistentVolumeClaim", CLAIM, NS)
        if pvc is None:
            return
        if pvc.get("status", {}).get("phase") != "Bound":
            if not self.rwx:
                c.add(
                    {
                        "apiVersion": "v1",
                        "kind": "Event",
                        "metadata": {"name": "ev1", "namespace": NS},
                        "involvedObject": {"kind": "PersistentVolumeClaim", "name": CLAIM},
                        "type": "Warning",
                        "reason": "ProvisioningFailed",
                        "message": "NodePath only supports ReadWriteOnce",
                    }
                )
                return
            c.add(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": "pvc-1"},
                    "spec": {"accessModes": ["ReadWriteMany"], "hostPath": {"path": "/x"}},
                }
            )
            pvc["spec"]["volumeName"] = "pvc-1"
            pvc["status"] = {"phase": "Bound"}
            c.add(pvc)
            return
        nodes = ["node-a", "node-a"] if self.same_node else ["node-a", "node-b"]
        for name, node in zip((WRITER, READER), nodes, strict=True):
            p = c.get("v1", "Pod", name, NS)
            if p is None or p.get("status", {}).get("phase"):
                continue
            p["spec"]["nodeName"] = node
            script = p["spec"]["containers"][0]["command"][2]
            if name == WRITER:
                token = re.search(r"echo (kaic-[0-9a-f]+) from", script)
                assert token is not None
                self.files[node] = f"{token.group(1)} from {node}"
                c.raw[f"/api/v1/namespaces/{NS}/pods/{name}/log?container=main"] = (
                    f"WROTE: {self.files[node]}\nACK: read by {nodes[1]}\n"
                )
            else:
                seen = next(iter(self.files.values())) if self.share else "something else"
                c.raw[f"/api/v1/namespaces/{NS}/pods/{name}/log?container=main"] = f"READ: {seen}\n"
            p["status"] = {"phase": "Succeeded"}
            c.add(p)


def _fake(*classes: dict[str, Any], nodes: int = 3) -> FakeCluster:
    fake = FakeCluster()
    fake.serve("storage.k8s.io/v1", ("storageclasses", "StorageClass", False))
    fake.serve(
        "v1",
        ("persistentvolumeclaims", "PersistentVolumeClaim", True),
        ("persistentvolumes", "PersistentVolume", False),
    )
    for sc in classes:
        fake.add(sc)
    for i in range(nodes):
        fake.add(_node(f"node-{'abc'[i]}"))
    return fake


def _run(fake: FakeCluster, **options: str) -> CheckResult:
    return run_fake_check(
        fake,
        "ext_storage",
        namespace=NS,
        options={"storage-bind-timeout": "0.3", "storage-pod-timeout": "0.3", **options},
    )


def sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


SHARED = _sc("shared", "rancher.io/local-path", volumeBindingMode="Immediate")


def test_ext_storage_passes_when_two_pods_on_different_nodes_share_a_rwx_volume() -> None:
    fake = _fake(
        _sc("fast", "fsx.csi.aws.com", parameters={"deploymentType": "PERSISTENT_2"}), SHARED
    )
    Platform(fake)
    result = _run(fake)
    assert result.outcome is Outcome.PASS, result.reason
    log = "\n".join(result.log)
    assert "StorageClass fast: provisioner fsx.csi.aws.com (Amazon FSx for Lustre)" in log
    assert "deploymentType=PERSISTENT_2" in log
    assert "proving ReadWriteMany with StorageClass fast (fsx.csi.aws.com)" in log
    assert "writer on node node-a wrote the file, reader on node node-b read it back" in log
    evidence = next(e.content for e in result.evidence if e.name == "storage.json")
    assert '"node": "node-b"' in evidence and '"read": "kaic-' in evidence
    pvc = fake.get("v1", "PersistentVolumeClaim", CLAIM, NS)
    assert pvc is not None and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    writer = fake.get("v1", "Pod", WRITER, NS)
    assert writer is not None
    assert writer["spec"]["affinity"]["podAntiAffinity"]


def test_ext_storage_skips_high_throughput_but_passes_rwx_when_no_class_is_marked() -> None:
    fake = _fake(SHARED)
    Platform(fake)
    result = _run(fake)
    assert result.outcome is Outcome.PASS, result.reason
    ht = sub(result, "HighThroughputClass")
    assert ht.outcome is Outcome.SKIP
    assert "attach the platform's documentation" in ht.reason
    assert "shared (rancher.io/local-path)" in ht.reason


def test_ext_storage_fails_without_any_storage_class() -> None:
    result = _run(_fake())
    assert result.outcome is Outcome.FAIL
    assert sub(result, "HighThroughputClass").reason == "no StorageClass exists"
    assert "no StorageClass exists" in sub(result, "ReadWriteManyClass").reason
    assert sub(result, "ClaimProvisioned").outcome is Outcome.SKIP


def test_ext_storage_fails_when_no_class_has_a_provisioner_known_for_rwx() -> None:
    result = _run(_fake(_sc("standard", "ebs.csi.aws.com")))
    assert result.outcome is Outcome.FAIL
    reason = sub(result, "ReadWriteManyClass").reason
    assert "no StorageClass has a provisioner known to serve ReadWriteMany" in reason
    assert "standard (ebs.csi.aws.com)" in reason and "--storage-class" in reason


def test_ext_storage_fails_with_the_provisioners_event_when_rwx_is_refused() -> None:
    fake = _fake(SHARED)
    Platform(fake, rwx=False)
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    reason = sub(result, "ClaimProvisioned").reason
    assert "was not bound" in reason and "NodePath only supports ReadWriteOnce" in reason
    assert sub(result, "SharedAcrossNodes").outcome is Outcome.SKIP


def test_ext_storage_fails_when_both_pods_land_on_one_node() -> None:
    fake = _fake(SHARED)
    Platform(fake, same_node=True)
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    assert "both pods ran on node node-a" in sub(result, "SharedAcrossNodes").reason


def test_ext_storage_fails_when_the_reader_does_not_see_the_writers_file() -> None:
    fake = _fake(SHARED)
    Platform(fake, share=False)
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    reason = sub(result, "SharedAcrossNodes").reason
    assert "did not read what the writer on node node-a wrote" in reason
    assert "'something else'" in reason


def test_ext_storage_fails_when_the_pods_never_run() -> None:
    fake = _fake(SHARED)
    Platform(fake)
    fake.controllers.clear()

    def bind_only(c: FakeCluster) -> None:
        pvc = c.get("v1", "PersistentVolumeClaim", CLAIM, NS)
        if pvc is not None and not pvc.get("status"):
            pvc["status"] = {"phase": "Bound"}
            c.add(pvc)

    fake.controllers.append(bind_only)
    result = _run(fake)
    assert result.outcome is Outcome.FAIL
    assert f"pod {WRITER} was not scheduled" in sub(result, "SharedAcrossNodes").reason


def test_ext_storage_cannot_decide_on_a_single_node_cluster() -> None:
    result = _run(_fake(SHARED, nodes=1))
    assert result.outcome is Outcome.ERROR
    assert "two are needed" in sub(result, "ClaimProvisioned").reason


def test_ext_storage_uses_the_named_classes_and_fails_on_a_missing_one() -> None:
    fake = _fake(SHARED, _sc("nas", "example.com/nas"))
    Platform(fake)
    result = _run(fake, **{"storage-class": "nas", "storage-high-throughput-class": "nas"})
    assert result.outcome is Outcome.PASS, result.reason
    assert "named by --storage-high-throughput-class" in "\n".join(result.log)
    assert "proving ReadWriteMany with StorageClass nas (example.com/nas)" in "\n".join(result.log)
    result = _run(_fake(SHARED), **{"storage-class": "missing"})
    assert result.outcome is Outcome.FAIL
    assert "StorageClass missing does not exist" in sub(result, "ReadWriteManyClass").reason


@pytest.mark.parametrize(
    ("sc", "why"),
    [
        (_sc("a", "x.example.com", annotations={"kaic.io/high-throughput": "true"}), "annotated"),
        (_sc("b", "pd.csi.storage.gke.io", parameters={"type": "hyperdisk-ml"}), "hyperdisk-ml"),
        (_sc("c", "spectrumscale.csi.ibm.com"), "GPFS"),
        (_sc("d", "pd.csi.storage.gke.io", parameters={"type": "pd-balanced"}), None),
        (_sc("e", "efs.csi.aws.com"), None),
    ],
)
def test_high_throughput_classes_are_known_by_annotation_provisioner_or_parameter(
    sc: dict[str, Any], why: str | None
) -> None:
    found = ClassInfo.of(sc).high_throughput()
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found


def test_the_default_class_is_tried_first_among_rwx_capable_classes() -> None:
    fake = _fake(
        _sc("a-nfs", "nfs.csi.k8s.io"),
        _sc(
            "z-efs",
            "efs.csi.aws.com",
            annotations={"storageclass.kubernetes.io/is-default-class": "true"},
        ),
    )
    Platform(fake)
    result = _run(fake)
    assert result.outcome is Outcome.PASS, result.reason
    assert "proving ReadWriteMany with StorageClass z-efs" in "\n".join(result.log)
