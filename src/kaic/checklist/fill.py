"""``fill``: answer PRODUCT.yaml from a kaic run bundle (docs/bundle.md).

Owns: mapping run results to evidence/notes (the status is
``kaic.runner.checklist_status``: PASS -> Implemented with the test artifacts as
evidence; FAIL -> Not Implemented with the reason; a not-applicable SKIP -> N/A with
the reason; everything else untouched), editing only the answered lines of the
file (``textedit``), never overwriting or removing a person's answer without ``force``,
never writing through a link out of the product folder, and keeping a backup. Must not
run checks or talk to a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kaic import catalog as cat
from kaic.checklist import yamlio
from kaic.checklist.textedit import Entry, TextDoc
from kaic.checklist.validate import folder_version, metadata_value
from kaic.errors import InputError, UsageError
from kaic.model import Outcome
from kaic.runner.record import checklist_status, read_record

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
    results = tuple(
        RunResult(
            e.id,
            e.result.test_name,
            e.result.outcome.value,
            " ".join(e.result.reason.split()),
            e.result.not_applicable,
        )
        for e in record.results
        if not e.is_extended  # the extended profile never goes into PRODUCT.yaml
    )
    return Bundle(bundle, record.run_id, record.catalog_version or None, results)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def _safe_dest(dest: Path, product_dir: Path) -> None:
    """Refuse to write through a link, or anywhere outside the product folder."""
    if dest.is_symlink() or (dest.exists() and not _inside(dest, product_dir)):
        raise UsageError(
            f"{dest} is a symbolic link; kaic does not write through links "
            "(it could change a file outside the product folder): replace it "
            "with a regular file or remove it"
        )


def _artifact_refs(
    product_dir: Path, bundle: Path, force: bool, result: FillResult, copy: bool, plain: bool
) -> dict[str, str]:
    """Evidence prefixes (``file://junit.xml``…) for the bundle's artifacts.

    Artifacts must live inside the product directory (the official validator rejects
    anything else), so a bundle elsewhere has its artifacts copied next to PRODUCT.yaml.
    ``plain`` (before v1.37) gives plain relative paths, which every official validator
    revision accepts.
    """
    present = [n for n in ARTIFACTS if (bundle / n).is_file()]
    scheme = "" if plain else "file://"
    pdir, bdir = product_dir.resolve(), bundle.resolve()
    if bdir == pdir or bdir.is_relative_to(pdir):
        rel = bdir.relative_to(pdir).as_posix()
        prefix = "" if rel == "." else rel + "/"
        return {n: f"{scheme}{prefix}{n}" for n in present}
    refs: dict[str, str] = {}
    for n in present:
        src, dest = bundle / n, product_dir / n
        _safe_dest(dest, product_dir)
        if dest.exists() and dest.read_bytes() != src.read_bytes():
            if not force:
                raise UsageError(
                    f"{dest} exists and differs from the bundle's {n}; pass "
                    "--force to replace it (a backup is kept)"
                )
            if copy:
                result.warnings.append(f"replaced {dest} (backup: {yamlio.backup(dest)})")
        if copy and (not dest.exists() or dest.read_bytes() != src.read_bytes()):
            yamlio.write_atomic_bytes(dest, src.read_bytes())
            result.copied.append(dest)
        refs[n] = f"{scheme}{n}"
    return refs


def _target(product: Path) -> Path:
    """The file to edit: ``product``, or the target of a link inside the product folder."""
    if not product.is_symlink():
        return product
    target = product.resolve()
    if not _inside(target, product.parent):
        raise UsageError(
            f"{product} is a symbolic link to {target}, outside the product "
            "folder; kaic edits only files inside it"
        )
    return target


def fill_checklist(
    product: Path, bundle_dir: Path, force: bool = False, dry_run: bool = False
) -> FillResult:
    """Answer ``product`` from the run bundle at ``bundle_dir`` (see module docstring)."""
    bundle = read_bundle(bundle_dir)
    target = _target(product)
    loaded = yamlio.load_file(target)
    if loaded.unreadable or not isinstance(loaded.doc, dict):
        first = loaded.findings[0].message if loaded.findings else "not a mapping"
        raise InputError(f"{product}: cannot fill: {first}")
    try:
        raw = target.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:  # pragma: no cover - load_file read it
        raise InputError(f"{product}: cannot fill: {e}") from e
    text_doc = TextDoc(raw)
    entries = text_doc.entries
    result = FillResult(path=product)
    folder = folder_version(product)
    _, meta_version = metadata_value(loaded.doc.get("metadata"), "kubernetesVersion")
    version = folder[1:] if folder else None
    if version is None and isinstance(meta_version, str):
        try:
            version = cat.normalize_version(meta_version)
        except UsageError:  # reported by validate, not here
            version = None
    if bundle.catalog_version and version and bundle.catalog_version != version:
        result.warnings.append(
            f"the run used catalog v{bundle.catalog_version} but the "
            f"checklist is v{version}; only shared requirements are filled"
        )
    plain = version is not None and _vkey(version) < (1, 37)
    any_pass = any(r.outcome == "PASS" and r.requirement_id in entries for r in bundle.results)
    # NOTE: artifacts are evidence of a pass only; without one nothing is copied or checked.
    refs = (
        _artifact_refs(product.parent, bundle.path, force, result, copy=not dry_run, plain=plain)
        if any_pass
        else {}
    )
    if any_pass and "junit.xml" not in refs and "results.json" not in refs:
        result.warnings.append(
            "the bundle has no junit.xml or results.json; passed tests get"
            " no test artifact as evidence"
        )
    failed = sorted(r.test_name or r.requirement_id for r in bundle.results if r.outcome == "FAIL")
    if failed and any_pass and refs:
        result.warnings.append(
            f"the run has failing tests ({', '.join(failed)}); the official"
            " validator rejects test artifacts that contain failures"
        )
    ours = set(refs.values())
    offset = yamlio.guess_indent(text_doc.text)[2]
    for r in bundle.results:
        entry = entries.get(r.requirement_id)
        if entry is None:
            result.changes.append(
                FillChange(r.requirement_id, "absent", "not in this checklist version")
            )
            continue
        result.changes.append(_apply(text_doc, entry, r, refs, ours, force, plain, offset))
    if dry_run or not any(c.action == "set" for c in result.changes):
        return result
    out = text_doc.render()
    check = yamlio.load_text(out, str(product))
    if check.unreadable:  # pragma: no cover - a bug in the text editing
        raise InputError(
            f"{product}: editing would break the YAML ({check.findings[0].message});"
            " nothing written"
        )
    try:
        result.backup = yamlio.replace_file(target, out, force=True)  # its own input
    except OSError as e:
        raise InputError(f"cannot write {product}: {e.strerror or e}") from e
    result.written = True
    return result


def _vkey(version: str) -> tuple[int, int]:
    a, b = version.split(".")
    return int(a), int(b)


def _apply(
    doc: TextDoc,
    entry: Entry,
    r: RunResult,
    refs: dict[str, str],
    ours: set[str],
    force: bool,
    plain: bool,
    offset: int,
) -> FillChange:
    test = r.test_name or r.requirement_id
    status = checklist_status(Outcome(r.outcome), r.not_applicable)
    if status is None:
        why = r.reason or "needs a person's answer"
        return FillChange(r.requirement_id, "left", f"{r.outcome}: {why}")
    notes: str | None = None
    wanted: list[str] = []
    if r.outcome == "PASS":
        if "junit.xml" in refs:
            wanted.append(refs["junit.xml"] if plain else f"{refs['junit.xml']}#{test}")
        elif "results.json" in refs:
            wanted.append(refs["results.json"] if plain else f"{refs['results.json']}#{test}")
        if "e2e.log" in refs:
            wanted.append(refs["e2e.log"])
    elif r.outcome == "FAIL":
        notes = f"{test} failed: {r.reason}"
    else:
        notes = r.reason
    current = entry.text("status")
    if current not in ("", status) and not force:
        return FillChange(
            r.requirement_id,
            "conflict",
            f"status is '{current}', the run says '{status}'; kept (pass --force to overwrite)",
        )
    done: list[str] = []
    if current != status:
        doc.set_scalar(entry, "status", status)
        done.append(f"status '{current}' -> '{status}'")
    have = entry.evidence()
    # NOTE: evidence is only appended to; with --force, references to this bundle's own
    # artifacts that the run no longer gives (a test that now fails) are removed.
    if force:
        drop = {e for e in have if e.split("#", 1)[0] in ours and e not in wanted}
        if drop:
            doc.drop_evidence(entry, drop)
            done += [f"evidence -{e}" for e in sorted(drop)]
    add = [w for w in wanted if w not in have]
    if add:
        doc.append_evidence(entry, add, offset)
        done += [f"evidence +{e}" for e in add]
    kept_notes = False
    if notes is not None:
        cur_notes = entry.text("notes")
        if cur_notes.strip() == "" or force:
            if cur_notes != notes:
                doc.set_scalar(entry, "notes", notes)
                done.append("notes set" if not cur_notes.strip() else "notes replaced")
        elif cur_notes != notes:
            kept_notes = True
    detail = (
        status
        + (f": {'; '.join(done)}" if done else "")
        + (" (kept your notes)" if kept_notes else "")
    )
    return FillChange(r.requirement_id, "set" if done else "unchanged", detail)
