"""Client stand-in: N sequential TCP connections, one JSON line each.

    ip netns exec CLIENT python3 traffic.py --dest 198.19.0.5 --port 30080 -n 300 \\
        --source 198.19.1.1 --source 198.19.1.2 --sport-base 20000 --timeout 1 --budget 30
    ─▶ {"i": 0, "src": "198.19.1.1", "sport": 20000, "status": "ok", "bound": "198.19.1.1:20000",
        "local": "198.18.11.70:80", "peer": "198.18.3.14:61234"}            (per connection)

``--order 0,2,1,…`` names the source of each connection (indices into the ``--source``
list, at least ``-n`` of them); without it the sources take turns.

Statuses: ``ok`` (the responder answered), ``refused`` (RST or ICMP port unreachable:
REJECT, or nothing listening), ``timeout`` (no answer: DROP), ``unreachable`` (ICMP
host/net unreachable), ``error``. Each connection gets its own source port so each is a new
conntrack entry and a new NAT decision; they run one after another so affinity set by one
connection is visible to the next. Standard library only, run as a plain script.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
import time

MAX_CONNECTIONS = 10_000


def _status(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if exc.errno == errno.ECONNREFUSED:
        return "refused"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    if exc.errno == errno.ETIMEDOUT:
        return "timeout"
    return "error"


def connect_once(dest: str, port: int, src: str, sport: int, timeout: float) -> dict[str, object]:
    """One connection: bind (src, sport), connect, read the responder's line."""
    row: dict[str, object] = {"src": src, "sport": sport}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(timeout)
        s.bind((src, sport))
        s.connect((dest, port))
        bound = s.getsockname()
        row["bound"] = f"{bound[0]}:{bound[1]}"
        data = b""
        while b"\n" not in data and len(data) < 256:
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        parts = data.decode(errors="replace").split()
        if len(parts) == 2:
            row.update(status="ok", local=parts[0], peer=parts[1])
        else:
            row.update(status="error", detail=f"unexpected answer {data!r}")
    except OSError as exc:
        row.update(status=_status(exc), detail=str(exc))
    finally:
        s.close()
    return row


def run(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.budget
    sources = args.source or ["0.0.0.0"]
    n = min(args.n, MAX_CONNECTIONS)
    turns = [i % len(sources) for i in range(n)]
    order = [int(x) for x in args.order.split(",")] if args.order else turns
    if len(order) < n or any(not 0 <= k < len(sources) for k in order):
        print("--order: need -n indices into the --source list", file=sys.stderr)
        return 2
    avoid = set(args.avoid)  # ports a responder listens on in this namespace
    sports = [p for p in range(args.sport_base, args.sport_base + n + len(avoid)) if p not in avoid]
    for i in range(n):
        src = sources[order[i]]
        if time.monotonic() >= deadline:
            row: dict[str, object] = {"src": src, "status": "skipped", "detail": "budget spent"}
        else:
            row = connect_once(args.dest, args.port, src, sports[i], args.timeout)
        row["i"] = i
        print(json.dumps(row, sort_keys=True), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dest", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("-n", type=int, default=100)
    p.add_argument("--source", action="append", default=[])
    p.add_argument("--order", default="", help="comma-separated --source index per connection")
    p.add_argument("--sport-base", type=int, default=20000)
    p.add_argument("--avoid", type=int, action="append", default=[])
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--budget", type=float, default=60.0)
    args = p.parse_args(argv)
    if args.sport_base < 1024 or args.sport_base + args.n + len(args.avoid) > 32767:
        p.error("source ports must stay in 1024..32767 (below the ephemeral range)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
