"""``kaic run``: parse the flags into a ``RunRequest``, call the run session, render.

Owns: the flags (check options are generated from the check registry), console
progress (rich on a TTY, plain lines otherwise), the plan listing and the messages
around a run. The session itself (connect, catalog version, plan, preflight, output
directory, execute) is ``kaic.runner.RunSession``; the exit rule is
``kaic.runner.exit_code``.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from kaic.checks import load_builtin_checks
from kaic.checks.base import Lock, Resource
from kaic.cli.output import emit_table
from kaic.errors import ExitCode
from kaic.model import PROFILES
from kaic.report import BundleWriter
from kaic.runner import (
    FAIL_ON,
    LEVELS,
    CheckDone,
    CheckLog,
    CheckStarted,
    CleanupDone,
    Event,
    Plan,
    PreflightFailed,
    RunFinished,
    RunRequest,
    RunSession,
    RunStarted,
    SubtestDone,
)

_CLUSTER_SHARED = Lock(Resource.CLUSTER, shared=True)
_STYLE = {"PASS": "green", "FAIL": "red", "ERROR": "yellow", "SKIP": "dim", "MANUAL": "cyan"}
_BUILTIN = {
    "kubeconfig",
    "context",
    "version",
    "level",
    "focus",
    "skip",
    "parallel",
    "timeout-scale",
    "list",
    "keep-resources",
    "output-dir",
    "help",
}


# -- progress -----------------------------------------------------------------------------


class PlainProgress:
    """One line per event on stderr: for CI logs and pipes."""

    def __init__(self, stream: Any = None, verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.t0 = time.monotonic()

    def _line(self, text: str) -> None:
        self.stream.write(f"[{time.monotonic() - self.t0:7.1f}s] {text}\n")
        self.stream.flush()

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            rec = event.record
            self._line(
                f"run {rec.run_id}: catalog v{rec.catalog_version},"
                f" {len(event.plan.items)} requirement(s),"
                f" {len(event.plan.automated)} automated"
            )
        elif isinstance(event, CheckStarted):
            where = f" in namespace {event.namespace}" if event.namespace else ""
            self._line(f"START {event.item.id} ({event.item.test_name}){where}")
        elif isinstance(event, CheckLog) and self.verbose:
            self._line(f"  {event.item.id}: {event.message}")
        elif isinstance(event, SubtestDone):
            s = event.sub
            why = f": {s.reason}" if s.reason else ""
            self._line(f"  {s.outcome.value:<6} {event.item.test_name}/{s.name}{why}")
        elif isinstance(event, CheckDone):
            r = event.result
            why = f": {r.reason}" if r.reason else ""
            self._line(f"{r.outcome.value:<6} {event.item.id} ({r.duration_s:.1f}s){why}")
        elif isinstance(event, CleanupDone):
            rep = event.report
            who = event.item.id if event.item else "run"
            msg = f"cleanup {who}: {len(rep.deleted)} object(s) deleted"
            if rep.failed:
                msg += "; NOT deleted: " + "; ".join(f"{ref} ({why})" for ref, why in rep.failed)
            self._line(msg)
        elif isinstance(event, RunFinished):
            rec = event.record
            state = "interrupted" if rec.interrupted else "finished"
            counts = ", ".join(f"{v} {k}" for k, v in rec.summary().items() if v)
            self._line(f"run {rec.run_id} {state}: {counts}")


class RichProgress:
    """A live table of running checks, finished ones printed above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.running: dict[str, tuple[float, str]] = {}
        self.live: Live | None = None

    def _table(self) -> Table:
        t = Table(box=None, show_header=False, pad_edge=False)
        now = time.monotonic()
        for rid, (start, step) in self.running.items():
            t.add_row("[bold blue]RUN[/]", rid, f"{now - start:5.1f}s", f"[dim]{step}[/]")
        return t

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            rec = event.record
            self.console.print(
                f"[bold]kaic run {rec.run_id}[/]: catalog v{rec.catalog_version},"
                f" {len(event.plan.items)} requirement(s)"
            )
            self.live = Live(
                self._table(), console=self.console, refresh_per_second=4, transient=True
            )
            self.live.start()
        elif isinstance(event, CheckStarted):
            self.running[event.item.id] = (time.monotonic(), "starting")
        elif isinstance(event, CheckLog) and event.item.id in self.running:
            start, _ = self.running[event.item.id]
            self.running[event.item.id] = (start, event.message[:80])
        elif isinstance(event, CheckDone):
            self.running.pop(event.item.id, None)
            r = event.result
            style = _STYLE.get(r.outcome.value, "")
            why = f" [dim]{r.reason}[/]" if r.reason else ""
            self.console.print(
                f"[{style}]{r.outcome.value:<6}[/] {event.item.id} ({r.duration_s:.1f}s){why}",
                highlight=False,
            )
        elif isinstance(event, CleanupDone) and event.report.failed:
            for ref, why in event.report.failed:
                self.console.print(f"[yellow]cleanup: {ref} not deleted: {why}[/]")
        elif isinstance(event, RunFinished):
            if self.live:
                self.live.stop()
            return
        if self.live:
            self.live.update(self._table())


