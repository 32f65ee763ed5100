"""Which requirements a run covers, and with which checks.

Owns: ``Plan``/``PlanItem``, ``make_plan`` (catalog order, ``--level``, ``--focus``
and ``--skip`` as regular expressions on the requirement id or the test name) and
``check_option_problems`` (every check option value judged before anything runs).
Must not run anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kaic.catalog import Catalog
from kaic.checks.base import CheckSpec, Registry
from kaic.errors import UsageError
from kaic.model import Level, Requirement
from kaic.runner.request import LEVELS

__all__ = ["LEVELS", "Plan", "PlanItem", "check_option_problems", "make_plan"]


@dataclass(frozen=True)
class PlanItem:
    """One selected requirement and the check that proves it (None: manual evidence)."""

    requirement: Requirement
    spec: CheckSpec | None

    @property
    def id(self) -> str:
        return self.requirement.id

    @property
    def test_name(self) -> str:
        if self.spec is not None:
            return self.spec.test_name
        return self.requirement.test_name or _camel_test_name(self.requirement.id)

    @property
    def namespace_prefix(self) -> str:
        return "kaic-" + self.id.replace("_", "-")


@dataclass(frozen=True)
class Plan:
    catalog_version: str
    items: tuple[PlanItem, ...]
    level: str = "all"
    focus: str | None = None
    skip: str | None = None
    profile: str = "official"

    @property
    def automated(self) -> tuple[PlanItem, ...]:
        return tuple(i for i in self.items if i.spec is not None)


def _camel_test_name(requirement_id: str) -> str:
    return "Test" + "".join(p.capitalize() for p in requirement_id.split("_"))


def _compile(pattern: str | None, flag: str) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise UsageError(f"{flag} {pattern!r} is not a valid regular expression: {e}") from e


def make_plan(
    catalog: Catalog,
    registry: Registry,
    *,
    level: str = "all",
    focus: str | None = None,
    skip: str | None = None,
    profile: str = "official",
) -> Plan:
    """The requirements of ``catalog``'s ``profile`` selected by level (any case), focus
    and skip, in catalog order (official before extended)."""
    level = level.lower()
    if level not in LEVELS:
        raise UsageError(f"--level must be one of {', '.join(LEVELS)}, got {level!r}")
    want = _compile(focus, "--focus")
    drop = _compile(skip, "--skip")
    items: list[PlanItem] = []
    for req, spec in registry.for_catalog(catalog, profile):
        if level == "must" and req.level is not Level.MUST:
            continue
        if level == "should" and req.level is not Level.SHOULD:
            continue
        item = PlanItem(req, spec)
        names = (item.id, item.test_name)
        if want and not any(want.search(n) for n in names):
            continue
        if drop and any(drop.search(n) for n in names):
            continue
        items.append(item)
    return Plan(catalog.version, tuple(items), level, focus, skip, profile)


def check_option_problems(registry: Registry, values: Mapping[str, str]) -> list[str]:
    """One line per check option value that no check declares or that its option
    rejects (``CheckOption.problem``); empty when all are fine."""
    known = {o.name: o for o in registry.options()}
    problems = []
    for name, value in values.items():
        opt = known.get(name)
        if opt is None:
            problems.append(f"--{name} is not an option of any check")
        elif (why := opt.problem(value)) is not None:
            problems.append(why)
    return problems
