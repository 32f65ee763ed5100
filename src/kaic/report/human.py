"""The human reports: ``report.md`` and a self-contained ``report.html``.

Owns: their layout (run facts, verdict, a summary table, per requirement its sub-tests,
reason and evidence links, cleanup problems). No external assets. Must not write files.
"""

from __future__ import annotations

import html

from kaic.runner.record import RunRecord, exit_code, unmet

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


def render_markdown(record: RunRecord) -> str:
    out = ["# kaic conformance report", "", "| | |", "|---|---|"]
    out += [f"| {k} | {_cell(v)} |" for k, v in _facts(record)]
    counts = ", ".join(f"{v} {k}" for k, v in record.summary().items() if v)
    out += [
        "",
        "## Summary",
        "",
        counts or "no results",
        "",
        "| Requirement | Level | Test | Outcome | Duration | Reason |",
        "|---|---|---|---|---|---|",
    ]
    for e in record.results:
        r = e.result
        out.append(
            f"| [{e.id}](#{e.id}) | {e.level.value} | {_cell(r.test_name)} | "
            f"{_outcome(r.outcome.value, r.not_applicable)} | {r.duration_s:.1f}s | "
            f"{_cell(r.reason)} |"
        )
    out += ["", "## Requirements"]
    for e in record.results:
        r = e.result
        out += [
            "",
            f"### {e.id}",
            "",
            f"{_outcome(r.outcome.value, r.not_applicable)} · {e.level.value} · "
            f"{e.category} · `{_cell(r.test_name)}` · {r.duration_s:.2f}s",
        ]
        if r.reason:
            out += ["", f"**Reason:** {r.reason}"]
        if r.subresults:
            out += ["", "| Sub-test | Outcome | Duration | Reason |", "|---|---|---|---|"]
            out += [
                f"| `{_cell(r.test_name)}/{_cell(s.name)}` | "
                f"{_outcome(s.outcome.value, False)} | "
                f"{s.duration_s:.2f}s | {_cell(s.reason)} |"
                for s in r.subresults
            ]
        if e.evidence_paths:
            out += [
                "",
                "Evidence: "
                + ", ".join(f"[{p.rsplit('/', 1)[-1]}]({p})" for p in e.evidence_paths),
            ]
    if record.cleanup:
        out += ["", "## Cleanup problems", ""]
        out += [f"- {c['object']}: {c['reason']}" for c in record.cleanup]
        out += ["", f"Remove them with `kaic cleanup --run-id {record.run_id}`."]
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:#1b1f24;line-height:1.45}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;width:100%;margin:.6rem 0}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}code{font-size:.9em}
.PASS{color:#116329;font-weight:600}.FAIL{color:#a40e26;font-weight:600}
.ERROR{color:#9a6700;font-weight:600}.SKIP,.MANUAL{color:#57606a;font-weight:600}
.verdict{padding:.6rem 1rem;border-radius:6px;background:#f6f8fa;font-weight:600}
details{margin:.4rem 0}pre{background:#f6f8fa;padding:.5rem;overflow-x:auto}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _badge(outcome: str, na: bool = False) -> str:
    return f'<span class="{_e(outcome)}">{_e(outcome)}{" (N/A)" if na else ""}</span>'


def render_html(record: RunRecord) -> str:
    p = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
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
        "<h2>Summary</h2>",
        "<table>",
        "<tr><th>Requirement</th><th>Level</th><th>Test</th><th>Outcome</th>"
        "<th>Duration</th><th>Reason</th></tr>",
    ]
    for e in record.results:
        r = e.result
        p.append(
            f'<tr><td><a href="#{_e(e.id)}">{_e(e.id)}</a></td><td>{_e(e.level.value)}'
            f"</td><td><code>{_e(r.test_name)}</code></td><td>"
            f"{_badge(r.outcome.value, r.not_applicable)}</td>"
            f"<td>{r.duration_s:.1f}s</td><td>{_e(r.reason)}</td></tr>"
        )
    p += ["</table>", "<h2>Requirements</h2>"]
    for e in record.results:
        r = e.result
        p.append(f'<h3 id="{_e(e.id)}">{_e(e.id)} {_badge(r.outcome.value, r.not_applicable)}</h3>')
        p.append(
            f"<p>{_e(e.level.value)} · {_e(e.category)} · <code>{_e(r.test_name)}</code>"
            f" · {r.duration_s:.2f}s</p>"
        )
        if r.reason:
            p.append(f"<p><strong>Reason:</strong> {_e(r.reason)}</p>")
        if r.subresults:
            p.append(
                "<table><tr><th>Sub-test</th><th>Outcome</th><th>Duration</th><th>Reason</th></tr>"
            )
            p += [
                f"<tr><td><code>{_e(r.test_name)}/{_e(s.name)}</code></td>"
                f"<td>{_badge(s.outcome.value)}</td><td>{s.duration_s:.2f}s</td>"
                f"<td>{_e(s.reason)}</td></tr>"
                for s in r.subresults
            ]
            p.append("</table>")
        if e.evidence_paths:
            links = ", ".join(
                f'<a href="{_e(x)}">{_e(x.rsplit("/", 1)[-1])}</a>' for x in e.evidence_paths
            )
            p.append(f"<p>Evidence: {links}</p>")
        if r.log:
            p.append(
                "<details><summary>Log</summary><pre>" + _e("\n".join(r.log)) + "</pre></details>"
            )
    if record.cleanup:
        p += ["<h2>Cleanup problems</h2>", "<ul>"]
        p += [f"<li>{_e(c['object'])}: {_e(c['reason'])}</li>" for c in record.cleanup]
        p += [
            "</ul>",
            f"<p>Remove them with <code>kaic cleanup --run-id {_e(record.run_id)}</code>.</p>",
        ]
    p += ["</body></html>"]
    return "\n".join(p) + "\n"
