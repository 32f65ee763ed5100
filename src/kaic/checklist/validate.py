"""Validate PRODUCT.yaml files: every rule of the official validator and the gaps it misses.

Owns: turning checklist files into findings (file:line:column, severity, rule id, fix
hint) and an exit code. The rules and the official messages they mirror are listed in
``kaic.checklist.findings.RULES`` and docs/checklist.md. Must not write files; network
access is limited to the URL reachability checks, which ``offline`` turns off.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kaic import catalog as cat
from kaic.checklist.artifacts import (
    ArtifactError,
    ArtifactReport,
    EvidencePathError,
    TestOutcome,
    artifact_kind,
    exists,
    is_file,
    parse_artifact,
    resolve_evidence,
)
from kaic.checklist.findings import Finding, Severity
from kaic.checklist.urls import UrlChecker, UrlResult
from kaic.checklist.yamlio import (
    Loaded,
    PList,
    PMap,
    Pos,
    item_pos,
    key_pos,
    load_file,
    value_pos,
)
from kaic.errors import UsageError
from kaic.model import Level

__all__ = [
    "CONDITIONAL_MUST",
    "NEWEST",
    "OFFICIAL_AUTO_TESTED",
    "STATUSES",
    "FileReport",
    "Report",
    "Revision",
    "ValidateOptions",
    "folder_version",
    "metadata_value",
    "to_snake",
    "validate_paths",
]

STATUSES: tuple[str, ...] = ("Implemented", "Not Implemented", "Partially Implemented", "N/A")
_STATUS_LIST = "[" + " ".join(STATUSES) + "]"

# The required metadata fields of the official validator (repoUrl is optional).
METADATA_FIELDS: tuple[tuple[str, bool], ...] = (
    ("kubernetesVersion", True),
    ("platformName", True),
    ("platformVersion", True),
    ("vendorName", True),
    ("websiteUrl", True),
    ("repoUrl", False),
    ("documentationUrl", True),
    ("productLogoUrl", True),
    ("description", True),
    ("contactEmailAddress", True),
    ("k8sConformanceUrl", True),
)

# Requirements the official validator maps to an upstream test (validator PR #141).
OFFICIAL_AUTO_TESTED: dict[str, str] = {
    "secure_accelerator_access": "TestSecureAcceleratorAccess",
    "gang_scheduling": "TestGangScheduling",
    "cluster_autoscaling": "TestAcceleratorClusterAutoscaling",
}
HYBRID_MIN = (1, 37)

K8S_CONFORMANCE_URL = re.compile(
    r"^https://github\.com/cncf/k8s-conformance/tree/(master|main)/v\d+\.\d+/[^/]+/?$", re.ASCII
)
# NOTE: re.ASCII: Go's \d is [0-9]; Python's would accept other scripts' digits (v١.٣٦).
_FOLDER_RE = re.compile(r"(?:^|/)(v\d+\.\d+)/", re.ASCII)
_FOLDER_NAME = re.compile(r"^v\d+\.\d+$", re.ASCII)
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$", re.ASCII)

# Near misses seen in submissions, mapped to the canonical status.
_STATUS_SYNONYMS: dict[str, str] = {
    "not applicable": "N/A",
    "na": "N/A",
    "n/a": "N/A",
    "n.a.": "N/A",
    "none": "N/A",
    "not-applicable": "N/A",
    "notapplicable": "N/A",
    "implemented": "Implemented",
    "done": "Implemented",
    "yes": "Implemented",
    "complete": "Implemented",
    "supported": "Implemented",
    "not implemented": "Not Implemented",
    "not-implemented": "Not Implemented",
    "no": "Not Implemented",
    "unsupported": "Not Implemented",
    "not supported": "Not Implemented",
    "partially implemented": "Partially Implemented",
    "partial": "Partially Implemented",
    "partially": "Partially Implemented",
    "partially-implemented": "Partially Implemented",
}


def to_snake(name: str) -> str:
    """The official validator's camelCase -> snake_case (``k8sConformanceUrl`` ->
    ``k8s_conformance_url``)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def metadata_value(metadata: Any, name: str) -> tuple[str | None, Any]:
    """(key actually used, value) for a camelCase field or its snake_case spelling."""
    if not isinstance(metadata, dict):
        return None, None
    if name in metadata:
        return name, metadata[name]
    snake = to_snake(name)
    if snake in metadata:
        return snake, metadata[snake]
    return None, None


