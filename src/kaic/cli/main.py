"""The ``kaic`` entry point: the command tree and the one fatal-error path."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from typing import NoReturn

import click

from kaic import __version__
from kaic.errors import ExitCode, KaicError


def _catalog() -> click.Command:
    from kaic.cli.catalog import catalog_group

    return catalog_group


def _checklist() -> click.Command:
    from kaic.cli.checklist import checklist_group

    return checklist_group


def _lab() -> click.Command:
    from kaic.cli.lab import lab_group

    return lab_group


def _run() -> click.Command:
    from kaic.cli.run import run_cmd

    return run_cmd


def _report() -> click.Command:
    from kaic.cli.report import report_cmd

    return report_cmd


def _cleanup() -> click.Command:
    from kaic.cli.cleanup import cleanup_cmd

    return cleanup_cmd


# NOTE: each summary is the first sentence of the command's own help
# (tests/unit/test_cli_startup.py keeps them equal), so that ``kaic --help`` need not
# import every command.
_COMMANDS: dict[str, tuple[Callable[[], click.Command], str]] = {
    "catalog": (_catalog, "Browse the versioned requirement catalog."),
    "checklist": (
        _checklist,
        "Write, fill and validate the self-assessment checklist (PRODUCT.yaml).",
    ),
    "cleanup": (
        _cleanup,
        "Delete objects labelled app.kubernetes.io/managed-by=kaic (of one run, or all).",
    ),
    "lab": (_lab, "A local Kubernetes cluster of real upstream binaries with simulated GPUs."),
    "report": (_report, "Re-render a result bundle (its run.json) as Markdown, HTML or JSON."),
    "run": (
        _run,
        "Run the checks of a catalog version against a cluster and write a result bundle.",
    ),
}


class _LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or its help is shown),
    so that ``kaic --version`` or ``kaic catalog list`` never import the Kubernetes
    client. ``kaic --help`` lists the commands from their one-line help here."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        return entry[0]() if entry else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in sorted(_COMMANDS.items())])


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="kaic")
def cli() -> None:
    """kaic: prove a Kubernetes cluster meets the CNCF Kubernetes AI Conformance requirements."""


def _fail(message: str, code: ExitCode) -> NoReturn:
    click.echo(f"kaic: error: {message}", err=True)
    sys.exit(int(code))


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI; every error becomes one line on stderr and a documented exit code."""
    warnings.simplefilter("default")
    # NOTE: a connection still open when Ctrl-C or SIGTERM ends a request is closed at
    # exit; Python's "unclosed socket" ResourceWarning would be the run's last line.
    warnings.simplefilter("ignore", ResourceWarning)
    warnings.formatwarning = lambda msg, *a, **k: f"kaic: warning: {msg}\n"
    try:
        rv = cli.main(args=argv, prog_name="kaic", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else str(e))
        sys.exit(int(ExitCode.USAGE))
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
        _fail(f"{e.format_message()}{hint}", ExitCode.USAGE)
    except click.exceptions.Abort:
        _fail("interrupted", ExitCode.INTERRUPTED)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        _fail(e.format_message(), ExitCode.USAGE)
    except KaicError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", ExitCode.INTERRUPTED)
    except BrokenPipeError:
        sys.exit(int(ExitCode.OK))
    except Exception as e:
        # NOTE: the last line of defence: a bug must not greet the user with a traceback;
        # KAIC_DEBUG=1 shows it.
        if os.environ.get("KAIC_DEBUG"):
            raise
        _fail(
            f"internal error: {type(e).__name__}: {e} (set KAIC_DEBUG=1 for the traceback)",
            ExitCode.INTERNAL,
        )
    sys.exit(int(rv) if isinstance(rv, int) else int(ExitCode.OK))
