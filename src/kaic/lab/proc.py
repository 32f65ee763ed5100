"""Detached lab processes: start, find, stop; free loopback ports; listening sockets.

Owns: pid files and process lifetimes. Must not know what a process does.

Processes are started through a short-lived ``sh`` so that they are re-parented to
init (no zombies in a long-lived parent such as pytest) and sit in their own session
(Ctrl-C on ``kaic lab up`` does not reach them). A pid file records the pid and the
executable, so that a recycled pid is never mistaken for a lab process.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from kaic.errors import LabError

_PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for lab processes: no proxies (nothing may dial off-host)."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    if extra:
        env.update(extra)
    return env


LAB_PORTS = range(20000, 32768)
"""Where the lab's listening ports come from: below the kernel's ephemeral range
(``net.ipv4.ip_local_port_range``, 32768–60999 by default). A port the kernel hands out
with ``bind(0)`` is an ephemeral one, and any outgoing connection on the machine may take
it as its local port before the lab's program listens on it (seen with several labs
starting at once: a controller's metrics server could not listen, and it stopped)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 in ``LAB_PORTS`` that nothing is bound to right now."""
    low, high = _ephemeral_range()
    ports = [p for p in LAB_PORTS if not low <= p <= high] or list(LAB_PORTS)
    for _ in range(200):
        port = random.choice(ports)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise LabError(f"no free TCP port on 127.0.0.1 in {LAB_PORTS.start}-{LAB_PORTS.stop - 1}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


EXEC_WAIT_S = 10.0
"""How long ``spawn`` waits for the started process to run its own program."""


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    pidfile: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    exe: str | None = None,
) -> int:
    """Start ``argv`` detached, output appended to ``log``; returns the pid.

    ``exe``: when ``argv[0]`` is a wrapper that execs another program (``ip netns
    exec``), the wait for the process to run its own program also accepts that one.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    script = '"$@" >>"$0" 2>&1 </dev/null & echo $!'
    try:
        out = subprocess.run(
            ["/bin/sh", "-c", script, str(log), *argv],
            cwd=cwd,
            env=dict(env) if env is not None else clean_env(),
            stdout=subprocess.PIPE,
            start_new_session=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise LabError(f"cannot start {argv[0]}: {e}") from e
    pid = int(out.stdout.decode().strip().splitlines()[-1])
    pidfile.write_text(f"{pid}\n{argv[0]}\n")
    # NOTE: ``$!`` is the shell's forked child, which runs ``argv[0]`` only once it has
    # exec'd it; until then its command line is the shell's, and a liveness check would
    # take the starting process for one that has exited (seen on a loaded machine).
    deadline = time.monotonic() + EXEC_WAIT_S
    while time.monotonic() < deadline and not (
        _exe_matches(pid, argv[0]) or (exe is not None and _exe_matches(pid, exe))
    ):
        if _stat_state(pid) in (None, "Z", "X"):
            break
        time.sleep(0.01)
    return pid


def _stat_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def command(pid: int) -> str | None:
    """``argv[0]`` of ``pid`` (None if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return None


def _exe_matches(pid: int, exe: str) -> bool:
    cmd = command(pid)
    return cmd is not None and (cmd == exe or Path(cmd).name == Path(exe).name)


def read_pid(pidfile: Path) -> int | None:
    """The pid recorded in ``pidfile`` if that process is alive and is the one started."""
    try:
        lines = pidfile.read_text().split("\n")
        pid, exe = int(lines[0]), lines[1]
    except (OSError, ValueError, IndexError):
        return None
    state = _stat_state(pid)
    if state is None or state in ("Z", "X") or not _exe_matches(pid, exe):
        return None
    return pid


def stop(pidfile: Path, *, timeout: float = 15.0) -> bool:
    """Stop the process of ``pidfile`` (TERM, then KILL); True if one was running."""
    pid = read_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read_pid(pidfile) is not None:
        time.sleep(0.05)
    if read_pid(pidfile) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and read_pid(pidfile) is not None:
            time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return True


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _hex_to_addr(hexaddr: str, v6: bool) -> str:
    raw = bytes.fromhex(hexaddr)
    if not v6:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by ``pid``.

    Read from /proc/<pid>/net/tcp{,6} joined with the process's open fds, so it needs no
    external tool. UDP sockets bound by the process are included with their bound address.
    """
    inodes = _socket_inodes(pid)
    found: list[tuple[str, int]] = []
    for table, v6, listen_state in (
        ("tcp", False, "0A"),
        ("tcp6", True, "0A"),
        ("udp", False, "07"),
        ("udp6", True, "07"),
    ):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != listen_state or f[9] not in inodes:
                continue
            addr, port = f[1].split(":")
            found.append((_hex_to_addr(addr, v6), int(port, 16)))
    return found


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    state = _stat_state(pid)
    return state is not None and state not in ("Z", "X")


def connections(pid: int) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """(local, remote) of every established TCP connection owned by ``pid``."""
    inodes = _socket_inodes(pid)
    found: list[tuple[tuple[str, int], tuple[str, int]]] = []
    for table, v6 in (("tcp", False), ("tcp6", True)):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "01" or f[9] not in inodes:
                continue
            (la, lp), (ra, rp) = f[1].split(":"), f[2].split(":")
            found.append(((_hex_to_addr(la, v6), int(lp, 16)), (_hex_to_addr(ra, v6), int(rp, 16))))
    return found
