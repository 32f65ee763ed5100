"""Frozen value types shared by every layer: requirements, outcomes, results.

Owns: ``Level``, ``Outcome``, ``Requirement``, ``SubResult``, ``Evidence``,
``Series``, ``CheckResult``. Must not import anything above ``kaic.errors``; holds no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

OFFICIAL = "official"
EXTENDED = "extended"
PROFILES = (OFFICIAL, EXTENDED, "all")
"""``kaic run --profile`` values: the checklist's requirements, kaic's extended profile,
or both."""


class Level(StrEnum):
    """How binding a requirement is in a catalog version."""

    MUST = "MUST"
    SHOULD = "SHOULD"


class Outcome(StrEnum):
    """The verdict of a check or of one of its sub-tests.

    FAIL means the requirement is not met; ERROR means kaic could not decide.
    Every outcome but PASS carries a reason.
    """

    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"
    ERROR = "ERROR"
    MANUAL = "MANUAL"


@dataclass(frozen=True)
class Requirement:
    """One requirement of one catalog version, as in the official template plus our fields."""

    id: str
    category: str
    level: Level
    description: str
    conditional: bool = False
    test_name: str | None = None
    test_status: str | None = None
    kar: str | None = None
    how_we_test: str = ""
    automated: bool = False
    profile: str = "official"
    """``official`` (a checklist id of the template) or ``extended`` (kaic's own id for a
    capability of the program's conformance document; never in PRODUCT.yaml)."""
    section: str = ""
    """For an extended requirement: the conformance document's row it comes from."""
    manual_evidence: str = ""
    """For a requirement kaic does not prove: what evidence to attach by hand."""

    @property
    def is_must(self) -> bool:
        return self.level is Level.MUST

    @property
    def is_extended(self) -> bool:
        return self.profile == EXTENDED


@dataclass(frozen=True)
class Evidence:
    """A piece of evidence a check collected: a name, a media type and its text."""

    name: str
    content: str
    media_type: str = "text/plain"


@dataclass(frozen=True)
class SubResult:
    """The verdict of one sub-test, named like the upstream Go subtest."""

    name: str
    outcome: Outcome
    reason: str = ""
    duration_s: float = 0.0
    log: tuple[str, ...] = ()
    start_s: float | None = None
    """When it started, in seconds after its check started (None: not recorded)."""

    def __post_init__(self) -> None:
        if self.outcome is not Outcome.PASS and not self.reason:
            raise ValueError(f"sub-test {self.name}: a {self.outcome.value} needs a reason")


@dataclass(frozen=True)
class Series:
    """A quantity a check observed over time: ``points`` are ``(seconds after the check
    started, value)`` in time order; series with the same ``chart`` share one chart
    (one unit); ``target`` is the value the check compares them with, if any."""

    name: str
    chart: str
    unit: str = ""
    points: tuple[tuple[float, float], ...] = ()
    target: float | None = None


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check for one requirement, with its sub-tests and evidence."""

    requirement_id: str
    test_name: str
    outcome: Outcome
    reason: str = ""
    subresults: tuple[SubResult, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    duration_s: float = 0.0
    log: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    not_applicable: bool = False
    """True only for a SKIP because the requirement does not apply to the platform."""
    series: tuple[Series, ...] = ()
    """Quantities the check sampled while it ran (charted by the report)."""

    def __post_init__(self) -> None:
        if self.outcome is not Outcome.PASS and not self.reason:
            raise ValueError(f"{self.requirement_id}: a {self.outcome.value} result needs a reason")
