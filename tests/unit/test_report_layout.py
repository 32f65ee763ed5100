"""report.md and report.html: grouped as the checklist (profile → category → requirement),
the checklist status ``kaic checklist fill`` would set, the timeline and phase charts
from what run.json records, valid HTML, and older bundles without the new fields."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import html5lib
import pytest

from kaic import catalog
from kaic.checks.base import CheckContext, CheckSpec, run_check
from kaic.cli.main import main
from kaic.errors import InputError
from kaic.model import CheckResult, Level, Outcome, Series, SubResult
from kaic.report import render_html, render_markdown
from kaic.report.charts import nice_ticks, phase_charts, time_ticks, timeline_bars
from kaic.report.human import groups, status_of
from kaic.runner.record import EXTENDED, ResultEntry, RunRecord, read_record
from tests.fakes import FakeCluster

GOLDEN = Path(__file__).parents[1] / "golden"


def entry(
    rid: str,
    outcome: Outcome,
    *,
    reason: str = "",
    profile: str = "official",
    category: str | None = None,
    level: Level | None = None,
    started: str = "2026-11-28T10:15:00.000Z",
    **kw: object,
) -> ResultEntry:
    cat = catalog.load("1.36")
    req = cat.get(rid) if rid in cat else None
    return ResultEntry(
        CheckResult(rid, f"Test_{rid}", outcome, reason, **kw),  # type: ignore[arg-type]
        level or (req.level if req else Level.SHOULD),
        category if category is not None else (req.category if req else "storage"),
        started,
        profile=profile,
    )


def synthetic() -> RunRecord:
    """A run with official results in two categories and extended results (the extended
    profile's checks do not exist yet: this record stands in for their output)."""
    return RunRecord(
        run_id="r1",
        kaic_version="0",
        started_at="2026-11-28T10:15:00.000Z",
        finished_at="2026-11-28T10:16:00.000Z",
        catalog_version="1.36",
        results=(
            entry("secure_accelerator_access", Outcome.PASS),
            entry("gang_scheduling", Outcome.FAIL, reason="a | b\nsecond line " + "x" * 400),
            entry("cluster_autoscaling", Outcome.SKIP, reason="no pool", not_applicable=True),
            entry("gpu_sharing", Outcome.MANUAL, reason="by hand"),
            entry("ext_storage", Outcome.PASS, profile=EXTENDED, category="storage"),
            entry(
                "ext_jobset",
                Outcome.FAIL,
                reason="no controller acted on the JobSet",
                profile=EXTENDED,
                category="schedulingOrchestration",
            ),
        ),
    )


def test_results_are_grouped_by_profile_then_category_in_catalog_order() -> None:
    got = [(g.profile, g.category, [e.id for e in g.entries]) for g in groups(synthetic())]
    assert got == [
        ("official", "accelerators", ["gpu_sharing"]),
        ("official", "schedulingOrchestration", ["gang_scheduling", "cluster_autoscaling"]),
        ("official", "security", ["secure_accelerator_access"]),
        ("extended", "storage", ["ext_storage"]),
        ("extended", "schedulingOrchestration", ["ext_jobset"]),
    ]
    sched = next(g for g in groups(synthetic()) if g.category == "schedulingOrchestration")
    assert sched.counts() == "1 FAIL, 1 SKIP"


def test_the_checklist_status_is_what_checklist_fill_sets() -> None:
    by_id = {e.id: status_of(e) for e in synthetic().results}
    assert by_id == {
        "secure_accelerator_access": "Implemented",
        "gang_scheduling": "Not Implemented",
        "cluster_autoscaling": "N/A",
        "gpu_sharing": "left for a person",
        "ext_storage": "not in the checklist",
        "ext_jobset": "not in the checklist",
    }


def test_extended_results_have_their_own_section_in_both_reports() -> None:
    record = synthetic()
    md = render_markdown(record)
    official, extended = md.split("### Extended profile")
    assert "ext_jobset" not in official.split("## Requirements")[0]
    assert "[ext_jobset](#ext_jobset)" in extended
    page = render_html(record)
    summary = page.split('<h2 id="timeline">')[0]
    off, ext = summary.split('<h3 id="profile-extended">')
    assert "#ext_storage" not in off and "#ext_storage" in ext
    assert "Checklist status" in off and "Checklist status" not in ext


def test_the_markdown_tables_escape_pipes_and_line_breaks() -> None:
    md = render_markdown(synthetic())
    row = next(line for line in md.splitlines() if line.startswith("| [gang_scheduling]"))
    assert "a \\| b second line" in row
    assert row.replace("\\|", "").count("|") == 8


def test_the_html_keeps_every_reason_whole() -> None:
    page = render_html(synthetic())
    assert "a | b\nsecond line " + "x" * 400 in page


def _parse_strict(page: str) -> object:
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page)


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(lambda: render_html(synthetic()), id="synthetic"),
        pytest.param(lambda: (GOLDEN / "bundle" / "report.html").read_text(), id="golden"),
        pytest.param(lambda: render_html(read_record(GOLDEN / "old-bundle")), id="old-bundle"),
    ],
)
def test_the_html_report_is_valid_and_every_link_inside_it_resolves(page: object) -> None:
    text = page()  # type: ignore[operator]
    doc = _parse_strict(text)  # raises html5lib.html5parser.ParseError on any parse error
    ids = [el.get("id") for el in doc.iter() if el.get("id")]  # type: ignore[attr-defined]
    assert len(ids) == len(set(ids)), "duplicate ids"
    targets = re.findall(r'href="#([^"]+)"', text)
    assert targets and set(targets) <= set(ids)
    assert "<script" not in text


