"""Commands that need no cluster start without the Kubernetes client: command groups
are imported lazily, only when they run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parents[1] / "golden" / "bundle"


def imported_modules(*args: str) -> list[str]:
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kaic", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return [
        line.rsplit("|", 1)[-1].strip()
        for line in r.stderr.splitlines()
        if line.startswith("import time:")
    ]


@pytest.mark.parametrize(
    "args", [("--version",), ("catalog", "list"), ("--help",), ("report", str(GOLDEN))]
)
def test_commands_without_a_cluster_import_no_kubernetes_module(args: tuple[str, ...]) -> None:
    modules = imported_modules(*args)
    assert "kaic.cli.main" in modules
    assert [m for m in modules if m.split(".")[0] == "kubernetes"] == []


def test_version_imports_no_command_group() -> None:
    modules = imported_modules("--version")
    assert [m for m in modules if m.startswith("kaic.cli.") and m != "kaic.cli.main"] == []


def test_help_lists_every_command_without_importing_them() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "kaic", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert r.returncode == 0
    for name in ("catalog", "checklist", "cleanup", "lab", "report", "run"):
        assert f"  {name} " in r.stdout


def test_the_help_listing_says_what_each_command_says_of_itself() -> None:
    from kaic.cli import main

    for name, (load, summary) in main._COMMANDS.items():
        command = load()
        assert command.name == name
        assert (command.help or "").startswith(summary), name