def folder_version(path: Path) -> str | None:
    """The ``vX.Y`` folder a PRODUCT.yaml sits in (``vX.Y/<product>/PRODUCT.yaml``)."""
    parent = path.absolute().parent.parent.name
    if _FOLDER_NAME.match(parent):
        return parent
    m = _FOLDER_RE.search(path.as_posix())
    return m.group(1) if m else None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return f"did you mean '{lowered[word.lower()]}'?"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def suggest_status(status: str) -> str | None:
    """The canonical status a near miss such as ``Not Applicable`` stands for."""
    key = " ".join(status.strip().lower().split())
    if key in _STATUS_SYNONYMS:
        return _STATUS_SYNONYMS[key]
    close = difflib.get_close_matches(status.strip(), STATUSES, n=1, cutoff=0.8)
    return close[0] if close else None


class Revision(StrEnum):
    """The revisions of the official validator (cncf/k8s-ai-conformance
    ``scripts/validate.go``) whose verdict kaic reproduces."""

    B2C8969 = "b2c8969"
    """HEAD of 2026-08-19 (PRs #46, #57, #73): evidence is a file of that literal name next
    to PRODUCT.yaml, no test artifact is parsed, every MUST must be Implemented."""
    HYBRID = "hybrid"
    """PR #141 (hybrid verification: ``file://``/``#Test`` evidence resolved and test
    artifacts parsed, in every version folder; the artifact recommendation from v1.37)
    with PR #146 (``cluster_autoscaling`` may be N/A with notes, as a warning)."""


NEWEST = Revision.HYBRID
REVISION_NAMES = {
    Revision.B2C8969: "b2c8969 (before hybrid verification)",
    Revision.HYBRID: "hybrid verification (PRs #141 and #146)",
}
# Requirements the newest revision lets be N/A with a justification (PR #146).
CONDITIONAL_MUST: frozenset[str] = frozenset({"cluster_autoscaling"})


@dataclass(frozen=True)
class ValidateOptions:
    offline: bool = False
    members: frozenset[str] | None = None
    """CNCF member names (from ``--members landscape.yml``); None: not checked."""
    strict: bool = False
    """Kept for compatibility: the newest revision's rule, which is the default."""
    url_checker: UrlChecker | None = None
    revision: Revision = NEWEST
    """The official validator revision whose verdict is reproduced."""


@dataclass
class FileReport:
    path: str
    version: str | None = None
    findings: list[Finding] = field(default_factory=list)
    unreadable: bool = False

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def valid(self) -> bool:
        return not self.unreadable and not self.errors

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "version": self.version,
            "valid": self.valid,
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass
class Report:
    files: list[FileReport]

    @property
    def valid(self) -> bool:
        return all(f.valid for f in self.files)

    def exit_code(self) -> int:
        """0 valid, 1 invalid, 2 when some input could not be read as YAML at all."""
        if any(f.unreadable for f in self.files):
            return 2
        return 0 if self.valid else 1

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Severity}
        for f in self.files:
            for x in f.findings:
                out[x.severity.value] += 1
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "summary": self.counts(),
            "files": [f.as_dict() for f in self.files],
        }


@dataclass
class _UrlJob:
    url: str
    rule: str
    message: str  # with {err}
    pos: Pos
    hint: str


