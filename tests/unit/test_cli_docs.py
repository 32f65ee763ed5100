"""docs/cli.md names every option of every command (check options are in docs/checks.md)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from kaic.cli.main import cli

DOCS = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        out.append((f"{prefix}{name}", cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix}{name} ")
    return out


def test_every_option_is_in_docs_cli_md() -> None:
    missing = []
    for name, cmd in _commands(cli):
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.hidden or "[check option]" in (p.help or ""):
                continue
            for opt in [*p.opts, *p.secondary_opts]:
                if opt in ("-h", "--help"):
                    continue
                if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", DOCS):
                    missing.append(f"kaic {name} {opt}")
    assert missing == []
