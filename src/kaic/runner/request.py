"""What a run is asked to do: ``RunRequest``, the typed input of a run session.

Owns: the request's fields, their validation (a bad value is a ``UsageError`` before
anything runs) and its JSON form, which is ``run.json``'s ``options``
(docs/bundle.md). Must not connect, plan or run anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaic.errors import UsageError
from kaic.model import PROFILES

LEVELS = ("must", "should", "all")
FAIL_ON = ("must", "extended")
"""``--fail-on``: ``must`` (the program's rule: every selected MUST passes) or
``extended`` (also every selected extended requirement)."""


@dataclass(frozen=True)
class RunRequest:
    """One ``kaic run``: which cluster, which requirements, how, and where to write.

    ``version`` None: the catalog version follows the server's Kubernetes version.
    ``output_dir`` None: ``./kaic-results/<run-id>/``. ``check_options`` holds the
    values given for check options (``--gang-image`` → ``{"gang-image": …}``).
    ``parallel`` None: every check runs as soon as no running check holds what it
    needs (its locks); N: at most N at a time; 1: one after another, in plan order."""

    kubeconfig: str | None = None
    context: str | None = None
    version: str | None = None
    level: str = "all"
    focus: str | None = None
    skip: str | None = None
    parallel: int | None = None
    timeout_scale: float = 1.0
    keep_resources: bool = False
    output_dir: Path | None = None
    check_options: Mapping[str, str] = field(default_factory=dict)
    cleanup_timeout_s: float = 60.0
    profile: str = "official"
    fail_on: str = "must"

    def __post_init__(self) -> None:
        for name, allowed in (("profile", PROFILES), ("fail_on", FAIL_ON)):
            value = getattr(self, name)
            value = value.lower() if isinstance(value, str) else value
            if not isinstance(value, str) or value not in allowed:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
            object.__setattr__(self, name, value)
        level = self.level.lower() if isinstance(self.level, str) else self.level
        if not isinstance(level, str) or level not in LEVELS:
            raise UsageError(f"--level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        object.__setattr__(self, "level", level)
        if self.parallel is not None and (
            isinstance(self.parallel, bool)
            or not isinstance(self.parallel, int)
            or self.parallel < 1
        ):
            raise UsageError(
                f"--parallel must be a whole number of at least 1, got {self.parallel!r}"
            )
        if not _positive(self.timeout_scale):
            raise UsageError(
                f"--timeout-scale must be a positive number, got {self.timeout_scale!r}"
            )
        if not _positive(self.cleanup_timeout_s):
            raise UsageError(
                f"the cleanup timeout must be a positive number of seconds,"
                f" got {self.cleanup_timeout_s!r}"
            )
        for name in ("kubeconfig", "context", "version", "focus", "skip"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise UsageError(f"--{name} must be text, got {value!r}")
        if not isinstance(self.keep_resources, bool):
            raise UsageError(f"--keep-resources must be true or false, got {self.keep_resources!r}")
        if not isinstance(self.check_options, Mapping) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str))
            for k, v in self.check_options.items()
        ):
            raise UsageError("check options must map option names to text values")
        object.__setattr__(
            self,
            "check_options",
            {k: v for k, v in dict(self.check_options).items() if v is not None},
        )

    def to_json(self) -> dict[str, Any]:
        """The request as ``run.json`` records it (``options``)."""
        return {
            "level": self.level,
            "focus": self.focus,
            "skip": self.skip,
            "parallel": self.parallel,
            "timeout_scale": self.timeout_scale,
            "keep_resources": self.keep_resources,
            "check_options": dict(self.check_options),
            "profile": self.profile,
            "fail_on": self.fail_on,
        }

    @classmethod
    def from_json(cls, options: Mapping[str, Any], **local: Any) -> RunRequest:
        """The request that ``run.json``'s ``options`` record (to repeat a run);
        ``local`` adds what is not recorded (``kubeconfig``, ``context``, ``version``,
        ``output_dir``). A malformed value is a ``UsageError``."""
        known = (
            "level",
            "focus",
            "skip",
            "parallel",
            "timeout_scale",
            "keep_resources",
            "check_options",
            "profile",
            "fail_on",
        )
        return cls(**{k: options[k] for k in known if k in options}, **local)


def _positive(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )
