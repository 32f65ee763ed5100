"""report.md: a test or sub-test name with ``|`` or a line break keeps every table intact."""

from __future__ import annotations

from kaic import catalog
from kaic.model import CheckResult, Outcome, SubResult
from kaic.report import render_markdown
from kaic.runner.record import ResultEntry, RunRecord


def _record(test: str, sub: str) -> RunRecord:
    req = catalog.load("1.37").get("gang_scheduling")
    result = CheckResult(
        "gang_scheduling",
        test,
        Outcome.FAIL,
        "a | b\nc",
        subresults=(SubResult(sub, Outcome.FAIL, "x\ny|z"),),
    )
    record = RunRecord(
        run_id="r",
        kaic_version="0",
        started_at="2026-11-28T10:15:00.000Z",
        catalog_version="1.37",
        cluster={},
        options={},
        results=(ResultEntry(result, req.level, req.category, "2026-11-28T10:15:00Z", ()),),
    )
    return record


def _table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def test_pipes_and_line_breaks_in_test_names_do_not_break_the_tables() -> None:
    md = render_markdown(_record("TestGang|Scheduling\nSecond line", "Sub|test\r\nnext"))
    for row in _table_rows(md):
        unescaped = row.replace("\\|", "")
        assert unescaped.count("|") in (3, 6, 8), row
    assert "TestGang\\|Scheduling Second line" in md
    assert "Sub\\|test next" in md
    assert "\nSecond line" not in md and "\nnext" not in md
