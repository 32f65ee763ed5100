"""Running a command in a test pod (pods/exec), the way every check does it.

Owns: the retry policy for an exec into a pod that has just started (a container may not
accept exec at once, and a runtime may answer with a transient error), the transcript line
a check keeps as evidence. Must not know any requirement.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import TypeVar

from kaic.checks.base import CheckContext, Subtest
from kaic.cluster.api import ClusterAPI, ExecResult
from kaic.errors import ClusterError, NotFoundError, PermissionDeniedError

EXEC_ATTEMPTS = 3
"""Tries of one exec before a check gives up; attempt ``n`` waits ``n`` seconds first."""


def shown_command(namespace: str, pod: str, command: Sequence[str], container: str | None) -> str:
    """The ``kubectl exec`` line a person would type to repeat ``command``."""
    c = f" -c {container}" if container else ""
    return f"kubectl exec -n {namespace} {pod}{c} -- {shlex.join(command)}"


def transcript_entry(shown: str, r: ExecResult) -> str:
    """One exec as evidence: the command, its output, its exit code."""
    return (
        f"$ {shown}\n{r.stdout}"
        + (f"[stderr]\n{r.stderr}" if r.stderr else "")
        + f"[exit code {r.exit_code}]\n"
    )


def exec_with_retries(
    ctx: CheckContext,
    cluster: ClusterAPI,
    namespace: str,
    pod: str,
    command: Sequence[str],
    *,
    container: str | None = None,
    timeout: float = 60.0,
    accept: Callable[[ExecResult], bool] = lambda r: r.exit_code == 0,
    attempts: int = EXEC_ATTEMPTS,
    transcript: list[str] | None = None,
) -> ExecResult:
    """Run ``command`` in ``pod`` until ``accept`` takes its result, at most ``attempts``
    times. Returns the accepted result, or the last one when none was accepted; raises
    the last ``ClusterError`` when no attempt got a result. Missing permissions and a
    missing pod are not retried. Each attempt is appended to ``transcript``."""
    shown = shown_command(namespace, pod, command, container)
    last: ExecResult | None = None
    error: ClusterError | None = None
    for attempt in range(max(1, attempts)):
        if attempt:
            ctx.sleep(float(attempt))
        try:
            r = cluster.exec(
                namespace, pod, command, container=container, timeout=ctx.budget(timeout)
            )
        except (PermissionDeniedError, NotFoundError):
            raise
        except ClusterError as e:
            error = e
            if transcript is not None:
                transcript.append(f"$ {shown}\n(exec failed: {e})\n")
            continue
        if transcript is not None:
            transcript.append(transcript_entry(shown, r))
        if accept(r):
            return r
        last = r
    if last is not None:
        return last
    assert error is not None
    raise error


T = TypeVar("T")


def probe(
    ctx: CheckContext,
    t: Subtest,
    pod: str,
    script: str,
    parse: Callable[[ExecResult], T | None],
    unparsed: Callable[[ExecResult], str],
    *,
    container: str | None = None,
    timeout: float = 60.0,
    attempts: int = EXEC_ATTEMPTS,
    transcript: list[str] | None = None,
) -> T:
    """Run a probe script (``sh -c``) in ``pod`` of the check's namespace until ``parse``
    reads its output; the sub-test ends in ERROR when no exec got through or no output
    could be read (``unparsed`` says why, from the last result)."""
    try:
        r = exec_with_retries(
            ctx,
            ctx.cluster,
            ctx.namespace,
            pod,
            ["sh", "-c", script],
            container=container,
            timeout=timeout,
            accept=lambda r: parse(r) is not None,
            attempts=attempts,
            transcript=transcript,
        )
    except ClusterError as e:
        t.error(f"exec into pod {pod} failed: {e} (tried {attempts} times)")
    out = parse(r)
    if out is None:
        t.error(f"{unparsed(r)} (tried {attempts} times)")
    return out
