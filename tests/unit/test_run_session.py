"""The run session below the CLI: a typed request in, a record out, with one
server-version call, the catalog warning as a value, check options judged before
anything runs, and frozen snapshots for observers."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from pathlib import Path
from typing import Any

import pytest

from kaic.checks.base import CheckContext, CheckOption, Deadline, Registry, check
from kaic.cluster.api import ClusterAPI
from kaic.cluster.forwarding import ForwardingCluster
from kaic.errors import UsageError
from kaic.model import Outcome
from kaic.report import BundleWriter
from kaic.runner import (
    CheckDone,
    Event,
    PreflightFailed,
    RunFinished,
    RunRequest,
    RunSession,
    read_record,
)
from kaic.runner.guard import GuardedCluster
from tests.fakes import FakeCluster


class CountingCluster(FakeCluster):
    def __init__(self, version: str = "v1.36.2") -> None:
        super().__init__(version)
        self.version_calls = 0
        self.context = "test-ctx"
        self.server = "https://127.0.0.1:1"

    def server_version(self) -> str:
        self.version_calls += 1
        return super().server_version()


def _registry() -> Registry:
    reg = Registry()

    def works(ctx: CheckContext) -> None:
        with ctx.subtest("Works"):
            ctx.cluster.create(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "probe", "namespace": ctx.namespace},
                }
            )

    check(
        "ai_inference",
        test="TestGatewayAPIInference",
        registry=reg,
        timeout_s=30,
        options=(
            CheckOption("probe-count", "how many", default="3"),
            CheckOption("probe-size", "pods", kind="integer"),
        ),
    )(works)
    return reg


def _session(
    tmp_path: Path, cluster: FakeCluster | None = None, **kw: Any
) -> tuple[RunSession, list[Any]]:
    connected: list[Any] = []
    fake = cluster or CountingCluster()

    def connect(kubeconfig: str | None, context: str | None) -> Any:
        connected.append((kubeconfig, context))
        return fake

    kw.setdefault("focus", "^ai_inference$")
    kw.setdefault("output_dir", tmp_path / "out")
    return RunSession(RunRequest(**kw), _registry(), connect=connect), connected


def test_a_session_asks_the_server_version_once_and_records_the_request(tmp_path: Path) -> None:
    fake = CountingCluster()
    session, _ = _session(tmp_path, fake, check_options={"probe-count": "5"}, parallel=2)
    done = session.run(session.prepare(), writer=BundleWriter)
    assert fake.version_calls == 1
    assert done.record.results[0].result.outcome is Outcome.PASS
    assert done.output_dir == tmp_path / "out" and done.exit_code == 0
    doc = json.loads((tmp_path / "out" / "run.json").read_text())
    assert doc["options"] == session.request.to_json()
    assert doc["options"]["check_options"] == {"probe-count": "5"}
    assert doc["cluster"] == {
        "server_version": "v1.36.2",
        "context": "test-ctx",
        "server": "https://127.0.0.1:1",
    }


def test_the_recorded_options_give_back_the_request() -> None:
    request = RunRequest(
        level="should",
        focus="gang",
        parallel=3,
        timeout_scale=1.5,
        keep_resources=True,
        check_options={"gang-image": "busybox"},
    )
    assert RunRequest.from_json(request.to_json()) == request
    with pytest.raises(UsageError, match="--parallel"):
        RunRequest.from_json({"parallel": "many"})


def test_a_server_newer_than_the_catalog_gives_the_warning_as_a_value(tmp_path: Path) -> None:
    session, _ = _session(tmp_path, CountingCluster("v1.99.0"))
    prepared = session.prepare()
    assert prepared.catalog_warning is not None
    assert "newer than the newest catalog" in prepared.catalog_warning


def test_planning_with_a_version_needs_no_cluster(tmp_path: Path) -> None:
    session, connected = _session(tmp_path, version="1.36")
    prepared = session.prepare(need_cluster=False)
    assert connected == [] and prepared.cluster is None
    assert [i.id for i in prepared.plan.items] == ["ai_inference"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"probe-count": "abc"}, "--probe-count must be a number of 0 or more, got 'abc'"),
        ({"probe-count": "nan"}, "--probe-count must be a number"),
        ({"probe-size": "1.5"}, "--probe-size must be a whole number above 0, got '1.5'"),
        ({"probe-size": "0"}, "--probe-size must be a whole number above 0"),
        ({"no-such": "x"}, "--no-such is not an option of any check"),
    ],
)
def test_a_bad_check_option_is_a_usage_error_before_connecting(
    tmp_path: Path, options: dict[str, str], message: str
) -> None:
    session, connected = _session(tmp_path, check_options=options)
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        session.prepare()
    assert connected == []


@pytest.mark.parametrize("scale", [math.nan, math.inf, -math.inf, 0.0, -1.0])
def test_a_timeout_scale_that_is_not_a_positive_finite_number_is_refused(scale: float) -> None:
    with pytest.raises(UsageError, match="--timeout-scale must be a positive number"):
        RunRequest(timeout_scale=scale)


def test_the_level_is_accepted_in_any_case() -> None:
    assert RunRequest(level="MUST").level == "must"
    with pytest.raises(UsageError, match="--level must be one of"):
        RunRequest(level="MAYBE")


def test_preflight_failure_carries_the_missing_permissions_and_runs_nothing(tmp_path: Path) -> None:
    fake = CountingCluster()
    fake.denied.add(("create", "namespaces", ""))
    session, _ = _session(tmp_path, fake)
    with pytest.raises(PreflightFailed) as e:
        session.run(session.prepare(), writer=BundleWriter)
    assert e.value.context == "test-ctx"
    assert [str(m.permission) for m in e.value.missing] == ["create namespaces"]
    assert not (tmp_path / "out").exists()


def test_a_non_empty_output_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    session, _ = _session(tmp_path)
    with pytest.raises(UsageError, match="is not empty"):
        session.run(session.prepare())


def test_observers_get_frozen_snapshots_that_later_events_do_not_change(tmp_path: Path) -> None:
    events: list[Event] = []
    session, _ = _session(tmp_path, focus="^(ai_inference|gpu_sharing)$")
    done = session.run(session.prepare(), observers=[events.append])
    snapshots = [e.record for e in events if isinstance(e, CheckDone)]
    assert [len(s.results) for s in snapshots] == [1, 2]
    assert isinstance(events[-1], RunFinished) and events[-1].record == done.record
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshots[0].interrupted = True  # type: ignore[misc]
    assert snapshots[0].finished_at is None and done.record.finished_at is not None


def test_the_written_run_json_reads_back_through_the_one_reader(tmp_path: Path) -> None:
    session, _ = _session(tmp_path)
    done = session.run(session.prepare(), writer=BundleWriter)
    again = read_record(tmp_path / "out")
    assert again.dumps() == (tmp_path / "out" / "run.json").read_text()
    assert again.run_id == done.record.run_id and again.exit_code == done.exit_code


# -- the cluster decorators and the deadline ------------------------------------------------


def _protocol_methods() -> list[str]:
    return [
        n for n, v in vars(ClusterAPI).items() if inspect.isfunction(v) and not n.startswith("_")
    ]


def test_the_forwarding_base_forwards_every_cluster_call() -> None:
    missing = [n for n in _protocol_methods() if n not in vars(ForwardingCluster)]
    assert missing == []


def test_a_cancelled_deadline_stops_the_context_and_every_guarded_call() -> None:
    from kaic import catalog
    from kaic.checks.base import Cancelled

    deadline = Deadline(60.0)
    guarded = GuardedCluster(FakeCluster(), deadline)
    spec = _registry().find("ai_inference", "1.36")
    assert spec is not None
    ctx = CheckContext(
        cluster=guarded,
        requirement=catalog.load("1.36").get("ai_inference"),
        spec=spec,
        catalog_version="1.36",
        run_id="r",
        namespace="ns",
        deadline=deadline,
    )
    assert ctx.timeout_s == 60.0 and 59 < ctx.remaining() <= 60
    deadline.cancel()
    with pytest.raises(Cancelled, match="interrupted"):
        ctx.check_cancelled()
    with pytest.raises(Cancelled, match="interrupted"):
        guarded.server_version()
    with pytest.raises(Cancelled, match="interrupted"):
        guarded.list("v1", "Pod", "ns")
