"""Where the lab's upstream binaries and Go module sources are, and how they are built.

Owns: the binary cache layout (``<cache>/k8s-<version>/bin``), calls to
``lab/build-k8s.sh`` and ``go mod download``. Must not start lab processes.
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
from kaic.lab.options import cache_root

CORE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kubectl", "kwok")


def bin_dir(version: str) -> Path:
    """``$KAIC_LAB_BIN_DIR`` if set (a directory of prebuilt binaries), else the cache."""
    if os.environ.get("KAIC_LAB_BIN_DIR"):
        return Path(os.environ["KAIC_LAB_BIN_DIR"])
    return cache_root() / f"k8s-{version}" / "bin"


def missing(version: str, names: tuple[str, ...] = CORE_BINARIES) -> list[str]:
    d = bin_dir(version)
    return [n for n in names if not os.access(d / n, os.X_OK)]


def build_script() -> Path | None:
    """``lab/build-k8s.sh`` of the source tree kaic runs from, if there is one."""
    env = os.environ.get("KAIC_LAB_BUILD_SCRIPT")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "lab" / "build-k8s.sh"
        if candidate.is_file():
            return candidate
    return None


def can_build() -> bool:
    return build_script() is not None and shutil.which("go") is not None


def ensure(version: str, *, build: bool = False) -> Path:
    """The binary directory for ``version``; builds it first when ``build`` is true.

    Raises LabError naming the missing binaries and the command that builds them.
    """
    lacking = missing(version)
    if lacking and build:
        script = build_script()
        if script is None or shutil.which("go") is None:
            raise LabError(f"lab binaries for {version} are missing ({', '.join(lacking)}) and "
                           "cannot be built here: needs the kaic source tree and Go")
        r = subprocess.run(["bash", str(script), version], check=False)
        if r.returncode != 0:
            raise LabError(f"building the lab binaries for {version} failed "
                           f"(bash {script} {version} exited {r.returncode})")
        lacking = missing(version)
    if lacking:
        raise LabError(f"lab binaries for {version} are missing in {bin_dir(version)} "
                       f"({', '.join(lacking)}); build them with `make lab-binaries "
                       f"KUBE_VERSION={version}` or `kaic lab up --build`")
    return bin_dir(version)


_module_dirs: dict[str, Path] = {}


def module_dir(module: str, version: str) -> Path:
    """The extracted source of a Go module (``go mod download``; cached by Go)."""
    key = f"{module}@{version}"
    if key in _module_dirs:
        return _module_dirs[key]
    gomodcache = _gomodcache()
    if gomodcache is not None:
        d = gomodcache / f"{_escape(module)}@{version}"
        if d.is_dir() and (d / "go.mod").is_file():
            _module_dirs[key] = d
            return d
    if shutil.which("go") is None:
        raise LabError(f"Go is needed to download {key} (CRDs/stages for the lab)")
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="")
    try:
        r = subprocess.run(["go", "mod", "download", "-json", key], capture_output=True,
                           text=True, env=env, cwd=cache_root() if cache_root().is_dir()
                           else None, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LabError(f"go mod download {key} failed: {e}") from e
    try:
        info = json.loads(r.stdout)
    except json.JSONDecodeError:
        info = {}
    if r.returncode != 0 or "Dir" not in info:
        msg = info.get("Error") or r.stderr.strip().splitlines()[-1:] or ["unknown error"]
        raise LabError(f"go mod download {key} failed: {msg if isinstance(msg, str) else msg[0]}")
    d = Path(info["Dir"])
    _module_dirs[key] = d
    return d


def _gomodcache() -> Path | None:
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
