"""``kaic run`` with one extra check for the fault tests (tests/lab/test_faults.py).

The check (under the ``ai_inference`` id) creates a ConfigMap ``before`` in its
namespace, says ``fault check waiting``, waits up to ``KAIC_FAULT_WAIT_S`` seconds
(default 90) for a ConfigMap ``go`` (the test creates it once the fault is over), then
creates ``after`` and passes. ``KAIC_FAULT_HOLD=1``: ``before`` carries a finalizer
nobody removes (cleanup cannot finish). ``KAIC_FAULT_CLEANUP_S``: the cleanup wait.

Usage: python run_with_fault_check.py KAIC-RUN-ARGS...
"""

from __future__ import annotations

import dataclasses
import os
import sys

import kaic.cli.run as cli_run
from kaic.checks.base import CheckContext, Registry, check
from kaic.cli.main import main

HOLD = "kaic.io/faults-hold"
registry = Registry()


@check("ai_inference", test="TestGatewayAPIInference", registry=registry, timeout_s=100)
def fault(ctx: CheckContext) -> None:
    """Creates, waits for the test's go, creates again."""
    with ctx.subtest("RidesOutTheFault"):
        before: dict[str, object] = {"name": "before", "namespace": ctx.namespace}
        if os.environ.get("KAIC_FAULT_HOLD"):
            before["finalizers"] = [HOLD]
        ctx.cluster.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": before})
        ctx.log("fault check waiting")
        ctx.cluster.wait_for(
            "v1",
            "ConfigMap",
            "go",
            ctx.namespace,
            lambda o: o is not None,
            timeout=float(os.environ.get("KAIC_FAULT_WAIT_S", "90")),
            what="the test's go",
        )
        ctx.cluster.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "after", "namespace": ctx.namespace},
            }
        )


cleanup_s = os.environ.get("KAIC_FAULT_CLEANUP_S")
if cleanup_s:
    request = cli_run.RunRequest

    def with_cleanup_wait(**kw: object) -> object:
        return dataclasses.replace(request(**kw), cleanup_timeout_s=float(cleanup_s))  # type: ignore[arg-type]

    cli_run.RunRequest = with_cleanup_wait  # type: ignore[assignment,misc]
cli_run.load_builtin_checks = lambda: registry  # type: ignore[assignment]
main(sys.argv[1:])
