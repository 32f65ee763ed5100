"""The ``kaic`` entry point: the command tree and the one fatal-error path."""

from __future__ import annotations

import os
import sys
import warnings
from typing import NoReturn

import click

from kaic import __version__
from kaic.errors import ExitCode, KaicError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="kaic")
def cli() -> None:
    """kaic: prove a Kubernetes cluster meets the CNCF Kubernetes AI Conformance requirements."""


def _register() -> None:
    from kaic.cli.catalog import catalog_group

    cli.add_command(catalog_group)
    # Optional command groups land as their layers do; each module exposes ``register``.
    for name in ("checklist", "lab", "run"):
        try:
            module = __import__(f"kaic.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"kaic.cli.{name}":
                raise
            continue
        module.register(cli)


_register()


def _fail(message: str, code: ExitCode) -> NoReturn:
    click.echo(f"kaic: error: {message}", err=True)
    sys.exit(int(code))


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI; every error becomes one line on stderr and a documented exit code."""
    warnings.simplefilter("default")
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
        _fail(f"internal error: {type(e).__name__}: {e} (set KAIC_DEBUG=1 for the traceback)",
              ExitCode.INTERNAL)
    sys.exit(int(rv) if isinstance(rv, int) else int(ExitCode.OK))
