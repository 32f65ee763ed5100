"""Shared pytest configuration."""

from __future__ import annotations

from pathlib import Path

import pytest


def _find_shared() -> Path:
    """``../shared`` beside the repository (searched upwards, for worktrees too)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared"
        if (candidate / "data" / "cncf-checklist-templates").is_dir():
            return candidate
    return Path(__file__).resolve().parents[2] / "shared"


SHARED = _find_shared()
TEMPLATES = SHARED / "data" / "cncf-checklist-templates"


@pytest.fixture(scope="session")
def templates_dir() -> Path:
    """The official checklist templates in ../shared (read-only reference)."""
    if not TEMPLATES.is_dir():
        pytest.skip(f"official templates not found at {TEMPLATES}")
    return TEMPLATES


_tier_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Time per test tier (tests/<tier>/…), setup and teardown included; with ``-n``
    (pytest-xdist) the reports of every worker arrive here, so a tier's time is summed
    over the workers."""
    parts = report.nodeid.split("::", 1)[0].split("/")
    if len(parts) > 2 and parts[0] == "tests":
        _tier_seconds[parts[1]] = _tier_seconds.get(parts[1], 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _tier_seconds:
        terminalreporter.write_line(
            "test tiers: "
            + ", ".join(
                f"{tier} {seconds:.0f} s" for tier, seconds in sorted(_tier_seconds.items())
            )
        )
