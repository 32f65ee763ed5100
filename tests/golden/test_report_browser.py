"""report.html of the golden bundle in a real headless browser (Debian's ``chromium``,
driven through Playwright): it fits 1280 px, shows every requirement, draws the timeline
and the phase charts with their data points, logs no error, needs no JavaScript and
follows the reader's dark mode.

The browser is installed by ``make test`` (``make browser``); without it these tests
skip, and fail instead when ``KAIC_REQUIRE_BROWSER=1``. Screenshots are kept as test
artifacts under ``build/test-artifacts/`` (or ``$KAIC_TEST_ARTIFACTS``), never committed.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kaic.report import load_record, render_html

GOLDEN = Path(__file__).parent / "bundle"
ROOT = Path(__file__).parents[2]
ARTIFACTS = Path(os.environ.get("KAIC_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts")
BROWSERS = ("chromium", "chromium-browser")


def _browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def _missing(why: str) -> None:
    if os.environ.get("KAIC_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{why} (KAIC_REQUIRE_BROWSER=1; install it with `make browser`)")
    pytest.skip(f"{why}; `make browser` installs it")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package playwright is not installed")
    exe = _browser()
    if exe is None:
        _missing("no chromium on PATH (Debian package chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def page_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden bundle, its report.html rendered again from its run.json."""
    out = tmp_path_factory.mktemp("browser") / "bundle"
    shutil.copytree(GOLDEN, out)
    (out / "report.html").write_text(render_html(load_record(out)), encoding="utf-8")
    return out / "report.html"


def _open(browser: Any, path: Path, **context: Any) -> tuple[Any, list[str]]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, **context)
    page = ctx.new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def test_the_report_renders_whole_in_chromium_without_javascript(
    browser: Any, page_path: Path
) -> None:
    page, problems = _open(browser, page_path, java_script_enabled=False)
    record = load_record(page_path.parent)
    sizes = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert sizes[0] <= sizes[1] == 1280, f"horizontal overflow: {sizes}"
    for e in record.results:
        section = page.locator(f"section#{e.id}")
        assert section.count() == 1, e.id
        assert section.locator("h3").inner_text().startswith(e.id)
    # the timeline: one bar per check and per sub-test, drawn with a real size
    bars = page.locator("svg.timeline rect.bar")
    assert bars.count() == len(record.results) + sum(
        len(e.result.subresults) for e in record.results
    )
    box = page.locator("svg.timeline").bounding_box()
    assert box is not None and box["width"] > 1000 and box["height"] > 200
    # the phase charts of pod_autoscaling: every sample is a point on screen
    hpa = next(e for e in record.results if e.id == "pod_autoscaling")
    charts = page.locator("section#pod_autoscaling svg.phases")
    assert charts.count() == len({s.chart for s in hpa.result.series})
    points = page.locator("section#pod_autoscaling svg.phases circle.pt")
    assert points.count() == sum(len(s.points) for s in hpa.result.series)
    for i in range(points.count()):
        pbox = points.nth(i).bounding_box()
        assert pbox is not None and pbox["width"] > 0
    # an evidence file is one click away
    link = page.locator("section#secure_accelerator_access a", has_text="exec.txt")
    assert link.get_attribute("href") == "evidence/secure_accelerator_access/exec.txt"
    assert (page_path.parent / link.get_attribute("href")).is_file()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-light.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = _png_size(shot)
    assert width == 1280 and height > 2000
    assert problems == []


def _background(page: Any) -> list[int]:
    rgb = page.evaluate("getComputedStyle(document.body).backgroundColor")
    return [int(x) for x in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]


def test_the_report_follows_the_readers_dark_mode(browser: Any, page_path: Path) -> None:
    light, _ = _open(browser, page_path, color_scheme="light")
    dark, problems = _open(browser, page_path, color_scheme="dark")
    assert sum(_background(light)) > 600 and sum(_background(dark)) < 150
    label = dark.locator("svg.timeline text.label").first
    fill = label.evaluate("e => getComputedStyle(e).fill")
    assert fill != "rgb(0, 0, 0)", "timeline labels stay black on a dark page"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dark.screenshot(path=str(ARTIFACTS / "report-dark.png"), full_page=True)
    assert problems == []


def test_the_report_prints_without_overflow(browser: Any, page_path: Path) -> None:
    page, problems = _open(browser, page_path)
    page.emulate_media(media="print")
    sizes = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert sizes[0] <= sizes[1]
    assert sum(_background(page)) > 600  # printed light, whatever the screen's scheme
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.pdf(path=str(ARTIFACTS / "report.pdf"))
    assert (ARTIFACTS / "report.pdf").stat().st_size > 10_000
    assert problems == []
