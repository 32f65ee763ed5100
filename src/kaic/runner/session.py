"""A run session: a ``RunRequest`` in, a ``SessionResult`` (the record and where it
went) out. This is ``kaic run`` for a library user; the CLI only parses and renders.

Owns, in order: judging every check option value, connecting (one server-version
call), the catalog version (with its warning as a value), the plan, preflight, the
output directory, and the execution. Must not render anything, and must not write
files itself: the caller passes the bundle writer (``kaic.report.BundleWriter``) as a
factory of the output directory.

Library use (what ``kaic run`` does, without the console)::

    from kaic.report import BundleWriter
    from kaic.runner import RunRequest, RunSession

    session = RunSession(RunRequest(kubeconfig="kc", level="must"))
    prepared = session.prepare()          # prepared.catalog_warning, prepared.plan
    done = session.run(prepared, writer=BundleWriter)
    done.record, done.output_dir, done.exit_code
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kaic import catalog
from kaic.checks.base import Registry
from kaic.cluster.api import ClusterAPI
from kaic.errors import ExitCode, PermissionDeniedError, UsageError
from kaic.runner.execute import (
    MissingPermission,
    Observer,
    Preflight,
    check_reachable,
    execute,
    new_run_id,
    preflight,
)
from kaic.runner.plan import Plan, check_option_problems, make_plan
from kaic.runner.record import RunRecord
from kaic.runner.request import RunRequest

__all__ = ["PreflightFailed", "Prepared", "RunSession", "SessionResult", "run"]


class ConnectedCluster(ClusterAPI, Protocol):
    """A cluster connection that knows where it points (``kaic.cluster.client.Cluster``)."""

    @property
    def context(self) -> str | None: ...

    @property
    def server(self) -> str | None: ...


Connect = Callable[[str | None, str | None], ConnectedCluster]


def _connect(kubeconfig: str | None, context: str | None) -> ConnectedCluster:
    # NOTE: imported here so that planning a run (``kaic run --list --version``) and
    # reading bundles do not import the Kubernetes client.
    from kaic.cluster.client import connect

    return connect(kubeconfig, context)


class PreflightFailed(PermissionDeniedError):
    """The credentials lack permissions the run needs; nothing was run."""

    def __init__(self, context: str | None, missing: tuple[MissingPermission, ...]) -> None:
        super().__init__(
            f"preflight failed: {len(missing)} permission(s) missing"
            " (listed above); nothing was run"
        )
        self.context = context
        self.missing = missing


@dataclass(frozen=True)
class Prepared:
    """A session before it runs: the plan, and the cluster it will run on."""

    request: RunRequest
    plan: Plan
    cluster: ConnectedCluster | None
    """None when the plan was made without a cluster (``--list`` with ``--version``)."""
    server_version: str | None
    catalog_warning: str | None
    """Why the catalog version is not the server's (a newer server), or None."""


@dataclass(frozen=True)
class SessionResult:
    """A finished session: the record, where the bundle went, the catalog warning."""

    record: RunRecord
    output_dir: Path
    catalog_warning: str | None
    preflight: Preflight

    @property
    def exit_code(self) -> ExitCode:
        return self.record.exit_code


class RunSession:
    """One run: ``prepare()`` (no check runs yet), then ``run(prepared, …)``."""

    def __init__(
        self,
        request: RunRequest,
        registry: Registry | None = None,
        *,
        connect: Connect | None = None,
    ) -> None:
        if registry is None:
            from kaic.checks import load_builtin_checks

            registry = load_builtin_checks()
        self.request = request
        self.registry = registry
        self._connect = connect or _connect

    def prepare(self, *, need_cluster: bool = True) -> Prepared:
        """Judge the check options, connect (unless ``need_cluster`` is False and the
        request names a catalog version), pick the catalog version and make the plan."""
        req = self.request
        problems = check_option_problems(self.registry, req.check_options)
        if problems:
            raise UsageError(
                problems[0]
                if len(problems) == 1
                else f"{problems[0]} (and {len(problems) - 1} more)"
            )
        cluster: ConnectedCluster | None = None
        server: str | None = None
        if need_cluster or not req.version:
            cluster = self._connect(req.kubeconfig, req.context)
            server = check_reachable(cluster)
        version, warning = _catalog_version(req.version, server)
        plan = make_plan(
            catalog.load(version),
            self.registry,
            level=req.level,
            focus=req.focus,
            skip=req.skip,
            profile=req.profile,
        )
        return Prepared(req, plan, cluster, server, warning)

    def run(
        self,
        prepared: Prepared,
        *,
        observers: Sequence[Observer] = (),
        writer: Callable[[Path], Observer] | None = None,
    ) -> SessionResult:
        """Preflight, choose the output directory, execute. ``writer(output_dir)`` is
        the first observer (the bundle writer); ``observers`` follow it."""
        plan, req, cluster = prepared.plan, prepared.request, prepared.cluster
        if not plan.items:
            raise UsageError(
                f"--focus/--skip/--level/--profile select no requirement of catalog"
                f" v{plan.catalog_version}"
            )
        if cluster is None:
            raise UsageError("the session was prepared without a cluster")
        pre = preflight(cluster, plan, server_version=prepared.server_version)
        if not pre.ok:
            raise PreflightFailed(cluster.context, pre.missing)
        run_id = new_run_id()
        out = req.output_dir or Path("kaic-results") / run_id
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UsageError(f"--output-dir {out} is not empty")
        sinks = ([writer(out)] if writer else []) + list(observers)
        record = execute(
            cluster,
            plan,
            request=req,
            run_id=run_id,
            observers=sinks,
            cluster_info={
                "server_version": pre.server_version,
                "context": cluster.context,
                "server": cluster.server,
            },
        )
        return SessionResult(record, out, prepared.catalog_warning, pre)


def run(
    request: RunRequest,
    *,
    registry: Registry | None = None,
    observers: Sequence[Observer] = (),
    writer: Callable[[Path], Observer] | None = None,
) -> SessionResult:
    """Prepare and run one session (see ``RunSession``)."""
    session = RunSession(request, registry)
    return session.run(session.prepare(), observers=observers, writer=writer)


def _catalog_version(version: str | None, server: str | None) -> tuple[str, str | None]:
    """The catalog version asked for, or the one the server's version maps to, and the
    mapping's warning as a value."""
    if version:
        return catalog.load(version).version, None
    assert server is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mapped = catalog.map_server_version(server)
    return mapped, "; ".join(str(w.message) for w in caught) or None
