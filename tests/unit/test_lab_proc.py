"""Lab processes: a process ``spawn`` returns is seen alive at once."""

from __future__ import annotations

import shutil
from pathlib import Path

from kaic.lab import proc


def test_a_spawned_process_is_alive_as_soon_as_spawn_returns(tmp_path: Path) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    pids = []
    try:
        for i in range(20):
            pidfile = tmp_path / f"p{i}.pid"
            pid = proc.spawn(
                [sleep, "30"], log=tmp_path / f"p{i}.log", pidfile=pidfile, cwd=tmp_path
            )
            pids.append(pidfile)
            # the shell's forked child has exec'd sleep: no window where it looks gone
            assert proc.read_pid(pidfile) == pid
    finally:
        for pidfile in pids:
            proc.stop(pidfile, timeout=5)


def test_a_process_that_cannot_start_is_seen_gone(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    proc.spawn(
        [str(tmp_path / "missing-binary")], log=tmp_path / "x.log", pidfile=pidfile, cwd=tmp_path
    )
    assert proc.read_pid(pidfile) is None


def test_free_ports_come_from_below_the_ephemeral_range() -> None:
    import socket

    from kaic.lab import proc

    ports = {proc.free_port() for _ in range(50)}
    assert all(p in proc.LAB_PORTS and p < 32768 for p in ports)
    assert len(ports) > 40  # spread, not the same one again
    p = proc.free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", p))  # it really was free
