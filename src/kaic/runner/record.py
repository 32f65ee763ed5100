"""The record of one run: what ``run.json`` holds (schema ``kaic.io/run/v1``).

Owns: ``RunRecord``/``ResultEntry`` (frozen: observers get snapshots, never a record
that changes under them), their JSON form (docs/bundle.md), the one strict reader of
``run.json`` (``read_record``, used by ``kaic report`` and ``kaic checklist fill``),
where evidence files go (``evidence_path``), the exit rule (``exit_code``) and the
checklist status a result stands for (``checklist_status``, used by ``kaic checklist
fill`` and the reports).
Must not write files.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaic.errors import ExitCode, InputError
from kaic.model import EXTENDED, OFFICIAL, CheckResult, Evidence, Level, Outcome, Series, SubResult

SCHEMA = "kaic.io/run/v1"
MAX_RUN_JSON_BYTES = 64 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_OUTCOMES = tuple(o.value for o in Outcome)
_LEVELS = tuple(lv.value for lv in Level)


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
    profile: str = OFFICIAL
    """``official`` or ``extended`` (kaic's extended profile, never in the checklist)."""

    @property
    def id(self) -> str:
        return self.result.requirement_id

    @property
    def is_extended(self) -> bool:
        return self.profile == EXTENDED

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "requirement_id": r.requirement_id,
            "test_name": r.test_name,
            "level": self.level.value,
            "category": self.category,
            "profile": self.profile,
            "outcome": r.outcome.value,
            "reason": r.reason,
            "not_applicable": r.not_applicable,
            "started_at": self.started_at,
            "duration_s": round(r.duration_s, 3),
            "subresults": [
                {
                    "name": s.name,
                    "outcome": s.outcome.value,
                    "reason": s.reason,
                    "start_s": None if s.start_s is None else round(s.start_s, 3),
                    "duration_s": round(s.duration_s, 3),
                    "log": list(s.log),
                }
                for s in r.subresults
            ],
            "evidence": list(self.evidence_paths),
            "log": list(r.log),
            "series": [
                {
                    "chart": x.chart,
                    "name": x.name,
                    "unit": x.unit,
                    "target": x.target,
                    "points": [[t, v] for t, v in x.points],
                }
                for x in r.series
            ],
        }

    @classmethod
    def from_json(cls, d: Any, where: str = "result") -> ResultEntry:
        """One entry of ``results``; an ``InputError`` naming the field when malformed."""
        d = _object(d, where)
        rid = d.get("requirement_id")
        if not isinstance(rid, str) or not rid:
            raise InputError(f"{where} has no requirement_id")
        where = f"{where} ({rid})"
        outcome = d.get("outcome")
        if not isinstance(outcome, str) or outcome not in _OUTCOMES:
            raise InputError(
                f"{where} has outcome {outcome!r}; expected one of {', '.join(sorted(_OUTCOMES))}"
            )
        level = d.get("level")
        if not isinstance(level, str) or level not in _LEVELS:
            raise InputError(f"{where} has level {level!r}; expected MUST or SHOULD")
        profile = d.get("profile", OFFICIAL)
        if profile not in (OFFICIAL, EXTENDED):
            raise InputError(f"{where} has profile {profile!r}; expected official or extended")
        subs = tuple(
            _subresult(s, f"{where}: subresults[{i}]")
            for i, s in enumerate(_list(d, "subresults", where))
        )
        paths = tuple(_strings(d, "evidence", where))
        series = tuple(
            _series(x, f"{where}: series[{i}]") for i, x in enumerate(_list(d, "series", where))
        )
        try:
            result = CheckResult(
                requirement_id=rid,
                test_name=_text(d, "test_name", where),
                outcome=Outcome(outcome),
                reason=_text(d, "reason", where),
                subresults=subs,
                duration_s=_seconds(d, "duration_s", where),
                log=tuple(_strings(d, "log", where)),
                not_applicable=_flag(d, "not_applicable", where),
                evidence=tuple(Evidence(name=p, content="") for p in paths),
                series=series,
            )
        except ValueError as e:  # the model's own rules (every non-PASS has a reason)
            raise InputError(f"{where}: {e}") from e
        return cls(
            result=result,
            level=Level(level),
            category=_text(d, "category", where),
            started_at=_text(d, "started_at", where),
            evidence_paths=paths,
            profile=profile,
        )


