"""A big chain read on demand, sketched: each rule's jump, ``-d``, ``-p`` and ``--dport`` read
off its lines by one ``findall``, and a rule built only when asked for (``model.RuleSketch``).

Why: kube-proxy's KUBE-SERVICES holds a rule per service port (10,001 on a 10,000-service
dump, KUBE-NODEPORTS one per NodePort), and a trace asks it which rules jump where (the
proxy mode, the NodePort check, the stand-in node address) and which rules pin the packet's
destination (the walk's index) to use a handful of them: building all 10,001 rules took
~0.12 s, the sketch ~0.025–0.03 s (measured on that dump).

Only for lines ``lazy`` vouched for (every one in a shape the fast path builds without a
doubt), so the sketch can say all there is to know about each: such a line has no match
but a comment, ``-m recent``, ``-m addrtype``, one port match and ``-m statistic``.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import accumulate, repeat
from operator import add, itemgetter

from kpsim.formats.common import ChainDraft
from kpsim.formats.iptables import fast
from kpsim.formats.iptables.targets import TARGET_KEYWORDS
from kpsim.model import Rule

#: Chains of this many rules or more are sketched rather than built for a trace's questions
#: (as many as ``engine.prepare`` indexes: a walk reads shorter chains rule by rule).
SKETCH_MIN_RULES = 32
#: The group of each field in ``fast._RESTORE_RE`` and ``fast._SAVE_RE`` (their orders).
_FIELDS = {
    # dneg, dst, proto, module, dport, recent, jump, comment
    0: (8, 9, 7, 6, 10, 3, 16, 1),
    1: (3, 4, 5, 11, 12, 7, 16, 6),
}


def _lines_re(order: int) -> re.Pattern[str]:
    """The fast path's regex of that order, one line of a joined text each (it is
    anchored to lines: ``^…$``, MULTILINE)."""
    return (fast._RESTORE_RE, fast._SAVE_RE)[order]


class Sketch:
    """``model.RuleSketch`` of one chain's lines; ``build(line, number)`` builds one rule."""

    __slots__ = ("_build", "_built", "_firsts", "_lines", "_numbers", "comments", "dports",
                 "dsts", "jumps", "modules", "protos", "stateful")  # fmt: skip
    jumps: Sequence[str]
    dsts: Sequence[str]
    protos: Sequence[str]
    dports: Sequence[str]
    modules: Sequence[str]
    stateful: Sequence[bool]
    comments: Sequence[str]

    def __init__(
        self,
        lines: list[str],
        firsts: list[int],
        numbers: Callable[[int], int],
        build: Callable[[str, int], Rule],
        order: int,
        joined: str | None = None,
    ) -> None:
        """``lines``: the chain's lines in order; ``firsts``: the position of each run's
        first line among them; ``numbers(k)``: the line number of run ``k``'s first line;
        ``joined``: the lines joined by newlines, when the caller has it already."""
        found = _lines_re(order).findall("\n".join(lines) if joined is None else joined)
        if len(found) != len(lines):  # not one match a line: the caller builds the rules
            raise ValueError("a line the sketch cannot read")
        dneg, dst, proto, module, dport, recent, jump, comment = _FIELDS[order]
        # each field's column by one transpose in C, then in C where a field needs a
        # touch: KUBE-SERVICES' 10,001 lines 9 → 3 ms after the findall (measured)
        columns = list(zip(*found, strict=True)) if found else [()] * 17
        keywords = TARGET_KEYWORDS
        self.jumps = [j if j not in keywords else "" for j in columns[jump]]
        dsts, negated = columns[dst], columns[dneg]
        self.dsts = (
            [("!" + d if n else d) for n, d in zip(negated, dsts, strict=True)]
            if any(negated)
            else dsts
        )
        self.protos = columns[proto]
        self.dports = columns[dport]
        # a module only with its port (``p and m``: "" when there is no port)
        self.modules = [p and m for p, m in zip(columns[dport], columns[module], strict=True)]
        # the fast path's matches, in either order: comment, recent, addrtype, port,
        # statistic; so only a recent match comes before the port match
        self.stateful = list(map(bool, columns[recent]))
        # a vouched comment has no escapes: its text is the word, without its quotes
        self.comments = list(map(str.strip, columns[comment], repeat('"')))
        self._lines, self._firsts, self._numbers, self._build = lines, firsts, numbers, build
        self._built: dict[int, Rule] = {}

    def rule(self, at: int) -> Rule:
        found = self._built.get(at)
        if found is None:
            run = bisect_right(self._firsts, at) - 1
            number = self._numbers(run) + at - self._firsts[run]
            found = self._built[at] = replace(self._build(self._lines[at], number), number=at + 1)
        return found


def builder(rules: fast.FastRules, table: str, chain: str, path: str) -> Callable[[str, int], Rule]:
    """One vouched line's rule, as the fast path builds it within its chain."""

    def build(line: str, number: int) -> Rule:
        draft = ChainDraft(chain)
        if rules.take([line], 0, table, path, {chain: draft}, [number]) != 1:
            raise AssertionError(f"{path}:{number}: a deferred line was not taken")
        return draft.rules[0]

    return build


def sketch_runs(
    text: str,
    spans: list[tuple[int, int]],
    line_at: Callable[[int], int],
    build: Callable[[str, int], Rule],
    order: int,
) -> Sketch | None:
    """The sketch of a chain's runs (``(start, end)`` in ``text``, each from the newline
    before its first line); None when a line is not one the sketch reads."""
    starts = map(add, map(itemgetter(0), spans), repeat(1))  # each run's slice made in C
    runs = list(map(text.__getitem__, map(slice, starts, map(itemgetter(1), spans))))
    joined = "\n".join(runs)
    if joined.count("\n") == len(runs) - 1:  # a line a run (KUBE-SERVICES in kube-proxy's order)
        lines, firsts = runs, list(range(len(runs)))
    else:
        lines = joined.split("\n")
        sizes = accumulate(map(str.count, runs, repeat("\n")), initial=0)
        firsts = [k + before for k, before in enumerate(sizes)][: len(runs)]

    def numbers(run: int) -> int:
        return line_at(spans[run][0] + 1)

    try:
        return Sketch(lines, firsts, numbers, build, order, joined)
    except ValueError:
        return None
