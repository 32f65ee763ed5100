"""The lab network's way to the apiserver: a TCP relay from the lab's namespace to the host.

Processes inside the lab's network namespace (kube-proxy, the stand-in servers) see
their own loopback, not the host's, so they cannot reach the apiserver on the host's
127.0.0.1. This process opens one listening socket on 127.0.0.1:PORT *inside* the
namespace (it enters the namespace with ``setns`` only to create that socket) and
relays every connection to ``127.0.0.1:PORT`` of the host, byte for byte (TLS passes
through untouched; the apiserver's certificate names 127.0.0.1, so clients inside
connect to ``https://127.0.0.1:<relay port>``).

Owns: the relay. Must connect to nothing but the host's loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Sequence

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def listen_in(netns: str, port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:``port`` inside the named network namespace."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.create_server(("127.0.0.1", port), backlog=128)
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (dst, src):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _serve(client: socket.socket, port: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    t = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    t.start()
    _pump(client, upstream)
    t.join()
    client.close()
    upstream.close()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m kaic.lab.sims.relay",
        description="relay 127.0.0.1:PORT inside a lab namespace to the host's 127.0.0.1",
    )
    ap.add_argument("--netns", required=True)
    ap.add_argument("--listen-port", type=int, required=True)
    ap.add_argument("--to", required=True, help="127.0.0.1:PORT on the host")
    a = ap.parse_args(argv)
    host, _, port = a.to.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"kaic.lab.sims.relay: refusing to relay to non-loopback {host}")
    try:
        server = listen_in(a.netns, a.listen_port)
    except OSError as e:
        raise SystemExit(f"kaic.lab.sims.relay: cannot listen in {a.netns}: {e}") from e
    print(f"relay running: {a.netns} 127.0.0.1:{a.listen_port} -> {a.to}", flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=_serve, args=(client, int(port)), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1:])
