"""A lab: bring it up, report on it, take it down.

Owns: the state directory (``state.json``, pki, kubeconfig, logs, pid files, data) and
the order in which components start and stop. Must not know what a component does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaic.errors import LabError, UsageError
from kaic.lab import binaries, pki, proc, programs
from kaic.lab.component import Component, all_components, select
from kaic.lab.context import NETNS_PORT_PREFIX, LabContext
from kaic.lab.options import LabOptions, default_state_dir

STATE_FILE = "state.json"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    healthy: bool
    pids: tuple[int, ...]
    rss_bytes: int
    log: Path


class Lab:
    """One lab, identified by its state directory."""

    def __init__(
        self,
        options: LabOptions,
        ports: dict[str, int] | None = None,
        enabled: tuple[str, ...] | None = None,
    ) -> None:
        self.options = options
        comps = select(options.without, options.with_)
        self._components = comps
        self._unknown: list[str] = []
        if enabled is not None:
            by_name = {c.name: c for c in all_components()}
            # NOTE: a lab made by another kaic version may name components this one lacks:
            # ``down`` still stops their processes (by their pid files); ``up`` and
            # ``status`` refuse.
            self._unknown = [n for n in enabled if n not in by_name]
            self._components = [by_name[n] for n in enabled if n in by_name]
        self._lock = threading.Lock()
        self.ctx = LabContext(
            options=options,
            bin=programs.bin_dir(options.version),
            ports=dict(ports or {}),
            enabled=tuple(c.name for c in self._components),
        )

    # ---- loading -----------------------------------------------------------------
    @staticmethod
    def state_file(state_dir: Path) -> Path:
        return state_dir / STATE_FILE

    @classmethod
    def load(cls, name: str = "default", state_dir: Path | None = None) -> Lab:
        """The lab recorded in ``state_dir`` (default: the one of ``name``)."""
        d = state_dir or default_state_dir(name)
        f = cls.state_file(d)
        try:
            data = json.loads(f.read_text())
        except FileNotFoundError:
            raise UsageError(
                f"no lab named {name!r} (nothing in {d}); start one with `kaic lab up`"
            ) from None
        except (OSError, json.JSONDecodeError) as e:
            raise LabError(f"cannot read {f}: {e}") from e
        return cls(
            LabOptions.from_json(data["options"]),
            ports=data.get("ports", {}),
            enabled=tuple(data.get("components", ())),
        )

    @classmethod
    def exists(cls, name: str = "default", state_dir: Path | None = None) -> bool:
        return cls.state_file(state_dir or default_state_dir(name)).is_file()

    def _save(self) -> None:
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        d = self.options.state
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / (STATE_FILE + ".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "options": self.options.to_json(),
                    "ports": self.ctx.ports,
                    "components": [c.name for c in self._components],
                    "binaries": str(self.ctx.bin),
                },
                indent=2,
            )
            + "\n"
        )
        tmp.replace(self.state_file(d))

    # ---- accessors ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.options.name

    @property
    def components(self) -> list[Component]:
        return list(self._components)

    @property
    def kubeconfig(self) -> Path:
        return self.ctx.kubeconfig

    @property
    def server(self) -> str:
        return self.ctx.server

    def component(self, name: str) -> Component:
        for c in self._components:
            if c.name == name:
                return c
        raise UsageError(
            f"lab {self.name!r} has no component {name!r} (it has: "
            f"{', '.join(c.name for c in self._components)})"
        )

    def log_path(self, component: str) -> Path:
        self.component(component)
        return self.ctx.log_path(component)

    def pids(self) -> dict[str, list[int]]:
        return {c.name: c.pids(self.ctx) for c in self._components}

    # ---- lifecycle ---------------------------------------------------------------
    def _require_known(self) -> None:
        if self._unknown:
            raise LabError(
                f"lab {self.options.name!r} uses component(s) this kaic lacks:"
                f" {', '.join(self._unknown)} (`kaic lab down --name {self.options.name}`"
                " removes it)"
            )

    def up(self, *, build: bool = False, progress: Progress | None = None) -> float:
        """Start every missing piece and wait until the lab is ready; returns seconds.

        Idempotent: on a running lab it restarts only what is not running (e.g. after a
        process was killed) and re-applies the lab's objects. Concurrent ``up``/``down``
        of the same lab wait for each other.
        """
        self._require_known()
        with _locked(self.options.state):
            return self._up(build=build, progress=progress)

    def _up(self, *, build: bool, progress: Progress | None) -> float:
        say = progress or (lambda _m: None)
        t0 = time.monotonic()
        d = self.options.state
        if self.exists(state_dir=d):
            existing = Lab.load(self.name, d)
            if not existing.options.same_shape(self.options):
                raise UsageError(
                    f"lab {self.name!r} already exists with other options; run "
                    f"`kaic lab down --name {self.name}` first, or use another "
                    "--name"
                )
            self.ctx.ports.update(existing.ctx.ports)
        needed = sorted({b for c in self._components for b in c.binaries} | {"kubectl"})
        self.ctx.bin = binaries.ensure(self.options.version, build=build)
        lacking = [b for b in needed if not (self.ctx.bin / b).exists()]
        if lacking:
            raise LabError(
                f"lab binaries missing in {self.ctx.bin}: {', '.join(lacking)}; "
                "run `make lab-binaries`"
            )
        d.mkdir(parents=True, exist_ok=True)
        pki.generate(self.ctx.pki.dir)
        self._save()
        self._start_all(say)
        return time.monotonic() - t0

    def dependencies(self) -> dict[str, set[str]]:
        """Name -> the components of this lab that must be ready before it starts."""
        names = {c.name for c in self._components}
        return {
            c.name: (
                {o.name for o in self._components if o.order < c.order}
                if c.after is None
                else set(c.after) & names
            )
            for c in self._components
        }

    def _start_all(self, say: Progress) -> None:
        """Start every component as soon as the ones it waits for are ready.

        Components that do not name ``after`` wait for every component of a lower order
        (so those of equal order start together); the others start beside them.
        """
        # NOTE: concurrent starts let the apiserver establish CRD sets while kwok, nodes
        # and the simulators come up, instead of one after the other.
        deps = self.dependencies()
        pending = list(self._components)
        done: set[str] = set()
        errors: list[BaseException] = []
        running: dict[Future[None], Component] = {}
        with ThreadPoolExecutor(max_workers=max(1, len(pending))) as pool:
            while True:
                if not errors:
                    for c in [c for c in pending if deps[c.name] <= done]:
                        pending.remove(c)
                        running[pool.submit(self._start_one, c, say)] = c
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    c = running.pop(f)
                    e = f.exception()
                    if e is None:
                        done.add(c.name)
                    else:
                        errors.append(e)
        if errors:
            raise errors[0]
        if pending:
            raise LabError(
                "lab components wait for each other: "
                + ", ".join(f"{c.name} (after {', '.join(sorted(deps[c.name]))})" for c in pending)
            )

    def _start_one(self, c: Component, say: Progress) -> None:
        t = time.monotonic()
        try:
            c.start(self.ctx)
        except LabError:
            self._save()
            raise
        except Exception as e:  # a component's own failure, reported as a lab error
            self._save()
            raise LabError(f"lab component {c.name} failed to start: {e}") from e
        self._save()
        say(f"{c.name} ready ({time.monotonic() - t:.1f}s)")

    def down(self, *, progress: Progress | None = None) -> None:
        """Stop every process of the lab and remove its state directory."""
        with _locked(self.options.state):
            self._down(progress=progress)

    def _down(self, *, progress: Progress | None) -> None:
        say = progress or (lambda _m: None)
        for c in reversed(self._components):
            try:
                c.stop(self.ctx)
            except Exception as e:  # keep stopping the rest; report at the end
                say(f"{c.name}: stop failed: {e}")
            else:
                say(f"{c.name} stopped")
        run = self.options.state / "run"
        if run.is_dir():  # anything a component started but did not stop
            for pidfile in run.glob("*.pid"):
                proc.stop(pidfile)
        busy = [
            p
            for k, p in self.ctx.ports.items()
            if not k.startswith(NETNS_PORT_PREFIX) and proc.port_in_use(p)
        ]
        if busy:
            time.sleep(1)
            busy = [p for p in busy if proc.port_in_use(p)]
        d = self.options.state
        if self.state_file(d).is_file() or {p.name for p in d.iterdir()} <= {".lock"}:
            shutil.rmtree(d, ignore_errors=True)
        if busy:
            raise LabError(f"lab {self.name!r} is down but port(s) {busy} are still in use")

    def status(self) -> list[ComponentStatus]:
        self._require_known()
        out = []
        for c in self._components:
            pids = tuple(c.pids(self.ctx))
            try:
                healthy = c.healthy(self.ctx)
            except Exception:
                healthy = False
            out.append(
                ComponentStatus(
                    c.name,
                    healthy,
                    pids,
                    sum(proc.rss_bytes(p) for p in pids),
                    self.ctx.log_path(c.name),
                )
            )
        return out

    def summary(self) -> dict[str, Any]:
        comps = self.status()
        return {
            "name": self.name,
            "version": self.options.version,
            "state_dir": str(self.options.state),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server if "kube-apiserver" in self.ctx.ports else None,
            "ready": all(c.healthy for c in comps),
            "options": self.options.to_json(),
            "components": [
                {
                    "name": c.name,
                    "healthy": c.healthy,
                    "pids": list(c.pids),
                    "rss_bytes": c.rss_bytes,
                }
                for c in comps
            ],
        }

    def rss_bytes(self) -> int:
        """Sum of the resident memory of every lab process right now."""
        return sum(proc.rss_bytes(p) for pids in self.pids().values() for p in pids)

    def listening(self) -> dict[str, list[tuple[str, int]]]:
        """Listening sockets of every lab process, by component."""
        return {
            name: [s for p in pids for s in proc.listening_sockets(p)]
            for name, pids in self.pids().items()
        }


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """An exclusive lock on the lab (a file in its state directory)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def list_labs() -> list[Path]:
    """State directories of the labs under the default location."""
    root = default_state_dir("x").parent
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / STATE_FILE).is_file())


def safe_down(name: str, state_dir: Path | None = None) -> bool:
    """Take a lab down if it exists; False if there was none."""
    if not Lab.exists(name, state_dir):
        return False
    with contextlib.suppress(UsageError):
        Lab.load(name, state_dir).down()
    return True
