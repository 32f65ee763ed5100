"""Builds the lab's upstream programs from the Go module proxy, as ``programs.toml`` says.

Owns: wrapper modules (one shared per Kubernetes version, with the staging modules
replaced by their published tags, so every program in it shares one Go build cache;
or one of a program's own), pinned module graphs (``lab/versions/<kube>/<group>/``),
source patches, explicit ``go mod download``, ``go install`` program by program, build
stamps and the time each build took. Only what is missing or out of date is built.
Must not start lab processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaic.errors import LabError
from kaic.lab.binaries import module_dir
from kaic.lab.programs import (
    GROUP_KUBE,
    Catalog,
    Program,
    build_root,
    catalog,
    go_binary_name,
    kube_minor,
)

FORMAT = 1
"""Bumped when the build procedure changes what it produces (invalidates every stamp)."""
GO_DIRECTIVE = "1.26.0"
Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"kaic: {message}", file=sys.stderr, flush=True)


def source_tree() -> Path | None:
    """The kaic source tree this module runs from (it holds ``lab/versions``), if any."""
    env = os.environ.get("KAIC_SOURCE_TREE")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "lab" / "versions").is_dir() and (parent / "pyproject.toml").is_file():
            return parent
    return None


def staging_modules(cat: Catalog, minor: int) -> list[str]:
    """Kubernetes staging modules (``k8s.io/<name>``) of a minor: ``k8s.io/kubernetes``
    maps them to ``./staging``, which its module zip lacks, so a wrapper replaces each
    with its published tag."""
    return [m for m, since in cat.staging.items() if minor >= since]


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:16]


@dataclass
class Group:
    """A wrapper module and the programs built in it for one Kubernetes version."""

    name: str
    kube: str
    members: list[Program]
    """Every program of the group for this version (they decide the module graph)."""
    staging: list[str] = field(default_factory=list)
    """Staging modules the shared wrapper replaces (empty for a program's own module)."""

    @property
    def shared(self) -> bool:
        return self.name == GROUP_KUBE

    @property
    def dir(self) -> Path:
        return build_root(self.kube) / "src" / self.name

    def graph_hash(self) -> str:
        members = [(p.name, p.describe()) for p in self.members]
        return _hash([FORMAT, self.kube, self.name, members, self.staging])

    def pin_dir(self) -> Path | None:
        tree = source_tree()
        return None if tree is None else tree / "lab" / "versions" / self.kube / self.name


@dataclass
class BuildResult:
    built: dict[str, float] = field(default_factory=dict)
    """Program name → seconds its ``go install`` took."""
    current: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    """Other timed steps (module graphs, downloads), by name."""


def go_env() -> dict[str, str]:
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
    env.pop("GOWORK", None)
    return env


class Builder:
    """Builds programs for one Kubernetes version; ``say`` receives progress lines."""

    def __init__(
        self,
        kube: str,
        *,
        say: Say = _stderr,
        programs: Catalog | None = None,
        log: Path | None = None,
    ) -> None:
        self.kube = kube
        kube_minor(kube)
        self.catalog = programs or catalog()
        self.say = say
        self.root = build_root(kube)
        self.bin = self.root / "bin"
        self.log = log or self.root / "build.log"

    # -- what to build -----------------------------------------------------------------

    def groups(self) -> list[Group]:
        out: dict[str, Group] = {}
        for p in self.catalog.programs.values():
            if p.builds_for(self.kube):
                g = p.group_for(self.kube)
                staging = staging_modules(self.catalog, kube_minor(self.kube))
                group = Group(g, self.kube, [], staging if g == GROUP_KUBE else [])
                out.setdefault(g, group).members.append(p)
        return list(out.values())

    def stamp_path(self, p: Program) -> Path:
        return self.root / "stamps" / f"{p.name}.json"

    def stamp_hash(self, p: Program) -> str:
        return _hash([FORMAT, self.kube, p.group_for(self.kube), p.describe()])

    def up_to_date(self, p: Program) -> bool:
        if not all(os.access(self.bin / b, os.X_OK) for b in p.binary_names()):
            return False
        try:
            stamp = json.loads(self.stamp_path(p).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(stamp, dict) and stamp.get("hash") == self.stamp_hash(p)

    def select(self, only: Iterable[str] | None) -> list[Program]:
        if only is None:
            return [p for g in self.groups() for p in g.members]
        chosen = []
        for name in only:
            p = self.catalog.get(name)
            if not p.packages:
                raise LabError(f"lab program {name!r} has no binaries (manifests only)")
            if not p.builds_for(self.kube):
                raise LabError(
                    f"{name} is not built for Kubernetes {self.kube} (needs "
                    f"v1.{p.kube_min} or newer)"
                )
            chosen.append(p)
        return chosen

    def inventory(self) -> list[dict[str, Any]]:
        """Every program with its group for this version and whether it is built."""
        rows: list[dict[str, Any]] = []
        for p in self.catalog.programs.values():
            if not p.packages:
                state, group = "manifests only", "-"
            elif not p.builds_for(self.kube):
                state, group = f"not for {self.kube} (needs v1.{p.kube_min}+)", "-"
            else:
                state = "built" if self.up_to_date(p) else "missing"
                group = p.group_for(self.kube)
            rows.append(
                {
                    "name": p.name,
                    "module": p.module,
                    "version": p.resolved_version(self.kube),
                    "group": group,
                    "binaries": p.binary_names(),
                    "state": state,
                }
            )
        return rows

    # -- the build ---------------------------------------------------------------------

    def build(
        self, only: Iterable[str] | None = None, *, pin: bool = False, jobs: int = 2
    ) -> BuildResult:
        """Build what is missing or out of date; ``pin`` also writes the module graphs
        into the source tree (``lab/versions``)."""
        if shutil.which("go") is None:
            raise LabError("Go is needed to build the lab's programs (`go` is not on PATH)")
        wanted = self.select(only)
        result = BuildResult()
        todo = [p for p in wanted if not self.up_to_date(p)]
        result.current = [p.name for p in wanted if p not in todo]
        self.root.mkdir(parents=True, exist_ok=True)
        groups = [g for g in self.groups() if any(p in todo for p in g.members)]
        if pin:
            groups = [g for g in self.groups() if any(p in wanted for p in g.members)]
        if not groups:
            self.say(f"lab programs for {self.kube} are up to date in {self.bin}")
            self.download_manifests(result)
            return result
        self.bin.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            manifests = pool.submit(self.download_manifests, result)
            futures = [
                pool.submit(self._build_group, g, [p for p in g.members if p in todo], result, pin)
                for g in groups
            ]
            errors = []
            for f in futures:
                try:
                    f.result()
                except LabError as e:
                    errors.append(str(e))
            manifests.result()
        self._record_times(result)
        if errors:
            raise LabError("; ".join(errors))
        return result

    def _build_group(self, g: Group, todo: list[Program], result: BuildResult, pin: bool) -> None:
        start = time.monotonic()
        self.prepare(g)
        result.phases[f"{g.name}: module graph and downloads"] = time.monotonic() - start
        if pin:
            self.write_pin(g)
        for p in todo:
            result.built[p.name] = self.install(g, p)

    def prepare(self, g: Group) -> None:
        """The wrapper module of ``g``: from its pin when current, else generated."""
        d = g.dir
        d.mkdir(parents=True, exist_ok=True)
        want = g.graph_hash()
        marker = d / "pin.json"
        pinned = g.pin_dir()
        if _pin_matches(d, want):
            pass  # generated or copied earlier, still current
        elif pinned is not None and _pin_matches(pinned, want):
            self.say(f"{g.name}: module graph pinned in {pinned}")
            for f in ("go.mod", "go.sum"):
                shutil.copyfile(pinned / f, d / f)
            marker.write_text(json.dumps({"hash": want}))
        else:
            if pinned is not None and (pinned / "go.mod").exists():
                self.say(
                    f"{g.name}: the pinned module graph in {pinned} is for another "
                    "description; resolving anew (`kaic lab build --pin` refreshes it)"
                )
            else:
                self.say(f"{g.name}: resolving the module graph")
            self.generate(g)
            marker.write_text(json.dumps({"hash": want}))
        self.patch_sources(g)
        self.download(g)

    def generate(self, g: Group) -> None:
        d = g.dir
        for f in ("go.mod", "go.sum", "pin.json"):
            with contextlib.suppress(FileNotFoundError):
                (d / f).unlink()
        self.go(d, "mod", "init", f"kaic.invalid/lab/{g.name}")
        self.go(d, "mod", "edit", f"-go={GO_DIRECTIVE}")
        if g.shared:
            minor = kube_minor(g.kube)
            stg = "v0." + g.kube.removeprefix("v1.")
            self.go(
                d,
                "mod",
                "edit",
                *(f"-replace=k8s.io/{m}=k8s.io/{m}@{stg}" for m in g.staging),
            )
            if minor <= 34:
                # k8s.io/kubernetes up to 1.34 needs the Go 1.24 defaults (its own go.mod
                # says so; a wrapper module does not inherit that).
                self.go(d, "mod", "edit", "-godebug", "default=go1.24")
        fixed = [
            f"{pkg}@{p.resolved_version(g.kube)}"
            for p in g.members
            if p.version != "graph"
            for pkg in p.package_paths()
        ]
        replaces = [f"-replace={k}={v}" for p in g.members for k, v in p.replace.items()]
        if replaces:
            self.go(d, "mod", "edit", *replaces)
        # A patched program is resolved from its patched copy: a patch may edit its go.mod.
        self.patch_sources(g)
        if fixed:
            self.go(d, "get", "-tool", *fixed)
        for p in g.members:
            if p.version == "graph":
                v = self.go(d, "list", "-m", "-f", "{{.Version}}", p.follows).strip()
                self.go(d, "get", "-tool", *(f"{pkg}@{v}" for pkg in p.package_paths()))

    def patch_sources(self, g: Group) -> None:
        """Copies of module sources with the description's literal edits, wired in by a
        ``replace`` (Go refuses overlays of files in the module cache)."""
        for p in g.members:
            if not p.patch:
                continue
            version = p.resolved_version(g.kube)
            dest = g.dir / "patched" / p.name
            stamp = dest / ".kaic-patch"
            want = _hash([p.module, version, [(x.file, x.find, x.replace) for x in p.patch]])
            if not (stamp.is_file() and stamp.read_text() == want):
                src = Path(
                    json.loads(self.go(g.dir, "mod", "download", "-json", f"{p.module}@{version}"))[
                        "Dir"
                    ]
                )
                if dest.exists():
                    shutil.rmtree(dest)
                shutil.copytree(src, dest)
                for f in dest.rglob("*"):
                    f.chmod(f.stat().st_mode | 0o200)
                for x in p.patch:
                    target = dest / x.file
                    text = target.read_text()
                    if text.count(x.find) != 1:
                        raise LabError(
                            f"{p.name}: patch of {x.file} expected {x.find!r} "
                            f"exactly once, found it {text.count(x.find)} times "
                            "(source changed? update programs.toml)"
                        )
                    target.write_text(text.replace(x.find, x.replace))
                stamp.write_text(want)
            self.go(g.dir, "mod", "edit", f"-replace={p.module}=./patched/{p.name}")

    def download(self, g: Group) -> None:
        """``go mod download`` of each program's module (``go install`` fetches the rest)."""
        mods = [p.module for p in g.members if not p.patch]
        if mods:
            self.go(g.dir, "mod", "download", *mods)

    def install(self, g: Group, p: Program) -> float:
        out = self.root / "tmp" / p.name
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        ldflags = " ".join(["-s", "-w", *(p.expand(x, g.kube) for x in p.ldflags)])
        args = ["install", "-trimpath", f"-ldflags={ldflags}"]
        if p.tags:
            args.append("-tags=" + ",".join(p.tags))
        self.say(f"{g.name}: building {p.name} ({', '.join(p.binary_names())})")
        start = time.monotonic()
        self.go(g.dir, *args, *p.package_paths(), env={"GOBIN": str(out)})
        seconds = time.monotonic() - start
        for pkg, name in zip(p.packages, p.binary_names(), strict=True):
            built = out / go_binary_name(p.module, pkg)
            if not built.is_file():
                raise LabError(f"{p.name}: go install left no binary {built.name}")
            os.replace(built, self.bin / name)
        shutil.rmtree(out, ignore_errors=True)
        version = p.resolved_version(g.kube)
        if version == "graph":
            version = self.go(g.dir, "list", "-m", "-f", "{{.Version}}", p.module).strip()
        self.stamp_path(p).parent.mkdir(parents=True, exist_ok=True)
        self.stamp_path(p).write_text(
            json.dumps(
                {
                    "hash": self.stamp_hash(p),
                    "program": p.name,
                    "module": p.module,
                    "version": version,
                    "kube": g.kube,
                    "group": g.name,
                    "seconds": round(seconds, 1),
                },
                indent=1,
            )
        )
        self.say(f"{g.name}: built {p.name} {version} in {seconds:.0f} s")
        return seconds

    def write_pin(self, g: Group) -> None:
        dest = g.pin_dir()
        if dest is None:
            raise LabError("--pin needs the kaic source tree (lab/versions)")
        dest.mkdir(parents=True, exist_ok=True)
        for f in ("go.mod", "go.sum"):
            shutil.copyfile(g.dir / f, dest / f)
        (dest / "pin.json").write_text(json.dumps({"hash": g.graph_hash()}) + "\n")
        self.say(f"{g.name}: module graph pinned into {dest}")

    def download_manifests(self, result: BuildResult) -> None:
        """Module sources the lab reads manifests from (CRDs, webhooks, stages)."""
        start = time.monotonic()
        for p in self.catalog.programs.values():
            if p.manifests and p.version != "graph":
                module_dir(p.module, p.resolved_version(self.kube))
        result.phases["manifest sources"] = time.monotonic() - start

    def _record_times(self, result: BuildResult) -> None:
        with contextlib.suppress(OSError), (self.root / "times.jsonl").open("a") as f:
            f.write(
                json.dumps(
                    {
                        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "built": result.built,
                        "phases": result.phases,
                    }
                )
                + "\n"
            )

    def go(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
        """Run ``go ARGS`` in ``cwd``; stdout is returned, stderr goes to the build log."""
        full_env = go_env() | (env or {})
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as log:
            log.write(f"$ (cd {cwd} && go {' '.join(args)})\n")
            log.flush()
            try:
                r = subprocess.run(
                    ["go", *args],
                    cwd=cwd,
                    env=full_env,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    check=False,
                )
            except OSError as e:
                raise LabError(f"go {args[0]} failed: {e}") from e
        if r.returncode != 0:
            raise LabError(
                f"`go {' '.join(args[:3])}…` in {cwd} exited {r.returncode}: "
                f"{_last_error(self.log)} (full output: {self.log})"
            )
        return r.stdout


def _pin_matches(d: Path, want: str) -> bool:
    try:
        return bool(
            json.loads((d / "pin.json").read_text()).get("hash") == want
            and (d / "go.mod").is_file()
            and (d / "go.sum").is_file()
        )
    except (OSError, ValueError, AttributeError):
        return False


def _last_error(log: Path) -> str:
    try:
        lines = [
            ln
            for ln in log.read_text(errors="replace").splitlines()
            if ln.strip() and not ln.startswith(("$ ", "go: downloading"))
        ]
    except OSError:
        return "no output"
    return lines[-1].strip() if lines else "no output"
