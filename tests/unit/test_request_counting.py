"""API requests are counted by scope, verb and resource (kaic.cluster.counting)."""

from __future__ import annotations

import threading

import pytest

from kaic.cluster.counting import RUN_SCOPE, SCOPE, RequestCounts, request_key
from kaic.cluster.tracking import TrackingCluster
from kaic.errors import InputError
from kaic.runner.record import RunRecord


@pytest.mark.parametrize(
    ("method", "path", "query", "key"),
    [
        ("GET", "/api/v1/namespaces/x/pods", [], "list pods"),
        ("GET", "/api/v1/namespaces/x/pods", [("watch", "true")], "watch pods"),
        ("GET", "/api/v1/nodes?limit=500&continue=abc", [], "list nodes"),
        ("GET", "/api/v1/nodes/n1", [], "get nodes"),
        ("PATCH", "/api/v1/nodes/n1/status", [], "patch nodes/status"),
        ("POST", "/api/v1/namespaces", [], "create namespaces"),
        ("DELETE", "/api/v1/namespaces/foo", [], "delete namespaces"),
        ("GET", "/api/v1/namespaces/foo", [], "get namespaces"),
        ("DELETE", "/api/v1/namespaces/x/pods", [], "deletecollection pods"),
        ("POST", "/api/v1/namespaces/x/pods/p/exec", [], "create pods/exec"),
        (
            "POST",
            "/api/v1/namespaces/x/serviceaccounts/s/token",
            [],
            "create serviceaccounts/token",
        ),
        (
            "GET",
            "/apis/resource.k8s.io/v1/resourceslices",
            [("limit", 500)],
            "list resourceslices.resource.k8s.io",
        ),
        (
            "PUT",
            "/apis/apps/v1/namespaces/x/deployments/d/scale",
            [],
            "update deployments/scale.apps",
        ),
        ("GET", "/api", [], "get discovery"),
        ("GET", "/apis", [], "get discovery"),
        ("GET", "/apis/apps/v1", [], "get discovery"),
        ("GET", "/version", [], "get nonresource"),
    ],
)
def test_request_key(method: str, path: str, query: list[tuple[str, object]], key: str) -> None:
    assert request_key(method, path, query) == key


def test_counts_by_scope_and_since_a_snapshot() -> None:
    counts = RequestCounts()
    counts.add("GET", "/api/v1/nodes")
    before = counts.snapshot()
    counts.add("GET", "/api/v1/nodes")
    token = SCOPE.set("dra_support")
    try:
        counts.add("GET", "/apis/resource.k8s.io/v1/resourceslices")
        counts.add("GET", "/apis/resource.k8s.io/v1/resourceslices")
    finally:
        SCOPE.reset(token)
    assert counts.since(before) == {
        "dra_support": {"list resourceslices.resource.k8s.io": 2},
        RUN_SCOPE: {"list nodes": 1},
    }


def test_scope_is_per_thread() -> None:
    counts = RequestCounts()
    seen: list[str] = []

    def work() -> None:
        SCOPE.set("gang_scheduling")
        counts.add("GET", "/api/v1/pods")
        seen.append(SCOPE.get())

    t = threading.Thread(target=work)
    t.start()
    t.join()
    counts.add("GET", "/api/v1/pods")
    assert seen == ["gang_scheduling"]
    assert SCOPE.get() == RUN_SCOPE
    assert counts.since({}) == {
        "gang_scheduling": {"list pods": 1},
        RUN_SCOPE: {"list pods": 1},
    }


def test_tracking_cluster_sets_the_checks_scope() -> None:
    class Spy:
        def __init__(self) -> None:
            self.scopes: list[str] = []

        def server_version(self) -> str:
            self.scopes.append(SCOPE.get())
            return "v1.36.2"

    spy = Spy()
    result: list[str] = []

    def work() -> None:
        tracker = TrackingCluster(spy, "run-1", "ai_inference")  # type: ignore[arg-type]
        result.append(tracker.server_version())

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert result == ["v1.36.2"]
    assert spy.scopes == ["ai_inference"]


def _doc(api_requests: object) -> dict[str, object]:
    return {
        "schema": "kaic.io/run/v1",
        "run_id": "r",
        "started_at": "2026-12-01T00:00:00Z",
        "catalog_version": "1.36",
        "results": [],
        "api_requests": api_requests,
    }


def test_run_json_keeps_api_requests() -> None:
    rec = RunRecord.from_json(_doc({"run": {"list nodes": 3}}), "run.json")
    assert rec.api_requests == {"run": {"list nodes": 3}}
    assert rec.to_json()["api_requests"] == {"run": {"list nodes": 3}}


@pytest.mark.parametrize(
    "bad", [[], {"run": []}, {"run": {"list nodes": -1}}, {"run": {"x": True}}]
)
def test_run_json_rejects_malformed_api_requests(bad: object) -> None:
    with pytest.raises(InputError, match="api_requests"):
        RunRecord.from_json(_doc(bad), "run.json")
