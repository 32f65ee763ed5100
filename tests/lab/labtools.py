"""Helpers for the lab tests (importable as ``labtools`` from tests/lab)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from kaic.lab import Lab

LabFactory = Callable[..., Lab]


def wait_for(cond: Callable[[], Any], *, timeout: float = 60.0, what: str = "condition",
             fail: bool = True) -> Any:
    """Poll ``cond`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.2)
    if not fail:
        return last
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
