"""The lab's upstream programs, as described once in ``programs.toml`` (package data).

Owns: reading and checking that file, and where each program's binaries, build
stamps and manifests are (``<cache>/build/<kube version>/``). Must not build or start
anything (the build is ``kaic.lab.build``).
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from kaic.errors import LabError
from kaic.lab.options import cache_root

GROUP_KUBE = "kube"
"""The wrapper module shared by every program built on the lab's Kubernetes libraries."""
GROUP_OWN = "own"
_VERSION = re.compile(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
_KUBE = re.compile(r"^v1\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Patch:
    """A literal edit of one file of a copy of the module source."""

    file: str
    find: str
    replace: str


@dataclass(frozen=True)
class Program:
    """One upstream Go module the lab builds binaries from or reads manifests of."""

    name: str
    module: str
    version: str
    """An exact version, ``kube`` (the lab's Kubernetes version) or ``graph``."""
    packages: tuple[str, ...] = ()
    binaries: dict[str, str] = field(default_factory=dict)
    group: str = GROUP_OWN
    kube_min: int = 0
    kube_own: int = 0
    follows: str = ""
    tags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    release: str = ""
    manifests: dict[str, tuple[str, ...]] = field(default_factory=dict)
    patch: tuple[Patch, ...] = ()
    replace: dict[str, str] = field(default_factory=dict)
    """``go.mod`` replacements the program's own module declares (a wrapper module does
    not inherit them): module path → ``module@version``."""

    def resolved_version(self, kube: str) -> str:
        """The module version for a lab of Kubernetes ``kube`` (``graph`` stays as is)."""
        return kube if self.version == "kube" else self.version

    def package_paths(self) -> list[str]:
        return [f"{self.module}/{p}" if p else self.module for p in self.packages]

    def binary_names(self) -> list[str]:
        """The names the binaries are installed under, one per package."""
        return [self.binaries.get(p, go_binary_name(self.module, p)) for p in self.packages]

    def builds_for(self, kube: str) -> bool:
        return bool(self.packages) and kube_minor(kube) >= self.kube_min

    def group_for(self, kube: str) -> str:
        """``kube`` or the program's own name: the wrapper module it is built in."""
        if self.group == GROUP_KUBE and kube_minor(kube) >= self.kube_own:
            return GROUP_KUBE
        return self.name

    def expand(self, text: str, kube: str) -> str:
        return (
            text.replace("{version}", self.resolved_version(kube))
            .replace("{kube}", kube)
            .replace("{kube_minor}", str(kube_minor(kube)))
            .replace("{release}", self.release or self.version)
        )

    def describe(self) -> dict[str, Any]:
        """Everything that decides how it is built (hashed into its build stamp)."""
        return {
            "module": self.module,
            "version": self.version,
            "packages": self.packages,
            "binaries": self.binaries,
            "group": self.group,
            "kube_own": self.kube_own,
            "follows": self.follows,
            "tags": self.tags,
            "ldflags": self.ldflags,
            "release": self.release,
            "patch": [(p.file, p.find, p.replace) for p in self.patch],
            # NOTE: only when set, so that the stamps of programs without one stay valid.
            **({"replace": self.replace} if self.replace else {}),
        }


@dataclass(frozen=True)
class Catalog:
    """Every program of ``programs.toml``, in file order (the build order)."""

    default_kube: str
    oldest_kube_minor: int
    programs: dict[str, Program]
    staging: dict[str, int] = field(default_factory=dict)
    """Kubernetes staging module name → first minor that has it."""

    def get(self, name: str) -> Program:
        try:
            return self.programs[name]
        except KeyError:
            raise LabError(
                f"unknown lab program {name!r} (known: {', '.join(self.programs)})"
            ) from None


def kube_minor(kube: str) -> int:
    m = _KUBE.match(kube)
    if m is None:
        raise LabError(f"invalid Kubernetes version {kube!r}: expected v1.MINOR.PATCH")
    return int(m.group(1))


def go_binary_name(module: str, package: str) -> str:
    """The file name ``go install`` gives a main package (a major-version suffix such as
    ``/v3`` is dropped: ``go.etcd.io/etcd/server/v3`` → ``server``)."""
    parts = f"{module}/{package}".rstrip("/").split("/")
    if re.fullmatch(r"v\d+", parts[-1]) and len(parts) > 1:
        parts = parts[:-1]
    return parts[-1]


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LabError(f"programs.toml: {where} must be a list of strings")
    return tuple(value)


def parse(data: dict[str, Any]) -> Catalog:
    """Check and type the contents of ``programs.toml``."""
    kube = data.get("kubernetes") or {}
    default = kube.get("default")
    if not isinstance(default, str) or not _KUBE.match(default):
        raise LabError("programs.toml: [kubernetes] default must be a version like v1.36.0")
    programs: dict[str, Program] = {}
    for name, p in (data.get("program") or {}).items():
        where = f"[program.{name}]"
        unknown = set(p) - {
            "module",
            "version",
            "packages",
            "binaries",
            "group",
            "kube_min",
            "kube_own",
            "follows",
            "tags",
            "ldflags",
            "release",
            "manifests",
            "patch",
            "replace",
        }
        if unknown:
            raise LabError(f"programs.toml: {where} has unknown keys {sorted(unknown)}")
        version = p.get("version")
        if not isinstance(version, str) or not (
            version in ("kube", "graph") or _VERSION.match(version)
        ):
            raise LabError(
                f"programs.toml: {where} version must be an exact module version, 'kube' or 'graph'"
            )
        if version == "graph" and not p.get("follows"):
            raise LabError(f"programs.toml: {where} version 'graph' needs 'follows'")
        group = p.get("group", GROUP_OWN)
        if group not in (GROUP_KUBE, GROUP_OWN):
            raise LabError(f"programs.toml: {where} group must be 'kube' or 'own'")
        manifests = {
            k: _strs(v, f"{where} manifests.{k}") for k, v in (p.get("manifests") or {}).items()
        }
        patches = tuple(
            Patch(file=str(x["file"]), find=str(x["find"]), replace=str(x["replace"]))
            for x in p.get("patch") or []
        )
        replace = {str(k): str(v) for k, v in (p.get("replace") or {}).items()}
        for k, v in replace.items():
            target, _, at = v.rpartition("@")
            if not target or not _VERSION.match(at):
                raise LabError(
                    f"programs.toml: {where} replace of {k} must be 'module@exact-version'"
                )
        programs[name] = Program(
            name=name,
            module=str(p["module"]),
            version=version,
            packages=_strs(p.get("packages", []), f"{where} packages"),
            binaries={str(k): str(v) for k, v in (p.get("binaries") or {}).items()},
            group=group,
            kube_min=int(p.get("kube_min", 0)),
            kube_own=int(p.get("kube_own", 0)),
            follows=str(p.get("follows", "")),
            tags=_strs(p.get("tags", []), f"{where} tags"),
            ldflags=_strs(p.get("ldflags", []), f"{where} ldflags"),
            release=str(p.get("release", "")),
            manifests=manifests,
            patch=patches,
            replace=replace,
        )
    staging: dict[str, int] = {}
    for since, names in (kube.get("staging") or {}).items():
        for m in _strs(names, f"[kubernetes] staging.{since}"):
            staging[m] = int(since)
    return Catalog(
        default_kube=default,
        oldest_kube_minor=int(kube.get("oldest", 0)),
        programs=programs,
        staging=staging,
    )


@functools.cache
def catalog() -> Catalog:
    """The programs of the installed kaic (``kaic/lab/programs.toml``)."""
    text = resources.files("kaic.lab").joinpath("programs.toml").read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LabError(f"programs.toml: {e}") from e
    return parse(data)


def program(name: str) -> Program:
    return catalog().get(name)


def version(name: str) -> str:
    """The module version of program ``name`` (``kube`` and ``graph`` not resolved)."""
    return program(name).version


def build_root(kube: str) -> Path:
    """Where the lab's programs for Kubernetes ``kube`` are built: bin/, src/, stamps/."""
    return cache_root() / "build" / kube


def bin_dir(kube: str) -> Path:
    """``$KAIC_LAB_BIN_DIR`` if set (a directory of prebuilt binaries), else the cache."""
    if os.environ.get("KAIC_LAB_BIN_DIR"):
        return Path(os.environ["KAIC_LAB_BIN_DIR"])
    return build_root(kube) / "bin"


def binary(name: str, kube: str) -> Path:
    """A lab binary by its installed name (``kube-apiserver``, ``kueue``, …)."""
    return bin_dir(kube) / name


def binary_of(program_name: str, kube: str) -> Path:
    """The (first) binary of a program."""
    names = program(program_name).binary_names()
    if not names:
        raise LabError(f"lab program {program_name!r} has no binary")
    return binary(names[0], kube)


def require_binary(program_name: str, kube: str) -> Path:
    """The program's binary, or a LabError saying how to build it."""
    path = binary_of(program_name, kube)
    if not os.access(path, os.X_OK):
        raise LabError(
            f"{program_name} is not built ({path} is missing): run "
            f"`kaic lab build --only {program_name} --version {kube}` "
            "(or `make lab-binaries`)"
        )
    return path
