"""The lab's extension point: a ``Component`` is one piece of the lab, started in order.

Owns: the ``Component`` and ``ProcessComponent`` base classes and the registry.
Must not know any particular component.

A component is a class registered with ``@register``. To add one, put a module named
like the component in ``kaic/lab/components/`` (``node-autoscaler`` →
``node_autoscaler.py``; every module there is imported when the lab starts) that
defines a subclass and decorates it. docs/lab.md describes the contract:

* ``name`` — unique, used by ``--without``/``--with`` and ``kaic lab logs NAME``;
* ``order`` — start order (core: etcd 10, kube-apiserver 20, … kwok 50; CRD sets 60;
  accelerators 70; add-ons 100+); ``down`` stops in reverse order;
* ``after`` — the components that must be ready before it starts (default: every
  component of a lower ``order``); naming fewer lets it start earlier, beside others;
* ``optional`` — may be left out with ``--without NAME``; ``default`` — on unless left
  out (False: only with ``--with NAME``);
* ``needs`` — components it cannot work without: a default component whose needs are
  left out is left out too; one asked for with ``--with`` is refused (a usage error
  naming the ``--with`` to add);
* ``start(ctx)`` — make the component present and ready; must be idempotent (``up`` on
  a running lab calls it again, and again after a process died);
* ``stop(ctx)`` — stop what ``start`` started (files are removed with the state dir);
* ``healthy(ctx)`` — a quick check for ``kaic lab status``;
* ``pids(ctx)`` — the component's processes (for status, memory and socket audits).
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

from kaic.errors import LabError
from kaic.lab import proc
from kaic.lab.context import LabContext


class Component:
    """One piece of the lab. Subclass, set the class attributes, ``@register`` it."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    order: ClassVar[int] = 100
    optional: ClassVar[bool] = True
    default: ClassVar[bool] = True
    binaries: ClassVar[tuple[str, ...]] = ()
    """Binaries (in the lab's bin dir) this component needs."""
    after: ClassVar[tuple[str, ...] | None] = None
    """Components that must be ready before this one starts (those of the lab that are
    enabled); None: every component of a lower ``order``."""
    needs: ClassVar[tuple[str, ...]] = ()
    """Components without which this one cannot work (see the module docstring)."""

    def start(self, ctx: LabContext) -> None:
        raise NotImplementedError

    def stop(self, ctx: LabContext) -> None:
        """Nothing to stop by default (API objects go away with etcd's data)."""

    def healthy(self, ctx: LabContext) -> bool:
        return True

    def pids(self, ctx: LabContext) -> list[int]:
        return []


START_ATTEMPTS = 2
"""Starts of a process component before ``kaic lab up`` gives up on it."""