def test_strict_parsing_rejects_broken_markup() -> None:
    with pytest.raises(html5lib.html5parser.ParseError):
        _parse_strict("<!DOCTYPE html><html><body><p>a</b></body></html>")


def test_the_timeline_puts_every_check_and_sub_test_on_the_run_axis() -> None:
    record = read_record(GOLDEN / "bundle")
    bars = {(b.requirement_id, b.sub): b for b in timeline_bars(record)}
    neg = bars[("gang_scheduling", "NegativeGangScheduling")]
    assert neg.start_s == pytest.approx(1.1 + 12.0) and neg.duration_s == 30.5
    assert len(bars) == len(record.results) + sum(len(e.result.subresults) for e in record.results)
    page = render_html(record)
    timeline = page.split('<svg class="timeline"')[1].split("</svg>")[0]
    assert timeline.count("<rect ") == len(bars)


def test_an_older_record_lays_sub_tests_end_to_end() -> None:
    record = read_record(GOLDEN / "old-bundle")
    subs = [b for b in timeline_bars(record) if b.requirement_id == "gang_scheduling" and b.sub]
    assert [round(b.start_s, 3) for b in subs] == [1.1, 13.1]


def test_phase_charts_draw_every_sample_the_check_recorded() -> None:
    record = read_record(GOLDEN / "bundle")
    hpa = next(e for e in record.results if e.id == "pod_autoscaling")
    page = render_html(record)
    section = page.split('<section id="pod_autoscaling">')[1].split("</section>")[0]
    charts = re.findall(r'<svg class="phases"[^>]*data-chart="([^"]+)"', section)
    assert charts == ["replicas", "custom metric"]
    points = re.findall(r'<circle class="pt[^"]*"[^>]*data-series="([^"]+)"', section)
    assert len(points) == sum(len(s.points) for s in hpa.result.series)
    assert section.count('class="target') == 1 and section.count('class="phase"') == 2 * 3


def test_a_record_without_samples_has_no_phase_chart() -> None:
    page = render_html(read_record(GOLDEN / "old-bundle"))
    assert 'class="phases"' not in page and 'class="timeline"' in page


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert nice_ticks(60) == [0, 20, 40, 60]
    assert nice_ticks(2.2, 4) == [0, 1, 2, 3]
    assert nice_ticks(0.05)[-1] >= 0.05


def test_kaic_report_renders_a_bundle_of_the_previous_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(GOLDEN / "old-bundle", tmp_path / "b")
    with pytest.raises(SystemExit) as done:
        main(["report", str(tmp_path / "b"), "--format", "html"])
    out, err = capsys.readouterr()
    assert done.value.code == 1, err  # the run's own exit code: a MUST failed
    assert '<section id="gang_scheduling">' in out and err == ""
    assert 'class="phases"' not in out


