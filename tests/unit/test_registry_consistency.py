"""Every automated requirement of every catalog version has a registered check."""

from __future__ import annotations

import pytest

from kaic import catalog
from kaic.checks import load_builtin_checks


@pytest.mark.parametrize("version", catalog.versions())
def test_every_automated_requirement_has_a_check(version: str) -> None:
    registry = load_builtin_checks()
    c = catalog.load(version)
    missing = [r.id for r, spec in registry.for_catalog(c) if r.automated and spec is None]
    pending: set[str] = set()
    # NOTE: the set above shrinks as checks land; it must be empty when all have landed.
    assert [m for m in missing if m not in pending] == []


@pytest.mark.parametrize("version", catalog.versions())
def test_checks_use_the_catalog_test_name(version: str) -> None:
    registry = load_builtin_checks()
    for r, spec in registry.for_catalog(catalog.load(version)):
        if spec is not None:
            assert spec.test_name == r.test_name, r.id
