"""Benchmark: how kaic grows with the cluster — the inventory-bound checks on labs of N nodes.

Usage: ``.venv/bin/python bench/scale.py [--nodes 3,500,5000] [--gpus-per-node 8] [--json]
[--each] [--keep-logs DIR]``

For each N: a fresh lab of N nodes (N-1 GPU nodes with ``--gpus-per-node`` simulated GPUs
each, published both as DRA ResourceSlices and as device-plugin allocatable, a DCGM
exporter pod per GPU node, one CPU node), timed to ready with the peak RSS of all lab
processes; then one ``kaic run`` of the checks whose work grows with the inventory
(``CHECKS``), one at a time (``--parallel 1``, so each check's wall time is its own), in a
child process whose peak RSS is its own ``VmHWM``. Per check it reports the outcome,
wall time, API requests (``run.json`` ``api_requests``: every page, retry and stream) and
the busiest ``verb resource``; with ``--each``, also the peak RSS of a ``kaic run`` of that
check alone; then the lab goes down. Prints a Markdown table (or JSON)
for bench/RESULTS.md at the end, and each row as a JSON line on stderr as soon as it is
measured; a lab that does not come up is a row with its reason.

The default sizes (3 and 500) take a few minutes; ``--nodes 3,500,5000`` is the full
table (the 5,000-node lab alone takes tens of minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _peak import Peak

from kaic.errors import KaicError
from kaic.lab import Lab, LabOptions

CHECKS = (
    "driver_runtime_management",
    "accelerator_metrics",
    "secure_accelerator_access",
    "ext_hardware_topology",
    "ext_heterogeneous_pools",
)
"""Checks whose work grows with the cluster's nodes, devices and exporters."""
LEAN = frozenset(
    {
        "kueue",
        "jobset",
        "jobset-controller",
        "porter",
        "httpd",
        "traefik",
        "inference-extension",
        "gateway-api",
    }
)
"""Components the measured checks do not use (left out so the lab measures what they do)."""


