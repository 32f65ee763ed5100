"""Where the lab's upstream binaries and Go module sources are, and building them on demand.

Owns: the binary directory of a Kubernetes version (``kaic.lab.programs``), module
sources (``go mod download``), parsed manifests, and ``ensure`` (build what is missing
through ``kaic.lab.build``). Must not start lab processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from kaic.errors import LabError
from kaic.lab import programs
from kaic.lab.options import cache_root

CORE = ("kubernetes", "etcd", "kwok")
"""The programs every lab runs (the control plane and the node agent)."""


def core_binaries() -> tuple[str, ...]:
    return tuple(b for name in CORE for b in programs.program(name).binary_names())


def missing(version: str, names: tuple[str, ...] | None = None) -> list[str]:
    d = programs.bin_dir(version)
    return [n for n in (names or core_binaries()) if not os.access(d / n, os.X_OK)]


def can_build() -> bool:
    return shutil.which("go") is not None


def ensure(version: str, *, build: bool = False) -> Path:
    """The binary directory for ``version``; builds the core programs first when
    ``build`` is true and any is missing.

    Raises LabError naming the missing binaries and the command that builds them.
    """
    lacking = missing(version)
    if lacking and build:
        from kaic.lab.build import Builder  # the build is needed only here

        if not can_build():
            raise LabError(
                f"lab binaries for {version} are missing ({', '.join(lacking)}) "
                "and cannot be built here: needs Go"
            )
        Builder(version).build(CORE)
        lacking = missing(version)
    if lacking:
        raise LabError(
            f"lab binaries for {version} are missing in {programs.bin_dir(version)} "
            f"({', '.join(lacking)}); build them with `kaic lab build --version "
            f"{version}` (or `make lab-binaries`), or `kaic lab up --build`"
        )
    return programs.bin_dir(version)


_module_dirs: dict[str, Path] = {}


def module_dir(module: str, version: str) -> Path:
    """The extracted source of a Go module (``go mod download``; cached by Go)."""
    key = f"{module}@{version}"
    if key in _module_dirs:
        return _module_dirs[key]
    cached = gomodcache() / f"{_escape(module)}@{version}"
    if cached.is_dir() and (cached / "go.mod").is_file():
        _module_dirs[key] = cached
        return cached
    if shutil.which("go") is None:
        raise LabError(f"Go is needed to download {key} (manifests for the lab)")
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="")
    env.pop("GOWORK", None)
    try:
        r = subprocess.run(
            ["go", "mod", "download", "-json", key],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LabError(f"go mod download {key} failed: {e}") from e
    try:
        info = json.loads(r.stdout)
    except json.JSONDecodeError:
        info = {}
    if r.returncode != 0 or "Dir" not in info:
        lines = r.stderr.strip().splitlines()
        msg = info.get("Error") or (lines[-1] if lines else "unknown error")
        raise LabError(f"go mod download {key} failed: {msg}")
    _module_dirs[key] = Path(info["Dir"])
    return _module_dirs[key]


def manifest_files(program_name: str, key: str, kube: str) -> list[Path]:
    """The files of manifest list ``key`` of a program (``programs.toml``), in order."""
    p = programs.program(program_name)
    patterns = p.manifests.get(key)
    if not patterns:
        raise LabError(f"lab program {program_name!r} lists no manifests {key!r}")
    root = module_dir(p.module, p.resolved_version(kube))
    return [f for pattern in patterns for f in sorted(root.glob(pattern))]


def manifests(program_name: str, key: str, kube: str) -> list[dict[str, Any]]:
    """The YAML documents of manifest list ``key`` of a program."""
    return load_manifests(manifest_files(program_name, key, kube))


def gomodcache() -> Path:
    if os.environ.get("GOMODCACHE"):
        return Path(os.environ["GOMODCACHE"])
    gopath = os.environ.get("GOPATH") or str(Path.home() / "go")
    return Path(gopath.split(os.pathsep)[0]) / "pkg" / "mod"


def _escape(module: str) -> str:
    """Go's module path case-escaping for the module cache (``A`` → ``!a``)."""
    return "".join(f"!{c.lower()}" if c.isupper() else c for c in module)


def load_manifests(files: list[Path]) -> list[dict[str, Any]]:
    """The YAML documents of ``files`` (module sources are immutable: parsed once, cached
    as JSON under the cache directory, because large CRDs take seconds to parse)."""
    key = hashlib.sha256("\n".join(str(f) for f in files).encode()).hexdigest()[:20]
    cached = cache_root() / "manifests" / f"{key}.json"
    try:
        docs: list[dict[str, Any]] = json.loads(cached.read_text())
        return docs
    except (OSError, json.JSONDecodeError):
        pass
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = []
    for f in files:
        docs += [d for d in yaml.load_all(f.read_text(), Loader=loader) if d]
    with contextlib.suppress(OSError):
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(docs))
        tmp.replace(cached)
    return docs
