"""What the benchmarks share: the peak of a figure sampled while something runs.

Not a benchmark (``make bench`` skips ``_``-named files); the scripts import it as a
sibling module (``python bench/X.py`` puts ``bench/`` on the import path).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable


class Peak(threading.Thread):
    """The largest value ``read`` returns, read every ``every`` seconds until ``stop``
    (a failed read is skipped)."""

    def __init__(self, read: Callable[[], int], every: float) -> None:
        super().__init__(daemon=True)
        self.read, self.every, self.peak, self.stop = read, every, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, self.read())
            time.sleep(self.every)
