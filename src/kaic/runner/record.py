"""The record of one run: what ``run.json`` holds (schema ``kaic.io/run/v1``).

Owns: ``RunRecord``/``ResultEntry``, their JSON form (docs/bundle.md), where evidence
files go (``evidence_path``) and the exit code a record earns. Must not write files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kaic.errors import ExitCode, InputError
from kaic.model import CheckResult, Evidence, Level, Outcome, SubResult

SCHEMA = "kaic.io/run/v1"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def evidence_path(requirement_id: str, name: str) -> str:
    """The bundle-relative path of one evidence file (no way out of its folder)."""
    parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".", "..")]
    safe = "-".join(_UNSAFE.sub("_", p) for p in parts) or "evidence.txt"
    return f"evidence/{_UNSAFE.sub('_', requirement_id)}/{safe}"


@dataclass(frozen=True)
class ResultEntry:
    """One requirement's verdict within a run."""

    result: CheckResult
    level: Level
    category: str = ""
    started_at: str = ""
    evidence_paths: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.result.requirement_id

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "requirement_id": r.requirement_id,
            "test_name": r.test_name,
            "level": self.level.value,
            "category": self.category,
            "outcome": r.outcome.value,
            "reason": r.reason,
            "not_applicable": r.not_applicable,
            "started_at": self.started_at,
            "duration_s": round(r.duration_s, 3),
            "subresults": [
                {"name": s.name, "outcome": s.outcome.value, "reason": s.reason,
                 "duration_s": round(s.duration_s, 3), "log": list(s.log)}
                for s in r.subresults
            ],
            "evidence": list(self.evidence_paths),
            "log": list(r.log),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ResultEntry:
        subs = tuple(
            SubResult(name=str(s["name"]), outcome=Outcome(s["outcome"]),
                      reason=str(s.get("reason", "")),
                      duration_s=float(s.get("duration_s", 0.0)),
                      log=tuple(s.get("log") or ()))
            for s in d.get("subresults") or []
        )
        result = CheckResult(
            requirement_id=str(d["requirement_id"]), test_name=str(d["test_name"]),
            outcome=Outcome(d["outcome"]), reason=str(d.get("reason", "")), subresults=subs,
            duration_s=float(d.get("duration_s", 0.0)), log=tuple(d.get("log") or ()),
            not_applicable=bool(d.get("not_applicable", False)),
            evidence=tuple(Evidence(name=p, content="") for p in d.get("evidence") or ()),
        )
        return cls(result=result, level=Level(d["level"]), category=str(d.get("category", "")),
                   started_at=str(d.get("started_at", "")),
                   evidence_paths=tuple(d.get("evidence") or ()))


@dataclass
class RunRecord:
    """Everything ``run.json`` says about a run; results in catalog order."""

    run_id: str
    kaic_version: str
    started_at: str
    catalog_version: str
    cluster: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    finished_at: str | None = None
    interrupted: bool = False
    results: list[ResultEntry] = field(default_factory=list)
    cleanup: list[dict[str, str]] = field(default_factory=list)
    """Objects cleanup could not delete: ``{"object": "...", "reason": "..."}``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "kaic_version": self.kaic_version,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "interrupted": self.interrupted,
            "cluster": self.cluster,
            "catalog_version": self.catalog_version,
            "options": self.options,
            "results": [e.to_json() for e in self.results],
            "cleanup": {"failed": self.cleanup},
            "summary": self.summary(),
            "exit_code": int(exit_code(self)),
        }

    def summary(self) -> dict[str, int]:
        counts = {o.value: 0 for o in Outcome}
        for e in self.results:
            counts[e.result.outcome.value] += 1
        return counts

    @classmethod
    def from_json(cls, doc: Any, source: str = "run.json") -> RunRecord:
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise InputError(f"{source} is not a kaic run record (schema {SCHEMA})")
        try:
            return cls(
                run_id=str(doc["run_id"]), kaic_version=str(doc.get("kaic_version", "")),
                started_at=str(doc["started_at"]), catalog_version=str(doc["catalog_version"]),
                cluster=dict(doc.get("cluster") or {}), options=dict(doc.get("options") or {}),
                finished_at=doc.get("finished_at"), interrupted=bool(doc.get("interrupted")),
                results=[ResultEntry.from_json(r) for r in doc.get("results") or []],
                cleanup=list((doc.get("cleanup") or {}).get("failed") or []),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{source} is malformed: {e}") from e

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"


def passed_for_exit(entry: ResultEntry) -> bool:
    """Whether a result lets the run exit 0: PASS, or a SKIP because not applicable."""
    r = entry.result
    return r.outcome is Outcome.PASS or (r.outcome is Outcome.SKIP and r.not_applicable)


def exit_code(record: RunRecord) -> ExitCode:
    """0 when every selected MUST passed (or does not apply); 130 when interrupted;
    1 otherwise. SHOULD results never fail a run."""
    if record.interrupted:
        return ExitCode.INTERRUPTED
    if any(e.level is Level.MUST and not passed_for_exit(e) for e in record.results):
        return ExitCode.NOT_MET
    return ExitCode.OK
