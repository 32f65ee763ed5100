"""``kaic run``, ``kaic report`` and ``kaic cleanup``.

Owns: their flags (check options are generated from the check registry), console
progress (rich on a TTY, plain lines otherwise), and exit codes. The logic lives in
``kaic.runner``, ``kaic.report`` and ``kaic.cluster``.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from kaic import catalog
from kaic.checks import load_builtin_checks
from kaic.cli.output import emit_table
from kaic.cluster.client import Cluster, connect
from kaic.cluster.tracking import delete_leftovers, find_leftovers
from kaic.errors import ExitCode, PermissionDeniedError, UsageError
from kaic.report import BundleWriter, load_record, render_html, render_markdown
from kaic.runner import (
    CheckDone,
    CheckLog,
    CheckStarted,
    CleanupDone,
    Event,
    Plan,
    RunFinished,
    RunOptions,
    RunStarted,
    SubtestDone,
    check_reachable,
    execute,
    exit_code,
    make_plan,
    new_run_id,
    preflight,
)
from kaic.runner.plan import LEVELS

_STYLE = {"PASS": "green", "FAIL": "red", "ERROR": "yellow", "SKIP": "dim", "MANUAL": "cyan"}
_BUILTIN = {"kubeconfig", "context", "version", "level", "focus", "skip", "parallel",
            "timeout-scale", "list", "keep-resources", "output-dir", "help"}


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
            self._line(f"run {rec.run_id}: catalog v{rec.catalog_version},"
                       f" {len(event.plan.items)} requirement(s),"
                       f" {len(event.plan.automated)} automated")
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
            self.console.print(f"[bold]kaic run {rec.run_id}[/]: catalog v{rec.catalog_version},"
                               f" {len(event.plan.items)} requirement(s)")
            self.live = Live(self._table(), console=self.console, refresh_per_second=4,
                             transient=True)
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
            self.console.print(f"[{style}]{r.outcome.value:<6}[/] {event.item.id}"
                               f" ({r.duration_s:.1f}s){why}", highlight=False)
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


def _connect(kubeconfig: str | None, context: str | None) -> Cluster:
    return connect(kubeconfig, context)


def _catalog_version(version: str | None, cluster: Cluster | None) -> tuple[str, str | None]:
    if version:
        return catalog.load(version).version, None
    assert cluster is not None
    server = check_reachable(cluster)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mapped = catalog.map_server_version(server)
    for w in caught:
        click.echo(f"kaic: warning: {w.message}", err=True)
    return mapped, server


def _print_plan(plan: Plan) -> None:
    rows = []
    for item in plan.items:
        spec = item.spec
        how = "automated" if spec else "manual"
        opts = ", ".join(f"--{o.name}" for o in spec.options) if spec else ""
        timeout = f"{spec.timeout_s:.0f}s" if spec else ""
        rows.append([item.id, item.requirement.level.value, item.test_name, how, timeout,
                     opts])
    emit_table(["REQUIREMENT", "LEVEL", "TEST", "CHECK", "TIMEOUT", "OPTIONS"], rows,
               title=f"plan for catalog v{plan.catalog_version}")


def _check_option_params() -> list[click.Option]:
    params = []
    for opt in load_builtin_checks().options():
        if opt.name in _BUILTIN:
            raise RuntimeError(f"check option --{opt.name} collides with a kaic run flag")
        params.append(click.Option([f"--{opt.name}", opt.name.replace("-", "_")],
                                   default=None, metavar="VALUE",
                                   help=f"[check option] {opt.help}"
                                        + (f" (default: {opt.default})" if opt.default
                                           else "")))
    return params


# -- commands -----------------------------------------------------------------------------


def _run(kubeconfig: str | None, context: str | None, version: str | None, level: str,
         focus: str | None, skip: str | None, parallel: int, timeout_scale: float,
         list_only: bool, keep_resources: bool, output_dir: str | None,
         verbose: bool, **check_opts: str | None) -> int:
    registry = load_builtin_checks()
    if parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if timeout_scale <= 0:
        raise UsageError("--timeout-scale must be positive")
    cluster = None if (version and list_only) else _connect(kubeconfig, context)
    catalog_version, server = _catalog_version(version, cluster)
    plan = make_plan(catalog.load(catalog_version), registry, level=level, focus=focus,
                     skip=skip)
    if list_only:
        _print_plan(plan)
        return int(ExitCode.OK)
    if not plan.items:
        raise UsageError("--focus/--skip/--level select no requirement"
                         f" of catalog v{catalog_version}")
    assert cluster is not None
    pre = preflight(cluster, plan)
    server = server or pre.server_version
    if not pre.ok:
        click.echo(f"preflight: the credentials of context {cluster.context!r} lack"
                   " these permissions:", err=True)
        for m in pre.missing:
            where = f" in namespace {m.namespace}" if m.namespace else " (cluster-wide)"
            click.echo(f"  {m.requirement_id}: {m.permission}{where}", err=True)
        raise PermissionDeniedError(
            f"preflight failed: {len(pre.missing)} permission(s) missing (listed above);"
            " nothing was run")
    run_id = new_run_id()
    out = Path(output_dir) if output_dir else Path("kaic-results") / run_id
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--output-dir {out} is not empty")
    opts = {k.replace("_", "-"): v for k, v in check_opts.items()}
    progress: Any = (RichProgress(Console(file=sys.stderr)) if sys.stderr.isatty()
                     else PlainProgress(verbose=verbose))
    record = execute(
        cluster, plan, run_id=run_id,
        options=RunOptions(parallel=parallel, keep_resources=keep_resources,
                           check_options=opts, timeout_scale=timeout_scale),
        observers=[BundleWriter(out), progress],
        cluster_info={"server_version": server, "context": cluster.context,
                      "server": cluster.server},
        run_options={"level": level, "focus": focus, "skip": skip, "parallel": parallel,
                     "timeout_scale": timeout_scale, "keep_resources": keep_resources,
                     "check_options": {k: v for k, v in opts.items() if v is not None}},
    )
    code = exit_code(record)
    click.echo(f"results: {out}", err=True)
    if keep_resources:
        click.echo(f"resources kept; remove them with: kaic cleanup --run-id {run_id}",
                   err=True)
    if record.interrupted:
        click.echo("kaic: error: interrupted (cleanup ran; partial results are in the"
                   " bundle)", err=True)
    return int(code)


def register(cli: click.Group) -> None:
    run_cmd = click.Command(
        "run", callback=_run, help=(
            "Run the checks of a catalog version against a cluster and write a result"
            " bundle. Exit code 0 only when every selected MUST requirement passed (or"
            " does not apply)."),
        params=[
            click.Option(["--kubeconfig"], type=click.Path(dir_okay=False),
                         help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config,"
                              " in-cluster)"),
            click.Option(["--context"], help="kubeconfig context (default: current)"),
            click.Option(["--version", "version"], metavar="V",
                         help="catalog version (default: from the server's version)"),
            click.Option(["--level"], type=click.Choice(LEVELS), default="all",
                         show_default=True, help="which requirements to select"),
            click.Option(["--focus"], metavar="REGEX",
                         help="only requirements whose id or test name matches"),
            click.Option(["--skip"], metavar="REGEX",
                         help="leave out requirements whose id or test name matches"),
            click.Option(["--parallel", "-p"], type=int, default=1, show_default=True,
                         help="checks run at the same time"),
            click.Option(["--timeout-scale"], type=float, default=1.0, show_default=True,
                         help="multiply every check's timeout (slow clusters)"),
            click.Option(["--list", "list_only"], is_flag=True,
                         help="print the plan and exit"),
            click.Option(["--keep-resources"], is_flag=True,
                         help="do not delete what the checks created (debugging)"),
            click.Option(["--output-dir", "-o"], type=click.Path(file_okay=False),
                         help="bundle directory (default: ./kaic-results/<run-id>/)"),
            click.Option(["--verbose", "-v"], is_flag=True,
                         help="also print each check's log lines (plain output)"),
            *_check_option_params(),
        ],
    )
    cli.add_command(run_cmd)
    cli.add_command(report_cmd)
    cli.add_command(cleanup_cmd)


@click.command("report")
@click.argument("bundle", type=click.Path(exists=False))
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="write to this file instead of stdout")
def report_cmd(bundle: str, fmt: str, output: str | None) -> int:
    """Re-render a result bundle (its run.json) as Markdown, HTML or JSON.

    Exits with the run's own exit code (0, 1 or 130), so scripts can gate on it."""
    record = load_record(Path(bundle))
    if fmt == "json":
        text = record.dumps()
    else:
        text = render_markdown(record) if fmt == "md" else render_html(record)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
    return int(exit_code(record))


