"""The lazy reader's one pass over a big iptables-save, made in a second process while
this one is still starting (the machine's second CPU), and what the reader and a trace
ask next, made there too.

    cli.entry ─ start(path): read it (formats.read_text), fork ─▶ child (prescan_child):
      │ imports kpsim, parses the options (~0.13 s)                 │ lazy_scan.scan
    read_text(path) ─ early_text: the text read at start            │ (~0.12 s), then, as
    lazy._Pass.run ─ taken(text) ─ the child's items ◀──────────────┤ marshal's bytes in
    lazy_scan.Lines.at ─ marks_ahead(text) ◀────────────────────────┤ a map both share,
    lazy_source.Source.spans ─ repeats_ahead(runs) ◀────────────────┤ a header each on
    lazy_source.Source.sketch ─ sketch_ahead(text, bounds, name) ◀──┤ the pipe: items,
    lazy._Pass._no_missing ─ unruled_ahead(text, lo, hi) ◀──────────┘ line marks, chains
      (a trace's: after its walk, ``api.trace``)                      of several runs,
                                                                      big chains' sketch
                                                                      columns, jump
                                                                      targets that name
                                                                      no run's chain

Why: ``kpsim trace`` on a 10,000-service dump spent ~0.15 s in that pass after ~0.13 s
of imports that need one CPU; now the two overlap. The child, idle once its items are
sent, then answers what the parent asks next while it indexes the items and walks, in
the order a trace asks: where the lines are (~12 ms of counting), where KUBE-SERVICES'
runs are, its sketch's columns (a ~25 ms ``findall``), which jump targets the capture's
check must look up (a ~30 ms ``findall`` and set, answered in a few names).

Same answers by construction: the child scans the very ``str`` the parent read (fork
shares it), ``read_text`` hands that ``str`` on only for the same file, unchanged, and
``taken`` gives the items, and the later answers, only for that object (``is``; the
targets and columns only for the very bounds the reader has, the runs only for the very
items taken). Anything else — no fork (not POSIX), a child that died, is late
(``_patience``; a sketch's columns: ~20 ms) or sent a message that does not unpack —
gives None, and the reader does the work in process as it always did. The child never
writes but to its pipe and the map and leaves with ``os._exit`` (no exit handlers, no
inherited buffers flushed); the parent reaps it at exit (``stop``, an exit handler),
killing it first unless it answered, and at once when an answer is short or late.
"""

from __future__ import annotations

import atexit
import contextlib
import mmap
import os
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from kpsim.formats.iptables.lazy_scan import Runs
from kpsim.formats.iptables.line_shapes import Columns
from kpsim.formats.iptables.prescan_child import HEADER, serve
from kpsim.formats.iptables.prescan_messages import (
    Targets,
    unpack_items,
    unpack_marks,
    unpack_repeats,
    unpack_sketches,
    unpack_targets,
)


class _Child:
    """The scanning process: its pid, the read end of its pipe, the map it writes its
    answers in, the text it scans and the file it came from (device, inode, size,
    modification time)."""

    def __init__(
        self, pid: int, fd: int, shared: mmap.mmap, text: str, key: tuple[int, ...]
    ) -> None:
        self.pid, self.fd, self.shared, self.text, self.key = pid, fd, shared, text, key


_child: _Child | None = None
#: The child whose items were taken, until its later messages are read (``_later``).
_after: _Child | None = None
#: The items it sent, as taken (``repeats_ahead`` answers for these very runs only).
_runs: Runs | None = None
#: The text they are of, and its later messages as read so far, unpacked (``_UNPACKERS``).
_answers: tuple[str, list[object]] | None = None
#: Children that answered, reaped at exit: each one's end (its copy of the parent's
#: pages torn down) cost the waiting parent 5-7 ms (measured).
_spent: list[_Child] = []


