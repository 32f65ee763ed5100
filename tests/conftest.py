"""Shared pytest configuration."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest


def _find_shared() -> Path:
    """``../shared`` beside the repository (searched upwards, for worktrees too)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared"
        if (candidate / "data" / "cncf-checklist-templates").is_dir():
            return candidate
    return Path(__file__).resolve().parents[2] / "shared"


SHARED = _find_shared()
TEMPLATES = SHARED / "data" / "cncf-checklist-templates"


@pytest.fixture(scope="session")
def templates_dir() -> Path:
    """The official checklist templates in ../shared (read-only reference)."""
    if not TEMPLATES.is_dir():
        pytest.skip(f"official templates not found at {TEMPLATES}")
    return TEMPLATES


@pytest.fixture(autouse=True)
def _request_scope() -> Iterator[None]:
    """Every test starts and ends in the run's request scope: a check run in the test's
    own thread (``run_check`` on a fake) leaves its scope set there otherwise
    (``kaic.cluster.counting.SCOPE``, set by a check's TrackingCluster)."""
    from kaic.cluster.counting import RUN_SCOPE, SCOPE

    token = SCOPE.set(RUN_SCOPE)
    yield
    SCOPE.reset(token)


LONGEST_FIRST = (
    "tests/lab/test_concurrent_run.py",
    "tests/lab/test_faults.py",
    "tests/lab/test_autoscaling.py",
    "tests/lab/test_run_lab.py",
    "tests/lab/test_profile_lab.py",
)
"""The test files that take longest (``slowest test files`` of a full run), collected
first. With ``make test``'s ``-n 2 --dist loadfile --no-loadscope-reorder`` each file goes
to the next free process in collection order, so these start at once and the short files
fill in behind them; without it xdist starts the files with the most tests first, and a
long file of one test that came last kept one process busy after the other ran out of
work."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: n for n, path in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> int:
        return rank.get(item.nodeid.split("::", 1)[0], len(rank))

    items.sort(key=key)  # stable: the rest keep their order


_tier_seconds: dict[str, float] = {}
_file_seconds: dict[str, float] = {}
SLOWEST_FILES = 10


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Time per test tier (tests/<tier>/…), setup and teardown included; with ``-n``
    (pytest-xdist) the reports of every worker arrive here, so a tier's time is summed
    over the workers."""
    parts = report.nodeid.split("::", 1)[0].split("/")
    if len(parts) > 2 and parts[0] == "tests":
        _tier_seconds[parts[1]] = _tier_seconds.get(parts[1], 0.0) + report.duration
        path = "/".join(parts)
        _file_seconds[path] = _file_seconds.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _tier_seconds:
        terminalreporter.write_line(
            "test tiers: "
            + ", ".join(
                f"{tier} {seconds:.0f} s" for tier, seconds in sorted(_tier_seconds.items())
            )
        )
    slow = sorted(_file_seconds.items(), key=lambda kv: -kv[1])[:SLOWEST_FILES]
    if len(_file_seconds) > 1 and slow:
        terminalreporter.write_line(
            "slowest test files: " + ", ".join(f"{path} {sec:.0f} s" for path, sec in slow)
        )


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in this test, also in a process started in the
    background by a shell (which starts it with SIGINT ignored)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
