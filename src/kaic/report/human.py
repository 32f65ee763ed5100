"""The human reports: ``report.md`` and a self-contained ``report.html``.

Owns: their layout (run facts, verdict, a summary grouped as the checklist is — profile,
then category, then requirement — with per-category counts and the checklist status
``kaic checklist fill`` would set; the run timeline and phase charts in the HTML; per
requirement its sub-tests, reason and evidence links; cleanup problems). No external
assets, no JavaScript. Must not write files.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from kaic import catalog
from kaic.errors import KaicError
from kaic.model import EXTENDED, OFFICIAL, Outcome
from kaic.report.charts import phase_charts, timeline
from kaic.runner.record import (
    ResultEntry,
    RunRecord,
    checklist_status,
    exit_code,
    subtest_starts,
    unmet,
)

_ICON = {"PASS": "✅", "FAIL": "❌", "ERROR": "⚠️", "SKIP": "⏭️", "MANUAL": "📝"}


def verdict(record: RunRecord) -> str:
    code = int(exit_code(record))
    if record.interrupted:
        return "INTERRUPTED: the run was stopped before it finished (cleanup ran)"
    if code == 0:
        return "PASS: every selected MUST requirement passed or does not apply"
    bad = [e.id for e in unmet(record)]
    return f"NOT MET: MUST requirements without a pass: {', '.join(bad)}"


def _facts(record: RunRecord) -> list[tuple[str, str]]:
    c = record.cluster
    cluster = str(c.get("server_version", "?"))
    extra = ", ".join(f"{k} {c[k]}" for k in ("context", "server") if c.get(k))
    return [
        ("Run", record.run_id),
        ("Catalog", f"v{record.catalog_version}"),
        ("Cluster", f"{cluster} ({extra})" if extra else cluster),
        ("Started", record.started_at),
        ("Finished", record.finished_at or "(not finished)"),
        ("kaic", record.kaic_version),
        ("Verdict", verdict(record)),
    ]


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell: ``|`` escaped, line breaks as spaces."""
    return " ".join(text.replace("|", "\\|").splitlines()) if text else text


def _outcome(entry_outcome: str, na: bool) -> str:
    return f"{_ICON.get(entry_outcome, '')} {entry_outcome}{' (N/A)' if na else ''}".strip()


@dataclass(frozen=True)
class Group:
    """The results of one category of one profile, in catalog order."""

    profile: str
    category: str
    entries: tuple[ResultEntry, ...]

    @property
    def anchor(self) -> str:
        return f"{self.profile}-{_slug(self.category or 'uncategorised')}"

    def counts(self) -> str:
        """``2 PASS, 1 FAIL``: how many results of each outcome, in the outcomes' order."""
        seen = [sum(1 for e in self.entries if e.result.outcome is o) for o in Outcome]
        return ", ".join(f"{n} {o.value}" for o, n in zip(Outcome, seen, strict=True) if n)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def category_title(key: str) -> str:
    """``schedulingOrchestration`` → ``Scheduling orchestration``."""
    if not key:
        return "Uncategorised"
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key).replace("_", " ").split()
    text = " ".join(w if w.isupper() else w.lower() for w in words)
    return text[:1].upper() + text[1:]


def _category_order(record: RunRecord, profile: str) -> tuple[str, ...]:
    """The catalog's order of a profile's categories (none for an unknown version)."""
    try:
        cat = catalog.load(record.catalog_version)
    except KaicError:
        return ()
    return cat.extended_categories if profile == EXTENDED else cat.categories


def groups(record: RunRecord) -> list[Group]:
    """The results grouped as the checklist is: the official profile first, then the
    extended one; within each, categories in the catalog's order (unknown ones after, as
    they come); within a category, the record's (catalog) order."""
    out: list[Group] = []
    for profile in (OFFICIAL, EXTENDED):
        known = _category_order(record, profile)
        mine = [e for e in record.results if e.profile == profile]
        cats = [c for c in known if any(e.category == c for e in mine)]
        cats += [c for c in dict.fromkeys(e.category for e in mine) if c not in cats]
        out += [Group(profile, c, tuple(e for e in mine if e.category == c)) for c in cats]
    return out


def status_of(entry: ResultEntry) -> str:
    """What ``kaic checklist fill`` would set for this result (extended results never
    reach PRODUCT.yaml)."""
    if entry.profile != OFFICIAL:
        return "not in the checklist"
    status = checklist_status(entry.result.outcome, entry.result.not_applicable)
    return status or "left for a person"


_PROFILE_TITLE = {
    OFFICIAL: "Official profile",
    EXTENDED: "Extended profile",
}
_PROFILE_NOTE = {
    OFFICIAL: "The checklist requirements; the status is what `kaic checklist fill` "
    "would set in PRODUCT.yaml.",
    EXTENDED: "kaic's informative checks of the conformance document's capabilities "
    "without a checklist id: never in PRODUCT.yaml.",
}


