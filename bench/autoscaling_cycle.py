"""Benchmark: one scale-up/scale-down cycle of cluster_autoscaling (Karpenter on the lab)
and one of pod_autoscaling (the HPA on custom metrics from Prometheus through
prometheus-adapter), phase by phase.

Starts a lab ``bench-autoscaling`` (2 GPU nodes × 1 GPU, ``--with
node-autoscaler,prometheus,prometheus-adapter``) unless ``--lab NAME`` names a running
one, runs the checks through ``run_check`` with the real cluster adapter, prints each
phase's duration, and takes its own lab down.
Run: ``python bench/autoscaling_cycle.py [--lab NAME] [--only REQUIREMENT]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

from kaic import catalog
from kaic.checks import load_builtin_checks
from kaic.checks.base import CheckContext, run_check
from kaic.cluster.client import connect
from kaic.cluster.tracking import TrackingCluster
from kaic.lab import Lab, LabOptions, programs
from kaic.lab.components.nodes import AUTOSCALED_POOL_OPTIONS
from kaic.lab.options import default_version


def run(lab: Lab, requirement: str, options: dict[str, str]) -> None:
    cluster = connect(str(lab.kubeconfig))
    ns = f"bench-{requirement[:3]}-{uuid.uuid4().hex[:6]}"
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    spec = load_builtin_checks().find(requirement, "1.36")
    assert spec is not None
    ctx = CheckContext(
        cluster=TrackingCluster(cluster, f"bench-{ns}", requirement),
        requirement=catalog.load("1.36").get(requirement),
        spec=spec,
        catalog_version="1.36",
        run_id=f"bench-{ns}",
        namespace=ns,
        options=options,
        timeout_s=1200,
    )
    t = time.monotonic()
    result = run_check(ctx)
    wall = time.monotonic() - t
    cluster.delete("v1", "Namespace", ns)
    print(f"{requirement}: {result.outcome.value} in {wall:.1f}s {result.reason}")
    phases = json.loads(next(e.content for e in result.evidence if e.name == "phases.json"))
    for p in phases:
        print(f"  {p['phase']:<24} {p['duration_s']:8.2f}s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--lab", help="a running lab with --with node-autoscaler,prometheus,prometheus-adapter"
    )
    ap.add_argument("--only", choices=("cluster_autoscaling", "pod_autoscaling"))
    args = ap.parse_args()
    needs = {
        "cluster_autoscaling": ("karpenter",),
        "pod_autoscaling": ("prometheus", "prometheus-adapter"),
    }
    wanted = [args.only] if args.only else list(needs)
    for requirement in list(wanted):
        missing = [
            p for p in needs[requirement] if not programs.binary_of(p, default_version()).is_file()
        ]
        if missing:
            print(f"skipped {requirement}: not built: {', '.join(missing)} (kaic lab build)")
            wanted.remove(requirement)
    if not wanted:
        return 0
    own = args.lab is None
    lab = (
        Lab.load(args.lab)
        if args.lab
        else Lab(
            LabOptions(
                name="bench-autoscaling",
                nodes=2,
                gpus_per_node=1,
                cpu_nodes=1,
                accelerators="device-plugin",
                with_=frozenset({"node-autoscaler", "prometheus", "prometheus-adapter"}),
            )
        )
    )
    try:
        if own:
            lab.up()
        if "cluster_autoscaling" in wanted:
            run(lab, "cluster_autoscaling", dict(AUTOSCALED_POOL_OPTIONS))
        if "pod_autoscaling" in wanted:
            run(lab, "pod_autoscaling", {})
    finally:
        if own:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
