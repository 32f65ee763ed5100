"""Spread samples of large inventories (kaic.checks.sampling)."""

from __future__ import annotations

import itertools

import pytest

from kaic.checks.sampling import spread


def test_spread_keeps_everything_under_the_limit() -> None:
    assert spread([1, 2, 3], 5) == [1, 2, 3]
    assert spread([1, 2, 3], 3) == [1, 2, 3]


@pytest.mark.parametrize(("n", "limit"), [(10, 3), (5000, 16), (201, 200), (7, 2)])
def test_spread_is_even_deterministic_and_keeps_both_ends(n: int, limit: int) -> None:
    items = list(range(n))
    got = spread(items, limit)
    assert len(got) == limit == len(set(got))
    assert got[0] == 0 and got[-1] == n - 1
    assert got == sorted(got) == spread(items, limit)
    gaps = [b - a for a, b in itertools.pairwise(got)]
    assert max(gaps) - min(gaps) <= 1


def test_spread_of_one() -> None:
    assert spread(["a", "b", "c"], 1) == ["a"]
