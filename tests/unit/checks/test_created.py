"""kaic.checks.created: what a check made, as evidence and then deleted."""

from __future__ import annotations

import yaml

from kaic.checks.created import Created, trimmed
from kaic.errors import ClusterError
from tests.fakes import FakeCluster, fake_check_context


def _obj(kind: str, av: str, name: str) -> dict[str, object]:
    return {
        "apiVersion": av,
        "kind": kind,
        "metadata": {"name": name, "namespace": "kaic-t", "managedFields": [{"manager": "x"}]},
    }


def test_the_current_objects_are_kept_kind_by_kind_without_managed_fields() -> None:
    fake = FakeCluster()
    fake.serve("resource.k8s.io/v1", ("resourceclaims", "ResourceClaim", True))
    ctx = fake_check_context(fake, "gpu_sharing")
    made = Created(ctx)
    for kind, av, name in [
        ("ResourceClaim", "resource.k8s.io/v1", "c1"),
        ("Pod", "v1", "p1"),
        ("Pod", "v1", "gone"),
        ("ResourceClaim", "resource.k8s.io/v1", "c2"),
    ]:
        if name != "gone":
            fake.create(_obj(kind, av, name))
        made.add(av, kind, name)
    made.add("v1", "Pod", "p1")  # twice: kept once
    made.record("objects.yaml", ["Pod", "ResourceClaim"])
    (ev,) = ctx.evidence_items
    docs = list(yaml.safe_load_all(ev.content))
    assert [d["metadata"]["name"] for d in docs] == ["p1", "c1", "c2"]
    assert all("managedFields" not in d["metadata"] for d in docs)
    assert made.names("Pod") == ["p1", "gone"]


def test_nothing_is_recorded_when_everything_is_gone_and_delete_failures_are_logged() -> None:
    fake = FakeCluster()
    ctx = fake_check_context(fake, "gpu_sharing")
    made = Created(ctx)
    made.add("v1", "Pod", "p")
    made.add("resource.k8s.io/v1", "ResourceClaim", "c")
    deleted: list[str] = []

    def delete(av: str, kind: str, name: str, ns: str | None = None, **_: object) -> bool:
        deleted.append(kind)
        if kind == "ResourceClaim":
            raise ClusterError("the server is gone")
        return True

    fake.delete = delete  # type: ignore[method-assign]
    made.record("objects.yaml")
    assert ctx.evidence_items == []
    made.delete_all(["ResourceClaim", "Pod"])
    assert deleted == ["ResourceClaim", "Pod"]
    assert any("could not delete resourceclaim c: the server is gone" in m for m in ctx.log_lines)


def test_trimmed_copies() -> None:
    obj = _obj("Pod", "v1", "p")
    out = trimmed(obj)
    assert "managedFields" not in out["metadata"] and "managedFields" in obj["metadata"]  # type: ignore[operator]
