"""The result bundle on disk, written as the run goes (docs/bundle.md).

Owns: ``BundleWriter`` (a runner observer: evidence files and ``e2e.log``/
``results.json`` appended as each check finishes and rewritten in catalog order at the
end; ``run.json``, ``junit.xml``,
``report.md`` and ``report.html`` rewritten atomically after each, from the snapshot
the event carries), redaction of everything written. ``load_record`` re-reads a bundle
through ``kaic.runner.read_record``, the one reader of ``run.json``. Must not run checks.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

from kaic.model import CheckResult
from kaic.report.gotest import (
    e2e_block,
    e2e_footer,
    end_events,
    start_events,
    test_events,
)
from kaic.report.human import render_html, render_markdown
from kaic.report.junit import render_junit
from kaic.report.redact import redact_evidence, redact_text
from kaic.runner import (
    CheckDone,
    CleanupDone,
    Event,
    RunFinished,
    RunStarted,
    evidence_path,
    read_record,
)
from kaic.runner.record import ResultEntry, RunRecord

__all__ = ["BundleWriter", "load_record", "redact_result"]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)
        f.flush()


def redact_result(r: CheckResult) -> CheckResult:
    """The result with every reason and log line passed through ``redact_text``."""
    subs = tuple(
        dataclasses.replace(
            s, reason=redact_text(s.reason), log=tuple(redact_text(x) for x in s.log)
        )
        for s in r.subresults
    )
    return dataclasses.replace(
        r, reason=redact_text(r.reason), subresults=subs, log=tuple(redact_text(x) for x in r.log)
    )


class BundleWriter:
    """Writes one run's bundle into ``directory`` while the run goes.

    Keeps no copy of the results: every event carries a snapshot of the run so far
    (``record``), and each rewrite renders that snapshot, redacted."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, RunStarted):
                self._start(event.record)
            elif isinstance(event, CheckDone):
                self._check_done(event.entry, event.record)
            elif isinstance(event, CleanupDone):
                self._rewrite(event.record)
            elif isinstance(event, RunFinished):
                self._finish(event.record)

    def _start(self, record: RunRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "evidence").mkdir(exist_ok=True)
        _atomic_write(self.dir / "results.json", start_events(record))
        _atomic_write(self.dir / "e2e.log", "")
        self._rewrite(record)

    def _check_done(self, entry: ResultEntry, record: RunRecord) -> None:
        result = entry.result
        for ev in result.evidence:
            path = self.dir / evidence_path(result.requirement_id, ev.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, redact_evidence(ev.content, ev.media_type))
        if not entry.is_extended:
            # NOTE: results.json and e2e.log are the official validator's test artifacts:
            # they hold the checklist's requirements only (docs/bundle.md).
            clean = redact_entry(entry)
            _append(self.dir / "results.json", test_events(clean))
            _append(self.dir / "e2e.log", e2e_block(clean))
        self._rewrite(record)

    def _rewrite(self, record: RunRecord) -> None:
        view = redact_record(record)
        _atomic_write(self.dir / "run.json", view.dumps())
        _atomic_write(self.dir / "junit.xml", render_junit(view))
        _atomic_write(self.dir / "report.md", render_markdown(view))
        _atomic_write(self.dir / "report.html", render_html(view))

    def _finish(self, record: RunRecord) -> None:
        # NOTE: checks that run at the same time finish in any order; the appended
        # files are rewritten in the record's (catalog) order, so a bundle is the same
        # however its checks were scheduled.
        view = official_view(redact_record(record))
        _atomic_write(
            self.dir / "results.json",
            start_events(view) + "".join(test_events(e) for e in view.results) + end_events(view),
        )
        _atomic_write(
            self.dir / "e2e.log", "".join(e2e_block(e) for e in view.results) + e2e_footer(view)
        )
        self._rewrite(record)


def redact_entry(entry: ResultEntry) -> ResultEntry:
    return dataclasses.replace(entry, result=redact_result(entry.result))


def redact_record(record: RunRecord) -> RunRecord:
    """The record as the bundle shows it: every result redacted."""
    return dataclasses.replace(record, results=tuple(redact_entry(e) for e in record.results))


def official_view(record: RunRecord) -> RunRecord:
    """The record without its extended-profile results (what the official test artifacts
    report)."""
    return dataclasses.replace(
        record, results=tuple(e for e in record.results if not e.is_extended)
    )


def load_record(bundle: Path) -> RunRecord:
    """The run record of a bundle directory (or of a ``run.json`` path), read by the one
    strict reader (``kaic.runner.read_record``)."""
    return read_record(bundle)
