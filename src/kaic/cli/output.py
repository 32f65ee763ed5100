"""Rendering helpers shared by the commands: structured output and tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table

OUTPUT_CHOICE = click.Choice(["text", "json", "yaml"], case_sensitive=False)


def stdout_console() -> Console:
    """A console on stdout; no colour or wrapping when stdout is not a terminal."""
    tty = sys.stdout.isatty()
    return Console(
        file=sys.stdout,
        no_color=not tty,
        highlight=False,
        soft_wrap=not tty,
        width=None if tty else 200,
    )


def stderr_console() -> Console:
    """A console on stderr; no colour or wrapping when stderr is not a terminal."""
    tty = sys.stderr.isatty()
    return Console(file=sys.stderr, highlight=False, no_color=not tty, soft_wrap=not tty)


def emit_structured(data: Any, fmt: str) -> None:
    """Write ``data`` as JSON or YAML to stdout (stable key order, trailing newline)."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000), nl=False)


def emit_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None
) -> None:
    table = Table(
        *headers, title=title, show_lines=False, box=None, pad_edge=False, header_style="bold"
    )
    for row in rows:
        table.add_row(*row)
    stdout_console().print(table)
