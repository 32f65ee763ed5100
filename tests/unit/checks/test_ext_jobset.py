"""ext_jobset against the fake cluster: a JobSet controller that runs the JobSet, one
that is missing, one that leaves Jobs out, one whose JobSet fails."""

from __future__ import annotations

from kaic.checks.ext_jobset import API_VERSION, JOBSET_LABEL, NAME, REPLICATED, jobset
from kaic.model import CheckResult, Outcome
from tests.fakes import FakeCluster, run_fake_check

NS = "kaic-t"


def _owner(kind: str, obj: dict) -> dict:  # type: ignore[type-arg]
    return {
        "kind": kind,
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
    }


def _controller(fake: FakeCluster, *, jobs: int | None = None, fail: bool = False) -> None:
    """A JobSet controller (and the Job controller and kubelet below it)."""

    def act(c: FakeCluster) -> None:
        js = c.get(API_VERSION, "JobSet", NAME, NS)
        if js is None or js.get("status", {}).get("conditions"):
            return
        wanted = [(n, i) for n, r in REPLICATED for i in range(r)][:jobs]
        for n, i in wanted:
            job = c.add(
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {
                        "name": f"{NAME}-{n}-{i}",
                        "namespace": NS,
                        "ownerReferences": [_owner("JobSet", js)],
                    },
                }
            )
            c.add(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{NAME}-{n}-{i}-0-abcde",
                        "namespace": NS,
                        "labels": {JOBSET_LABEL: NAME},
                        "ownerReferences": [_owner("Job", job)],
                    },
                    "status": {"phase": "Failed" if fail else "Succeeded"},
                }
            )
        if jobs is None:
            cond = (
                {"type": "Failed", "status": "True", "reason": "FailedJobs", "message": "1 failed"}
                if fail
                else {"type": "Completed", "status": "True", "reason": "AllJobsCompleted"}
            )
            js["status"] = {"conditions": [cond]}
            c.add(js)

    fake.controllers.append(act)


def _fake() -> FakeCluster:
    fake = FakeCluster()
    fake.serve(API_VERSION, ("jobsets", "JobSet", True))
    return fake


def _run(fake: FakeCluster) -> CheckResult:
    return run_fake_check(
        fake,
        "ext_jobset",
        namespace=NS,
        options={"jobset-controller-timeout": "0.3", "jobset-complete-timeout": "0.3"},
    )


def _outcomes(r: CheckResult) -> dict[str, Outcome]:
    return {s.name: s.outcome for s in r.subresults}


def test_passes_when_a_controller_runs_the_jobset_to_completion() -> None:
    fake = _fake()
    _controller(fake)
    r = _run(fake)
    assert r.outcome is Outcome.PASS, r.reason
    assert list(_outcomes(r)) == ["APIServed", "ControllerCreatesJobs", "JobSetCompletes"]
    created = fake.get(API_VERSION, "JobSet", NAME, NS)
    assert created is not None
    assert [j["replicas"] for j in created["spec"]["replicatedJobs"]] == [1, 2]
    assert {e.name for e in r.evidence} >= {"objects.yaml", "events.txt"}


def test_fails_when_the_api_is_not_served() -> None:
    r = _run(FakeCluster())
    assert r.outcome is Outcome.FAIL
    assert _outcomes(r)["APIServed"] is Outcome.FAIL
    assert "does not serve JobSet" in r.subresults[0].reason
    assert _outcomes(r)["ControllerCreatesJobs"] is Outcome.SKIP


def test_fails_naming_the_missing_controller_when_nothing_acts() -> None:
    r = _run(_fake())
    assert r.outcome is Outcome.FAIL
    sub = r.subresults[1]
    assert sub.outcome is Outcome.FAIL and "no controller acted on the JobSet" in sub.reason
    assert _outcomes(r)["JobSetCompletes"] is Outcome.SKIP


def test_fails_when_the_controller_creates_only_some_jobs() -> None:
    fake = _fake()
    _controller(fake, jobs=2)
    r = _run(fake)
    assert r.subresults[1].outcome is Outcome.FAIL
    assert "created 2 of 3 Jobs" in r.subresults[1].reason
    assert f"{NAME}-workers-1" in r.subresults[1].reason


def test_fails_when_the_jobset_fails() -> None:
    fake = _fake()
    _controller(fake, fail=True)
    r = _run(fake)
    assert _outcomes(r)["JobSetCompletes"] is Outcome.FAIL
    assert "the JobSet failed: FailedJobs: 1 failed" in r.subresults[2].reason


def test_pods_not_created_by_the_jobs_fail_the_completion() -> None:
    fake = _fake()
    _controller(fake)
    fake.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "stray", "namespace": NS, "labels": {JOBSET_LABEL: NAME}},
            "status": {"phase": "Succeeded"},
        }
    )
    r = _run(fake)
    assert "not created by its Jobs: stray" in r.subresults[2].reason


def test_the_jobset_runs_the_image_given() -> None:
    js = jobset(NS, "example.com/tools:1")
    images = {
        c["image"]
        for rj in js["spec"]["replicatedJobs"]
        for c in rj["template"]["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"example.com/tools:1"}
