"""``fill``: answer PRODUCT.yaml from a kaic run bundle (docs/bundle.md).

Owns: mapping run results to status/evidence/notes (PASS -> Implemented with the test
artifacts as evidence; FAIL -> Not Implemented with the reason; a not-applicable SKIP ->
N/A with the reason; everything else untouched), editing the file round-trip so comments,
key order and quoting stay, never overwriting a person's answer without ``force``, and
keeping a backup. Must not run checks or talk to a cluster.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString as DQ

from kaic import catalog as cat
from kaic.checklist import yamlio
from kaic.checklist.validate import folder_version, metadata_value
from kaic.errors import InputError, UsageError
from kaic.runner.record import read_record

__all__ = ["FillChange", "FillResult", "RunResult", "fill_checklist", "read_bundle"]

ARTIFACTS = ("junit.xml", "e2e.log", "results.json")


@dataclass(frozen=True)
class RunResult:
    requirement_id: str
    test_name: str
    outcome: str
    reason: str
    not_applicable: bool


@dataclass(frozen=True)
class Bundle:
    path: Path
    run_id: str
    catalog_version: str | None
    results: tuple[RunResult, ...]


@dataclass(frozen=True)
class FillChange:
    requirement_id: str
    action: str
    """set | unchanged | conflict | left | absent"""
    detail: str = ""


@dataclass
class FillResult:
    path: Path
    changes: list[FillChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    copied: list[Path] = field(default_factory=list)
    backup: Path | None = None
    written: bool = False

    @property
    def conflicts(self) -> list[FillChange]:
        return [c for c in self.changes if c.action == "conflict"]


def read_bundle(bundle: Path) -> Bundle:
    """Read ``run.json`` of a bundle with the one strict reader (``kaic.runner``); every
    problem is an InputError (exit code 2)."""
    record = read_record(bundle)
    results = tuple(RunResult(e.id, e.result.test_name, e.result.outcome.value,
                              " ".join(e.result.reason.split()), e.result.not_applicable)
                    for e in record.results)
    return Bundle(bundle, record.run_id, record.catalog_version or None, results)


def _entries(doc: Any) -> dict[str, CommentedMap]:
    spec = doc.get("spec") if isinstance(doc, dict) else None
    if not isinstance(spec, dict):
        raise InputError("the checklist has no 'spec' mapping; run kaic checklist validate")
    out: dict[str, CommentedMap] = {}
    for items in spec.values():
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, CommentedMap) and isinstance(item.get("id"), str):
                out.setdefault(item["id"], item)
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _artifact_refs(product_dir: Path, bundle: Path, force: bool, result: FillResult,
                   copy: bool) -> dict[str, str]:
    """Evidence prefixes (``file://junit.xml``…) for the bundle's artifacts.

    Artifacts must live inside the product directory (the official validator rejects
    anything else), so a bundle elsewhere has its artifacts copied next to PRODUCT.yaml.
    """
    present = [n for n in ARTIFACTS if (bundle / n).is_file()]
    pdir, bdir = product_dir.resolve(), bundle.resolve()
    if bdir == pdir or bdir.is_relative_to(pdir):
        rel = bdir.relative_to(pdir).as_posix()
        prefix = "" if rel == "." else rel + "/"
        return {n: f"file://{prefix}{n}" for n in present}
    refs: dict[str, str] = {}
    for n in present:
        src, dest = bundle / n, product_dir / n
        if dest.exists() and dest.read_bytes() != src.read_bytes():
            if not force:
                raise UsageError(f"{dest} exists and differs from the bundle's {n}; pass "
                                 "--force to replace it (a backup is kept)")
            if copy:
                result.warnings.append(f"replaced {dest} (backup: {yamlio.backup(dest)})")
        if copy and (not dest.exists() or dest.read_bytes() != src.read_bytes()):
            shutil.copyfile(src, dest)
            result.copied.append(dest)
        refs[n] = f"file://{n}"
    return refs


def _set_evidence(item: CommentedMap, wanted: list[str], drop: set[str]) -> bool:
    current = item.get("evidence")
    if not isinstance(current, CommentedSeq):
        seq = CommentedSeq()
        if isinstance(current, list):
            seq.extend(current)
        elif isinstance(current, str) and current:
            seq.append(current)  # the pre-2025-10 single-string form: keep what was written
        item["evidence"] = seq
        current = seq
    changed = False
    for i in reversed(range(len(current))):
        if str(current[i]) in drop and str(current[i]) not in wanted:
            del current[i]
            changed = True
    for ref in wanted:
        if ref not in [str(x) for x in current]:
            current.append(DQ(ref))
            changed = True
    if changed and len(current) > 0:
        current.fa.set_block_style()
    if len(current) == 0:
        current.fa.set_flow_style()
    return changed


def fill_checklist(product: Path, bundle_dir: Path, force: bool = False,
                   dry_run: bool = False) -> FillResult:
    """Answer ``product`` from the run bundle at ``bundle_dir`` (see module docstring)."""
    bundle = read_bundle(bundle_dir)
    loaded = yamlio.load_file(product)
    if loaded.unreadable or not isinstance(loaded.doc, CommentedMap):
        first = loaded.findings[0].message if loaded.findings else "not a mapping"
        raise InputError(f"{product}: cannot fill: {first}")
    doc = loaded.doc
    entries = _entries(doc)
    result = FillResult(path=product)
    folder = folder_version(product)
    _, meta_version = metadata_value(doc.get("metadata"), "kubernetesVersion")
    version = folder[1:] if folder else None
    if version is None and isinstance(meta_version, str):
        try:
            version = cat.normalize_version(meta_version)
        except UsageError:  # reported by validate, not here
            version = None
    if bundle.catalog_version and version and bundle.catalog_version != version:
        result.warnings.append(f"the run used catalog v{bundle.catalog_version} but the "
                               f"checklist is v{version}; only shared requirements are filled")
    any_pass = any(r.outcome == "PASS" and r.requirement_id in entries for r in bundle.results)
    refs = _artifact_refs(product.parent, bundle.path, force, result,
                          copy=any_pass and not dry_run)
    if any_pass and "junit.xml" not in refs and "results.json" not in refs:
        result.warnings.append("the bundle has no junit.xml or results.json; passed tests get"
                               " no test artifact as evidence")
    failed = sorted(r.test_name or r.requirement_id for r in bundle.results
                    if r.outcome == "FAIL")
    if failed and any_pass and refs:
        result.warnings.append(f"the run has failing tests ({', '.join(failed)}); the official"
                               " validator rejects test artifacts that contain failures")
    ours = set(refs.values())
    for r in bundle.results:
        item = entries.get(r.requirement_id)
        if item is None:
            result.changes.append(FillChange(r.requirement_id, "absent",
                                             "not in this checklist version"))
            continue
        result.changes.append(_apply(item, r, refs, ours, force))
    if dry_run or not any(c.action == "set" for c in result.changes):
        return result
    indent = yamlio.guess_indent(loaded.text)
    text = yamlio.dump(doc, indent)
    try:
        result.backup = yamlio.backup(product)
        yamlio.write_atomic(product, text)
    except OSError as e:
        raise InputError(f"cannot write {product}: {e.strerror or e}") from e
    result.written = True
    return result


def _apply(item: CommentedMap, r: RunResult, refs: dict[str, str], ours: set[str],
           force: bool) -> FillChange:
    test = r.test_name or r.requirement_id
    if r.outcome == "PASS":
        status, notes = "Implemented", None
        wanted = []
        if "junit.xml" in refs:
            wanted.append(f"{refs['junit.xml']}#{test}")
        elif "results.json" in refs:
            wanted.append(f"{refs['results.json']}#{test}")
        if "e2e.log" in refs:
            wanted.append(refs["e2e.log"])
    elif r.outcome == "FAIL":
        status, notes, wanted = "Not Implemented", f"{test} failed: {r.reason}", []
    elif r.outcome == "SKIP" and r.not_applicable:
        status, notes, wanted = "N/A", r.reason, []
    else:
        why = r.reason or "needs a person's answer"
        return FillChange(r.requirement_id, "left", f"{r.outcome}: {why}")
    current = _text(item.get("status"))
    if current not in ("", status) and not force:
        return FillChange(r.requirement_id, "conflict", f"status is '{current}', the run says "
                          f"'{status}'; kept (pass --force to overwrite)")
    changed = False
    if current != status:
        item["status"] = DQ(status)
        changed = True
    drop = {e for e in _evidence_strings(item) if e.split("#", 1)[0] in ours}
    if _set_evidence(item, wanted, drop):
        changed = True
    kept_notes = False
    if notes is not None:
        cur_notes = _text(item.get("notes"))
        if cur_notes.strip() == "" or force:
            if cur_notes != notes:
                item["notes"] = DQ(notes)
                changed = True
        elif cur_notes != notes:
            kept_notes = True
    detail = f"{status}" + (" (kept your notes)" if kept_notes else "")
    return FillChange(r.requirement_id, "set" if changed else "unchanged", detail)


def _evidence_strings(item: CommentedMap) -> list[str]:
    ev = item.get("evidence")
    return [str(e) for e in ev] if isinstance(ev, list) else []
