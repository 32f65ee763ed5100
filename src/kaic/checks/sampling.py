"""Samples of large inventories: a check that would probe every node of a cluster with
thousands picks a spread of them, and says so.

Owns: ``spread`` (a deterministic, evenly spread sample that keeps the first and last
items) and ``limit_option`` (the check option that caps a sample). Must not decide pass
or fail: a check names its sample in its log and evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from kaic.checks.base import CheckContext
from kaic.errors import UsageError

T = TypeVar("T")

__all__ = ["limit_option", "spread"]


def spread(items: Sequence[T], limit: int) -> list[T]:
    """``items``, or ``limit`` of them spread evenly over the sequence (first and last
    included); the same input gives the same sample."""
    if len(items) <= limit:
        return list(items)
    if limit <= 1:
        return list(items[:limit])
    step = (len(items) - 1) / (limit - 1)
    return [items[round(i * step)] for i in range(limit)]


def limit_option(ctx: CheckContext, name: str) -> int:
    """The whole number of 1 or more that check option ``--<name>`` gives."""
    value = ctx.option(name) or ""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"--{name} must be a whole number of 1 or more, got {value!r}")
    return n
