"""Shared pytest configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEMPLATES = SHARED / "data" / "cncf-checklist-templates"


@pytest.fixture(scope="session")
def templates_dir() -> Path:
    """The official checklist templates in ../shared (read-only reference)."""
    if not TEMPLATES.is_dir():
        pytest.skip(f"official templates not found at {TEMPLATES}")
    return TEMPLATES
