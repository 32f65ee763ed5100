"""Benchmark: start-up time of ``kaic --version`` and ``kaic catalog list``.

Times each command as a fresh process (``python -m kaic …`` with this interpreter),
``--repeat`` times, interleaved with ``python -c pass`` so that the machine's load hits
all of them alike, and prints the median and best wall time and the median CPU time
(user + system) of each, with its ratio to ``python -c pass``. Also asserts that
``kaic catalog list`` imports no ``kubernetes`` module (``python -X importtime``).
Exits 1 when a command's median is over ``--limit-ms``.

Run: ``python bench/cli_startup.py [--repeat 21] [--limit-ms 150]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "kaic --version": [sys.executable, "-m", "kaic", "--version"],
    "kaic catalog list": [sys.executable, "-m", "kaic", "catalog", "list"],
}


def _time(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv``."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def kubernetes_modules(argv: list[str]) -> list[str]:
    """The ``kubernetes`` modules a command imports (from ``-X importtime``)."""
    r = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, check=True
    )
    names = [
        line.rsplit("|", 1)[-1].strip()
        for line in r.stderr.splitlines()
        if line.startswith("import time:")
    ]
    return [n for n in names if n == "kubernetes" or n.startswith("kubernetes.")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--limit-ms", type=float, default=150.0)
    args = ap.parse_args()
    env_note = f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    for argv in COMMANDS.values():  # warm the file cache and .pyc files
        _time(argv)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, argv in COMMANDS.items():
            samples[name].append(_time(argv))
    base = statistics.median(w for w, _ in samples["python -c pass"])
    base_cpu = statistics.median(c for _, c in samples["python -c pass"])
    print(f"{args.repeat} runs each, {env_note}")
    print(
        f"{'command':<20} {'wall median':>12} {'best':>9} {'ratio':>6}"
        f" {'CPU median':>11} {'ratio':>6}"
    )
    over = []
    for name, xs in samples.items():
        med = statistics.median(w for w, _ in xs)
        cpu = statistics.median(c for _, c in xs)
        print(
            f"{name:<20} {med * 1000:10.1f}ms {min(w for w, _ in xs) * 1000:7.1f}ms"
            f" {med / base:5.1f}x {cpu * 1000:9.1f}ms {cpu / max(base_cpu, 1e-3):5.1f}x"
        )
        if name != "python -c pass" and med * 1000 > args.limit_ms:
            over.append(name)
    k8s = kubernetes_modules(COMMANDS["kaic catalog list"])
    print(f"kubernetes modules imported by 'kaic catalog list': {len(k8s)}")
    if over:
        print(f"over {args.limit_ms:.0f} ms: {', '.join(over)}")
    return 1 if over or k8s else 0


if __name__ == "__main__":
    sys.exit(main())
