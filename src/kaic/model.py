"""Frozen value types shared by every layer: requirements, outcomes, results.

Owns: ``Level``, ``Outcome``, ``Requirement``, ``SubResult``, ``Evidence``,
``CheckResult``. Must not import anything above ``kaic.errors``; holds no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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
    manual_evidence: str = ""
    """For a requirement kaic does not prove: what evidence to attach by hand."""

    @property
    def is_must(self) -> bool:
        return self.level is Level.MUST


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

    def __post_init__(self) -> None:
        if self.outcome is not Outcome.PASS and not self.reason:
            raise ValueError(f"sub-test {self.name}: a {self.outcome.value} needs a reason")


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

    def __post_init__(self) -> None:
        if self.outcome is not Outcome.PASS and not self.reason:
            raise ValueError(f"{self.requirement_id}: a {self.outcome.value} result needs a reason")
