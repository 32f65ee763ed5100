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