def render_markdown(record: RunRecord) -> str:
    out = ["# kaic conformance report", "", "| | |", "|---|---|"]
    out += [f"| {k} | {_cell(v)} |" for k, v in _facts(record)]
    counts = ", ".join(f"{v} {k}" for k, v in record.summary().items() if v)
    out += ["", "## Summary", "", counts or "no results"]
    profile = ""
    for g in groups(record):
        if g.profile != profile:
            profile = g.profile
            out += ["", f"### {_PROFILE_TITLE[profile]}", "", _PROFILE_NOTE[profile]]
        out += [
            "",
            f"#### {category_title(g.category)} (`{_cell(g.category)}`): {g.counts()}",
            "",
            "| Requirement | Level | Test | Outcome | Checklist | Duration | Reason |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in g.entries:
            r = e.result
            out.append(
                f"| [{e.id}](#{e.id}) | {e.level.value} | {_cell(r.test_name)} | "
                f"{_outcome(r.outcome.value, r.not_applicable)} | {status_of(e)} | "
                f"{r.duration_s:.1f}s | {_cell(r.reason)} |"
            )
    out += ["", "## Requirements"]
    for g in groups(record):
        for e in g.entries:
            out += _md_requirement(e)
    if record.cleanup:
        out += ["", "## Cleanup problems", ""]
        out += [f"- {c['object']}: {_cell(c['reason'])}" for c in record.cleanup]
        out += ["", f"Remove them with `kaic cleanup --run-id {record.run_id}`."]
    return "\n".join(out) + "\n"


def _md_requirement(e: ResultEntry) -> list[str]:
    r = e.result
    out = [
        "",
        f"### {e.id}",
        "",
        f"{_outcome(r.outcome.value, r.not_applicable)} · {e.level.value} · "
        f"{e.category} · `{_cell(r.test_name)}` · {r.duration_s:.2f}s · "
        f"checklist: {status_of(e)}",
    ]
    if r.reason:
        out += ["", f"**Reason:** {r.reason}"]
    if r.subresults:
        out += ["", "| Sub-test | Outcome | Start | Duration | Reason |", "|---|---|---|---|---|"]
        out += [
            f"| `{_cell(r.test_name)}/{_cell(s.name)}` | "
            f"{_outcome(s.outcome.value, False)} | +{start:.2f}s | "
            f"{s.duration_s:.2f}s | {_cell(s.reason)} |"
            for s, start in zip(r.subresults, subtest_starts(r), strict=True)
        ]
    for s in r.series:
        target = f", target {s.target:g}" if s.target is not None else ""
        values = " → ".join(f"{v:g}" for v in _changes(s.points))
        out += ["", f"Samples of {s.chart} / {s.name}{target}: {values or 'none'}"]
    if e.evidence_paths:
        out += [
            "",
            "Evidence: " + ", ".join(f"[{p.rsplit('/', 1)[-1]}]({p})" for p in e.evidence_paths),
        ]
    return out


def _changes(points: tuple[tuple[float, float], ...]) -> list[float]:
    """The values of a series where it changes (``1 → 2 → 1``)."""
    out: list[float] = []
    for _, v in points:
        if not out or out[-1] != v:
            out.append(v)
    return out


_CSS = """
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--line:#d0d7de;
--head:#f6f8fa;--pass:#1a7f37;--fail:#cf222e;--error:#9a6700;--skip:#6e7781;
--s0:#0969da;--s1:#bf3989;--s2:#8250df;--s3:#bc4c00}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;
--line:#3d444d;--head:#151b23;--pass:#3fb950;--fail:#f85149;--error:#d29922;
--skip:#9198a1;--s0:#4493f8;--s1:#db61a2;--s2:#ab7df8;--s3:#f0883e}}
@media print{:root{--fg:#000;--bg:#fff;--muted:#444;--line:#999;--head:#eee;
--pass:#1a7f37;--fail:#cf222e;--error:#9a6700;--skip:#555;--s0:#0969da;--s1:#bf3989;
--s2:#8250df;--s3:#bc4c00}body{margin:0;max-width:none}nav{display:none}}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:var(--fg);background:var(--bg);line-height:1.45}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px solid var(--line)}
h4{margin:1.2rem 0 .3rem}a{color:var(--s0)}
table{border-collapse:collapse;width:100%;margin:.6rem 0}
th,td{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:var(--head)}code{font-size:.9em;overflow-wrap:break-word}
td.reason,td.evidence,p.reason{overflow-wrap:anywhere}td.reason,p.reason{white-space:pre-line}
.muted{color:var(--muted)}
figure{margin:1rem 0}figcaption{font-weight:600}
.PASS{color:var(--pass);font-weight:600}.FAIL{color:var(--fail);font-weight:600}
.ERROR{color:var(--error);font-weight:600}.SKIP,.MANUAL{color:var(--skip);font-weight:600}
.verdict{padding:.6rem 1rem;border-radius:6px;background:var(--head);font-weight:600}
details{margin:.4rem 0}pre{background:var(--head);padding:.5rem;white-space:pre-wrap;
overflow-wrap:anywhere}
nav ul{margin:.3rem 0;padding-left:1.2rem}
svg{display:block;width:100%;height:auto;margin:.5rem 0;font-size:11px}
svg text{fill:var(--fg)}svg .tick{fill:var(--muted);text-anchor:middle;font-size:10px}
svg .tick.y{text-anchor:end}svg .label.check{font-weight:600}
svg .grid{stroke:var(--line);stroke-width:.5}svg .sep{stroke:var(--line);stroke-width:.3}
svg .axis{stroke:var(--muted);stroke-width:1}
svg .bar.PASS{fill:var(--pass)}svg .bar.FAIL{fill:var(--fail)}
svg .bar.ERROR{fill:var(--error)}svg .bar.SKIP,svg .bar.MANUAL{fill:var(--skip)}
svg .bar.sub{opacity:.75}
svg .phase{stroke:var(--muted);stroke-dasharray:3 3}
svg .phase-label{fill:var(--muted);font-size:10px}
svg .line{fill:none;stroke-width:2}svg .target{stroke-width:1.5;stroke-dasharray:8 4}
svg .s0{stroke:var(--s0)}svg .s1{stroke:var(--s1)}svg .s2{stroke:var(--s2)}
svg .s3{stroke:var(--s3)}svg circle.s0{fill:var(--s0)}svg circle.s1{fill:var(--s1)}
svg circle.s2{fill:var(--s2)}svg circle.s3{fill:var(--s3)}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:1rem;margin:.2rem 0}
.swatch{display:inline-block;width:1.4em;height:.25em;vertical-align:middle;
margin-right:.35em;background:currentColor;color:var(--muted)}.swatch.s0{color:var(--s0)}
.swatch.s1{color:var(--s1)}.swatch.s2{color:var(--s2)}.swatch.s3{color:var(--s3)}
.swatch.dashed{background:none;height:0;border-top:2px dashed currentColor}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _badge(outcome: str, na: bool = False) -> str:
    return f'<span class="{_e(outcome)}">{_e(outcome)}{" (N/A)" if na else ""}</span>'


def _evidence_links(e: ResultEntry) -> str:
    return ", ".join(f'<a href="{_e(x)}">{_e(x.rsplit("/", 1)[-1])}</a>' for x in e.evidence_paths)


def _html_group(g: Group) -> list[str]:
    official = g.profile == OFFICIAL
    p = [
        f'<h4 id="{_e(g.anchor)}">{_e(category_title(g.category))} '
        f'<code class="muted">{_e(g.category)}</code>: {_e(g.counts())}</h4>',
        "<table>",
        "<tr><th>Requirement</th><th>Level</th><th>Test</th><th>Outcome</th>"
        + ("<th>Checklist status</th>" if official else "")
        + "<th>Duration</th><th>Reason</th><th>Evidence</th></tr>",
    ]
    for e in g.entries:
        r = e.result
        p.append(
            f'<tr><td><a href="#{_e(e.id)}">{_e(e.id)}</a></td><td>{_e(e.level.value)}'
            f"</td><td><code>{_e(r.test_name)}</code></td><td>"
            f"{_badge(r.outcome.value, r.not_applicable)}</td>"
            + (f"<td>{_e(status_of(e))}</td>" if official else "")
            + f'<td>{r.duration_s:.1f}s</td><td class="reason">{_e(r.reason)}</td>'
            f'<td class="evidence">{_evidence_links(e)}</td></tr>'
        )
    p.append("</table>")
    return p


def _legend(entry: ResultEntry, chart: str, phases: bool) -> str:
    items = []
    for i, s in enumerate(x for x in entry.result.series if x.chart == chart):
        unit = f" ({_e(s.unit)})" if s.unit else ""
        items.append(f'<li><span class="swatch s{i % 4}"></span>{_e(s.name)}{unit}</li>')
        if s.target is not None:
            items.append(
                f'<li><span class="swatch s{i % 4} dashed"></span>target {s.target:g} '
                f"({_e(s.name)})</li>"
            )
    if phases:
        items.append(
            '<li><span class="swatch dashed"></span>start of a sub-test (labelled where '
            "there is room; all are in the table below)</li>"
        )
    return '<ul class="legend">' + "".join(items) + "</ul>"


def _samples_table(entry: ResultEntry) -> str:
    rows = "".join(
        f"<tr><td>{_e(s.chart)}</td><td>{_e(s.name)}</td><td>+{t:.2f}s</td><td>{v:g}</td></tr>"
        for s in entry.result.series
        for t, v in s.points
    )
    return (
        "<details><summary>Samples</summary><table><tr><th>Chart</th><th>Series</th>"
        f"<th>Time</th><th>Value</th></tr>{rows}</table></details>"
    )


def _html_requirement(e: ResultEntry) -> list[str]:
    r = e.result
    p = [
        f'<section id="{_e(e.id)}">',
        f"<h3>{_e(e.id)} {_badge(r.outcome.value, r.not_applicable)}</h3>",
        f"<p>{_e(e.level.value)} · {_e(e.category)} · <code>{_e(r.test_name)}</code>"
        f" · {r.duration_s:.2f}s · checklist: {_e(status_of(e))}</p>",
    ]
    if r.reason:
        p.append(f'<p class="reason"><strong>Reason:</strong> {_e(r.reason)}</p>')
    for chart, svg in phase_charts(e, f"chart-{_slug(e.id)}"):
        p += [
            f"<figure><figcaption>{_e(chart)}</figcaption>",
            svg,
            _legend(e, chart, bool(r.subresults)),
            "</figure>",
        ]
    if r.series:
        p.append(_samples_table(e))
    if r.subresults:
        p.append(
            "<table><tr><th>Sub-test</th><th>Outcome</th><th>Start</th><th>Duration</th>"
            "<th>Reason</th></tr>"
        )
        p += [
            f"<tr><td><code>{_e(r.test_name)}/{_e(s.name)}</code></td>"
            f"<td>{_badge(s.outcome.value)}</td><td>+{start:.2f}s</td>"
            f'<td>{s.duration_s:.2f}s</td><td class="reason">{_e(s.reason)}</td></tr>'
            for s, start in zip(r.subresults, subtest_starts(r), strict=True)
        ]
        p.append("</table>")
    if e.evidence_paths:
        p.append(f"<p>Evidence: {_evidence_links(e)}</p>")
    if r.log:
        p.append("<details><summary>Log</summary><pre>" + _e("\n".join(r.log)) + "</pre></details>")
    p.append("</section>")
    return p


def render_html(record: RunRecord) -> str:
    grouped = groups(record)
    svg = timeline(record)
    p = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        f"<title>kaic report {_e(record.run_id)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        "<h1>kaic conformance report</h1>",
        f'<p class="verdict">{_e(verdict(record))}</p>',
        "<table>",
    ]
    p += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in _facts(record)[:-1]]
    p += [
        "</table>",
        "<nav><strong>Contents</strong><ul>",
        '<li><a href="#summary">Summary</a></li>',
    ]
    for profile in (OFFICIAL, EXTENDED):
        mine = [g for g in grouped if g.profile == profile]
        if mine:
            p.append(f'<li><a href="#profile-{profile}">{_PROFILE_TITLE[profile]}</a><ul>')
            p += [
                f'<li><a href="#{_e(g.anchor)}">{_e(category_title(g.category))}</a></li>'
                for g in mine
            ]
            p.append("</ul></li>")
    if svg:
        p.append('<li><a href="#timeline">Timeline</a></li>')
    p += ['<li><a href="#requirements">Requirements</a></li>', "</ul></nav>"]
    counts = ", ".join(f"{v} {k}" for k, v in record.summary().items() if v)
    p += ['<h2 id="summary">Summary</h2>', f"<p>{_e(counts or 'no results')}</p>"]
    profile = ""
    for g in grouped:
        if g.profile != profile:
            profile = g.profile
            note = _e(_PROFILE_NOTE[profile]).replace(
                "`kaic checklist fill`", "<code>kaic checklist fill</code>"
            )
            p += [f'<h3 id="profile-{profile}">{_PROFILE_TITLE[profile]}</h3>', f"<p>{note}</p>"]
        p += _html_group(g)
    if svg:
        p += [
            '<h2 id="timeline">Timeline</h2>',
            "<p>Every check and sub-test on one time axis from the start of the run; "
            "bars that overlap ran at the same time.</p>",
            svg,
        ]
    p.append('<h2 id="requirements">Requirements</h2>')
    for g in grouped:
        for e in g.entries:
            p += _html_requirement(e)
    if record.cleanup:
        p += ["<h2>Cleanup problems</h2>", "<ul>"]
        p += [f"<li>{_e(c['object'])}: {_e(c['reason'])}</li>" for c in record.cleanup]
        p += [
            "</ul>",
            f"<p>Remove them with <code>kaic cleanup --run-id {_e(record.run_id)}</code>.</p>",
        ]
    p += ["</body></html>"]
    return "\n".join(p) + "\n"
