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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Wall time per test tier (tests/<tier>/…), setup and teardown included."""
    import time

    start = time.monotonic()
    yield
    tier = Path(str(item.path)).relative_to(Path(__file__).parent).parts[0]
    _tier_seconds[tier] = _tier_seconds.get(tier, 0.0) + time.monotonic() - start


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _tier_seconds:
        terminalreporter.write_line(
            "test tiers: "
            + ", ".join(
                f"{tier} {seconds:.0f} s" for tier, seconds in sorted(_tier_seconds.items())
            )
        )
