"""The prescan's child (``prescan``): the vouching pass and the answers after it, made in a
forked process and handed to the parent through memory the two share.

    scan ─ marshal ─▶ the shared map, from its start ┐ on the pipe, a header a message:
    marks, targets, repeats ─▶ the map, after it     ┘ (length, where it is in the map;
                                                        -1: the body follows on the pipe)

Why the shared map: the items are ~2.2 MB on 10,000 services, twice a pipe's 1 MiB. Through
the pipe the child waited, blocked, until the parent came to read them (15-25 ms of a
trace, instrumented), and its later answers came that much later; in the map nothing
waits. A message the map has no room for goes through the pipe.

Standard library only, with ``lazy_scan``: the child starts scanning ~25 ms after the
process does (the model's imports would cost ~0.08 s first).
"""

from __future__ import annotations

import gc
import marshal
import mmap
import os
import signal
from typing import NoReturn

from kpsim.formats.iptables.lazy_scan import marks, repeats, scan, table_spans, unruled

#: A message's header: its length, then where it is in the map (-1: on the pipe, next).
HEADER = 16


def header(length: int, at: int) -> bytes:
    return length.to_bytes(8, "little") + at.to_bytes(8, "little", signed=True)


class Outbox:
    """Messages to the parent, in order: each body in the shared map while it has room."""

    def __init__(self, fd: int, shared: mmap.mmap) -> None:
        self.fd, self.shared, self.used = fd, shared, 0

    def send(self, body: bytes) -> None:
        at = self.used
        if at + len(body) <= len(self.shared):
            self.shared[at : at + len(body)] = body
            self.used += len(body)
            _write(self.fd, header(len(body), at))
        else:
            _write(self.fd, header(len(body), -1) + body)


def _write(fd: int, data: bytes) -> None:
    """All of it (the parent gone: EPIPE, an exception)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(text: str, reader: int, writer: int, shared: mmap.mmap) -> NoReturn:
    """Scan, send, leave: whatever happens, by ``os._exit`` (no exit handler of the
    parent's runs, no buffer it left unflushed is written twice)."""
    code = 1
    try:
        os.close(reader)
        # no terminal or pipe of the parent's kept open by the child (``kpsim … | head``
        # sees its end when the parent leaves)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: just go
        # the scan makes a Match per run (72,000 on 10,000 services), each one tracked by
        # the cyclic collector, which rescanned them all as they came: 0.20 → 0.13 s
        # (measured; the in-process pass runs with it off too, in ``parse_text``)
        gc.disable()
        out = Outbox(writer, shared)
        order, runs = scan(text, text.index("\n"))
        out.send(marshal.dumps((order, runs.names, runs.offsets, sorted(runs.blocks))))
        # then, while the parent indexes the items, what it asks for next, in the order it
        # asks: the line marks its first rule read at once past the first table needs
        # (~12 ms of counting there);
        out.send(marshal.dumps(marks(text)))
        # the runs of each chain of several, which a trace's sketch of KUBE-SERVICES
        # looked for among all 72,000 items (~13 ms);
        out.send(marshal.dumps(repeats(runs.names)))
        # each table's jump targets that name no chain of its runs: what ``lazy``'s check
        # that no jump leaves the capture needs (a findall of 115,000 targets and their
        # set, ~30 ms there), a few names; a trace makes that check last (``lazy_save``'s
        # ``later``), the others at the end of their load
        found = [
            (lo, hi, unruled(text, runs, lo, hi, first, end))
            for lo, hi, first, end in table_spans(text, runs)
        ]
        out.send(marshal.dumps(found))
        code = 0
    finally:
        os._exit(code)
