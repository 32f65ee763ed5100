"""The versioned requirement catalog (package data) and Kubernetes version mapping.

Owns: loading ``catalog/data/<version>.yaml``, the official checklist templates
shipped beside them, mapping a server version to a catalog version, and diffing
two versions. Must not execute anything or talk to a cluster.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kaic.errors import InputError, UnknownRequirementError, UnknownVersionError, UsageError
from kaic.model import EXTENDED, OFFICIAL, PROFILES, Level, Requirement

__all__ = [
    "Catalog",
    "CatalogChange",
    "NewerThanCatalogWarning",
    "diff",
    "load",
    "map_server_version",
    "normalize_version",
    "template_text",
    "versions",
]

_VERSIONS: tuple[str, ...] = ("1.33", "1.34", "1.35", "1.36", "1.37")
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?$", re.ASCII)


class NewerThanCatalogWarning(UserWarning):
    """A server version newer than the newest catalog was mapped to the newest."""


@dataclass(frozen=True)
class Catalog:
    """One catalog version: its requirements in template order and template metadata keys."""

    version: str
    requirements: tuple[Requirement, ...]
    metadata_keys: tuple[str, ...]
    categories: tuple[str, ...]
    template_name: str
    extended: tuple[Requirement, ...] = ()
    """kaic's extended profile offered with this version (never in the checklist)."""
    extended_categories: tuple[str, ...] = ()
    _by_id: dict[str, Requirement] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({r.id: r for r in self.requirements})

    def profile(self, name: str) -> tuple[Requirement, ...]:
        """The requirements of a run profile: ``official`` (the checklist's, in template
        order), ``extended`` or ``all`` (official first)."""
        if name == OFFICIAL:
            return self.requirements
        if name == EXTENDED:
            return self.extended
        if name == "all":
            return self.requirements + self.extended
        raise UsageError(f"--profile must be one of {', '.join(PROFILES)}, got {name!r}")

    def lookup(self, requirement_id: str) -> Requirement:
        """A requirement of either profile (``get`` knows the checklist's only)."""
        found = self._by_id.get(requirement_id) or next(
            (r for r in self.extended if r.id == requirement_id), None
        )
        if found is None:
            known = ", ".join([*self._by_id, *(r.id for r in self.extended)])
            raise UnknownRequirementError(
                f"unknown requirement id {requirement_id!r} in catalog v{self.version}"
                f" (known: {known})"
            )
        return found

    def get(self, requirement_id: str) -> Requirement:
        try:
            return self._by_id[requirement_id]
        except KeyError:
            known = ", ".join(self._by_id)
            raise UnknownRequirementError(
                f"unknown requirement id {requirement_id!r} in catalog v{self.version}"
                f" (known: {known})"
            ) from None

    def __contains__(self, requirement_id: object) -> bool:
        return requirement_id in self._by_id

    def ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.requirements)

    def by_test_name(self, test_name: str) -> Requirement | None:
        return next((r for r in self.requirements if r.test_name == test_name), None)


def versions() -> tuple[str, ...]:
    """Every catalog version kaic ships, oldest first."""
    return _VERSIONS


def normalize_version(text: str) -> str:
    """Turn ``v1.36``, ``1.36`` or ``v1.36.2`` into the catalog key ``1.36``; no range check."""
    m = _VERSION_RE.match(text.strip())
    if not m:
        raise UnknownVersionError(f"not a version: {text!r} (expected e.g. 1.36 or v1.36.2)")
    return f"{int(m.group(1))}.{int(m.group(2))}"


def _require_known(version: str) -> str:
    key = normalize_version(version)
    if key not in _VERSIONS:
        raise UnknownVersionError(
            f"unknown catalog version {version!r} (known: {', '.join(_VERSIONS)})"
        )
    return key


_DATA = Path(__file__).parent / "data"
# NOTE: a plain path, not importlib.resources: kaic is installed as files (src layout,
# package data), and importlib.resources costs a tenth of ``kaic catalog list``.


def _read_data(name: str) -> str:
    return (_DATA / name).read_text(encoding="utf-8")


def template_text(version: str) -> str:
    """The official checklist template of ``version``, verbatim."""
    key = _require_known(version)
    return _read_data(f"templates/AIConformance-{key}.yaml")


