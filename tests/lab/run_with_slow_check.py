"""``kaic run`` with one extra, slow check (for the interruption test): it creates a
ConfigMap in its namespace and a cluster-scoped DeviceClass, says ``slow check waiting``,
then waits up to two minutes for something that never happens.

Usage: python run_with_slow_check.py KAIC-RUN-ARGS...
"""

from __future__ import annotations

import sys

import kaic.cli.run as cli_run
from kaic.checks.base import CheckContext, Registry, check
from kaic.cli.main import main

registry = Registry()


@check("ai_inference", test="TestGatewayAPIInference", registry=registry, timeout_s=300)
def slow(ctx: CheckContext) -> None:
    """Creates objects, then waits (interrupted by the test)."""
    with ctx.subtest("CreatesAndWaits"):
        ctx.cluster.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "slow", "namespace": ctx.namespace},
            }
        )
        ctx.cluster.create(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "DeviceClass",
                "metadata": {"name": f"kaic-slow-{ctx.run_id}"},
                "spec": {"selectors": [{"cel": {"expression": 'device.driver == "x.invalid"'}}]},
            }
        )
        ctx.log("slow check waiting")
        ctx.cluster.wait_for(
            "v1",
            "ConfigMap",
            "never",
            ctx.namespace,
            lambda o: o is not None,
            timeout=120,
            what="a ConfigMap",
        )


cli_run.load_builtin_checks = lambda: registry  # type: ignore[assignment]
main(sys.argv[1:])
