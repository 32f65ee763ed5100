"""Benchmark: the suite's own wall time, ``kaic run`` by default (checks that do not
conflict run at the same time) against ``--parallel 1`` (one after another), on a lab
like `make demo`'s.

Starts a lab ``bench-suite`` (the default nodes, ``--with
kueue-controller,node-autoscaler,prometheus,prometheus-adapter``) unless ``--lab NAME``
names a running one, runs the MUSTs of v1.36 through the CLI in both modes (``--runs``
times each, alternating), and prints per run the wall time of the command, the longest
check, the sum of the checks' durations, wall / longest, and the verdicts; the verdicts
of the two modes must be the same. Takes its own lab down.
Run: ``python bench/suite_wall_time.py [--lab NAME] [--runs 1] [--level must] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kaic.lab import Lab, LabOptions, programs
from kaic.lab.components.nodes import AUTOSCALED_POOL_OPTIONS
from kaic.lab.options import default_version

WITH = frozenset({"kueue-controller", "node-autoscaler", "prometheus", "prometheus-adapter"})
MODES = {"default": (), "parallel-1": ("--parallel", "1")}


def one_run(lab: Lab, mode: str, level: str, out: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "kaic",
        "run",
        "--kubeconfig",
        str(lab.kubeconfig),
        "--version",
        "1.36",
        "--level",
        level,
        *(arg for name, value in AUTOSCALED_POOL_OPTIONS.items() for arg in (f"--{name}", value)),
        "-o",
        str(out),
        *MODES[mode],
    ]
    t = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t
    doc = json.loads((out / "run.json").read_text())
    durations = {r["requirement_id"]: float(r.get("duration_s") or 0.0) for r in doc["results"]}
    longest = max(durations, key=lambda k: durations[k])
    return {
        "mode": mode,
        "exit": proc.returncode,
        "wall_s": round(wall, 1),
        "longest": longest,
        "longest_s": round(durations[longest], 1),
        "sum_s": round(sum(durations.values()), 1),
        "ratio": round(wall / durations[longest], 2) if durations[longest] else None,
        "verdicts": {r["requirement_id"]: r["outcome"] for r in doc["results"]},
        "durations_s": {k: round(v, 1) for k, v in durations.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lab", help="a running lab with --with " + ",".join(sorted(WITH)))
    ap.add_argument("--runs", type=int, default=1, help="runs of each mode (alternating)")
    ap.add_argument("--level", default="must", choices=("must", "all"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    needed = ("kueue", "karpenter", "prometheus", "prometheus-adapter")
    missing = [p for p in needed if not programs.binary_of(p, default_version()).is_file()]
    if missing:
        print(f"skipped: not built: {', '.join(missing)} (kaic lab build)")
        return 0
    own = args.lab is None
    lab = Lab.load(args.lab) if args.lab else Lab(LabOptions(name="bench-suite", with_=WITH))
    rows: list[dict[str, Any]] = []
    try:
        if own:
            lab.up()
        with tempfile.TemporaryDirectory(prefix="kaic-bench-suite-") as tmp:
            for n in range(args.runs):
                for mode in MODES:
                    rows.append(one_run(lab, mode, args.level, Path(tmp) / f"{mode}-{n}"))
                    r = rows[-1]
                    print(
                        f"{mode}: {r['wall_s']}s wall, longest {r['longest']}"
                        f" {r['longest_s']}s, sum {r['sum_s']}s, exit {r['exit']}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        if own:
            lab.down()
    same = all(r["verdicts"] == rows[0]["verdicts"] for r in rows)
    if args.json:
        print(json.dumps({"rows": rows, "same_verdicts": same}, indent=2))
    else:
        print("| mode | wall | longest check | sum of checks | wall / longest | exit |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['mode']} | {r['wall_s']} s | {r['longest']} {r['longest_s']} s"
                f" | {r['sum_s']} s | {r['ratio']} | {r['exit']} |"
            )
        print()
        for r in rows:
            print(f"{r['mode']}: " + ", ".join(f"{k} {v}s" for k, v in r["durations_s"].items()))
        print(f"verdicts the same in every run: {same} ({rows[0]['verdicts']})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
