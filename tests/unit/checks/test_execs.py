"""exec into a test pod: transient failures are retried, permanent ones are not."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from kaic.checks.execs import exec_with_retries
from kaic.cluster.api import ExecResult
from kaic.errors import ClusterError, PermissionDeniedError
from tests.fakes import FakeCluster, fake_check_context


def _cluster(answers: list[ExecResult | ClusterError]) -> tuple[FakeCluster, list[str]]:
    fake = FakeCluster()
    seen: list[str] = []

    def handler(ns: str, pod: str, cmd: Sequence[str], container: str | None) -> ExecResult:
        seen.append(f"{ns}/{pod}/{container}")
        a = answers.pop(0)
        if isinstance(a, ClusterError):
            raise a
        return a

    fake.exec_handler = handler
    return fake, seen


def _sleepless(fake: FakeCluster):  # type: ignore[no-untyped-def]
    ctx = fake_check_context(fake, "pod_autoscaling")
    ctx.sleep = lambda s: None  # type: ignore[method-assign]
    return ctx


def test_a_transient_exec_error_is_retried_and_kept_in_the_transcript() -> None:
    fake, seen = _cluster(
        [ClusterError("exec in pod ns/p: Internal error"), ExecResult("ok", "", 0)]
    )
    transcript: list[str] = []
    r = exec_with_retries(
        _sleepless(fake),
        fake,
        "ns",
        "p",
        ["sh", "-c", "true"],
        container="c",
        transcript=transcript,
    )
    assert r.exit_code == 0 and len(seen) == 2
    assert transcript[0].startswith("$ kubectl exec -n ns p -c c -- sh -c true\n(exec failed: ")
    assert transcript[1].endswith("[exit code 0]\n")


def test_the_last_result_is_returned_when_none_is_accepted() -> None:
    fake, seen = _cluster(
        [ExecResult("", "e1", 1), ExecResult("", "e2", 2), ExecResult("", "e3", 3)]
    )
    r = exec_with_retries(_sleepless(fake), fake, "ns", "p", ["false"])
    assert r.exit_code == 3 and len(seen) == 3


def test_the_last_error_is_raised_when_every_attempt_failed() -> None:
    fake, seen = _cluster([ClusterError("a"), ClusterError("b"), ClusterError("c")])
    with pytest.raises(ClusterError, match=r"^c$"):
        exec_with_retries(_sleepless(fake), fake, "ns", "p", ["true"])
    assert len(seen) == 3


def test_missing_permission_is_not_retried() -> None:
    fake, seen = _cluster([PermissionDeniedError("forbidden"), ExecResult("ok", "", 0)])
    with pytest.raises(PermissionDeniedError):
        exec_with_retries(_sleepless(fake), fake, "ns", "p", ["true"])
    assert len(seen) == 1