@click.command("cleanup")
@click.option("--run-id", help="only what this run left behind (default: every kaic run)")
@click.option("--kubeconfig", type=click.Path(dir_okay=False))
@click.option("--context")
@click.option("--dry-run", is_flag=True, help="list the leftovers, delete nothing")
@click.option("--wait-timeout", type=float, default=120.0, show_default=True,
              help="seconds to wait for each object to disappear")
def cleanup_cmd(run_id: str | None, kubeconfig: str | None, context: str | None,
                dry_run: bool, wait_timeout: float) -> int:
    """Delete objects labelled app.kubernetes.io/managed-by=kaic (of one run, or all).

    Exit code 0 when nothing is left, 1 when some objects could not be deleted."""
    cluster = _connect(kubeconfig, context)
    check_reachable(cluster)
    leftovers = find_leftovers(cluster, run_id)
    scope = f"run {run_id}" if run_id else "any kaic run"
    if not leftovers:
        click.echo(f"nothing left behind by {scope}", err=True)
        return int(ExitCode.OK)
    for lo in leftovers:
        click.echo(f"{lo.ref}\trun {lo.run_id or '?'}\tcheck {lo.check or '?'}")
    if dry_run:
        return int(ExitCode.OK)
    report = delete_leftovers(cluster, leftovers, wait_timeout=wait_timeout)
    click.echo(f"deleted {len(report.deleted)} object(s) left by {scope}", err=True)
    for ref, why in report.failed:
        click.echo(f"kaic: error: could not delete {ref}: {why}", err=True)
    return int(ExitCode.NOT_MET if report.failed else ExitCode.OK)