def _doc_with(result_patch: dict[str, object]) -> dict[str, object]:
    doc = json.loads((GOLDEN / "bundle" / "run.json").read_text())
    doc["results"][0].update(result_patch)
    return doc


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"profile": "beta"}, "has profile 'beta'"),
        ({"series": [{"name": "x", "points": [[1, "a"]]}]}, "points[0] must be"),
        ({"series": [{"name": "x", "points": [[-1, 2]]}]}, "points[0] must be"),
        ({"series": [{"name": "x", "target": "10"}]}, "'target' must be a number"),
        ({"series": [{"points": []}]}, "'name' is missing"),
        ({"series": {"name": "x"}}, "'series' must be a list"),
    ],
)
def test_the_reader_names_a_malformed_new_field(
    tmp_path: Path, patch: dict[str, object], message: str
) -> None:
    (tmp_path / "run.json").write_text(json.dumps(_doc_with(patch)))
    with pytest.raises(InputError, match=re.escape(message)):
        read_record(tmp_path)


def test_the_reader_rejects_a_sub_test_start_that_is_not_seconds(tmp_path: Path) -> None:
    doc = json.loads((GOLDEN / "bundle" / "run.json").read_text())
    gang = next(r for r in doc["results"] if r["requirement_id"] == "gang_scheduling")
    gang["subresults"][0]["start_s"] = "soon"
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="'start_s' must be a number of seconds"):
        read_record(tmp_path)


def test_samples_and_sub_test_starts_survive_run_json() -> None:
    record = read_record(GOLDEN / "bundle")
    again = RunRecord.from_json(json.loads(record.dumps()))
    assert again == record
    hpa = next(e for e in again.results if e.id == "pod_autoscaling").result
    assert hpa.series[2] == Series(
        "kaic_hpa_test_metric",
        "custom metric",
        "average per pod",
        ((1.5, 0.0), (3.5, 30.0), (18.0, 15.0), (33.0, 0.0)),
        10.0,
    )
    assert [s.start_s for s in hpa.subresults] == [1.0, 3.0, 19.0]


def _ctx(func: object) -> CheckContext:
    spec = CheckSpec("gang_scheduling", "TestGangScheduling", func)  # type: ignore[arg-type]
    return CheckContext(
        cluster=FakeCluster(),
        requirement=catalog.load("1.36").get("gang_scheduling"),
        spec=spec,
        catalog_version="1.36",
        run_id="r",
        namespace="ns",
    )


def test_a_check_records_sub_test_starts_and_samples_as_evidence() -> None:
    def body(ctx: CheckContext) -> None:
        with ctx.subtest("First"):
            for v in (1, 1, 1, 1, 2, 2, 1):
                ctx.sample("replicas", "current", v, unit="pods", target=2)
            ctx.sample("replicas", "current", float("nan"))
        ctx.step("Second", lambda t: None, needs=("Missing",))

    ctx = _ctx(body)
    result = run_check(ctx)
    assert result.outcome is Outcome.PASS
    first, second = result.subresults
    assert first.start_s is not None and second.start_s is not None
    assert 0 <= first.start_s <= second.start_s <= result.duration_s
    (s,) = result.series
    assert [v for _, v in s.points] == [1, 1, 2, 2, 1]  # a held value keeps first and last
    assert (s.unit, s.target) == ("pods", 2)
    ev = next(e for e in result.evidence if e.name == "samples.json")
    assert json.loads(ev.content)[0]["points"] == [list(p) for p in s.points]


def test_sub_results_without_start_keep_the_old_meaning() -> None:
    assert SubResult("X", Outcome.PASS).start_s is None


def test_long_time_axes_tick_in_whole_minutes() -> None:
    assert time_ticks(250) == [0, 60, 120, 180, 240, 300]
    assert time_ticks(4500)[1] == 900
    assert time_ticks(50) == nice_ticks(50)


def test_phases_too_close_for_a_label_keep_their_line() -> None:
    subs = tuple(
        SubResult(name, Outcome.PASS, duration_s=0.1, start_s=start)
        for name, start in (("A", 0.0), ("B", 0.1), ("C", 0.2), ("D", 50.0))
    )
    e = entry(
        "pod_autoscaling",
        Outcome.PASS,
        subresults=subs,
        duration_s=100.0,
        series=(Series("r", "replicas", points=((0.0, 1.0), (60.0, 2.0))),),
    )
    ((_, svg),) = phase_charts(e, "c")
    assert svg.count('class="phase"') == 4
    assert re.findall(r'class="phase-label"[^>]*>([^<]+)<', svg) == ["A", "D"]