class _FileValidator:
    def __init__(self, path: Path, loaded: Loaded, opts: ValidateOptions) -> None:
        self.path = path
        self.shown = loaded.path
        self.loaded = loaded
        self.opts = opts
        self.report = FileReport(
            path=loaded.path, findings=list(loaded.findings), unreadable=loaded.unreadable
        )
        self.url_jobs: list[_UrlJob] = []
        self.artifacts: dict[Path, ArtifactReport | None] = {}
        self._clean: Path | None = None

    # -- helpers --------------------------------------------------------------------------
    def add(
        self,
        rule: str,
        message: str,
        pos: Pos = (1, 1),
        hint: str = "",
        severity: Severity = Severity.ERROR,
    ) -> None:
        self.report.findings.append(
            Finding(rule, severity, message, self.shown, pos[0], pos[1], hint)
        )

    def url(self, url: str, rule: str, message: str, pos: Pos, hint: str) -> None:
        self.url_jobs.append(_UrlJob(url, rule, message, pos, hint))

    # -- entry ----------------------------------------------------------------------------
    def run(self) -> None:
        if self.report.unreadable:
            return
        doc = self.loaded.doc
        if not isinstance(doc, dict):
            kind = "empty" if doc is None else f"a {_kind(doc)}"
            self.add(
                "schema.root",
                f"the document is {kind}, not a mapping with 'metadata' and 'spec'",
                (1, 1),
                "start from the official template: kaic checklist init --version V",
            )
            return
        metadata = doc.get("metadata")
        version = self.check_version(doc, metadata)
        self.report.version = version
        self.check_metadata(doc, metadata)
        self.check_vendor(doc, metadata)
        if version is not None:
            self.check_spec(doc, cat.load(version), version)

    # -- version --------------------------------------------------------------------------
    def check_version(self, doc: Any, metadata: Any) -> str | None:
        folder = folder_version(self.path)
        chosen: str | None = None
        if folder is None:
            self.add(
                "version.folder",
                f"Could not determine version from path {self.shown}",
                (1, 1),
                "place the file at vX.Y/<product>/PRODUCT.yaml (e.g. v1.36/acme/)",
            )
        elif folder[1:] not in cat.versions():
            self.add(
                "version.template",
                f"Schema not found at docs/AIConformance-{folder[1:]}"
                f".yaml (no template for folder {folder})",
                (1, 1),
                f"known versions: {', '.join(cat.versions())}",
            )
        else:
            chosen = folder[1:]
        key, value = metadata_value(metadata, "kubernetesVersion")
        if key is None or not isinstance(value, str) or not value.strip():
            return chosen
        pos = value_pos(metadata, key)
        if value.startswith("[") and value.endswith("]"):
            return chosen
        m = _VERSION_RE.match(value.strip())
        if not m:
            self.add(
                "version.mismatch",
                f"kubernetesVersion {value!r} is not a version like v1.36",
                pos,
                "write the template version, e.g. v1.36",
            )
            return chosen
        meta_version = f"{int(m.group(1))}.{int(m.group(2))}"
        if m.group(3) is not None:
            self.add(
                "version.patch",
                f"kubernetesVersion {value!r} has a patch version; the"
                f" template writes v{meta_version}",
                pos,
                f"write v{meta_version} (the platform version goes in platformVersion)",
                Severity.WARNING,
            )
        if chosen is not None and meta_version != chosen:
            self.add(
                "version.mismatch",
                f"kubernetesVersion {value!r} disagrees with the "
                f"folder {folder} and its template v{chosen}",
                pos,
                f"set kubernetesVersion: v{chosen}, or move the file to "
                f"v{meta_version}/<product>/ (kaic checklist upgrade --to {meta_version})",
            )
        if chosen is None and meta_version in cat.versions():
            chosen = meta_version  # keep checking against the template the file names
        return chosen

    # -- metadata -------------------------------------------------------------------------
    def check_metadata(self, doc: Any, metadata: Any) -> None:
        if metadata is None:
            self.add(
                "metadata.missing-section",
                "Missing 'metadata' section",
                key_pos(doc, "metadata") if "metadata" in doc else (1, 1),
                "add the metadata block of the official template",
            )
            return
        if not isinstance(metadata, dict):
            self.add(
                "schema.root",
                f"'metadata' must be a mapping, found a {_kind(metadata)}",
                value_pos(doc, "metadata"),
                "use 'key: value' lines under metadata:",
            )
            return
        section = key_pos(doc, "metadata")
        known = {f for f, _ in METADATA_FIELDS} | {to_snake(f) for f, _ in METADATA_FIELDS}
        for k in metadata:
            if str(k) not in known:
                hint = (
                    _did_you_mean(str(k), sorted(known))
                    or "remove it; the validator ignores keys outside the template"
                )
                self.add(
                    "metadata.unknown-key",
                    f"unknown metadata key {str(k)!r}",
                    key_pos(metadata, k),
                    hint,
                    Severity.WARNING,
                )
        for name, required in METADATA_FIELDS:
            snake = to_snake(name)
            key, value = metadata_value(metadata, name)
            if key is None or value is None:
                if required:
                    self.add(
                        "metadata.missing",
                        f"Missing metadata field: {name} (or {snake})",
                        key_pos(metadata, key) if key else section,
                        _missing_hint(name),
                    )
                continue
            pos = value_pos(metadata, key)
            if not isinstance(value, str):
                self.add(
                    "metadata.not-string",
                    f"Metadata field {name} is not a string",
                    pos,
                    f'quote the value: {key}: "…"',
                )
                continue
            if value == "":
                if required:
                    self.add(
                        "metadata.empty",
                        f"Metadata field {name} is empty",
                        pos,
                        _missing_hint(name),
                    )
            elif value.startswith("[") and value.endswith("]"):
                hint = (
                    "fill it in, or remove the optional repoUrl"
                    if name == "repoUrl"
                    else "replace the template placeholder with the real value"
                )
                self.add(
                    "metadata.placeholder",
                    f"Metadata field {name} has placeholder value: {value}",
                    pos,
                    hint,
                )
            elif name == "k8sConformanceUrl":
                self.check_k8s_url(value, pos)
            elif value.startswith("http"):
                if name == "productLogoUrl" and not urlsplit(value).path.lower().endswith(
                    (".svg", ".eps", ".ai")
                ):
                    self.add(
                        "metadata.logo-format",
                        f"productLogoUrl must link to an SVG, EPS, or AI file: {value}",
                        pos,
                        "link the logo as SVG (not PNG), naming the product",
                    )
                self.url(
                    value,
                    "metadata.url-unreachable",
                    f"Invalid URL in metadata {name}: {value} ({{err}})",
                    pos,
                    "make the page public, or allow kaic's and the validator's "
                    "User-Agent through the WAF",
                )

    def check_k8s_url(self, value: str, pos: Pos) -> None:
        if not K8S_CONFORMANCE_URL.match(value):
            self.add(
                "metadata.k8s-conformance-url",
                f"Invalid k8sConformanceUrl format: {value}. Expected format: "
                "https://github.com/cncf/k8s-conformance/tree/master/v{version}/{product}",
                pos,
                "link the product's folder in cncf/k8s-conformance",
            )
            return
        product = value.rstrip("/").rsplit("/", 1)[-1]
        own = self.path.absolute().parent.name
        if product.lower() != own.lower():
            self.add(
                "metadata.k8s-conformance-product",
                f"k8sConformanceUrl names product '{product}', but this checklist is in '{own}'",
                pos,
                "make sure it is the Kubernetes conformance submission of this very product",
                Severity.WARNING,
            )
        self.url(
            value,
            "metadata.url-unreachable",
            f"k8sConformanceUrl is not accessible: {value} ({{err}})",
            pos,
            "the Kubernetes conformance PR must be merged before this submission",
        )

    def check_vendor(self, doc: Any, metadata: Any) -> None:
        if not isinstance(metadata, dict):
            return
        key = (
            "vendorName"
            if "vendorName" in metadata
            else ("vendor_name" if "vendor_name" in metadata else None)
        )
        raw = metadata.get(key) if key else None
        vendor = raw.strip() if isinstance(raw, str) else ""
        if not vendor:
            return
        pos = value_pos(metadata, key)
        members = self.opts.members
        if members is None:
            self.add(
                "metadata.vendor-member",
                f"vendorName '{vendor}' was not checked against the CNCF members",
                pos,
                "pass --members landscape.yml (a copy of "
                "cncf/landscape's landscape.yml) to check it",
                Severity.NOT_CHECKED,
            )
            return
        if vendor not in members:
            self.add(
                "metadata.vendor-member",
                f"vendorName '{vendor}' does not match any CNCF member in the CNCF "
                "Landscape. The vendorName must exactly match the organization name "
                "listed at https://landscape.cncf.io/members",
                pos,
                _did_you_mean(vendor, sorted(members))
                or "use the exact name of the CNCF member organization",
            )

    # -- spec -----------------------------------------------------------------------------
    def check_spec(self, doc: Any, catalog: cat.Catalog, version: str) -> None:
        spec = doc.get("spec")
        if spec is None:
            self.add(
                "spec.missing-section",
                "Missing 'spec' section",
                key_pos(doc, "spec") if "spec" in doc else (1, 1),
                "add the spec block of the official template",
            )
            return
        if not isinstance(spec, dict):
            self.add(
                "schema.root",
                f"'spec' must be a mapping of categories, found a {_kind(spec)}",
                value_pos(doc, "spec"),
                "use the spec block of the official template",
            )
            return
        by_cat: dict[str, dict[str, tuple[Any, Pos]]] = {}
        seen: dict[str, Pos] = {}
        for category, items in spec.items():
            cname = str(category)
            cpos = key_pos(spec, category)
            if cname not in catalog.categories:
                self.add(
                    "spec.unknown-category",
                    f"unknown spec category '{cname}' (not in the v{version} template)",
                    cpos,
                    _did_you_mean(cname, catalog.categories)
                    or f"categories: {', '.join(catalog.categories)}",
                )
            if items is None:
                items = []
            if not isinstance(items, list):
                self.add(
                    "spec.category-type",
                    f"category '{cname}' must be a list of requirements, found a {_kind(items)}",
                    value_pos(spec, category),
                    "write the requirements as a list of '- id: …' entries",
                )
                continue
            entries = by_cat.setdefault(cname, {})
            for i, item in enumerate(items):
                ipos = item_pos(items, i, cpos)
                if not isinstance(item, dict):
                    self.add(
                        "spec.category-type",
                        f"item {i + 1} of '{cname}' must be a "
                        f"mapping with id, status, evidence, notes; found a {_kind(item)}",
                        ipos,
                        "copy the entry from the official template",
                    )
                    continue
                rid = item.get("id")
                if not isinstance(rid, str) or not rid:
                    self.add(
                        "spec.field-type",
                        f"item {i + 1} of '{cname}' has no id",
                        ipos,
                        "every requirement needs its template id",
                    )
                    continue
                rpos = value_pos(item, "id", ipos)
                if rid in seen:
                    self.add(
                        "spec.duplicate-id",
                        f"requirement '{rid}' appears more than once"
                        f" (first at line {seen[rid][0]})",
                        rpos,
                        "keep one entry per requirement id",
                    )
                else:
                    seen[rid] = rpos
                if rid not in catalog:
                    self.add(
                        "spec.unknown-id",
                        f"unknown requirement id '{rid}' (not in the v{version} template)",
                        rpos,
                        _did_you_mean(rid, catalog.ids())
                        or "remove it; only template ids may appear",
                    )
                elif catalog.get(rid).category != cname:
                    self.add(
                        "spec.wrong-category",
                        f"requirement '{rid}' is under '{cname}' "
                        f"but belongs to '{catalog.get(rid).category}'",
                        rpos,
                        f"move it under {catalog.get(rid).category}:",
                    )
                entries[rid] = (item, ipos)  # the last one wins, as in the official validator
        spec_pos = key_pos(doc, "spec")
        for category in catalog.categories:
            if category not in spec:
                self.add(
                    "spec.missing-category",
                    f"Missing spec category: {category}",
                    spec_pos,
                    f"add the '{category}' list of the official template",
                )
                continue
            found_entries = by_cat.get(category)
            if found_entries is None:
                continue  # category-type already reported
            for req in (r for r in catalog.requirements if r.category == category):
                found = found_entries.get(req.id)
                if found is None:
                    elsewhere = [c for c, e in by_cat.items() if req.id in e and c != category]
                    hint = (
                        f"it is under '{elsewhere[0]}'; move it"
                        if elsewhere
                        else f"copy the '{req.id}' entry from the official template"
                    )
                    self.add(
                        "spec.missing-requirement",
                        f"Missing requirement '{req.id}' in category '{category}'",
                        key_pos(spec, category),
                        hint,
                    )
                    continue
                self.check_requirement(req, found[0], found[1], version)

    def check_requirement(self, req: Any, item: Any, ipos: Pos, version: str) -> None:
        rid = req.id
        desc = item.get("description")
        # NOTE: a block scalar (``description: |``) ends in a newline the template's quoted
        # text does not have; that one trailing newline is all that is forgiven.
        if not (isinstance(desc, str) and desc.removesuffix("\n") == req.description):
            self.add(
                "spec.description-changed",
                f"description of '{rid}' differs from the v{version} template",
                value_pos(item, "description", ipos),
                f"restore the official text (kaic catalog show {rid} --version {version})",
            )
        level = item.get("level")
        if level != req.level.value:
            self.add(
                "spec.level-changed",
                f"level of '{rid}' is {level!r} but the v{version} template says {req.level.value}",
                value_pos(item, "level", ipos),
                f"write level: {req.level.value}; the level is not yours to change",
            )
        status = self._text_field(item, "status", rid, ipos)
        notes = self._text_field(item, "notes", rid, ipos)
        evidence = self._evidence(item, rid, ipos)
        if status is None:
            return
        if (
            req.level is Level.SHOULD
            and status == ""
            and evidence is not None
            and len(evidence) == 0
        ):
            return  # an unanswered SHOULD is fine
        spos = value_pos(item, "status", ipos)
        if status not in STATUSES:
            suggestion = suggest_status(status)
            msg = f"Invalid status '{status}' for '{rid}'. Must be one of {_STATUS_LIST}"
            if suggestion:
                self.add("status.non-canonical", msg, spos, f"did you mean '{suggestion}'?")
            else:
                self.add(
                    "status.invalid",
                    msg,
                    spos,
                    "use Implemented, Not Implemented, Partially Implemented or N/A",
                )
        if req.level is Level.MUST and status != "Implemented":
            self.check_must_status(rid, status, spos)
        if status == "N/A" and (notes is None or not notes.strip()):
            # NOTE: the newest revision trims notes; b2c8969 only refuses "" (blank notes
            # are then kaic's own rule, notes.blank).
            official = notes is None or notes == "" or self.opts.revision is Revision.HYBRID
            self.add(
                "notes.required" if official else "notes.blank",
                f"Notes required for '{rid}' when status is N/A"
                if official
                else f"Notes of '{rid}' are blank; an N/A needs a justification",
                value_pos(item, "notes", ipos),
                "say why the requirement does not apply ('we don't support it' is not a"
                " justification)",
            )
        if evidence is None:
            return
        if (
            req.level is Level.MUST
            and status in ("Implemented", "Partially Implemented")
            and not any(text.strip() for text, _ in evidence)
        ):
            self.add(
                "evidence.empty-must",
                f"'{rid}' is a MUST answered {status} but has no evidence",
                value_pos(item, "evidence", ipos),
                "add documentation URLs or test artifacts (kaic checklist fill)",
            )
        self.check_evidence(req, item, evidence, status, ipos, version)

    def check_must_status(self, rid: str, status: str, spos: Pos) -> None:
        """A MUST that is not Implemented, as the chosen official revision decides it."""
        newest = self.opts.revision is Revision.HYBRID
        conditional = rid in CONDITIONAL_MUST
        if newest and conditional and status == "N/A":
            self.add(
                "status.conditional-must-na",
                f"Requirement '{rid}' is MUST level and"
                " marked N/A; review the justification in notes",
                spos,
                "accepted with this warning by the newest official validator (PR "
                "#146); revision b2c8969 rejects it (--official-revision b2c8969)",
                Severity.WARNING,
            )
        elif newest and conditional:
            self.add(
                "status.must-implemented",
                f"Requirement '{rid}' is MUST level but "
                f"status is '{status}'. It must be 'Implemented', or 'N/A' with a "
                "justification in notes.",
                spos,
                "implement it, or answer N/A and say why it does not apply",
            )
        else:
            hint = "a MUST must be implemented to certify"
            if conditional and status == "N/A":
                hint = (
                    "revision b2c8969 accepts only Implemented; the newest official "
                    "validator accepts N/A with notes, with a warning"
                )
            self.add(
                "status.must-implemented",
                f"Requirement '{rid}' is MUST level but "
                f"status is '{status}'. It must be 'Implemented'.",
                spos,
                hint,
            )

    def _text_field(self, item: Any, key: str, rid: str, ipos: Pos) -> str | None:
        value = item.get(key)
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if not isinstance(value, dict | list):
            # NOTE: yaml.v3 decodes any scalar into a string field as its source text.
            raw = item.raw.get(key) if isinstance(item, PMap) else None
            return raw if raw is not None else str(value)
        self.add(
            "spec.field-type",
            f"{key} of '{rid}' must be a string, found a {_kind(value)}",
            value_pos(item, key, ipos),
            f'write {key}: "…"',
        )
        return None

    def _evidence(self, item: Any, rid: str, ipos: Pos) -> list[tuple[str, Pos]] | None:
        value = item.get("evidence")
        vpos = value_pos(item, "evidence", ipos)
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(
                "spec.field-type",
                f"evidence of '{rid}' must be a list, found a {_kind(value)}",
                vpos,
                'write evidence as a list: evidence: ["…"]',
            )
            return None
        out: list[tuple[str, Pos]] = []
        raws = value.iraw if isinstance(value, PList) else [None] * len(value)
        for i, e in enumerate(value):
            epos = item_pos(value, i, vpos)
            if isinstance(e, str):
                out.append((e, epos))
            elif e is None:
                out.append(("", epos))
            elif not isinstance(e, dict | list):
                raw = raws[i] if i < len(raws) else None
                out.append((raw if raw is not None else str(e), epos))
            else:
                self.add(
                    "spec.field-type",
                    f"evidence item {i + 1} of '{rid}' must be a string, found a {_kind(e)}",
                    epos,
                    "quote the URL or path",
                )
        return out

    def check_evidence(
        self,
        req: Any,
        item: Any,
        evidence: Sequence[tuple[str, Pos]],
        status: str,
        ipos: Pos,
        version: str,
    ) -> None:
        rid = req.id
        has_artifact = False
        product_dir = self.path.absolute().parent
        clean = self.clean_dir()
        hybrid = self.opts.revision is Revision.HYBRID
        for link, epos in evidence:
            if link == "":
                continue
            if link.startswith(("http://", "https://")):
                self.url(
                    link,
                    "evidence.url-unreachable",
                    f"Invalid evidence URL for '{rid}': {link} ({{err}})",
                    epos,
                    "make the page public or fix the link",
                )
                continue
            try:
                ref = resolve_evidence(product_dir, link, literal=not hybrid, clean=clean)
            except EvidencePathError as e:
                self.add(
                    "evidence.path-escape",
                    f"Invalid evidence file for '{rid}': {link} ({e})",
                    epos,
                    "keep evidence files inside this product's directory",
                )
                continue
            if not exists(ref.path):
                self.add(
                    "evidence.file-missing",
                    f"Invalid evidence file for '{rid}': {link} "
                    f"(not found at {self.shown_path(link, literal=not hybrid)})",
                    epos,
                    "add the file next to PRODUCT.yaml or fix the path",
                )
                continue
            if hybrid and _key(version) < HYBRID_MIN and ref.path != _literal(clean, link):
                literal = self.shown_path(link, literal=True)
                if not exists(_literal(clean, link)):
                    self.add(
                        "evidence.revision-differs",
                        f"evidence '{link}' of '{rid}' is found by the newest official "
                        f"validator, but revision b2c8969 looks for a file of that "
                        f"literal name and rejects it (not found at {literal})",
                        epos,
                        "write the plain relative path (e.g. junit.xml) to satisfy both",
                        Severity.WARNING,
                    )
            if not hybrid:
                continue  # b2c8969 parses no test artifact
            kind = artifact_kind(ref.path)
            if kind is None or not is_file(ref.path):
                continue
            has_artifact = True
            self.check_artifact(ref.path, ref.fragment, kind, link, rid, status, epos)
        auto = OFFICIAL_AUTO_TESTED.get(rid)
        if (
            hybrid
            and auto
            and _key(version) >= HYBRID_MIN
            and status == "Implemented"
            and not has_artifact
        ):
            self.add(
                "artifact.recommended",
                f"Requirement '{rid}' is covered by automated "
                f"test '{auto}'; including test artifacts (e2e.log, junit.xml, or "
                f"results.json) as evidence is recommended for v{version}+ submissions",
                value_pos(item, "evidence", ipos),
                "run kaic run and kaic checklist fill --results <bundle>",
                Severity.WARNING,
            )

    def clean_dir(self) -> Path:
        """The product directory, resolved once per file."""
        if self._clean is None:
            d = self.path.absolute().parent
            self._clean = d.resolve() if exists(d) else d
        return self._clean

    def shown_path(self, link: str, literal: bool) -> str:
        """The path the official validator prints: the product directory as given on the
        command line, joined with the link (the newest revision strips ``file://``,
        ``#Fragment`` and the own ``vX.Y/<dir>/`` prefix first)."""
        given = os.path.dirname(str(self.path)) or "."
        raw = link
        if not literal:
            raw = link.strip().removeprefix("file://").split("#", 1)[0].strip().lstrip("/")
            own = f"{self.path.absolute().parent.parent.name}/{self.path.absolute().parent.name}/"
            raw = raw.removeprefix(own)
        return os.path.normpath(os.path.join(given, raw))

    def check_artifact(
        self, path: Path, fragment: str, kind: str, link: str, rid: str, status: str, pos: Pos
    ) -> None:
        name = link.split("#", 1)[0]
        if path not in self.artifacts:
            try:
                rep: ArtifactReport | None = parse_artifact(path, kind)
            except ArtifactError as e:
                hint = (
                    "only go test artifacts may be named junit.xml, results.json "
                    "or e2e.log; rename other logs (e.g. a Ginkgo log to e2e-ginkgo.log)"
                )
                if self.report.version and _key(self.report.version) < HYBRID_MIN:
                    hint += "; revision b2c8969 only checks that the file exists"
                self.add(
                    "artifact.invalid",
                    f"Invalid test artifact for '{rid}': {name} ({e})",
                    pos,
                    hint,
                )
                self.artifacts[path] = None
                return
            self.artifacts[path] = rep
            assert rep is not None
            if rep.failures:
                self.add(
                    "artifact.failing-tests",
                    f"Test artifact {name} contains failing "
                    f"tests: {', '.join(sorted(rep.failures))}",
                    pos,
                    "submit artifacts of a run without failures",
                )
        report = self.artifacts[path]
        if report is None:
            return
        test = fragment or OFFICIAL_AUTO_TESTED.get(rid, "")
        if not test:
            return
        outcome = report.outcome_for(test)
        if outcome is TestOutcome.UNKNOWN:
            self.add(
                "artifact.test-not-found",
                f"Test '{test}' referenced by '{rid}' was not found in {name}",
                pos,
                "check the #TestName fragment and the artifact",
            )
        elif outcome is TestOutcome.FAIL:
            self.add(
                "artifact.test-failed",
                f"Test '{test}' referenced by '{rid}' failed in {name}",
                pos,
                "fix the platform and rerun, or do not claim Implemented",
            )
        elif outcome is TestOutcome.SKIP and status == "Implemented":
            self.add(
                "artifact.test-skipped",
                f"Requirement '{rid}' is Implemented but test '{test}' was skipped in {name}",
                pos,
                "run the test with its flags set, or answer N/A with notes",
            )