# -- helpers ------------------------------------------------------------------------------


def _print_plan(plan: Plan, options: Mapping[str, str]) -> None:
    rows = []
    for item in plan.items:
        spec = item.spec
        how = "automated" if spec else "manual"
        opts = ", ".join(f"--{o.name}" for o in spec.options) if spec else ""
        timeout = f"{spec.timeout_s:.0f}s" if spec else ""
        level = item.requirement.level.value + (" (ext)" if item.requirement.is_extended else "")
        # NOTE: the cluster held shared is every declaring check's; only the rest is news.
        held = spec.held(options) if spec else ()
        locks = ", ".join(str(lk) for lk in held if lk != _CLUSTER_SHARED)
        rows.append([item.id, level, item.test_name, how, timeout, locks or "-", opts])
    emit_table(
        ["REQUIREMENT", "LEVEL", "TEST", "CHECK", "TIMEOUT", "HOLDS", "OPTIONS"],
        rows,
        title=f"plan for catalog v{plan.catalog_version}",
    )


def _check_option_params() -> list[click.Option]:
    params = []
    for opt in load_builtin_checks().options():
        if opt.name in _BUILTIN:
            raise RuntimeError(f"check option --{opt.name} collides with a kaic run flag")
        params.append(
            click.Option(
                [f"--{opt.name}", opt.name.replace("-", "_")],
                default=None,
                metavar="VALUE",
                help=f"[check option] {opt.help}"
                + (f" (default: {opt.default})" if opt.default else ""),
            )
        )
    return params


# -- commands -----------------------------------------------------------------------------