def start(path: str) -> bool:
    """Read ``path`` as the loader would and fork the child that scans it; False when not
    (no fork, no CPU to spare; an unreadable file: the loader reads it and says why)."""
    global _child
    if _child is not None or not hasattr(os, "fork") or _spare_cpus() < 1:
        return False
    from kpsim.formats import read_text

    try:
        key = _key(path)
        text = read_text(Path(path))
        if key != _key(path) or "\n" not in text:
            return False  # changed while read; no line to scan
        shared = mmap.mmap(-1, _room(text))
    except Exception:  # an unreadable file, no memory: the loader will say
        return False
    try:
        reader, writer = os.pipe()
    except OSError:  # no more descriptors
        shared.close()
        return False
    try:
        pid = os.fork()
    except OSError:
        os.close(reader)
        os.close(writer)
        shared.close()
        return False
    if pid == 0:
        serve(text, reader, writer, shared)
    os.close(writer)
    _child = _Child(pid, reader, shared, text, key)
    atexit.register(stop)
    return True


def early_text(path: Path) -> str | None:
    """The text read at start when ``path`` is the same file, unchanged; else None."""
    child = _child
    if child is None:
        return None
    try:
        same = _key(path) == child.key
    except OSError:
        return None
    return child.text if same else None


def taken(text: str) -> tuple[int, Runs] | None:
    """``lazy_scan.scan(text, …)`` as the child made it, when ``text`` is the one it
    scanned; None otherwise (the caller scans). Its later messages come next (``_later``)."""
    global _child, _after, _runs, _answers
    child = _child
    if child is None or child.text is not text:
        return None
    _child = None
    found = None
    try:
        data = _receive(child, _patience(text))
        found = None if data is None else unpack_items(data, text)
    except (OSError, ValueError):  # a pipe that broke; select's descriptor limit
        pass
    finally:
        if found is None:
            _end(child)
        else:  # its later messages next
            if _after is not None and _after.fd >= 0:
                _end(_after)  # an earlier child's, never asked for: not left behind
            _after, _runs, _answers = child, found[1], (text, [])
    return found


def marks_ahead(text: str) -> list[int] | None:
    """``lazy_scan.marks(text)`` as the child made it, when ``text`` is the one it
    scanned; else None."""
    return cast("list[int] | None", _later(text, _MARKS))


def repeats_ahead(runs: Runs) -> dict[str, list[int]] | None:
    """``lazy_scan.repeats(runs.names)`` as the child made it, when ``runs`` are the very
    items taken from it; else None."""
    if _runs is not runs or _answers is None:
        return None
    found = cast("tuple[dict[str, list[int]], object] | None", _later(_answers[0], _REPEATS))
    return None if found is None else found[0]


def answering(text: str) -> bool:
    """Whether the child that scanned ``text`` is finding its jump targets to check
    (``unruled_ahead`` will wait for them, not find them here)."""
    if _answers is None or _answers[0] is not text:
        return False
    return len(_answers[1]) > _TARGETS or (_after is not None and _after.text is text)


def sketch_ahead(text: str, bounds: tuple[int, int], name: str) -> Columns | None:
    """``line_shapes.columns`` of the chain ``name``'s lines in the table of those very
    bounds, as the child read them (``prescan_child.sketched``: the big chains), when
    ``text`` is the one it scanned and they are there within ~20 ms (a trace reads them
    here in ~25 ms); else None."""
    announced = cast("tuple[object, set[tuple[int, int, str]]] | None", _later(text, _REPEATS))
    if announced is None or (*bounds, name) not in announced[1]:
        return None  # not one the child sketches: nothing to wait for
    found = cast("dict[tuple[int, int, str], Columns] | None", _later(text, _SKETCHES, 0.02))
    return None if found is None else found.get((*bounds, name))


def unruled_ahead(text: str, lo: int, hi: int) -> list[str] | None:
    """``lazy_scan.unruled`` of ``text[lo:hi]`` and its table's runs, as the child found
    it, when ``text`` is the one it scanned and it looked in those very bounds (which
    fix the runs: offsets only grow); else None."""
    found = cast("Targets | None", _later(text, _TARGETS))
    return None if found is None else found.get((lo, hi))


