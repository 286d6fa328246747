"""What ``lazy`` may defer, and the one pass that finds it: the shapes of the lines the
fast path builds without a doubt, the scanner that vouches for them and cuts the text into
runs of one chain's lines, and line numbers of offsets.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import cache
from itertools import accumulate, compress, repeat
from operator import itemgetter, not_

from kpsim.formats.iptables.patterns import IP as _IP
from kpsim.formats.iptables.patterns import NAME as _NAME
from kpsim.formats.iptables.patterns import NET as _NET

# ---------------------------------------------------------------- what may be deferred

#: A port the fast path reads without a doubt: 1-65535, no leading zero.
_PORT = r"(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})"
#: A comment the fast path keeps as written: no backslash, not "!", at most 1,000 characters.
_COMMENT = r' -m comment --comment (?:"(?!!")[^"\\\n]{0,1000}+"|[^ \t"!\n\\][^ \t"\n\\]{0,1000}+)'
_PROBABILITY = r"(?:0(?:\.\d{1,20}+)?|1(?:\.0{1,20}+)?)"
_STATISTIC = rf" -m statistic --mode random --probability {_PROBABILITY}"
_TARGET = rf"(?: -j DNAT --to-destination {_IP}(?::{_PORT})?| -j {_NAME})"
_SRC = rf"(?: (?:! )?-s {_NET})?+"
_DST = rf"(?: (?:! )?-d {_NET})?+"
_MODULE_PROTO = r"(?: -m tcp -p tcp| -m udp -p udp| -m sctp -p sctp)"
_RECENT = r"(?:--set|--rcheck --seconds \d{1,9}+ --reap)"
_LOCAL = r"(?: -m addrtype --(?:src|dst)-type LOCAL)?+"
#: kube-proxy's restore input and iptables-save's order, as ``fast._RESTORE_RE`` and
#: ``_SAVE_RE`` read them (``--dport`` only with its module, else the general path reads it).
_RESTORE_BODY = (
    rf"(?:{_COMMENT})?+(?: -m recent --name {_NAME} {_RECENT})?+{_LOCAL}"
    rf"(?:{_MODULE_PROTO}{_DST}(?: --dport {_PORT})?+|{_DST}){_SRC}(?:{_STATISTIC})?+{_TARGET}"
)
_SAVE_BODY = (
    rf"{_SRC}{_DST}(?: -p (?:tcp|udp|sctp))?+(?:{_COMMENT})?+"
    rf"(?: -m recent {_RECENT} --name {_NAME} --mask 255\.255\.255\.255 --rsource)?+{_LOCAL}"
    rf"(?: -m (?:tcp|udp|sctp)(?: --dport {_PORT})?+)?+(?:{_STATISTIC})?+{_TARGET}"
)

#: kube-proxy's most frequent lines, each one an instance of its order's body (so the
#: language is the body's), tried first: a SEP chain's masquerade and DNAT, a SVC chain's
#: statistic and last jump. A short literal path each, where the body tries every optional
#: part in turn: the scan 96 → 69 ms on 10,000 services (measured, same matches).
_FREQUENT = (
    (rf" -s {_IP} -j {_NAME}", rf" -m tcp -p tcp -j DNAT --to-destination {_IP}:{_PORT}",
     f"{_STATISTIC} -j {_NAME}", f" -j {_NAME}"),
    (f" -s {_NET}(?:{_COMMENT})?+ -j {_NAME}",
     rf" -p tcp(?:{_COMMENT})?+ -m tcp -j DNAT --to-destination {_IP}:{_PORT}",
     f"(?:{_COMMENT})?+{_STATISTIC} -j {_NAME}", f"(?:{_COMMENT})?+ -j {_NAME}"),
)  # fmt: skip


def _scanner(body: str, frequent: tuple[str, ...]) -> re.Pattern[str]:
    """Every line from the first newline on, as consecutive matches, each from the newline
    before its first line to the end of its last: a run of one chain's ``-A`` lines in
    ``body``'s shape (group 1: the chain), a block of user-chain declarations (group 2),
    or any other line (read at once). The matches, their ends and chains are collected
    in C (``Runs``): one pass vouches for every line and cuts the text into runs, with no
    Python loop per run: 0.30 s → 0.13 s for a 10,000-service dump (measured; a Python
    loop kept each of its 72,000 runs)."""
    # atomic: once a whole line matched, no other way to match it is worth trying
    line = "(?>" + "".join(f"{shape}(?=\\n)|" for shape in frequent) + rf"(?:{body})(?=\n))"
    return re.compile(
        rf"\n-A ({_NAME}){line}(?:\n-A \1{line})*+"
        rf"|((?:\n:{_NAME} - \[0:0\](?=\n))++)|\n[^\n]*+",
        re.ASCII,
    )


@cache
def scanner_of(order: int) -> re.Pattern[str]:  # compiled when needed: 3-6 ms (measured)
    return _scanner((_RESTORE_BODY, _SAVE_BODY)[order], _FREQUENT[order])


#: A deferred line ends with its target (``_TARGET``: ``-j``, never ``-g``); a literal start
#: lets ``re`` skip to each " -j ": 64 ms on 10,000 services, 104 ms for " -[jg] (…)" (measured).
JUMP_TARGET = re.compile(r" -j ([A-Za-z0-9_.-]++)\n", re.ASCII)
BLOCK = 1 << 16  # bytes of text per line-count checkpoint


class Runs:
    """Where the deferred lines are: the scan's items in text order, where each one
    starts (``offsets[i]``, and ends: ``offsets[i + 1]``), its chain (None: not a run),
    and which items that are not runs are blocks of declarations (``blocks``; the others
    are lines read at once)."""

    def __init__(self, names: list[str | None], offsets: list[int], blocks: frozenset[int]) -> None:
        self.names, self.offsets, self.blocks = names, offsets, blocks


def scan(text: str, start: int) -> tuple[int, Runs]:
    """The text's order (``pick``) and its items from ``start`` (its first newline) on:
    the one pass, made here or ahead of time in another process (``prescan``)."""
    order = pick(text)
    return order, cut(text, start, order)


def cut(text: str, start: int, order: int) -> Runs:
    """``finditer`` and ``map`` run in C, and no text is copied: 13 ms less than a
    ``findall`` returning each run's text (measured); only the items that are not runs
    (45 in a 10,000-service dump) are looked at one by one."""
    matches = list(scanner_of(order).finditer(text, start))
    names: list[str | None] = list(map(itemgetter(1), matches))
    others = compress(range(len(names)), map(not_, names))
    blocks = frozenset(at for at in others if matches[at][2])
    return Runs(names, [start, *map(re.Match.end, matches)], blocks)


def table_spans(text: str, runs: Runs) -> list[tuple[int, int, int, int]]:
    """Where each table's runs are, as ``lazy`` bounds them for its jump-target check:
    from its first run's start to the newline after its last run, and the items from
    its first run to its last (+ 1); a table begins at a ``*NAME`` line read at once. A
    guess for the prescan's child: the reader takes its answer only for the very bounds
    it has itself."""
    names, offsets, blocks = runs.names, runs.offsets, runs.blocks
    heads = [
        at
        for at in compress(range(len(names)), map(not_, names))
        if at not in blocks and text.startswith("\n*", offsets[at])
    ]
    spans = []
    for lo, hi in zip([0, *heads], [*heads, len(names)], strict=True):
        first = next((at for at in range(lo, hi) if names[at] is not None), None)
        if first is not None:  # the table's first and last run
            last = next(at for at in range(hi - 1, lo - 1, -1) if names[at] is not None)
            spans.append((offsets[first], offsets[last + 1] + 1, first, last + 1))
    return spans


def unruled(text: str, runs: Runs, lo: int, hi: int, first: int, end: int) -> list[str]:
    """The jump targets of ``text[lo:hi]`` that name no chain of the runs ``first:end``
    (items): of a table, those its check must look for among its chains, the others
    being chains it found declared (``lazy._declared_first``). A few names, where the
    targets are 115,000 (61,000 distinct) on 10,000 services; no set of the declared
    names is made (26 → 6 ms after the findall, measured)."""
    found = set(JUMP_TARGET.findall(text, lo, hi))
    found.difference_update(runs.names[first:end])  # None among them: never a target
    return sorted(found)


class Lines:
    """Line numbers of offsets: a newline count every ``BLOCK`` characters, then a count
    within the block; the counts made as far as asked (a trace asks near the top: 5 ms
    of counting the whole dump saved), or all given at once by ``ahead`` (``marks`` of
    this text, made by the prescan's child) the first time they are not enough."""

    def __init__(self, text: str, ahead: Callable[[], list[int] | None] | None = None) -> None:
        self.text = text
        self.marks = [0]
        self.ahead = ahead

    def at(self, offset: int) -> int:
        """The number of the line that starts at ``offset``."""
        block, text = offset // BLOCK, self.text
        if len(self.marks) <= block and self.ahead is not None:
            found, self.ahead = self.ahead(), None
            if found is not None and len(found) > len(self.marks):
                self.marks = found
        marks = self.marks
        while len(marks) <= block:
            at = (len(marks) - 1) * BLOCK
            marks.append(marks[-1] + text.count("\n", at, at + BLOCK))
        return marks[block] + text.count("\n", block * BLOCK, offset) + 1


def marks(text: str) -> list[int]:
    """``Lines.marks`` of the whole text: the newlines before each block's start."""
    starts = range(0, len(text) // BLOCK * BLOCK, BLOCK)
    ends = map(BLOCK.__add__, starts)
    return list(accumulate(map(text.count, repeat("\n"), starts, ends), initial=0))


def repeats(names: list[str | None]) -> dict[str, list[int]]:
    """The chains of more than one run (KUBE-SERVICES and KUBE-NODEPORTS in kube-proxy's
    order: 10,001 and 1,000 runs among 72,000 on 10,000 services), each with its runs
    (items), in order; a chain of one run is not among them."""
    found: dict[str | None, list[int]] = {
        name: [] for name, count in Counter(names).items() if count > 1 and name is not None
    }
    if found:
        get = found.get
        for at, name in enumerate(names):
            runs = get(name)
            if runs is not None:
                runs.append(at)
    return found  # type: ignore[return-value]  # None is never a key


def pick(text: str) -> int:
    """The order this text writes its rules in: 0 kube-proxy's restore input, 1
    iptables-save's (the other order's lines are read at once, correctly, only slower)."""
    sample = text[: 1 << 18]
    rules = sample.count("\n-A ")
    covered = [0, 0]
    for order in (0, 1):
        scanner = scanner_of(order)
        covered[order] = sum(
            sample.count("\n-A ", *m.span()) for m in scanner.finditer(sample) if m[1]
        )
        if covered[order] * 2 > rules:  # most lines are in this order: no need to try the other
            return order
    return 0 if covered[0] >= covered[1] else 1