def _key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


def _literal(clean: Path, link: str) -> Path:
    """Where revision b2c8969 looks for local evidence: ``filepath.Join(dir, link)``
    (``clean``: the resolved product directory)."""
    return Path(os.path.normpath(os.path.join(str(clean), link)))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return type(value).__name__


def _missing_hint(name: str) -> str:
    if name == "k8sConformanceUrl":
        return (
            "add k8sConformanceUrl: https://github.com/cncf/k8s-conformance/tree/master/"
            "vX.Y/<product> (the 1.33, 1.34, 1.36 and 1.37 templates lack it, the "
            "validator requires it)"
        )
    return f"set {name}"


def validate_loaded(
    path: Path, loaded: Loaded, opts: ValidateOptions
) -> tuple[FileReport, list[_UrlJob]]:
    v = _FileValidator(path, loaded, opts)
    v.run()
    return v.report, v.url_jobs


def validate_paths(paths: Sequence[Path], opts: ValidateOptions | None = None) -> Report:
    """Validate each file; URLs of all files are checked together, concurrently."""
    opts = opts or ValidateOptions()
    if not paths:
        raise UsageError("no PRODUCT.yaml given")
    reports: list[FileReport] = []
    jobs: list[tuple[FileReport, _UrlJob]] = []
    for p in paths:
        rep, url_jobs = validate_loaded(p, load_file(p, roundtrip=False), opts)
        reports.append(rep)
        jobs.extend((rep, j) for j in url_jobs)
    results: dict[str, UrlResult] = {}
    if jobs and not opts.offline:
        checker = opts.url_checker or UrlChecker()
        results = checker.check_all(j.url for _, j in jobs)
    for rep, j in jobs:
        if opts.offline:
            rep.findings.append(
                Finding(
                    "url.not-checked",
                    Severity.NOT_CHECKED,
                    f"not checked: {j.url} (--offline)",
                    rep.path,
                    j.pos[0],
                    j.pos[1],
                    "run without --offline to check reachability",
                )
            )
            continue
        res = results[j.url]
        if not res.ok:
            message = j.message.replace("{err}", res.detail)
            rep.findings.append(
                Finding(j.rule, Severity.ERROR, message, rep.path, j.pos[0], j.pos[1], j.hint)
            )
    for rep in reports:
        rep.findings.sort(key=lambda f: (f.line, f.column, f.rule))
    return Report(reports)
