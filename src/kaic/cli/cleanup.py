"""``kaic cleanup``: remove what kaic runs left on a cluster.

Owns: the command's flags and output. Finding and deleting is ``kaic.cluster.tracking``.
"""

from __future__ import annotations

import click

from kaic.cluster.client import connect
from kaic.cluster.tracking import delete_leftovers, find_leftovers
from kaic.errors import ExitCode
from kaic.runner import check_reachable


@click.command("cleanup")
@click.option("--run-id", help="only what this run left behind (default: every kaic run)")
@click.option("--kubeconfig", type=click.Path(dir_okay=False))
@click.option("--context")
@click.option("--dry-run", is_flag=True, help="list the leftovers, delete nothing")
@click.option(
    "--wait-timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="seconds to wait for each object to disappear",
)
def cleanup_cmd(
    run_id: str | None,
    kubeconfig: str | None,
    context: str | None,
    dry_run: bool,
    wait_timeout: float,
) -> int:
    """Delete objects labelled app.kubernetes.io/managed-by=kaic (of one run, or all).

    Exit code 0 when nothing is left, 1 when some objects could not be deleted."""
    cluster = connect(kubeconfig, context)
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
