"""Bad kubeconfigs and unreachable clusters end in one line and a documented exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def kaic(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaic", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    "content",
    ["garbage: [\n", "apiVersion: v1\nkind: Config\nclusters: 5\n", "\x00\x01binary"],
)
def test_a_malformed_kubeconfig_exits_2_with_one_line(tmp_path: Path, content: str) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(content)
    r = kaic("run", "--kubeconfig", str(kc), "-o", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("kaic: error: ")
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_an_unreachable_cluster_exits_3_with_one_line(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1',"
        " insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "current-context: c\n"
    )
    r = kaic("run", "--kubeconfig", str(kc), "-o", str(tmp_path / "out"))
    assert r.returncode == 3, r.stderr
    assert "cannot reach the cluster" in r.stderr
    assert "Traceback" not in r.stderr
