"""The lab's stand-in for one container program: busybox ``httpd``, served at the pod's IP.

kwok runs no containers. For a Running pod whose container's command runs busybox
``httpd`` with ``-p PORT`` and ``-h DIR`` (as the ``pod_autoscaling`` test workload does),
this process does what that container would do: it serves the files below ``DIR`` over
HTTP on ``<pod IP>:PORT``, so that a Prometheus discovering the pod through the apiserver
scrapes it as it would in a real cluster.

Where the files are: in the lab, ``kubectl exec`` runs commands as local processes in
the lab's exec directory (``<state>/data/exec``), which therefore stands for every
container's working directory. A relative ``DIR`` (or one below the container's
``workingDir``) is taken below that directory, so what a check writes through ``exec``
is what this server serves. ``$VAR``, ``${VAR}`` and Kubernetes' ``$(VAR)`` in ``DIR`` are
expanded from the container's ``env`` (literal values and the ``metadata.name``,
``metadata.namespace``, ``metadata.uid``, ``status.podIP`` field references). A ``DIR``
that leaves the exec directory is refused (nothing else of the host is ever served).
Content types follow busybox: ``.txt`` is ``text/plain``, ``.html`` ``text/html``, other
files ``application/octet-stream``.

Owns: recognising the command, the pod loop (polling the lab's apiserver as the admin)
and the listeners. It runs inside the lab's network namespace, where every pod IP is a
local address; it never binds outside the lab's pod range (``--pod-cidr``; other pods
are ignored) nor dials anything but the apiserver.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import re
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from kaic.errors import LabError
from kaic.lab.apiserver import ApiClient
from kaic.lab.sims import http
from kaic.lab.sims.porter import lab_ip

CONTENT_TYPES = {".txt": "text/plain", ".html": "text/html", ".htm": "text/html"}
_FIELDS = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "metadata.uid": ("metadata", "uid"),
    "status.podIP": ("status", "podIP"),
}
_KUBE_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_SHELL_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Site:
    """What one container's ``httpd`` serves: the directory (as the container names it,
    after variable expansion) on a port."""

    port: int
    directory: str
    working_dir: str = ""


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment as far as the stand-in needs it."""
    out: dict[str, str] = {}
    for e in container.get("env") or []:
        name = str(e.get("name", ""))
        if "value" in e:
            out[name] = str(e.get("value") or "")
            continue
        ref = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath", "")
        where = _FIELDS.get(str(ref))
        if where is not None:
            value = (pod.get(where[0]) or {}).get(where[1])
            if value:
                out[name] = str(value)
    return out


