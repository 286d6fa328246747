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
from bisect import bisect_left
from itertools import compress, repeat
from operator import ge, sub
from typing import NoReturn

from kpsim.formats.iptables.lazy_scan import Runs, marks, repeats, scan, table_spans, unruled
from kpsim.formats.iptables.line_shapes import SKETCH_MIN_RULES, Columns, columns

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


#: A chain's runs this big (and ``SKETCH_MIN_RULES`` lines) are sketched ahead: what a
#: trace sketches on a big node (KUBE-SERVICES' 1.5 MB, KUBE-NODEPORTS' 0.15 MB on 10,000
#: services), not the per-service chains it reads rule by rule.
BIG = 1 << 16


def big_chains(
    text: str, runs: Runs, several: dict[str, list[int]], spans: list[tuple[int, int, int, int]]
) -> list[tuple[int, int, str, list[int]]]:
    """Each table's big chains (the table's bounds, the chain, its runs): the chains of
    several runs, and the single runs, of ``BIG`` characters and ``SKETCH_MIN_RULES``
    lines or more (those a trace sketches)."""
    offsets, names = runs.offsets, runs.names
    sizes = list(map(sub, offsets[1:], offsets[:-1]))
    found = []
    for lo, hi, first, end in spans:
        for at in compress(range(first, end), map(ge, sizes[first:end], repeat(BIG))):
            name = names[at]
            if name is not None and name not in several:
                found.append((lo, hi, name, [at]))
        for name, items in several.items():
            within = items[bisect_left(items, first) : bisect_left(items, end)]
            if len(within) > 1 and sum(sizes[at] for at in within) >= BIG:
                found.append((lo, hi, name, within))
    count = text.count
    return [
        chain
        for chain in found
        if sum(count("\n", offsets[at], offsets[at + 1]) for at in chain[3]) >= SKETCH_MIN_RULES
    ]


def sketched(
    text: str, runs: Runs, order: int, big: list[tuple[int, int, str, list[int]]]
) -> list[tuple[int, int, str, Columns]]:
    """The big chains' columns (``line_shapes.columns`` of their runs' lines, as
    ``sketch.sketch_runs`` reads them) with their tables' bounds. Values that repeat (a
    protocol, a port, a module) are one object each, which marshal sends once."""
    offsets = runs.offsets
    found = []
    for lo, hi, name, items in big:
        joined = "\n".join(text[offsets[at] + 1 : offsets[at + 1]] for at in items)
        cols = columns(joined, joined.count("\n") + 1, order)
        if cols is not None:
            jumps, dsts, protos, dports, modules, stateful, comments = cols
            one: dict[str, str] = {}
            protos, dports, modules = (list(map(one.setdefault, c, c)) for c in cols[2:5])
            found.append((lo, hi, name, (jumps, dsts, protos, dports, modules, stateful, comments)))
    return found


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
        several = repeats(runs.names)
        spans = table_spans(text, runs)
        big = big_chains(text, runs, several, spans)  # announced with them: those to wait for
        out.send(marshal.dumps((several, [(lo, hi, name) for lo, hi, name, _ in big])))
        # the columns of each big chain's sketch, which a trace reads off KUBE-SERVICES'
        # and KUBE-NODEPORTS' lines next (a findall of 11,000 lines, ~25 ms there);
        out.send(marshal.dumps(sketched(text, runs, order, big)))
        # each table's jump targets that name no chain of its runs: what ``lazy``'s check
        # that no jump leaves the capture needs (a findall of 115,000 targets and their
        # set, ~30 ms there), a few names; a trace makes that check last (``lazy_save``'s
        # ``later``), the others at the end of their load
        found = [(lo, hi, unruled(text, runs, lo, hi, first, end)) for lo, hi, first, end in spans]
        out.send(marshal.dumps(found))
        code = 0
    finally:
        os._exit(code)
