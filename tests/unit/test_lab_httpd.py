"""The lab's busybox-httpd stand-in: which containers it recognises, where their files
are, what it answers, and that it serves only below the exec directory."""

from __future__ import annotations

import ipaddress
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kaic.checks.pod_autoscaling import METRIC_PORT, set_metric_command, workload_command
from kaic.lab import proc
from kaic.lab.sims import httpd

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
"""Unit tests serve on loopback; in the lab the range is the lab network's pod range."""

ENV = [
    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
]


def pod(command: list[str], *, ip: str = "127.0.0.1", working_dir: str = "/kaic") -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "namespace": "ns1", "uid": "u1"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox:1.37",
                    "command": command,
                    "env": ENV,
                    "workingDir": working_dir,
                }
            ]
        },
        "status": {"phase": "Running", "podIP": ip},
    }


def site(p: dict[str, Any]) -> httpd.Site | None:
    return httpd.httpd_site(p, p["spec"]["containers"][0])


def test_a_shell_script_ending_in_exec_httpd_is_recognised_with_its_variables() -> None:
    p = pod(["sh", "-c", "mkdir -p d && exec httpd -f -p 8080 -h m/$POD_NAMESPACE/${POD_NAME}"])
    assert site(p) == httpd.Site(8080, "m/ns1/web-1", "/kaic")


def test_kubernetes_variable_references_are_expanded_in_the_command() -> None:
    p = pod(["httpd", "-f", "-p", "0.0.0.0:9000", "-h", "/kaic/m/$(POD_NAME)"])
    assert site(p) == httpd.Site(9000, "/kaic/m/web-1", "/kaic")


@pytest.mark.parametrize(
    "command",
    [
        ["sh", "-c", "echo httpd -p 80"],  # an argument, not the program
        ["sh", "-c", "exec httpd -f -h /www"],  # no port
        ["agnhost", "porter"],
        ["sleep", "3600"],
    ],
)
def test_other_commands_are_not_served(command: list[str]) -> None:
    assert site(pod(command)) is None


def test_directories_resolve_below_the_exec_directory_and_never_outside(tmp_path: Path) -> None:
    assert httpd.site_root(tmp_path, httpd.Site(80, "m/ns1/p", "/kaic")) == tmp_path / "m/ns1/p"
    assert httpd.site_root(tmp_path, httpd.Site(80, "/kaic/m", "/kaic")) == tmp_path / "m"
    assert httpd.site_root(tmp_path, httpd.Site(80, "/etc", "/kaic")) is None
    assert httpd.site_root(tmp_path, httpd.Site(80, "../..", "/kaic")) is None
    assert httpd.site_root(tmp_path, httpd.Site(80, "/kaic/m", "")) is None


def test_file_replies_follow_busybox_content_types_and_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "metrics.txt").write_text("m 1\n")
    (tmp_path / "blob").write_bytes(b"\x00")
    txt = httpd.file_reply(tmp_path, "/metrics.txt")
    assert (txt.status, txt.body, txt.content_type) == (200, b"m 1\n", "text/plain")
    assert httpd.file_reply(tmp_path, "/blob").content_type == "application/octet-stream"
    assert httpd.file_reply(tmp_path, "/missing").status == 404
    assert httpd.file_reply(tmp_path, "/../" + tmp_path.name + "/metrics.txt").status == 200
    assert httpd.file_reply(tmp_path / "sub", "/../metrics.txt").status == 404


def test_the_pod_autoscaling_workload_is_served_what_its_exec_wrote(tmp_path: Path) -> None:
    """The check's own container command and metric command, through the stand-in."""
    p = pod(workload_command("m"), ip="127.0.0.1")
    subprocess.run(set_metric_command("ns1", "web-1", "m", 7), cwd=tmp_path, check=True)
    server = httpd.Httpd(tmp_path, LOOPBACK)
    wanted = server.wanted([p])
    assert list(wanted) == [("u1", "127.0.0.1", METRIC_PORT)]
    assert wanted[("u1", "127.0.0.1", METRIC_PORT)][0] == tmp_path / "kaic-metrics/ns1/web-1"


def test_the_stand_in_listens_on_the_pod_ip_and_stops_when_the_pod_goes(tmp_path: Path) -> None:
    port = proc.free_port()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "metrics.txt").write_text("m 3\n")
    p = pod(["sh", "-c", f"exec httpd -f -p {port} -h d"], ip="127.0.0.1")
    server = httpd.Httpd(tmp_path, LOOPBACK)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        server.sync([p])
        with opener.open(f"http://127.0.0.1:{port}/metrics.txt", timeout=5) as r:
            assert r.read() == b"m 3\n"
            assert r.headers["Content-Type"] == "text/plain"
        server.sync([])
        with pytest.raises(urllib.error.URLError):
            opener.open(f"http://127.0.0.1:{port}/metrics.txt", timeout=5)
    finally:
        server.close()


def test_pods_outside_the_lab_pod_range_are_ignored(tmp_path: Path) -> None:
    p = pod(["httpd", "-p", "80", "-h", "d"], ip="10.0.0.5")
    assert httpd.Httpd(tmp_path, ipaddress.IPv4Network("198.18.4.0/24")).wanted([p]) == {}