def expand_kube(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' own expansion of ``$(VAR)`` in a command or argument (unknown
    references stay as written, as the kubelet leaves them)."""
    return _KUBE_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def expand_shell(text: str, env: Mapping[str, str]) -> str:
    """A shell's ``${VAR}`` and ``$VAR`` from ``env``; unknown variables become empty."""
    return _SHELL_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def command_words(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """The container's command line as words, after Kubernetes' ``$(VAR)`` expansion;
    the script of ``sh -c SCRIPT`` is split into shell words and operators."""
    argv = [
        expand_kube(str(a), env)
        for a in (*(container.get("command") or []), *(container.get("args") or []))
    ]
    words: list[str] = []
    shell = bool(argv) and PurePosixPath(argv[0]).name in ("sh", "ash", "bash")
    for i, a in enumerate(argv):
        if shell and i > 0 and argv[i - 1] == "-c":
            lexer = shlex.shlex(a, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            try:
                words.extend(lexer)
            except ValueError:
                words.append(a)
        else:
            words.append(a)
    return words


_COMMAND_START = ("exec", "busybox", ";", "&&", "||")
_COMMAND_END = (";", "&&", "||", "|", "&")


def httpd_site(pod: Mapping[str, Any], container: Mapping[str, Any]) -> Site | None:
    """The site of a container whose command runs ``httpd -p PORT -h DIR``, else None."""
    env = container_env(pod, container)
    words = command_words(container, env)
    for i, w in enumerate(words):
        if PurePosixPath(w).name != "httpd" or (i > 0 and words[i - 1] not in _COMMAND_START):
            continue
        port: int | None = None
        directory = "."
        rest = words[i + 1 :]
        for j, opt in enumerate(rest):
            if opt in _COMMAND_END:
                break
            nxt = rest[j + 1] if j + 1 < len(rest) else ""
            if opt == "-p":
                tail = nxt.rsplit(":", 1)[-1]
                port = int(tail) if tail.isdigit() else None
            elif opt == "-h":
                directory = nxt
        if port is None:
            return None
        return Site(port, expand_shell(directory, env), str(container.get("workingDir") or ""))
    return None


def site_root(root: Path, site: Site) -> Path | None:
    """Where the files of ``site`` are on this host (below ``root``), or None when its
    directory would leave ``root``."""
    d = PurePosixPath(site.directory)
    if d.is_absolute():
        wd = PurePosixPath(site.working_dir or "/")
        if not d.is_relative_to(wd) or not site.working_dir:
            return None
        d = d.relative_to(wd)
    base = root.resolve()
    path = (base / d).resolve()
    return path if path.is_relative_to(base) else None


def file_reply(directory: Path, url_path: str) -> http.Reply:
    """The answer of busybox httpd serving ``directory`` for ``url_path``."""
    rel = url_path.lstrip("/") or "index.html"
    path = (directory / rel).resolve()
    if not path.is_relative_to(directory.resolve()) or not path.is_file():
        return http.Reply(404, b"404 Not Found\n", "text/html")
    try:
        body = path.read_bytes()
    except OSError:
        return http.Reply(404, b"404 Not Found\n", "text/html")
    return http.Reply(200, body, CONTENT_TYPES.get(path.suffix, "application/octet-stream"))


def _answer(directory: Path, req: http.Request) -> http.Reply:
    return file_reply(directory, req.path)


Key = http.PodKey


class Httpd(http.PodServers):
    """Keeps one listener per (running httpd pod, port) and nothing else."""

    def __init__(self, root: Path, pod_cidr: ipaddress.IPv4Network) -> None:
        super().__init__("kaic.lab.sims.httpd")
        self.root = root
        self.pod_cidr = pod_cidr
        self.refused: set[str] = set()

    def wanted(self, pods: Sequence[Mapping[str, Any]]) -> dict[Key, tuple[Path, str]]:
        out: dict[Key, tuple[Path, str]] = {}
        for pod in pods:
            md = pod.get("metadata") or {}
            if (pod.get("status") or {}).get("phase") != "Running" or md.get("deletionTimestamp"):
                continue
            ip = lab_ip(dict(pod), self.pod_cidr)
            if ip is None:
                continue
            for c in (pod.get("spec") or {}).get("containers") or []:
                site = httpd_site(pod, c)
                if site is None:
                    continue
                where = site_root(self.root, site)
                name = f"{md.get('namespace')}/{md.get('name')}"
                if where is None:
                    if name not in self.refused:
                        self.refused.add(name)
                        outside = f"{site.directory} is outside {self.root}"
                        print(f"not serving {name}: {outside}", flush=True)
                    continue
                out[(str(md.get("uid", "")), ip, site.port)] = (where, name)
        return out

    def sync(self, pods: Sequence[Mapping[str, Any]]) -> None:
        wanted = self.wanted(pods)
        self.serve(
            {
                key: (f"{name} ({where})", functools.partial(_answer, where))
                for key, (where, name) in wanted.items()
            }
        )


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m kaic.lab.sims.httpd",
        description="serve pods running busybox httpd at their pod IPs in the lab network",
    )
    ap.add_argument("--server", required=True, help="https://127.0.0.1:PORT of the apiserver")
    ap.add_argument("--ca", type=Path, required=True)
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--key", type=Path, required=True)
    ap.add_argument("--root", type=Path, required=True, help="the lab's exec directory")
    ap.add_argument("--pod-cidr", type=ipaddress.IPv4Network, required=True)
    ap.add_argument("--interval", type=float, default=1.0)
    a = ap.parse_args(argv)
    try:
        api = ApiClient.from_files(a.server, a.ca, a.cert, a.key)
    except LabError as e:
        raise SystemExit(f"kaic.lab.sims.httpd: {e}") from e
    httpd = Httpd(a.root, a.pod_cidr)
    print("httpd simulator running", flush=True)
    while True:
        try:
            pods = api.get("/api/v1/pods?fieldSelector=status.phase%3DRunning").get("items") or []
            httpd.sync(pods)
        except (LabError, OSError, ValueError, AttributeError) as e:
            print(f"listing pods failed: {e}", flush=True)
        time.sleep(a.interval)


if __name__ == "__main__":
    main(sys.argv[1:])
