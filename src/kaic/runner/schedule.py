"""Which checks may run now: a resource-lock scheduler over the checks' declared locks.

Owns: ``Schedule``. Each check holds its locks (``kaic.checks.base.Lock``) from the
moment it starts until its cleanup is done; a resource is held either by one check
exclusively or by any number of checks shared. ``start()`` hands out, in plan order,
every waiting check none of whose locks conflicts with a running check's, up to the cap
(``--parallel``); a check that cannot start yet does not stop a later one that can.
With a cap of 1 the checks run one after another in plan order. Must not run anything,
know any requirement or touch the cluster (the executor calls it from one thread).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kaic.checks.base import Lock

__all__ = ["Schedule"]


class Schedule:
    """The waiting, running and finished checks of one run, by id, in plan order."""

    def __init__(
        self, checks: Sequence[tuple[str, Iterable[Lock]]], cap: int | None = None
    ) -> None:
        if cap is not None and cap < 1:
            raise ValueError(f"the cap must be at least 1, got {cap}")
        self.cap = cap
        self.locks: dict[str, tuple[Lock, ...]] = {}
        for check_id, locks in checks:
            if check_id in self.locks:
                raise ValueError(f"check {check_id} is scheduled twice")
            self.locks[check_id] = tuple(locks)
        self.waiting: list[str] = list(self.locks)
        self.running: list[str] = []
        self.done: list[str] = []

    @property
    def finished(self) -> bool:
        """Nothing waits and nothing runs."""
        return not self.waiting and not self.running

    def _conflicting(self, check_id: str, others: Iterable[str]) -> list[str]:
        mine = self.locks[check_id]
        return [o for o in others if any(a.conflicts(b) for a in mine for b in self.locks[o])]

    def blockers(self, check_id: str) -> list[str]:
        """The running checks that ``check_id`` waits for (empty: it could start)."""
        return self._conflicting(check_id, self.running)

    def start(self) -> list[str]:
        """The waiting checks that may start now, in plan order, marked running."""
        started: list[str] = []
        for check_id in list(self.waiting):
            if self.cap is not None and len(self.running) >= self.cap:
                break
            if self.blockers(check_id):
                continue
            self.waiting.remove(check_id)
            self.running.append(check_id)
            started.append(check_id)
        return started

    def release(self, check_id: str) -> None:
        """``check_id`` finished (its cleanup done): its locks are free again."""
        if check_id not in self.running:
            raise ValueError(f"check {check_id} is not running")
        self.running.remove(check_id)
        self.done.append(check_id)

    def drop_waiting(self) -> list[str]:
        """Never start the checks still waiting (the run was interrupted); returns them."""
        dropped, self.waiting = self.waiting, []
        return dropped
