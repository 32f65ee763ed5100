"""Benchmark: ``kaic checklist validate`` against the official Go validator, same files.

Usage::

    python bench/validate_vs_official.py OFFICIAL_SRC [--count 60] [--repeat 3]

``OFFICIAL_SRC`` is a checkout of cncf/k8s-ai-conformance (``scripts/validate.go``,
``go.mod``, ``docs/``) outside this repository; nothing of it is committed. The script
copies it into a temporary folder, points the landscape URL at a loopback stub, adds the
1.37 template when the checkout predates it, and builds it with ``go build -tags
validate``. It writes COUNT submissions shaped like real ones (v1.33–v1.37, six
categories, MUSTs answered with a documentation URL and a local evidence file, SHOULDs
mixed, test artifacts from v1.37) and runs both validators on all of them in one call,
REPEAT times each, reporting the best wall and CPU time.

Network: only loopback. Every URL in the submissions points at the stub on 127.0.0.1;
the Go validator's landscape fetch goes there too, and ``HTTPS_PROXY`` sends its
``k8sConformanceUrl`` check (github.com) to the stub, which refuses the tunnel at once.
kaic runs with ``--members`` (a copy of the stub's landscape file), once checking the URLs
against the same stub (the same work as the Go validator) and once ``--offline``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

VENDOR = "Bench Inc"
LANDSCAPE = (
    f"landscape:\n  - name: CNCF Members\n    subcategories:\n"
    f"      - name: Silver\n        items:\n          - name: {VENDOR} (member)\n"
)


class _Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _ok(self) -> None:
        body = LANDSCAPE.encode() if self.path.endswith("landscape.yml") else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _ok

    def do_CONNECT(self) -> None:  # HTTPS_PROXY tunnels: refused, nothing leaves the host
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _submission(root: Path, version: str, n: int, base: str) -> Path:
    from kaic import catalog as cat

    product = f"product{n:02d}"
    d = root / f"v{version}" / product
    d.mkdir(parents=True)
    doc = yaml.safe_load(cat.template_text(version))
    meta = doc["metadata"]
    meta.update(
        {
            "kubernetesVersion": f"v{version}",
            "platformName": f"Bench Platform {n}",
            "platformVersion": f"{n}.0.0",
            "vendorName": VENDOR,
            "websiteUrl": f"{base}/{product}",
            "repoUrl": f"{base}/{product}/repo",
            "documentationUrl": f"{base}/{product}/docs",
            "productLogoUrl": f"{base}/{product}/logo.svg",
            "description": f"Bench platform {n} for AI workloads.",
            "contactEmailAddress": f"ai@{product}.example",
            "k8sConformanceUrl": "https://github.com/cncf/k8s-conformance/tree/master/"
            f"v{version}/{product}",
        }
    )
    hybrid = tuple(int(x) for x in version.split(".")) >= (1, 37)
    auto = {
        "secure_accelerator_access": "TestSecureAcceleratorAccess",
        "gang_scheduling": "TestGangScheduling",
        "cluster_autoscaling": "TestAcceleratorClusterAutoscaling",
    }
    cases = []
    for items in doc["spec"].values():
        for i, item in enumerate(items):
            rid = item["id"]
            if item["level"] == "MUST" or (n + i) % 3 == 0:
                (d / f"{rid}.md").write_text(f"# {rid}\n\nkubectl output …\n" * 20)
                item["status"] = "Implemented"
                item["evidence"] = [f"{base}/{product}/docs/{rid}", f"{rid}.md"]
                if hybrid and rid in auto:
                    item["evidence"] += [f"file://junit.xml#{auto[rid]}", "file://e2e.log"]
                    cases.append(auto[rid])
            elif (n + i) % 3 == 1:
                item["status"], item["notes"] = "N/A", "No such hardware on this platform."
    if hybrid:
        (d / "junit.xml").write_text(
            "<testsuites><testsuite>"
            + "".join(f'<testcase name="{c}"/>' for c in cases)
            + "</testsuite></testsuites>\n"
        )
        (d / "e2e.log").write_text(
            "".join(f"=== RUN   {c}\n--- PASS: {c} (1.00s)\n" for c in cases) + "PASS\nok\n"
        )
    path = d / "PRODUCT.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    return path


def _build(src: Path, work: Path, port: int) -> tuple[Path, Path]:
    from kaic import catalog as cat

    tree = work / "official"
    shutil.copytree(src, tree, ignore=shutil.ignore_patterns(".git", "v1.*"))
    go = tree / "scripts" / "validate.go"
    text = go.read_text()
    url = "https://raw.githubusercontent.com/cncf/landscape/master/landscape.yml"
    if url not in text:
        raise SystemExit(f"{go}: landscape URL not found; cannot stub the network")
    go.write_text(text.replace(url, f"http://127.0.0.1:{port}/landscape.yml"))
    for v in cat.versions():  # checkouts that predate a template get kaic's copy of it
        t = tree / "docs" / f"AIConformance-{v}.yaml"
        if not t.exists():
            t.write_text(cat.template_text(v))
    binary = work / "validate"
    env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", CGO_ENABLED="0")
    subprocess.run(
        ["go", "build", "-tags", "validate", "-o", str(binary), "./scripts/validate.go"],
        cwd=tree,
        env=env,
        check=True,
    )
    return binary, tree


def _time(cmd: list[str], cwd: Path, env: dict[str, str], repeat: int) -> tuple[float, float, int]:
    walls, cpus, code = [], [], 0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        code = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus), code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("official_src", type=Path)
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not (args.official_src / "scripts" / "validate.go").is_file():
        raise SystemExit(f"{args.official_src}: no scripts/validate.go")
    from kaic import catalog as cat

    ThreadingHTTPServer.request_queue_size = 1024  # the validators open many at once
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="kaic-bench-") as tmp:
        work = Path(tmp)
        binary, tree = _build(args.official_src, work, port)
        subs = work / "submissions"
        versions = cat.versions()
        paths = [_submission(subs, versions[i % len(versions)], i, base) for i in range(args.count)]
        members = work / "landscape.yml"
        members.write_text(LANDSCAPE)
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        go_env = dict(env, HTTPS_PROXY=base, https_proxy=base)
        kaic = Path(sys.executable).with_name("kaic")
        go_cmd = [str(binary), *map(str, paths)]
        kaic_cmd = [str(kaic), "checklist", "validate", "--members", str(members), *map(str, paths)]
        if os.environ.get("BENCH_SHOW"):
            out = subprocess.run(go_cmd, cwd=tree, env=go_env, capture_output=True, text=True)
            print(out.stdout[-3000:])
        go_wall, go_cpu, go_code = _time(go_cmd, tree, go_env, args.repeat)
        k_wall, k_cpu, k_code = _time(kaic_cmd, tree, go_env, args.repeat)
        o_wall, o_cpu, o_code = _time(
            [*kaic_cmd[:3], "--offline", *kaic_cmd[3:]], tree, env, args.repeat
        )
        s_wall, s_cpu, _ = _time([str(kaic), "--version"], tree, env, args.repeat)
        from kaic.checklist import ValidateOptions, validate_paths

        inproc = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            validate_paths(paths, ValidateOptions(offline=True, members=frozenset({VENDOR})))
            inproc.append(time.perf_counter() - start)
        size = sum(p.stat().st_size for p in paths)
        print(
            f"{args.count} submissions (v{versions[0]}..v{versions[-1]}), "
            f"{size // args.count} bytes of PRODUCT.yaml each, best of {args.repeat}"
        )
        print(f"official Go validator: wall {go_wall:.3f} s, CPU {go_cpu:.3f} s (exit {go_code})")
        print(
            f"kaic checklist validate (URLs checked, same stub): wall {k_wall:.3f} s, CPU "
            f"{k_cpu:.3f} s (exit {k_code})"
        )
        print(
            f"kaic checklist validate --offline: wall {o_wall:.3f} s, CPU {o_cpu:.3f} s "
            f"(exit {o_code})"
        )
        print(f"kaic --version (start-up alone): wall {s_wall:.3f} s, CPU {s_cpu:.3f} s")
        print(f"kaic validate_paths in-process, offline (no start-up): wall {min(inproc):.3f} s")
        print(
            f"ratio (kaic / official, URLs checked): wall {k_wall / go_wall:.2f}x, CPU "
            f"{k_cpu / max(go_cpu, 1e-9):.2f}x; --offline: wall {o_wall / go_wall:.2f}x"
        )
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