def high_water(pid: int) -> int:
    """The peak RSS in bytes of process ``pid`` so far, its own ``VmHWM``.

    NOTE: not ``wait4``'s ``ru_maxrss``: Linux carries the parent's RSS at fork into
    the child's ``maxrss`` across ``exec``, so a child of this process (hundreds of MB
    after a large lab's start-up) would show at least that much. ``VmHWM`` only grows,
    so the last read before the process exits is its peak to within the read interval."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmHWM for process {pid}")


def run_kaic(
    kubeconfig: Path, out: Path, checks: tuple[str, ...] = CHECKS
) -> tuple[int, float, int]:
    """``kaic run`` of ``checks``: exit code, wall seconds, peak RSS in bytes."""
    focus = "^(" + "|".join(checks) + ")$"
    argv = [
        sys.executable,
        "-m",
        "kaic",
        "run",
        f"--kubeconfig={kubeconfig}",
        "--profile=all",
        f"--focus={focus}",
        "--parallel=1",
        f"--output-dir={out}",
    ]
    t = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    hwm = Peak(lambda: high_water(child.pid), 0.1)
    hwm.start()
    _, status, _ = os.wait4(child.pid, 0)
    wall = time.monotonic() - t
    hwm.stop.set()
    hwm.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.stderr is not None
    err = child.stderr.read().decode(errors="replace").strip()
    if child.returncode not in (0, 1) and err:
        print(f"kaic run exited {child.returncode}: {err.splitlines()[-1]}", file=sys.stderr)
    return child.returncode, wall, hwm.peak


def rss_each(kubeconfig: Path, tmp: Path) -> dict[str, int]:
    """Peak RSS in bytes of a ``kaic run`` of each of ``CHECKS`` alone."""
    peaks = {}
    for check in CHECKS:
        _, _, rss = run_kaic(kubeconfig, tmp / f"alone-{check}", (check,))
        peaks[check] = rss
    return peaks


def measure(n: int, gpus: int, each: bool = False, logs: Path | None = None) -> dict[str, Any]:
    name = f"bench-scale-{n}"
    with contextlib.suppress(Exception):
        Lab.load(name).down()
    opts = LabOptions(name=name, nodes=max(n - 1, 1), cpu_nodes=1, gpus_per_node=gpus, without=LEAN)
    lab = Lab(opts)
    sampler = Peak(lab.rss_bytes, 0.5)
    sampler.start()
    t = time.monotonic()
    try:
        try:
            lab.up()
        except KaicError as e:  # a lab that did not come up is a row too
            return {
                "nodes": n,
                "gpus": (n - 1) * gpus,
                "error": f"lab up failed after {time.monotonic() - t:.0f} s: {e}",
                "lab_peak_rss_mb": round(sampler.peak / 2**20),
            }
        up_s = time.monotonic() - t
        with tempfile.TemporaryDirectory(prefix="kaic-bench-scale-") as tmp:
            out = Path(tmp) / "bundle"
            code, wall, rss = run_kaic(lab.kubeconfig, out)
            record = json.loads((out / "run.json").read_text())
            alone = rss_each(lab.kubeconfig, Path(tmp)) if each else {}
    finally:
        sampler.stop.set()
        if logs is not None:  # the lab's own logs, kept for a look after it is down
            with contextlib.suppress(OSError):
                shutil.copytree(lab.ctx.state / "logs", logs / name, dirs_exist_ok=True)
        lab.down()
    requests = record.get("api_requests") or {}
    checks = []
    for r in record["results"]:
        counts = requests.get(r["requirement_id"], {})
        busiest = max(counts.items(), key=lambda kv: kv[1], default=("", 0))
        checks.append(
            {
                "check": r["requirement_id"],
                "outcome": r["outcome"],
                "reason": r["reason"],
                "wall_s": r["duration_s"],
                "requests": sum(counts.values()),
                "busiest": f"{busiest[0]} ×{busiest[1]}" if busiest[1] else "",
                "alone_rss_mb": round(alone[r["requirement_id"]] / 2**20)
                if r["requirement_id"] in alone
                else None,
            }
        )
    return {
        "nodes": n,
        "gpus": (n - 1) * gpus,
        "lab_up_s": round(up_s, 1),
        "lab_peak_rss_mb": round(sampler.peak / 2**20),
        "kaic_exit": code,
        "kaic_wall_s": round(wall, 1),
        "kaic_peak_rss_mb": round(rss / 2**20),
        "run_requests": sum(requests.get("run", {}).values()),
        "checks": checks,
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| nodes (GPUs) | lab up | lab RSS | check | outcome | wall | API requests | busiest"
        " | RSS alone |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lead = f"{row['nodes']:,} ({row['gpus']:,})"
        if "error" in row:
            out.append(f"| {lead} | {row['error']} | {row['lab_peak_rss_mb']} MB | | | | | | |")
            continue
        for c in row["checks"]:
            out.append(
                f"| {lead} | {row['lab_up_s']} s | {row['lab_peak_rss_mb']} MB | {c['check']} | "
                f"{c['outcome']} | {c['wall_s']:.1f} s | {c['requests']} | {c['busiest']} | "
                + (f"{c['alone_rss_mb']} MB |" if c.get("alone_rss_mb") is not None else "|")
            )
        out.append(
            f"| {lead} | | | **kaic run** (exit {row['kaic_exit']}) | | "
            f"{row['kaic_wall_s']} s | {row['run_requests']} (runner) | "
            f"peak RSS {row['kaic_peak_rss_mb']} MB | |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="3,500", help="comma-separated node counts")
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--each",
        action="store_true",
        help="also run each check alone in its own kaic process, for its peak RSS",
    )
    ap.add_argument(
        "--keep-logs",
        type=Path,
        metavar="DIR",
        help="copy each lab's logs to DIR/<lab name> before it goes down",
    )
    a = ap.parse_args(argv)
    rows = []
    for n in a.nodes.split(","):
        rows.append(measure(int(n), a.gpus_per_node, a.each, a.keep_logs))
        # NOTE: each row as soon as it is measured, so a later, larger N that fails or is
        # stopped does not lose it.
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps(rows, indent=2) if a.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