def _later(text: str, kind: int, wait: float | None = None) -> object | None:
    """The child's ``kind``-th message after its items (``_UNPACKERS``), unpacked, when
    ``text`` is the one it scanned; read in order, each once (an earlier one is kept).
    ``wait``: how long a message not there yet is waited for (then None, the child
    left to answer later); else up to ``_patience``."""
    global _after
    if _answers is None or _answers[0] is not text:
        return None
    got, child = _answers[1], _after
    while len(got) <= kind and child is not None and child.text is text:
        if wait is not None and not select.select([child.fd], [], [], wait)[0]:
            return None  # not yet: a header is written whole (16 bytes), so none is read
        data = None
        with contextlib.suppress(OSError, ValueError):  # a broken pipe; select's limit
            data = _receive(child, _patience(text))
        if data is None:  # dead, late, short: no more from it
            _end(child)
            _after = child = None
        else:
            got.append(_UNPACKERS[len(got)](data, text))
            if len(got) == len(_UNPACKERS):  # its last: it leaves on its own now
                os.close(child.fd)
                child.fd = -1
                child.shared.close()
                _spent.append(child)
                _after = child = None
    return got[kind] if kind < len(got) else None


def stop() -> None:
    """Kill and reap the children (an exit handler: ``--help``, a usage error, …)."""
    global _child, _after, _runs, _answers
    # (a child whose pipe is closed was ended already, or is among the spent)
    children = [c for c in (_child, _after) if c is not None and c.fd >= 0]
    _child = _after = _runs = _answers = None
    while _spent:
        children.append(_spent.pop())
    for child in children:
        _end(child)


# ---------------------------------------------------------------- the parent


def _spare_cpus() -> int:
    """CPUs this process may use that nothing else runs on now, ours aside (Linux: the
    count of runnable tasks in /proc/loadavg, this one among them). With none, the child
    takes the parent's turns: on this 2-CPU VM with one other busy process, trace
    0.13 → 0.25 s up to the pass, no faster in the end (measured)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/proc/loadavg", "rb") as file:
            running = int(file.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        running = 1  # not Linux: assume the others leave a CPU
    return (cpus or 1) - max(running, 1)


def _room(text: str) -> int:
    """The shared map's size: room for the items (~0.13 of the text on kube-proxy's dumps)
    and the answers after them; its pages are only ever made where written."""
    return len(text) // 2 + (1 << 20)


def _key(path: str | Path) -> tuple[int, ...]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _patience(text: str) -> float:
    """How long to wait for the child: 2 s, and 0.1 s a MB (ten times a scan's pace),
    for a child descheduled on a busy machine; past that, scanning here is cheaper."""
    return 2.0 + len(text) / 10e6


def _receive(child: _Child, seconds: float) -> bytes | None:
    """The child's next message (its header on the pipe, its body in the map or after
    it), or None when it is short or late. Never a byte past it on the pipe."""
    deadline = time.monotonic() + seconds
    head = _read(child.fd, HEADER, deadline)
    if head is None:
        return None
    length, at = int.from_bytes(head[:8], "little"), int.from_bytes(head[8:], "little", signed=True)
    if at < 0:
        return _read(child.fd, length, deadline)
    if at + length > len(child.shared):
        return None
    return child.shared[at : at + length]  # a copy: the map is closed when done with


def _read(fd: int, want: int, deadline: float) -> bytes | None:
    """``want`` bytes from the pipe, or None when they are not all there in time."""
    chunks: list[bytes] = []
    have = 0
    while have < want:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None  # late
        chunk = os.read(fd, min(want - have, 1 << 20))
        if not chunk:
            return None  # gone before its message was whole
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


#: The messages after the items, in the order the child sends them.
_UNPACKERS: tuple[Callable[[bytes, str], object], ...] = (
    unpack_marks,
    unpack_repeats,
    unpack_sketches,
    unpack_targets,
)
_MARKS, _REPEATS, _SKETCHES, _TARGETS = range(4)


def _end(child: _Child) -> None:
    """Close the pipe and the map; kill the child unless it is already reaped; reap it
    (never a zombie, never a stranger's pid: the pid is ours until reaped)."""
    if child.fd >= 0:
        os.close(child.fd)
        child.fd = -1
    child.shared.close()  # (again: nothing)
    try:
        if os.waitpid(child.pid, os.WNOHANG) != (0, 0):
            return  # it had finished: reaped now
        os.kill(child.pid, signal.SIGKILL)
        os.waitpid(child.pid, 0)
    except ChildProcessError:  # reaped by someone else (a wait() elsewhere)
        pass
