"""Benchmark: validate 1,000 filled PRODUCT.yaml files offline.

Writes N filled checklists (all five template versions, each MUST answered Implemented
with a local evidence file and, for the officially auto-tested requirements, a junit.xml
reference) into a temporary tree, then times ``kaic.checklist.validate_paths`` over all of
them with ``--offline`` semantics. Run: ``python bench/checklist_validate.py [--count N]``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml.scalarstring import DoubleQuotedScalarString as DQ

from kaic import catalog as cat
from kaic.checklist import ValidateOptions, validate_paths, yamlio
from kaic.checklist.template import render_template
from kaic.checklist.validate import OFFICIAL_AUTO_TESTED

META = {
    "platformName": "Bench Platform",
    "platformVersion": "1.0.0",
    "vendorName": "Bench Inc",
    "websiteUrl": "https://bench.example",
    "repoUrl": "https://github.com/bench/platform",
    "documentationUrl": "https://docs.bench.example",
    "description": "A benchmark platform.",
    "productLogoUrl": "https://bench.example/logo.svg",
    "contactEmailAddress": "ai@bench.example",
}


def filled(version: str, product: str) -> tuple[str, dict[str, str]]:
    meta = dict(
        META,
        k8sConformanceUrl=f"https://github.com/cncf/k8s-conformance/tree/master/"
        f"v{version}/{product}",
    )
    doc = yamlio.load_text(render_template(version, meta), "template").doc
    c = cat.load(version)
    files: dict[str, str] = {}
    cases = []
    for items in doc["spec"].values():
        for item in items:
            rid = item["id"]
            if c.get(rid).level.value != "MUST":
                continue
            files[f"{rid}.md"] = f"# {rid}\n"
            item["status"] = DQ("Implemented")
            item["evidence"].append(DQ(f"{rid}.md"))
            item["evidence"].append(DQ(f"https://docs.bench.example/{rid}"))
            if rid in OFFICIAL_AUTO_TESTED:
                test = OFFICIAL_AUTO_TESTED[rid]
                item["evidence"].append(DQ(f"file://junit.xml#{test}"))
                cases.append(f'<testcase name="{test}"/><testcase name="{test}/Sub"/>')
            item["evidence"].fa.set_block_style()
    files["junit.xml"] = f"<testsuites><testsuite>{''.join(cases)}</testsuite></testsuites>"
    return yamlio.dump(doc), files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    versions = cat.versions()
    with tempfile.TemporaryDirectory(prefix="kaic-bench-") as tmp:
        root = Path(tmp)
        paths = []
        cache = {}
        for i in range(args.count):
            v = versions[i % len(versions)]
            product = f"product{i:04d}"
            if v not in cache:
                cache[v] = filled(v, "PRODUCT_DIR")
            text, files = cache[v]
            pdir = root / f"v{v}" / product
            pdir.mkdir(parents=True)
            for name, content in files.items():
                (pdir / name).write_text(content)
            (pdir / "PRODUCT.yaml").write_text(text.replace("PRODUCT_DIR", product))
            paths.append(pdir / "PRODUCT.yaml")
        timings, cpu = [], []
        for _ in range(args.repeat):
            started, cpu_started = time.perf_counter(), time.process_time()
            report = validate_paths(paths, ValidateOptions(offline=True))
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        counts = report.counts()
        if not report.valid or counts["warning"]:
            print(f"unexpected findings: {counts}", file=sys.stderr)
            return 1
    best, median = min(timings), statistics.median(timings)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"validated {args.count} filled checklists offline (v{versions[0]}..v{versions[-1]})")
    print(
        f"  best {best:.2f} s, median {median:.2f} s of {args.repeat} runs "
        f"({best / args.count * 1000:.2f} ms per file)"
    )
    print(f"  CPU time best {min(cpu):.2f} s ({min(cpu) / args.count * 1000:.2f} ms per file)")
    print(f"  findings: {counts['not-checked']} not checked (URLs, vendor), 0 errors, 0 warnings")
    print(f"  peak RSS {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