class ProcessComponent(Component):
    """A component that is one detached local process with a readiness probe."""

    ready_timeout: ClassVar[float] = 60.0

    def argv(self, ctx: LabContext) -> list[str]:
        raise NotImplementedError

    def env(self, ctx: LabContext) -> Mapping[str, str] | None:
        return None

    def ready(self, ctx: LabContext) -> bool:
        """True once the process serves (a health URL, a log line, …)."""
        raise NotImplementedError

    def before_start(self, ctx: LabContext) -> None:
        """Prepare files or API objects the process needs (idempotent)."""

    def exec_path(self, ctx: LabContext) -> str | None:
        """The program the process becomes when ``argv`` starts with a wrapper that execs
        it (``unshare … /bin/sh -c 'exec "$@"'``); None: ``argv[0]`` itself."""
        return None

    def after_start(self, ctx: LabContext) -> None:
        """Work once the process is ready (idempotent)."""

    def start(self, ctx: LabContext) -> None:
        self.before_start(ctx)
        for attempt in range(START_ATTEMPTS):
            self._spawn_if_down(ctx)
            try:
                ctx.wait(
                    f"{self.name} to be ready",
                    lambda: self.ready(ctx),
                    timeout=self.ready_timeout,
                    alive=self.name,
                )
                break
            except LabError:
                # NOTE: a process that exited while starting is started again once, as
                # a kubelet restarts a container (seen under load: a controller manager
                # stopping before its setup finished); a second exit is the error.
                if ctx.pid(self.name) is not None or attempt == START_ATTEMPTS - 1:
                    raise
                time.sleep(1.0)
        self.after_start(ctx)

    def _spawn_if_down(self, ctx: LabContext) -> None:
        if ctx.pid(self.name) is None:
            for port_key in self.port_keys():
                port = ctx.port(port_key)
                # A killed process may hold its sockets for a moment while it exits.
                deadline = time.monotonic() + 10
                while proc.port_in_use(port) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if proc.port_in_use(port):
                    raise LabError(
                        f"port {port} of {self.name} is taken by another process; "
                        f"run `kaic lab down --name {ctx.name}` and start again"
                    )
            argv = self.argv(ctx)
            exe = self.exec_path(ctx)
            pid = ctx.spawn(self.name, argv, self.env(ctx), exe=exe)
            if exe is not None and exe != argv[0]:
                self._adopt(ctx, pid, exe)

    def _adopt(self, ctx: LabContext, pid: int, exe: str) -> None:
        """Record ``exe`` as the process once the wrapper has exec'd it, so that liveness
        checks recognise it."""
        ctx.wait(
            f"{self.name} to start {Path(exe).name}",
            lambda: proc.command(pid) == exe or not proc.alive(pid),
            timeout=15,
        )
        if proc.command(pid) != exe:
            raise LabError(
                f"{self.name} did not start; last log lines:\n" + ctx.log_tail(self.name)
            )
        ctx.pid_path(self.name).write_text(f"{pid}\n{exe}\n")

    def port_keys(self) -> Sequence[str]:
        """Keys of ``ctx.port`` this process listens on (checked free before start)."""
        return ()

    def stop(self, ctx: LabContext) -> None:
        proc.stop(ctx.pid_path(self.name))

    def healthy(self, ctx: LabContext) -> bool:
        return ctx.pid(self.name) is not None and self.ready(ctx)

    def pids(self, ctx: LabContext) -> list[int]:
        pid = ctx.pid(self.name)
        return [] if pid is None else [pid]


C = TypeVar("C", bound=type[Component])
_REGISTRY: dict[str, type[Component]] = {}
_DISCOVERED = False


def register(cls: C) -> C:
    """Class decorator: add a component to the lab."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"two lab components are named {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    import kaic.lab.components as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    _DISCOVERED = True


def all_components() -> list[Component]:
    """Every registered component, in start order."""
    _discover()
    return [cls() for cls in sorted(_REGISTRY.values(), key=lambda c: (c.order, c.name))]


def select(without: frozenset[str], with_: frozenset[str]) -> list[Component]:
    """The components of a lab given ``--without`` and ``--with``, in start order."""
    comps = all_components()
    names = {c.name for c in comps}
    for flag, asked in (("--without", without), ("--with", with_)):
        unknown = sorted(asked - names)
        if unknown:
            choices = ", ".join(sorted(c.name for c in comps if c.optional))
            raise _usage(
                f"unknown lab component(s) for {flag}: {', '.join(unknown)} "
                f"(optional components: {choices})"
            )
    core = sorted(c.name for c in comps if not c.optional and c.name in without)
    if core:
        raise _usage(f"cannot leave out core lab component(s): {', '.join(core)}")
    both = sorted(without & with_)
    if both:
        raise _usage(f"component(s) both left out and asked for: {', '.join(both)}")
    chosen = [
        c
        for c in comps
        if c.name not in without and (c.default or c.name in with_ or not c.optional)
    ]
    while True:
        names = {c.name for c in chosen}
        dropped = [c for c in chosen if not set(c.needs) <= names]
        if not dropped:
            return chosen
        for c in dropped:
            lacking = [n for n in c.needs if n not in names]
            if c.name in with_ or not c.optional or not c.default:
                raise _usage(
                    f"lab component {c.name} needs {', '.join(lacking)}: "
                    f"--with {','.join([*lacking, c.name])}"
                )
        chosen = [c for c in chosen if c not in dropped]


def _usage(message: str) -> Exception:
    from kaic.errors import UsageError

    return UsageError(message)
