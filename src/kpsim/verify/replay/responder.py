"""Endpoint stand-in: answers each TCP connection with where it landed and who came.

    ip netns exec PODS python3 responder.py --port 80 --port 3000 --lifetime 60
    ─▶ prints "READY", then per connection writes one line to the peer:
       "<local ip>:<local port> <peer ip>:<peer port>\\n"   (DNAT destination, seen source)

Standard library only and run as a plain script (``sys.executable responder.py``), so it
starts fast and imports nothing from kpsim. It exits after ``--lifetime`` seconds whatever
happens, so a lost parent never leaves it behind for long.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys
import time

MAX_PORTS = 256


def _listen(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(1024)
    s.setblocking(False)
    return s


def _answer(listener: socket.socket) -> None:
    try:
        conn, peer = listener.accept()
    except (BlockingIOError, InterruptedError):
        return
    with conn:
        local = conn.getsockname()
        line = f"{local[0]}:{local[1]} {peer[0]}:{peer[1]}\n"
        try:
            conn.settimeout(1.0)
            conn.sendall(line.encode())
        except OSError:
            pass


def serve(ports: list[int], lifetime: float) -> int:
    """Serve until ``lifetime`` seconds have passed; bounded, single-threaded."""
    deadline = time.monotonic() + lifetime
    sel = selectors.DefaultSelector()
    listeners = [_listen(p) for p in ports]
    for s in listeners:
        sel.register(s, selectors.EVENT_READ)
    print("READY", flush=True)
    try:
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=min(left, 0.5)):
                _answer(key.fileobj)  # type: ignore[arg-type]
    finally:
        for s in listeners:
            s.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, action="append", required=True)
    p.add_argument("--lifetime", type=float, default=60.0)
    args = p.parse_args(argv)
    ports = sorted(set(args.port))
    if len(ports) > MAX_PORTS or not all(0 < x < 65536 for x in ports):
        p.error(f"1..{MAX_PORTS} ports in 1..65535")
    return serve(ports, min(args.lifetime, 3600.0))


if __name__ == "__main__":
    sys.exit(main())
