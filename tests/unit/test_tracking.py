"""Run bookkeeping: labels on everything a run creates, cleanup in reverse, leftovers."""

from __future__ import annotations

from typing import Any

from kaic.cluster.api import MANAGED_BY_LABEL, RUN_ID_LABEL
from kaic.cluster.tracking import (
    CHECK_LABEL,
    ObjectRef,
    TrackingCluster,
    delete_leftovers,
    find_leftovers,
    stamp,
)
from tests.fakes import FakeCluster


def _ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _cm(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}}


def test_stamp_labels_the_object_and_its_pod_template_without_changing_the_input() -> None:
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"app": "x"}},
        "spec": {"template": {"metadata": {"labels": {"app": "x"}}}},
    }
    out = stamp(deploy, "run1", "gang_scheduling")
    want = {
        "app": "x",
        MANAGED_BY_LABEL: "kaic",
        RUN_ID_LABEL: "run1",
        CHECK_LABEL: "gang-scheduling",
    }
    assert out["metadata"]["labels"] == want
    assert out["spec"]["template"]["metadata"]["labels"] == want
    assert deploy["metadata"]["labels"] == {"app": "x"}


def test_everything_created_is_labelled_and_recorded_but_dry_runs_are_not_recorded() -> None:
    fake = FakeCluster()
    t = TrackingCluster(fake, "run1", "dra_support")
    t.create(_ns("a"))
    t.create(_cm("c", "a"))
    t.create(_cm("dry", "a"), dry_run=True)
    assert t.created == [ObjectRef("v1", "Namespace", "a"), ObjectRef("v1", "ConfigMap", "c", "a")]
    stored = fake.get("v1", "ConfigMap", "c", "a")
    assert stored is not None
    assert stored["metadata"]["labels"][RUN_ID_LABEL] == "run1"


def test_cleanup_deletes_newest_first_namespaces_last_and_is_idempotent() -> None:
    fake = FakeCluster()
    fake.serve("resource.k8s.io/v1", ("deviceclasses", "DeviceClass", False))
    t = TrackingCluster(fake, "run1")
    t.create(_ns("a"))
    t.create(
        {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "dc"}}
    )
    t.create(_cm("c", "a"))
    report = t.cleanup(wait_timeout=1)
    assert report.ok
    deletes = [args for call, args in fake.calls if call == "delete"]
    # the ConfigMap goes with its namespace; the cluster-scoped DeviceClass first
    assert deletes == [("DeviceClass", "dc", None), ("Namespace", "a", None)]
    assert fake.store == {}
    assert t.cleanup().deleted == []


def test_an_object_deleted_by_the_check_itself_is_not_deleted_again() -> None:
    fake = FakeCluster()
    t = TrackingCluster(fake, "run1")
    t.create(_ns("a"))
    t.delete("v1", "Namespace", "a")
    assert t.created == []


def test_leftovers_are_found_by_label_and_filtered_by_run_id() -> None:
    fake = FakeCluster()
    one, two = TrackingCluster(fake, "one", "x"), TrackingCluster(fake, "two", "y")
    one.create(_ns("ns-one"))
    one.create(_cm("inside", "ns-one"))
    two.create(_cm("loose", "default"))
    fake.add(_cm("not-ours", "default"))
    every = find_leftovers(fake)
    assert sorted(str(lo.ref) for lo in every) == ["ConfigMap default/loose", "Namespace ns-one"]
    only_one = find_leftovers(fake, run_id="one")
    assert [(str(lo.ref), lo.run_id, lo.check) for lo in only_one] == [
        ("Namespace ns-one", "one", "x")
    ]
    report = delete_leftovers(fake, every, wait_timeout=1)
    assert report.ok and find_leftovers(fake) == []
    assert fake.get("v1", "ConfigMap", "not-ours", "default") is not None


def test_an_unreachable_cluster_is_asked_once_and_every_object_is_reported() -> None:
    from kaic.errors import ClusterUnreachableError

    fake = FakeCluster()
    t = TrackingCluster(fake, "run1")
    t.create(_ns("a"))
    t.create(_ns("b"))
    asked: list[str] = []

    def gone(api_version: str, kind: str, name: str, *args: Any, **kw: Any) -> bool:
        asked.append(name)
        raise ClusterUnreachableError("cannot reach the cluster at https://x: connection refused")

    fake.delete = gone  # type: ignore[method-assign]
    report = t.cleanup(wait_timeout=1)
    assert asked == ["b"]
    assert [(str(ref), why) for ref, why in report.failed] == [
        ("Namespace b", "cannot reach the cluster at https://x: connection refused"),
        ("Namespace a", "cannot reach the cluster at https://x: connection refused"),
    ]