@dataclass(frozen=True)
class RunRecord:
    """Everything ``run.json`` says about a run; results in catalog order."""

    run_id: str
    kaic_version: str
    started_at: str
    catalog_version: str
    cluster: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    """The run's request as ``RunRequest.to_json`` wrote it."""
    finished_at: str | None = None
    interrupted: bool = False
    results: tuple[ResultEntry, ...] = ()
    cleanup: tuple[Mapping[str, str], ...] = ()
    """Objects cleanup could not delete: ``{"object": "...", "reason": "..."}``."""
    api_requests: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """API requests sent, ``{requirement id or "run": {"verb resource": count}}``
    (``kaic.cluster.counting``)."""

    @property
    def exit_code(self) -> ExitCode:
        return exit_code(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "kaic_version": self.kaic_version,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "interrupted": self.interrupted,
            "cluster": dict(self.cluster),
            "catalog_version": self.catalog_version,
            "options": dict(self.options),
            "results": [e.to_json() for e in self.results],
            "cleanup": {"failed": [dict(c) for c in self.cleanup]},
            "api_requests": {k: dict(v) for k, v in self.api_requests.items()},
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
        """A record from parsed ``run.json``; every deviation from the schema
        (docs/bundle.md) is an ``InputError`` that names the field."""
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise InputError(f"{source}: schema must be {SCHEMA!r}")
        raw = doc.get("results")
        if not isinstance(raw, list):
            raise InputError(f"{source}: 'results' must be a list")
        results = tuple(
            ResultEntry.from_json(r, f"{source}: results[{i}]") for i, r in enumerate(raw)
        )
        finished = doc.get("finished_at")
        if finished is not None and not isinstance(finished, str):
            raise InputError(f"{source}: 'finished_at' must be text or null, got {_kind(finished)}")
        return cls(
            run_id=_text(doc, "run_id", source, required=True),
            kaic_version=_text(doc, "kaic_version", source),
            started_at=_text(doc, "started_at", source, required=True),
            catalog_version=_text(doc, "catalog_version", source, required=True),
            cluster=_scalars(doc, "cluster", source),
            options=_member(doc, "options", source),
            finished_at=finished,
            interrupted=_flag(doc, "interrupted", source),
            results=results,
            cleanup=_cleanup(doc, source),
            api_requests=_api_requests(doc, source),
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"


class NoRunRecordError(InputError):
    """The bundle has no ``run.json``."""


def read_record(bundle: Path) -> RunRecord:
    """The run record of a bundle directory (or of a ``run.json`` path); every problem
    with the file is an ``InputError`` with one line that says what (exit code 2)."""
    path = Path(bundle)
    if path.is_dir():
        path = path / "run.json"
    try:
        if path.stat().st_size > MAX_RUN_JSON_BYTES:
            raise InputError(f"{path} is larger than {MAX_RUN_JSON_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NoRunRecordError(f"{bundle} is not a kaic run bundle (no run.json)") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from e
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(f"{path} is not valid JSON: nested too deeply") from None
    except ValueError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from e
    try:
        return RunRecord.from_json(doc, str(path))
    except RecursionError:
        raise InputError(f"{path}: nested too deeply") from None


def subtest_starts(result: CheckResult) -> list[float]:
    """When each sub-test started, in seconds after its check started: as recorded, or
    (older bundles) one after the other from the check's start."""
    out: list[float] = []
    offset = 0.0
    for s in result.subresults:
        start = s.start_s if s.start_s is not None else offset
        out.append(start)
        offset = start + s.duration_s
    return out


def passed_for_exit(entry: ResultEntry) -> bool:
    """Whether a result lets the run exit 0: PASS, or a SKIP because not applicable."""
    r = entry.result
    return r.outcome is Outcome.PASS or (r.outcome is Outcome.SKIP and r.not_applicable)


def counts_for_exit(record: RunRecord, entry: ResultEntry) -> bool:
    """Whether a result takes part in the exit rule: an official MUST always; an
    extended requirement only with ``--fail-on extended``; an official SHOULD never."""
    if entry.is_extended:
        return record.options.get("fail_on") == "extended"
    return entry.level is Level.MUST


def unmet(record: RunRecord) -> list[ResultEntry]:
    """The selected requirements that keep the run from exiting 0."""
    return [e for e in record.results if counts_for_exit(record, e) and not passed_for_exit(e)]


def checklist_status(outcome: Outcome, not_applicable: bool) -> str | None:
    """The PRODUCT.yaml status a result answers, the one place it is written: PASS is
    ``Implemented``, FAIL ``Not Implemented``, a not-applicable SKIP ``N/A``; any other
    result leaves the answer to a person (None)."""
    if outcome is Outcome.PASS:
        return "Implemented"
    if outcome is Outcome.FAIL:
        return "Not Implemented"
    if outcome is Outcome.SKIP and not_applicable:
        return "N/A"
    return None


def exit_code(record: RunRecord) -> ExitCode:
    """The exit rule, the one place it is written: 130 when interrupted; 0 when every
    selected MUST passed (or does not apply), and with ``--fail-on extended`` every
    selected extended requirement too; 1 otherwise. Official SHOULD results never fail
    a run, nor do extended ones unless asked."""
    if record.interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.NOT_MET if unmet(record) else ExitCode.OK


# -- schema helpers ----------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), "a number")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where} must be an object, got {_kind(value)}")
    return value


def _member(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """An optional object member (absent or null: empty)."""
    value = d.get(key)
    return {} if value is None else _object(value, f"{where}: {key}")


def _list(d: dict[str, Any], key: str, where: str) -> list[Any]:
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"{where}: '{key}' must be a list, got {_kind(value)}")
    return value


def _text(d: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = d.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        what = "is missing" if value is None else f"must be text, got {_kind(value)}"
        raise InputError(f"{where}: '{key}' {what}")
    return value


def _strings(d: dict[str, Any], key: str, where: str) -> list[str]:
    items = _list(d, key, where)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InputError(f"{where}: {key}[{i}] must be text, got {_kind(item)}")
    return items


def _flag(d: dict[str, Any], key: str, where: str) -> bool:
    value = d.get(key, False)
    if not isinstance(value, bool):
        raise InputError(f"{where}: '{key}' must be true or false, got {_kind(value)}")
    return value


def _seconds(d: dict[str, Any], key: str, where: str) -> float:
    value = d.get(key, 0.0)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InputError(f"{where}: '{key}' must be a number of seconds, got {value!r}")
    return float(value)


def _scalars(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = _member(d, key, where)
    for k, v in value.items():
        if v is not None and not isinstance(v, str | int | float | bool):
            raise InputError(f"{where}: {key}.{k} must be a plain value, got {_kind(v)}")
    return value


def _api_requests(doc: dict[str, Any], source: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for scope, counts in _member(doc, "api_requests", source).items():
        where = f"{source}: api_requests.{scope}"
        counts = _object(counts, where)
        for key, n in counts.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise InputError(f"{where}.{key} must be a count, got {n!r}")
        out[scope] = dict(counts)
    return out


def _cleanup(doc: dict[str, Any], source: str) -> tuple[dict[str, str], ...]:
    cleanup = _member(doc, "cleanup", source)
    failed = []
    for i, c in enumerate(_list(cleanup, "failed", f"{source}: cleanup")):
        where = f"{source}: cleanup.failed[{i}]"
        c = _object(c, where)
        failed.append(
            {
                "object": _text(c, "object", where, required=True),
                "reason": _text(c, "reason", where, required=True),
            }
        )
    return tuple(failed)


def _subresult(s: Any, where: str) -> SubResult:
    s = _object(s, where)
    name = _text(s, "name", where, required=True)
    outcome = s.get("outcome")
    if not isinstance(outcome, str) or outcome not in _OUTCOMES:
        raise InputError(
            f"{where} ({name}) has outcome {outcome!r};"
            f" expected one of {', '.join(sorted(_OUTCOMES))}"
        )
    try:
        return SubResult(
            name=name,
            outcome=Outcome(outcome),
            reason=_text(s, "reason", where),
            duration_s=_seconds(s, "duration_s", where),
            log=tuple(_strings(s, "log", where)),
            start_s=None if s.get("start_s") is None else _seconds(s, "start_s", where),
        )
    except ValueError as e:  # the model's own rules (every non-PASS has a reason)
        raise InputError(f"{where}: {e}") from e


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _series(x: Any, where: str) -> Series:
    x = _object(x, where)
    name = _text(x, "name", where, required=True)
    where = f"{where} ({name})"
    target = x.get("target")
    if target is not None and not _number(target):
        raise InputError(f"{where}: 'target' must be a number or null, got {target!r}")
    points: list[tuple[float, float]] = []
    for i, p in enumerate(_list(x, "points", where)):
        if not (isinstance(p, list) and len(p) == 2 and all(_number(v) for v in p) and p[0] >= 0):
            raise InputError(
                f"{where}: points[{i}] must be [seconds of 0 or more, value], got {p!r}"
            )
        points.append((float(p[0]), float(p[1])))
    return Series(
        name=name,
        chart=_text(x, "chart", where) or name,
        unit=_text(x, "unit", where),
        points=tuple(points),
        target=None if target is None else float(target),
    )