_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _requirement(r: dict[str, Any], **extra: Any) -> Requirement:
    return Requirement(
        id=r["id"],
        category=r["category"],
        level=Level(r["level"]),
        description=r["description"],
        conditional=bool(r.get("conditional", False)),
        test_name=r.get("test_name"),
        test_status=r.get("test_status"),
        kar=r.get("kar"),
        how_we_test=r.get("how_we_test", ""),
        automated=bool(r.get("automated", False)),
        manual_evidence=str(r.get("manual_evidence", "")),
        **extra,
    )


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


@cache
def _extended_doc() -> Any:
    return yaml.load(_read_data("extended.yaml"), Loader=_SAFE_LOADER)


@cache
def _load(key: str) -> Catalog:
    try:
        # NOTE: libyaml's loader when PyYAML has it: the pure-Python one costs more than
        # the rest of ``kaic catalog list`` together.
        doc: Any = yaml.load(_read_data(f"{key}.yaml"), Loader=_SAFE_LOADER)
        ext: Any = _extended_doc()
        reqs = tuple(_requirement(r) for r in doc["requirements"])
        extended = tuple(
            _requirement(r, profile=EXTENDED, section=str(r["section"]))
            for r in ext["requirements"]
            if _minor(key) >= _minor(str(r["since"]))
        )
        return Catalog(
            version=str(doc["version"]),
            requirements=reqs,
            metadata_keys=tuple(doc["metadata_keys"]),
            categories=tuple(doc["categories"]),
            template_name=str(doc["template"]),
            extended=extended,
            extended_categories=tuple(ext["categories"]),
        )
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as e:  # pragma: no cover - data bug
        raise InputError(f"catalog v{key} is corrupt: {e}") from e


def load(version: str) -> Catalog:
    """Load the catalog of ``version`` (``1.36``, ``v1.36``; a patch part is ignored)."""
    return _load(_require_known(version))


def map_server_version(server_version: str) -> str:
    """Map a Kubernetes server version (``v1.35.0-gke.1``) to a catalog version.

    Newer than the newest catalog maps to the newest with a ``NewerThanCatalogWarning``;
    older than the oldest is an ``UnknownVersionError``.
    """
    m = _VERSION_RE.match(server_version.strip())
    if not m:
        raise UnknownVersionError(f"cannot read Kubernetes version {server_version!r}")
    major, minor = int(m.group(1)), int(m.group(2))
    oldest = tuple(int(p) for p in _VERSIONS[0].split("."))
    newest = tuple(int(p) for p in _VERSIONS[-1].split("."))
    if (major, minor) < oldest:
        raise UnknownVersionError(
            f"Kubernetes {server_version} is older than the first AI conformance version"
            f" v{_VERSIONS[0]}"
        )
    if (major, minor) > newest:
        warnings.warn(
            f"Kubernetes {server_version} is newer than the newest catalog v{_VERSIONS[-1]};"
            f" using v{_VERSIONS[-1]}",
            NewerThanCatalogWarning,
            stacklevel=2,
        )
        return _VERSIONS[-1]
    return f"{major}.{minor}"


@dataclass(frozen=True)
class CatalogChange:
    """One difference between two catalog versions."""

    kind: str  # added | removed | level_changed | description_changed | category_changed
    requirement_id: str
    before: str | None = None
    after: str | None = None


def diff(a: str, b: str) -> tuple[CatalogChange, ...]:
    """What changes from catalog ``a`` to catalog ``b``, in template order."""
    ca, cb = load(a), load(b)
    changes: list[CatalogChange] = []
    for r in ca.requirements:
        if r.id not in cb:
            changes.append(CatalogChange("removed", r.id, r.level.value, None))
    for r in cb.requirements:
        if r.id not in ca:
            changes.append(CatalogChange("added", r.id, None, r.level.value))
            continue
        old = ca.get(r.id)
        if old.level != r.level:
            changes.append(CatalogChange("level_changed", r.id, old.level.value, r.level.value))
        if old.category != r.category:
            changes.append(CatalogChange("category_changed", r.id, old.category, r.category))
        if old.description != r.description:
            changes.append(
                CatalogChange("description_changed", r.id, old.description, r.description)
            )
    return tuple(changes)
