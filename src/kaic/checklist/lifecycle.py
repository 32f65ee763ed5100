"""``status`` and ``upgrade``: a certification's validity and moving to a newer template.

Owns: the one-year validity from the date the submission was merged (terms and
conditions 5.1), what newer catalog versions add (the renewal to-do list), and migrating
a filled checklist to a newer template while keeping the answers of requirements that
still exist. Must not validate (that is ``validate``) or talk to the network.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaic import catalog as cat
from kaic.checklist import yamlio
from kaic.checklist.artifacts import EvidencePathError, resolve_evidence
from kaic.checklist.validate import folder_version, metadata_value, to_snake
from kaic.errors import InputError, UsageError

__all__ = ["CertificationStatus", "UpgradeResult", "certification_status", "upgrade_checklist"]


def _load_doc(path: Path) -> tuple[Any, str]:
    loaded = yamlio.load_file(path)
    if loaded.unreadable or not isinstance(loaded.doc, dict):
        first = loaded.findings[0].message if loaded.findings else "not a mapping"
        raise InputError(f"{path}: {first}")
    return loaded.doc, loaded.text


def checklist_version(path: Path, doc: Any) -> str:
    """The catalog version of a checklist: its vX.Y folder, else kubernetesVersion."""
    folder = folder_version(path)
    if folder and folder[1:] in cat.versions():
        return folder[1:]
    _, value = metadata_value(doc.get("metadata"), "kubernetesVersion")
    if isinstance(value, str):
        try:
            key = cat.normalize_version(value)
        except UsageError:
            key = ""
        if key in cat.versions():
            return key
    raise InputError(
        f"{path}: cannot tell the checklist version (no vX.Y folder and no known kubernetesVersion)"
    )


def _key(v: str) -> tuple[int, int]:
    a, b = v.split(".")
    return int(a), int(b)


def add_one_year(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


@dataclass
class CertificationStatus:
    path: Path
    version: str
    kubernetes_version: str
    certified_on: dt.date
    valid_until: dt.date
    today: dt.date
    renewal: list[dict[str, str]] = field(default_factory=list)
    newer_versions: list[str] = field(default_factory=list)

    @property
    def days_left(self) -> int:
        return (self.valid_until - self.today).days

    @property
    def expired(self) -> bool:
        return self.days_left < 0

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "version": self.version,
            "kubernetes_version": self.kubernetes_version,
            "certified_on": self.certified_on.isoformat(),
            "valid_until": self.valid_until.isoformat(),
            "today": self.today.isoformat(),
            "days_left": self.days_left,
            "expired": self.expired,
            "newer_versions": self.newer_versions,
            "renewal": self.renewal,
        }


def certification_status(
    path: Path, certified_on: dt.date, today: dt.date | None = None
) -> CertificationStatus:
    doc, _ = _load_doc(path)
    version = checklist_version(path, doc)
    today = today or dt.date.today()
    if certified_on > today:
        raise UsageError(f"--certified-on {certified_on} is in the future")
    if certified_on.year >= dt.MAXYEAR:
        raise UsageError(
            f"--certified-on {certified_on}: one year later is past the last "
            "date kaic can represent (9999-12-31)"
        )
    _, kv = metadata_value(doc.get("metadata"), "kubernetesVersion")
    st = CertificationStatus(
        path,
        version,
        kv if isinstance(kv, str) else f"v{version}",
        certified_on,
        add_one_year(certified_on),
        today,
    )
    answers = _answers(doc)
    newer = [v for v in cat.versions() if _key(v) > _key(version)]
    st.newer_versions = newer
    prev = version
    for v in newer:
        for c in cat.diff(prev, v):
            todo = _todo(c, v, answers)
            if todo:
                st.renewal.append(
                    {
                        "version": v,
                        "requirement_id": c.requirement_id,
                        "change": c.kind,
                        "todo": todo,
                    }
                )
        prev = v
    return st


def _answers(doc: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    spec = doc.get("spec")
    if isinstance(spec, dict):
        for items in spec.values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    st = item.get("status")
                    out[item["id"]] = st if isinstance(st, str) else ""
    return out


def _todo(c: cat.CatalogChange, v: str, answers: dict[str, str]) -> str:
    if c.kind == "added":
        return (
            f"answer the new {c.after} requirement"
            if c.after == "MUST"
            else f"consider the new {c.after} requirement"
        )
    if c.kind == "removed":
        return "drop it: removed from the checklist"
    if c.kind == "level_changed":
        if c.after == "MUST" and answers.get(c.requirement_id) != "Implemented":
            return (
                f"now MUST in v{v}: it must be Implemented (today: "
                f"'{answers.get(c.requirement_id, '')}')"
            )
        return f"level {c.before} -> {c.after}"
    if c.kind == "category_changed":
        return f"moved from {c.before} to {c.after}"
    return "description changed: reread it and check your evidence still fits"


@dataclass
class UpgradeResult:
    path: Path
    from_version: str
    to_version: str
    kept: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    backup: Path | None = None


def upgrade_checklist(
    path: Path, to: str, output: Path | None = None, dry_run: bool = False, force: bool = False
) -> UpgradeResult:
    """Move a filled checklist onto the template of ``to`` (newer than its own).

    In place the file is replaced after a backup; ``output`` naming another existing
    file is replaced only with ``force`` (the rule of ``init``), after a backup too."""
    doc, _ = _load_doc(path)
    old_v = checklist_version(path, doc)
    new_v = cat.normalize_version(to)
    cat.load(new_v)
    if _key(new_v) <= _key(old_v):
        raise UsageError(f"--to {new_v} is not newer than the checklist's v{old_v}")
    res = UpgradeResult(output or path, old_v, new_v)
    new_doc = yamlio.load_text(cat.template_text(new_v), f"template {new_v}").doc
    assert isinstance(new_doc, dict)
    old_meta = doc.get("metadata")
    new_meta = new_doc["metadata"]
    if isinstance(old_meta, dict):
        snake_to_camel = {to_snake(k): k for k in [*new_meta, "k8sConformanceUrl"]}
        for k, value in old_meta.items():
            key = snake_to_camel.get(str(k), str(k))
            if key != str(k):
                res.notes.append(f"metadata {k} written as {key}")
            if key == "kubernetesVersion":
                continue
            yamlio.set_key(new_meta, key, value)
    new_meta["kubernetesVersion"] = f"v{new_v}"
    if not isinstance(old_meta, dict) or not any(
        str(k) in ("repoUrl", "repo_url") for k in old_meta
    ):
        from ruamel.yaml.scalarstring import DoubleQuotedScalarString

        new_meta["repoUrl"] = DoubleQuotedScalarString("")  # optional; no failing placeholder
    old_entries: dict[str, Any] = {}
    spec = doc.get("spec")
    if isinstance(spec, dict):
        for items in spec.values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    old_entries.setdefault(item["id"], item)
    old_cat, new_cat = cat.load(old_v), cat.load(new_v)
    product = path.absolute().parent.name
    old_prefix, new_prefix = f"v{old_v}/{product}/", f"v{new_v}/{product}/"
    for items in new_doc["spec"].values():
        for item in items:
            rid = item["id"]
            old = old_entries.get(rid)
            if old is None:
                res.added.append(rid)
                continue
            for k in ("status", "evidence", "notes"):
                if k in old:
                    item[k] = old[k]
            ev = item.get("evidence")
            for i, e in enumerate(ev if isinstance(ev, list) else []):
                # repo-root style links name the version folder; point them at the new one
                if isinstance(e, str) and e.removeprefix("file://").startswith(old_prefix):
                    ev[i] = type(e)(e.replace(old_prefix, new_prefix, 1))
                    res.notes.append(f"{rid}: evidence {e} now {ev[i]}")
            res.kept.append(rid)
            if rid in old_cat and old_cat.get(rid).level != new_cat.get(rid).level:
                res.review.append(
                    f"{rid}: level {old_cat.get(rid).level.value} -> "
                    f"{new_cat.get(rid).level.value}; review your answer"
                )
            elif rid in old_cat and old_cat.get(rid).description != new_cat.get(rid).description:
                res.review.append(f"{rid}: description changed; check your evidence")
    res.removed = [rid for rid in old_entries if rid not in new_cat]
    folder = folder_version(path)
    if output is None and folder:
        res.notes.append(
            f"the file is still in {folder}/; move it to v{new_v}/"
            f"{path.absolute().parent.name}/ for the submission"
        )
    target = output or path
    in_place = output is None or (output.exists() and output.resolve() == path.resolve())
    if not in_place:
        res.notes += _evidence_to_copy(new_doc, path.absolute().parent, target.absolute().parent)
    if dry_run:
        return res
    if not in_place and target.exists() and not force:
        raise UsageError(f"{target} exists; pass --force to replace it (a backup is kept)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        res.backup = yamlio.replace_file(
            target.resolve() if in_place else target, yamlio.dump(new_doc), force=True
        )
    except OSError as e:
        raise InputError(f"cannot write {target}: {e.strerror or e}") from e
    return res


def _evidence_to_copy(doc: Any, old_dir: Path, new_dir: Path) -> list[str]:
    """Notes for local evidence (test artifacts included) that the new folder lacks."""
    if old_dir.resolve() == new_dir.resolve():
        return []
    notes: list[str] = []
    seen: set[str] = set()
    spec = doc.get("spec") if isinstance(doc, dict) else None
    for items in spec.values() if isinstance(spec, dict) else []:
        for item in items if isinstance(items, list) else []:
            ev = item.get("evidence") if isinstance(item, dict) else None
            for e in ev if isinstance(ev, list) else []:
                if not isinstance(e, str) or not e or e.startswith(("http://", "https://")):
                    continue
                try:
                    new_ref = resolve_evidence(new_dir, e)
                    old_ref = resolve_evidence(old_dir, e)
                except EvidencePathError:
                    continue
                name = (
                    new_ref.path.relative_to(new_dir.resolve()).as_posix()
                    if new_ref.path.is_relative_to(new_dir.resolve())
                    else str(new_ref.path)
                )
                if name in seen or new_ref.path.exists():
                    continue
                seen.add(name)
                where = f" from {old_ref.path}" if old_ref.path.exists() else ""
                notes.append(
                    f"copy {name}{where} to {new_dir}/ (evidence of {item.get('id')});"
                    " validation reports it missing until then"
                )
    return notes
