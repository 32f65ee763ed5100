"""ext_image_pull against the fake cluster: each kind of image-pull optimisation is found
where the API shows it (workloads, CRDs, RuntimeClasses, node metadata, mirror sets);
nothing visible is MANUAL with what to attach."""

from __future__ import annotations

from typing import Any

import pytest

from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check


def _daemonset(name: str, image: str, ns: str = "kube-system") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
    }


def _crd(plural: str, group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group},
    }


def _node(name: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, **meta},
        "status": {"nodeInfo": {"containerRuntimeVersion": "containerd://2.1.4"}},
    }


def _fake(*objs: dict[str, Any]) -> FakeCluster:
    fake = FakeCluster()
    fake.serve("apps/v1", ("daemonsets", "DaemonSet", True), ("statefulsets", "StatefulSet", True))
    fake.serve(
        "apiextensions.k8s.io/v1",
        ("customresourcedefinitions", "CustomResourceDefinition", False),
    )
    fake.serve("storage.k8s.io/v1", ("csidrivers", "CSIDriver", False))
    fake.serve("node.k8s.io/v1", ("runtimeclasses", "RuntimeClass", False))
    fake.add(_node("n1", labels={"kubernetes.io/hostname": "n1"}))
    fake.add(
        _daemonset("kube-proxy", "registry.k8s.io/kube-proxy:v1.36.2"),
    )
    for o in objs:
        fake.add(o)
    return fake


def _run(fake: FakeCluster) -> CheckResult:
    return run_fake_check(fake, "ext_image_pull")


def sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


def test_ext_image_pull_is_manual_naming_what_to_attach_when_nothing_is_visible() -> None:
    result = _run(_fake())
    assert result.outcome is Outcome.MANUAL
    assert "no image-pull optimisation is visible through the API" in result.reason
    assert "containerd's config.toml" in result.reason
    assert all(s.outcome is Outcome.SKIP for s in result.subresults)
    evidence = next(e.content for e in result.evidence if e.name == "image-pull.json")
    assert "containerd://2.1.4" in evidence and "registry.k8s.io/kube-proxy" in evidence


@pytest.mark.parametrize(
    ("obj", "subtest", "expect"),
    [
        (
            _daemonset("spegel", "ghcr.io/spegel-org/spegel:v0.3.0", "spegel"),
            "PeerToPeerOrInClusterMirror",
            "Spegel (DaemonSet spegel/spegel runs ghcr.io/spegel-org/spegel:v0.3.0)",
        ),
        (
            _daemonset("dfdaemon", "dragonflyoss/client:v1.0.0", "dragonfly-system"),
            "PeerToPeerOrInClusterMirror",
            "Dragonfly (DaemonSet dragonfly-system/dfdaemon",
        ),
        (
            _daemonset("kraken-agent", "ghcr.io/uber/kraken-agent:v0.1.4"),
            "PeerToPeerOrInClusterMirror",
            "Kraken",
        ),
        (
            _crd("imagecaches", "kubefledged.io"),
            "PeerToPeerOrInClusterMirror",
            "kube-fledged (CRDs of kubefledged.io: imagecaches.kubefledged.io)",
        ),
        (
            _daemonset("nydus-snapshotter", "ghcr.io/containerd/nydus-snapshotter:v0.15.2"),
            "LazyPullingSnapshotter",
            "Nydus snapshotter",
        ),
        (
            {
                "apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass",
                "metadata": {"name": "stargz"},
                "handler": "runc-stargz",
            },
            "LazyPullingSnapshotter",
            "stargz snapshotter (eStargz) (RuntimeClass stargz (handler runc-stargz))",
        ),
        (
            _node("n2", labels={"cloud.google.com/gke-image-streaming": "true"}),
            "LazyPullingSnapshotter",
            "GKE image streaming (node label cloud.google.com/gke-image-streaming=true on 1",
        ),
        (
            _node("n3", annotations={"example.com/snapshotter": "soci-snapshotter"}),
            "LazyPullingSnapshotter",
            "SOCI snapshotter",
        ),
    ],
)
def test_ext_image_pull_finds_each_optimisation_where_the_api_shows_it(
    obj: dict[str, Any], subtest: str, expect: str
) -> None:
    result = _run(_fake(obj))
    assert result.outcome is Outcome.PASS, result.reason
    assert sub(result, subtest).outcome is Outcome.PASS
    assert expect in "\n".join(result.log)


def test_ext_image_pull_finds_registry_mirror_sets_only_when_one_exists() -> None:
    fake = _fake(_crd("imagedigestmirrorsets", "config.openshift.io"))
    fake.serve("config.openshift.io/v1", ("imagedigestmirrorsets", "ImageDigestMirrorSet", False))
    assert _run(fake).outcome is Outcome.MANUAL
    fake.add(
        {
            "apiVersion": "config.openshift.io/v1",
            "kind": "ImageDigestMirrorSet",
            "metadata": {"name": "mirrors"},
            "spec": {"imageDigestMirrors": [{"source": "nvcr.io", "mirrors": ["m.local"]}]},
        }
    )
    result = _run(fake)
    assert result.outcome is Outcome.PASS
    assert "registry mirror (ImageDigestMirrorSet mirrors mirrors nvcr.io)" in "\n".join(result.log)


def test_ext_image_pull_names_what_it_could_not_read() -> None:
    fake = _fake()
    fake.unserve("node.k8s.io/v1")
    result = _run(fake)
    assert result.outcome is Outcome.MANUAL
    assert "could not read: RuntimeClass (node.k8s.io/v1 not served)" in result.reason
