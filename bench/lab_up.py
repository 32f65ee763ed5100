"""Benchmark: how long ``kaic lab up`` takes to a ready lab, and how much memory it uses.

Usage: ``.venv/bin/python bench/lab_up.py [--runs 3] [--pods 50] [--json]``

Each run starts a fresh lab (new name and state directory; binaries and parsed
manifests already cached = "warm"), samples the summed RSS of all lab processes every
0.2 s while it comes up and while ``--pods`` GPU pods are created and run, reports the
time to ready, the time of an idempotent second ``up``, the time of ``down``, and the
peak RSS. Prints a Markdown table (or JSON) for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from _peak import Peak

from kaic.lab import Lab, LabOptions


def _pods(lab: Lab, n: int) -> float:
    ns = "bench"
    lab.ctx.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}])
    lab.ctx.wait(
        "default SA",
        lambda: lab.ctx.exists(f"/api/v1/namespaces/{ns}/serviceaccounts/default"),
        timeout=60,
    )
    t = time.monotonic()
    for i in range(n):
        lab.ctx.request(
            "POST",
            f"/api/v1/namespaces/{ns}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"p{i}"},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "x",
                            "resources": {
                                "limits": {"nvidia.com/gpu": "1"} if i % 2 else {"cpu": "100m"}
                            },
                        }
                    ]
                },
            },
        )

    def all_running() -> bool:
        items = lab.ctx.get(f"/api/v1/namespaces/{ns}/pods")["items"]
        return sum(p.get("status", {}).get("phase") == "Running" for p in items) >= n

    lab.ctx.wait(f"{n} pods Running", all_running, timeout=300)
    return time.monotonic() - t


def run_once(i: int, pods: int, without: frozenset[str]) -> dict[str, Any]:
    opts = LabOptions(name=f"bench-{os.getpid()}-{i}", without=without)
    lab = Lab(opts)
    sampler = Peak(lab.rss_bytes, 0.2)
    sampler.start()
    try:
        t = time.monotonic()
        lab.up()
        up = time.monotonic() - t
        t = time.monotonic()
        Lab(opts).up()
        again = time.monotonic() - t
        pods_s = _pods(lab, min(pods, opts.nodes * opts.gpus_per_node * 2)) if pods else 0.0
        time.sleep(1)
    finally:
        sampler.stop.set()
        sampler.join()
        t = time.monotonic()
        lab.down()
        down = time.monotonic() - t
    return {
        "up_s": round(up, 1),
        "up_again_s": round(again, 1),
        "pods": pods,
        "pods_running_s": round(pods_s, 1),
        "down_s": round(down, 1),
        "peak_rss_mib": round(sampler.peak / 2**20),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pods", type=int, default=32)
    ap.add_argument("--without", default="", help="components to leave out, comma-separated")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    without = frozenset(n for n in a.without.split(",") if n)
    results = [run_once(i, a.pods, without) for i in range(a.runs)]
    load = os.getloadavg()[0]
    if a.json:
        print(json.dumps({"runs": results, "loadavg_1m": load}, indent=2))
        return 0
    print(
        f"| run | up to ready (s) | second up (s) | {a.pods} pods Running (s) | down (s) "
        "| peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(results, 1):
        print(
            f"| {i} | {r['up_s']} | {r['up_again_s']} | {r['pods_running_s']} | "
            f"{r['down_s']} | {r['peak_rss_mib']} |"
        )
    med = statistics.median(r["up_s"] for r in results)
    print(
        f"\nmedian up: {med:.1f}s; load average at the end: {load:.1f} (cores: {os.cpu_count()})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
