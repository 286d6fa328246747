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

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import accumulate, repeat
from operator import add, itemgetter

from kpsim.formats.common import ChainDraft
from kpsim.formats.iptables import fast
from kpsim.formats.iptables.line_shapes import SKETCH_MIN_RULES as SKETCH_MIN_RULES
from kpsim.formats.iptables.line_shapes import Columns, columns
from kpsim.formats.iptables.targets import TARGET_KEYWORDS
from kpsim.model import Rule


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
        found: Columns,
    ) -> None:
        """``lines``: the chain's lines in order; ``firsts``: the position of each run's
        first line among them; ``numbers(k)``: the line number of run ``k``'s first line;
        ``found``: their columns (``line_shapes.columns``)."""
        jumps, self.dsts, self.protos, self.dports, self.modules, self.stateful, comments = found
        keywords = TARGET_KEYWORDS
        self.jumps = [j if j not in keywords else "" for j in jumps]
        self.comments = comments
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


def run_texts(text: str, spans: list[tuple[int, int]]) -> list[str]:
    """Each run's text (``(start, end)`` in ``text``, each from the newline before its
    first line), sliced in C."""
    starts = map(add, map(itemgetter(0), spans), repeat(1))
    return list(map(text.__getitem__, map(slice, starts, map(itemgetter(1), spans))))


def sketch_runs(
    text: str,
    spans: list[tuple[int, int]],
    line_at: Callable[[int], int],
    build: Callable[[str, int], Rule],
    order: int,
    found: Columns | None = None,
) -> Sketch | None:
    """The sketch of a chain's runs (``(start, end)`` in ``text``); None when a line is
    not one the sketch reads. ``found``: its columns when made already (the prescan's
    child reads them with the same ``line_shapes.columns`` off the same runs)."""
    runs = run_texts(text, spans)
    joined = "\n".join(runs)
    if joined.count("\n") == len(runs) - 1:  # a line a run (KUBE-SERVICES in kube-proxy's order)
        lines, firsts = runs, list(range(len(runs)))
    else:
        lines = joined.split("\n")
        sizes = accumulate(map(str.count, runs, repeat("\n")), initial=0)
        firsts = [k + before for k, before in enumerate(sizes)][: len(runs)]
    if found is None:
        found = columns(joined, len(lines), order)
    if found is None:
        return None

    def numbers(run: int) -> int:
        return line_at(spans[run][0] + 1)

    return Sketch(lines, firsts, numbers, build, found)
