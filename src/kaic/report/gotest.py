"""``results.json`` (the ``go test -json`` event stream) and ``e2e.log`` (``go test -v``).

Owns: how a result becomes go-test events and text, under the official test names with
sub-tests as ``TestX/Sub``. Outcomes map as go test knows them: PASS→pass, FAIL and
ERROR→fail, SKIP and MANUAL→skip (the reason is printed). Must not write files.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from kaic.model import Outcome
from kaic.runner.record import ResultEntry, RunRecord, subtest_starts

PACKAGE = "kaic.io/ai-conformance"

_ACTION = {
    Outcome.PASS: "pass",
    Outcome.FAIL: "fail",
    Outcome.ERROR: "fail",
    Outcome.SKIP: "skip",
    Outcome.MANUAL: "skip",
}
_WORD = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}


def action(outcome: Outcome) -> str:
    return _ACTION[outcome]


def parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=UTC)


def _fmt_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _why(outcome: Outcome, reason: str) -> list[str]:
    if outcome is Outcome.PASS or not reason:
        return []
    label = {Outcome.ERROR: "ERROR (could not decide)", Outcome.MANUAL: "MANUAL"}.get(
        outcome, outcome.value
    )
    return [f"{label}: {line}" for line in reason.splitlines()]


def _sub_log(entry: ResultEntry) -> set[str]:
    """Check-level log lines that only echo a sub-test (they are printed under it)."""
    names = tuple(f"{s.name}: " for s in entry.result.subresults)
    return {line for line in entry.result.log if line.startswith(names)}


def test_lines(entry: ResultEntry) -> list[tuple[str, str]]:
    """``(test name, line)`` pairs of one test's ``go test -v`` output, in order."""
    r = entry.result
    top = r.test_name
    out: list[tuple[str, str]] = [(top, f"=== RUN   {top}")]
    echoed = _sub_log(entry)
    for line in r.log:
        if line not in echoed:
            out.extend((top, f"    {part}") for part in line.splitlines() or [""])
    for s in r.subresults:
        name = f"{top}/{s.name}"
        out.append((name, f"=== RUN   {name}"))
        out.extend((name, f"        {line}") for line in s.log)
        out.extend((name, f"        {line}") for line in _why(s.outcome, s.reason))
    if (
        not r.subresults
        or r.outcome in (Outcome.ERROR, Outcome.MANUAL)
        or (r.outcome is Outcome.SKIP and r.not_applicable)
    ):
        out.extend((top, f"    {line}") for line in _why(r.outcome, r.reason))
    out.append((top, f"--- {_WORD[action(r.outcome)]}: {top} ({r.duration_s:.2f}s)"))
    for s in r.subresults:
        name = f"{top}/{s.name}"
        out.append((name, f"    --- {_WORD[action(s.outcome)]}: {name} ({s.duration_s:.2f}s)"))
    return out


def e2e_block(entry: ResultEntry) -> str:
    return "".join(f"{line}\n" for _, line in test_lines(entry))


def _failed(record: RunRecord) -> bool:
    return record.interrupted or any(action(e.result.outcome) == "fail" for e in record.results)


def elapsed(record: RunRecord) -> float:
    if not record.finished_at:
        return sum(e.result.duration_s for e in record.results)
    return max(
        0.0, (parse_time(record.finished_at) - parse_time(record.started_at)).total_seconds()
    )


def e2e_footer(record: RunRecord) -> str:
    lines = []
    if record.interrupted:
        lines.append("*** the run was interrupted; cleanup ran")
    if _failed(record):
        lines += ["FAIL", f"FAIL\t{PACKAGE}\t{elapsed(record):.3f}s"]
    else:
        lines += ["PASS", f"ok  \t{PACKAGE}\t{elapsed(record):.3f}s"]
    return "".join(f"{line}\n" for line in lines)


def render_e2e_log(record: RunRecord, order: list[ResultEntry] | None = None) -> str:
    return "".join(e2e_block(e) for e in (order or record.results)) + e2e_footer(record)


def _event(
    t: datetime,
    act: str,
    test: str | None = None,
    *,
    output: str | None = None,
    elapsed_s: float | None = None,
) -> str:
    ev: dict[str, Any] = {"Time": _fmt_time(t), "Action": act, "Package": PACKAGE}
    if test is not None:
        ev["Test"] = test
    if elapsed_s is not None:
        ev["Elapsed"] = round(elapsed_s, 3)
    if output is not None:
        ev["Output"] = output
    return json.dumps(ev, ensure_ascii=False) + "\n"


def start_events(record: RunRecord) -> str:
    return _event(parse_time(record.started_at), "start")


def test_events(entry: ResultEntry) -> str:
    """The ``go test -json`` events of one test and its sub-tests."""
    r = entry.result
    t0 = parse_time(entry.started_at)
    end = t0 + timedelta(seconds=r.duration_s)
    out: list[str] = []
    started: set[str] = set()
    sub_start = {
        f"{r.test_name}/{s.name}": t0 + timedelta(seconds=start)
        for s, start in zip(r.subresults, subtest_starts(r), strict=True)
    }
    for test, line in test_lines(entry):
        t = sub_start.get(test, t0)
        if test not in started:
            started.add(test)
            out.append(_event(t, "run", test))
        if line.lstrip().startswith("--- "):
            continue
        out.append(_event(t, "output", test, output=line + "\n"))
    for s in r.subresults:
        name = f"{r.test_name}/{s.name}"
        t = sub_start[name] + timedelta(seconds=s.duration_s)
        word = _WORD[action(s.outcome)]
        out.append(
            _event(t, "output", name, output=f"    --- {word}: {name} ({s.duration_s:.2f}s)\n")
        )
        out.append(_event(t, action(s.outcome), name, elapsed_s=s.duration_s))
    word = _WORD[action(r.outcome)]
    out.append(
        _event(
            end, "output", r.test_name, output=f"--- {word}: {r.test_name} ({r.duration_s:.2f}s)\n"
        )
    )
    out.append(_event(end, action(r.outcome), r.test_name, elapsed_s=r.duration_s))
    return "".join(out)


def end_events(record: RunRecord) -> str:
    t = parse_time(record.finished_at or record.started_at)
    failed = _failed(record)
    out = [_event(t, "output", output=f"{'FAIL' if failed else 'PASS'}\n")]
    summary = (
        f"FAIL\t{PACKAGE}\t{elapsed(record):.3f}s"
        if failed
        else f"ok  \t{PACKAGE}\t{elapsed(record):.3f}s"
    )
    out.append(_event(t, "output", output=summary + "\n"))
    out.append(_event(t, "fail" if failed else "pass", elapsed_s=elapsed(record)))
    return "".join(out)


def render_results_json(record: RunRecord, order: list[ResultEntry] | None = None) -> str:
    return (
        start_events(record)
        + "".join(test_events(e) for e in (order or record.results))
        + end_events(record)
    )
