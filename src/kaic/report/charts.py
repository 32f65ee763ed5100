"""Inline SVG for report.html: the run timeline and the phase charts of sampled series.

Owns: geometry and markup of both charts (a fixed ``viewBox`` scaled to the page width,
colours as CSS classes the page styles, a ``<title>`` on every bar and point so that a
pointer shows the exact numbers without JavaScript). Must not write files or decide
anything about a result.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from kaic.model import Series
from kaic.runner.record import ResultEntry, RunRecord, subtest_starts

__all__ = ["Bar", "phase_charts", "timeline", "timeline_bars"]

WIDTH = 1000.0
LABEL_W = 300.0
"""Width of the label column of the timeline (viewBox units)."""
PHASE_LABEL_GAP = 20.0
"""Least distance between two phase labels of a chart (viewBox units)."""
LABEL_CHARS = 46
"""Labels longer than this are drawn condensed (``textLength``), never cut."""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(x: float) -> str:
    """A coordinate: one decimal, no trailing zeros."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _secs(s: float) -> str:
    if s >= 120:
        return f"{round(s / 60, 1):g} min"
    return f"{_n(s)} s" if s < 10 else f"{s:.0f} s"


def _time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


_MINUTE_STEPS = (30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 14400)


def time_ticks(top: float, count: int = 5) -> list[float]:
    """Ticks of a time axis from 0 to at least ``top`` seconds: round seconds for short
    spans, whole minutes (or half minutes) beyond two minutes."""
    if top <= 120:
        return nice_ticks(top, count)
    step = next((s for s in _MINUTE_STEPS if top / s <= count + 1), _MINUTE_STEPS[-1])
    return [float(i * step) for i in range(math.ceil(top / step - 1e-9) + 1)]


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (``top`` > 0)."""
    raw = top / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


@dataclass(frozen=True)
class Bar:
    """One row of the timeline: a check (``sub`` empty) or one of its sub-tests."""

    requirement_id: str
    sub: str
    outcome: str
    start_s: float
    duration_s: float

    @property
    def label(self) -> str:
        return self.sub or self.requirement_id


def timeline_bars(record: RunRecord) -> list[Bar]:
    """Every check and sub-test with its start (seconds after the run started) and
    duration, checks in the order they started."""
    t0 = _time(record.started_at)
    bars: list[Bar] = []
    entries = sorted(
        record.results,
        key=lambda e: (_time(e.started_at) or t0 or datetime.min, e.id),
    )
    for e in entries:
        r = e.result
        st = _time(e.started_at)
        start = max(0.0, (st - t0).total_seconds()) if st and t0 else 0.0
        bars.append(Bar(e.id, "", r.outcome.value, start, r.duration_s))
        for s, off in zip(r.subresults, subtest_starts(r), strict=True):
            bars.append(Bar(e.id, s.name, s.outcome.value, start + off, s.duration_s))
    return bars


def _label(x: float, y: float, text: str, cls: str) -> str:
    fit = f' textLength="{_n(LABEL_W - 20)}" lengthAdjust="spacingAndGlyphs"'
    extra = fit if len(text) > LABEL_CHARS else ""
    return f'<text x="{_n(x)}" y="{_n(y)}" class="{cls}"{extra}>{_e(text)}</text>'


def timeline(record: RunRecord) -> str:
    """The run timeline: one bar per check and per sub-test on one time axis."""
    bars = timeline_bars(record)
    if not bars:
        return ""
    t0, t1 = _time(record.started_at), _time(record.finished_at or "")
    run_s = (t1 - t0).total_seconds() if t0 and t1 else 0.0
    span = max([run_s, 1.0, *(b.start_s + b.duration_s for b in bars)])
    ticks = time_ticks(span)
    span = ticks[-1]
    x0, x1 = LABEL_W, WIDTH - 10
    scale = (x1 - x0) / span
    top, check_h, sub_h = 24.0, 20.0, 15.0
    height = top + sum(check_h if not b.sub else sub_h for b in bars) + 8
    p = [
        f'<svg class="timeline" viewBox="0 0 {_n(WIDTH)} {_n(height)}" role="img" '
        f'aria-labelledby="timeline-title">',
        f'<title id="timeline-title">Run timeline: {len(record.results)} checks over '
        f"{_secs(run_s or span)}</title>",
    ]
    for t in ticks:
        x = x0 + t * scale
        p.append(
            f'<line class="grid" x1="{_n(x)}" y1="{_n(top - 4)}" x2="{_n(x)}" '
            f'y2="{_n(height - 6)}"/>'
        )
        p.append(f'<text class="tick" x="{_n(x)}" y="{_n(top - 8)}">{_e(_secs(t))}</text>')
    y = top
    for b in bars:
        h = sub_h if b.sub else check_h
        if not b.sub:
            p.append(f'<line class="sep" x1="0" y1="{_n(y)}" x2="{_n(WIDTH)}" y2="{_n(y)}"/>')
        cls = "sub" if b.sub else "check"
        p.append(_label(20.0 if b.sub else 4.0, y + h - 5, b.label, f"label {cls}"))
        w = max(b.duration_s * scale, 2.0)
        name = f"{b.requirement_id}/{b.sub}" if b.sub else b.requirement_id
        p.append(
            f'<rect class="bar {cls} {_e(b.outcome)}" x="{_n(x0 + b.start_s * scale)}" '
            f'y="{_n(y + 2)}" width="{_n(w)}" height="{_n(h - 4)}" '
            f'data-start="{b.start_s:.3f}" data-duration="{b.duration_s:.3f}">'
            f"<title>{_e(name)}: {_e(b.outcome)}, {b.duration_s:.2f} s from "
            f"+{b.start_s:.2f} s</title></rect>"
        )
        y += h
    p.append("</svg>")
    return "\n".join(p)


def _charts(series: Iterable[Series]) -> dict[str, list[Series]]:
    out: dict[str, list[Series]] = {}
    for s in series:
        out.setdefault(s.chart, []).append(s)
    return out


def _step_path(points: Sequence[tuple[float, float]], fx: float, fy: float, y0: float) -> str:
    """A step line through ``points``: each value holds until the next sample."""
    xy = [(60 + t * fx, y0 - v * fy) for t, v in points]
    head = f"M{_n(xy[0][0])} {_n(xy[0][1])}"
    return head + "".join(f"H{_n(x)}V{_n(y)}" for x, y in xy[1:])


def phase_charts(entry: ResultEntry, chart_id: str) -> list[tuple[str, str]]:
    """``(chart, SVG)`` for each chart of the result's sampled series: each series as a step line
    with its samples as points, its target as a dashed line, and the start of every
    sub-test (the check's phases) as a labelled vertical line."""
    r = entry.result
    out: list[tuple[str, str]] = []
    phases = list(zip((s.name for s in r.subresults), subtest_starts(r), strict=True))
    for n, (chart, group) in enumerate(_charts(r.series).items()):
        points = [p for s in group for p in s.points]
        if not points:
            continue
        span = max([r.duration_s, 1.0, *(t for t, _ in points)])
        xt = time_ticks(span, 6)
        targets = [s.target for s in group if s.target is not None]
        top = max([1.0, *(v for _, v in points), *targets])
        yt = nice_ticks(top * 1.1, 4)
        plot_w, y0, plot_h = WIDTH - 80, 200.0, 170.0
        fx, fy = plot_w / xt[-1], plot_h / yt[-1]
        unit = next((s.unit for s in group if s.unit), "")
        title_id = f"{chart_id}-{n}"
        p = [
            f'<svg class="phases" viewBox="0 0 {_n(WIDTH)} 240" role="img" '
            f'aria-labelledby="{_e(title_id)}" '
            f'data-chart="{_e(chart)}">',
            f'<title id="{_e(title_id)}">{_e(entry.id)}: {_e(chart)}'
            f"{f' ({_e(unit)})' if unit else ''} over the check's {_secs(r.duration_s)}</title>",
        ]
        for v in yt:
            y = y0 - v * fy
            p.append(
                f'<line class="grid" x1="60" y1="{_n(y)}" x2="{_n(60 + plot_w)}" y2="{_n(y)}"/>'
            )
            p.append(f'<text class="tick y" x="54" y="{_n(y + 4)}">{v:g}</text>')
        for t in xt:
            x = 60 + t * fx
            p.append(f'<text class="tick" x="{_n(x)}" y="{_n(y0 + 18)}">{_e(_secs(t))}</text>')
        labelled = -math.inf
        for name, start in phases:
            x = 60 + start * fx
            p.append(
                f'<line class="phase" x1="{_n(x)}" y1="{_n(y0 - plot_h)}" x2="{_n(x)}" '
                f'y2="{_n(y0)}"><title>{_e(name)} starts at +{start:.2f} s</title></line>'
            )
            # NOTE: a phase that starts too close to the labelled one before it keeps
            # its line (and the tooltip) without a label that would be drawn over.
            if x - labelled >= PHASE_LABEL_GAP:
                labelled = x
                p.append(
                    f'<text class="phase-label" transform="translate({_n(x + 4)} '
                    f'{_n(y0 - 4)}) rotate(-90)">{_e(name)}</text>'
                )
        for i, s in enumerate(group):
            cls = f"s{i % 4}"
            if s.target is not None:
                y = y0 - s.target * fy
                p.append(
                    f'<line class="target {cls}" x1="60" y1="{_n(y)}" x2="{_n(60 + plot_w)}" '
                    f'y2="{_n(y)}"><title>{_e(s.name)} target {s.target:g}</title></line>'
                )
            if not s.points:
                continue
            p.append(f'<path class="line {cls}" d="{_step_path(s.points, fx, fy, y0)}"/>')
            for t, v in s.points:
                p.append(
                    f'<circle class="pt {cls}" cx="{_n(60 + t * fx)}" cy="{_n(y0 - v * fy)}" '
                    f'r="3" data-series="{_e(s.name)}" data-t="{t:g}" data-v="{v:g}">'
                    f"<title>{_e(s.name)} = {v:g} at +{t:.1f} s</title></circle>"
                )
        p.append(f'<line class="axis" x1="60" y1="{_n(y0)}" x2="{_n(60 + plot_w)}" y2="{_n(y0)}"/>')
        p.append("</svg>")
        out.append((chart, "\n".join(p)))
    return out
