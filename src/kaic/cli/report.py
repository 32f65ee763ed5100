"""``kaic report``: re-render a result bundle.

Owns: the command's flags and output. Reading ``run.json`` is ``kaic.runner.read_record``
(the one strict reader, shared with ``kaic checklist fill``); rendering is
``kaic.report``; the exit code is the run's own (``kaic.runner.exit_code``).
"""

from __future__ import annotations

from pathlib import Path

import click

from kaic.errors import InputError
from kaic.report import render_html, render_markdown
from kaic.runner import NoRunRecordError, read_record


@click.command("report")
@click.argument("bundle", type=click.Path(exists=False))
@click.option(
    "--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), help="write to this file instead of stdout"
)
def report_cmd(bundle: str, fmt: str, output: str | None) -> int:
    """Re-render a result bundle (its run.json) as Markdown, HTML or JSON.

    Exits with the run's own exit code (0, 1 or 130), so scripts can gate on it."""
    try:
        record = read_record(Path(bundle))
    except NoRunRecordError:
        path = Path(bundle) / "run.json" if Path(bundle).is_dir() else Path(bundle)
        raise InputError(f"{path} does not exist (is {bundle} a kaic result bundle?)") from None
    if fmt == "json":
        text = record.dumps()
    else:
        text = render_markdown(record) if fmt == "md" else render_html(record)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot write {output}: {e.strerror or e}") from e
    else:
        click.echo(text, nl=False)
    return int(record.exit_code)