def _sigterm_is_ctrl_c(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run(**params: Any) -> int:
    """``kaic run``.

    NOTE: SIGTERM before the checks start (connecting, preflight) is Ctrl-C: exit 130
    with nothing created; while they run, the runner's own handler takes over."""
    if threading.current_thread() is not threading.main_thread():
        return _run_session(**params)
    old = signal.signal(signal.SIGTERM, _sigterm_is_ctrl_c)
    try:
        return _run_session(**params)
    finally:
        signal.signal(signal.SIGTERM, old)


def _run_session(
    kubeconfig: str | None,
    context: str | None,
    version: str | None,
    level: str,
    focus: str | None,
    skip: str | None,
    parallel: int | None,
    timeout_scale: float,
    list_only: bool,
    keep_resources: bool,
    output_dir: str | None,
    verbose: bool,
    profile: str,
    fail_on: str,
    **check_opts: str | None,
) -> int:
    request = RunRequest(
        kubeconfig=kubeconfig,
        context=context,
        version=version,
        level=level,
        focus=focus,
        skip=skip,
        parallel=parallel,
        timeout_scale=timeout_scale,
        keep_resources=keep_resources,
        output_dir=Path(output_dir) if output_dir else None,
        check_options={k.replace("_", "-"): v for k, v in check_opts.items() if v is not None},
        profile=profile,
        fail_on=fail_on,
    )
    session = RunSession(request, load_builtin_checks())
    prepared = session.prepare(need_cluster=not list_only)
    if prepared.catalog_warning:
        click.echo(f"kaic: warning: {prepared.catalog_warning}", err=True)
    if list_only:
        _print_plan(prepared.plan, request.check_options)
        return int(ExitCode.OK)
    progress: Any = (
        RichProgress(Console(file=sys.stderr))
        if sys.stderr.isatty()
        else PlainProgress(verbose=verbose)
    )
    try:
        done = session.run(prepared, observers=[progress], writer=BundleWriter)
    except PreflightFailed as e:
        click.echo(
            f"preflight: the credentials of context {e.context!r} lack these permissions:", err=True
        )
        for m in e.missing:
            where = f" in namespace {m.namespace}" if m.namespace else " (cluster-wide)"
            click.echo(f"  {m.requirement_id}: {m.permission}{where}", err=True)
        raise
    record = done.record
    click.echo(f"results: {done.output_dir}", err=True)
    if keep_resources:
        click.echo(
            f"resources kept; remove them with: kaic cleanup --run-id {record.run_id}", err=True
        )
    if record.interrupted:
        click.echo(
            "kaic: error: interrupted (cleanup ran; partial results are in the bundle)", err=True
        )
    return int(done.exit_code)


def _run_command() -> click.Command:
    return click.Command(
        "run",
        callback=_run,
        help=(
            "Run the checks of a catalog version against a cluster and write a result"
            " bundle. Exit code 0 only when every selected MUST requirement passed (or"
            " does not apply); with --fail-on extended, every selected extended"
            " requirement too."
        ),
        params=[
            click.Option(
                ["--kubeconfig"],
                type=click.Path(dir_okay=False),
                help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
            ),
            click.Option(["--context"], help="kubeconfig context (default: current)"),
            click.Option(
                ["--version", "version"],
                metavar="V",
                help="catalog version (default: from the server's version)",
            ),
            click.Option(
                ["--level"],
                type=click.Choice(LEVELS, case_sensitive=False),
                default="all",
                show_default=True,
                help="which requirements to select",
            ),
            click.Option(
                ["--profile"],
                type=click.Choice(PROFILES, case_sensitive=False),
                default="official",
                show_default=True,
                help="official: the checklist's requirements; extended: kaic's informative"
                " checks of the program document's other capabilities; all: both",
            ),
            click.Option(
                ["--fail-on"],
                type=click.Choice(FAIL_ON, case_sensitive=False),
                default="must",
                show_default=True,
                help="what decides exit code 1: a MUST not met (the program's rule), or"
                " also an extended requirement not met",
            ),
            click.Option(
                ["--focus"], metavar="REGEX", help="only requirements whose id or test name matches"
            ),
            click.Option(
                ["--skip"],
                metavar="REGEX",
                help="leave out requirements whose id or test name matches",
            ),
            click.Option(
                ["--parallel", "-p"],
                type=int,
                default=None,
                metavar="N",
                help="at most N checks at the same time (default: every check that no"
                " running check conflicts with; 1: one after another, in catalog order)",
            ),
            click.Option(
                ["--timeout-scale"],
                type=float,
                default=1.0,
                show_default=True,
                help="multiply every check's timeout (slow clusters; a positive, finite number)",
            ),
            click.Option(["--list", "list_only"], is_flag=True, help="print the plan and exit"),
            click.Option(
                ["--keep-resources"],
                is_flag=True,
                help="do not delete what the checks created (debugging)",
            ),
            click.Option(
                ["--output-dir", "-o"],
                type=click.Path(file_okay=False),
                help="bundle directory (default: ./kaic-results/<run-id>/)",
            ),
            click.Option(
                ["--verbose", "-v"],
                is_flag=True,
                help="also print each check's log lines (plain output)",
            ),
            *_check_option_params(),
        ],
    )


run_cmd = _run_command()
