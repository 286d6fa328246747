"""One table's deferred lines, as ``lazy`` found them: where each chain's runs and
declaration are, and what a chain read on demand asks of them (its rules, its sketch,
its origin; the table's jump targets, which ``show`` counts)."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import replace
from itertools import repeat
from operator import add
from typing import cast

from kpsim.formats.common import ChainDraft
from kpsim.formats.iptables.construct import new_location
from kpsim.formats.iptables.fast import FastRules
from kpsim.formats.iptables.lazy_places import Places
from kpsim.formats.iptables.lazy_scan import JUMP_TARGET, Lines, Runs, repeats
from kpsim.formats.iptables.prescan import repeats_ahead, sketch_ahead
from kpsim.formats.iptables.sketch import SKETCH_MIN_RULES, Sketch, builder, sketch_runs
from kpsim.model import Rule, SourceLocation


class Source:
    """One table's deferred lines: where each chain's runs and declaration are."""

    def __init__(self, text: str, path: str, table: str, fast_rules: FastRules) -> None:
        self.text, self.path, self.table, self.fast = text, path, table, fast_rules
        self.runs: Runs | None = None
        self.first: dict[str, int] = {}  # chain → its first run (an index in ``runs``)
        self.ranges: list[tuple[int, int]] = []  # the items of its runs, a range a segment
        self._repeats: dict[str, list[int]] | None = None  # chains of several runs, found once
        self.declared: dict[str, int] = {}  # chain → the offset of its declaration block
        self.eager: dict[str, ChainDraft] = {}  # rules read at once, by chain
        self.lines: Lines | None = None
        self.order = 0  # the scanner's: 0 kube-proxy's restore input, 1 iptables-save's
        self.sketches: dict[str, Sketch | None] = {}
        self.places = Places()  # where each declaration is (``origin``)
        self.bounds = (0, 0)  # from the first run to the newline after the last
        self.found: list[str] | None = None  # ``targets``, once found
        self.view: object = None  # ``lazy_text.table_text``'s answer, made once

    @property
    def targets(self) -> list[str]:
        """Each deferred line's ``-j NAME`` (show counts them), found when first asked."""
        if self.found is None:
            self.found = JUMP_TARGET.findall(self.text, *self.bounds)
        return self.found

    def add_runs(self, runs: Runs, lo: int, hi: int) -> None:
        """Items ``lo:hi`` (no special one among them) are runs of this table: the first
        run of each chain by a dict built in C (an earlier segment's first wins)."""
        self.runs = runs
        self.ranges.append((lo, hi))
        names, index = cast(list[str], runs.names[lo:hi]), range(lo, hi)
        first = dict(zip(reversed(names), reversed(index), strict=True))
        first.update(self.first)
        self.first = first

    @property
    def items(self) -> tuple[int, int]:
        """The items from the table's first run to its last, inclusive: (first, last + 1)."""
        return (self.ranges[0][0], self.ranges[-1][1]) if self.ranges else (0, 0)

    def spans(self, name: str) -> list[tuple[int, int]]:
        """(start, end) of each run of ``name``, in line order."""
        at = self.first.get(name)
        if at is None or self.runs is None:
            return []
        found = self._runs_of(name, at)
        offsets = self.runs.offsets
        ends = map(offsets.__getitem__, map(add, found, repeat(1)))  # pairs made in C
        return list(zip(map(offsets.__getitem__, found), ends, strict=True))

    def _runs_of(self, name: str, at: int) -> list[int]:
        """The items of ``name``'s runs (``at``: its first): from the chains of several
        runs (``lazy_scan.repeats``, as the prescan's child found them, else found here
        once), a chain not among them having one."""
        assert self.runs is not None
        if self._repeats is None:
            ahead = repeats_ahead(self.runs)
            self._repeats = repeats(self.runs.names) if ahead is None else ahead
        several = self._repeats.get(name)
        if several is None:
            return [at]
        lo, hi = self.items  # the chain's runs in this table (a name may be in two)
        return several[bisect_left(several, lo) : bisect_left(several, hi)]

    def sketch(self, name: str) -> Sketch | None:
        """A big chain whose every line is deferred, sketched (``sketch.py``); else None.
        Its lines are counted only as far as the threshold needs (a run has one or more)."""
        if name in self.sketches:
            return self.sketches[name]
        found, spans, count = None, self.spans(name), self.text.count
        size = len(spans) + sum(count("\n", a, b) for a, b in spans[:SKETCH_MIN_RULES])
        if size >= SKETCH_MIN_RULES and not (name in self.eager and self.eager[name].rules):
            assert self.lines is not None
            build = builder(self.fast, self.table, name, self.path)
            ahead = sketch_ahead(self.text, self.bounds, name)  # the prescan's, if any
            found = sketch_runs(self.text, spans, self.lines.at, build, self.order, ahead)
        self.sketches[name] = found
        return found

    def origin(self, name: str) -> SourceLocation:
        assert self.lines is not None
        at = self.places.line(self.text, self.lines, self.declared, name)
        return new_location(self.path, at, f":{name} - [0:0]")

    def rules(self, name: str) -> tuple[Rule, ...]:
        """The chain's rules in line order: its deferred runs (built by the fast path,
        which must take every line of them) and any rule read at once."""
        text, lines = self.text, self.lines
        assert lines is not None
        block: list[str] = []
        numbers: list[int] = []
        at, number = -1, 0
        for start, end in self.spans(name):
            number = lines.at(start + 1) if at < 0 else number + text.count("\n", at, start + 1)
            at = start + 1
            run = text[at:end].split("\n")
            block += run
            numbers += range(number, number + len(run))
        draft = ChainDraft(name)
        if self.fast.take(block, 0, self.table, self.path, {name: draft}, numbers) != len(block):
            raise AssertionError(f"{self.path}: a deferred line of {name} was not taken")
        eager = self.eager[name].rules if name in self.eager else []
        if not eager:
            return tuple(draft.rules)
        merged = ChainDraft(name)
        for rule in sorted([*draft.rules, *eager], key=_line):
            _append(merged, rule)
        return tuple(merged.rules)


def _line(rule: Rule) -> int:
    return rule.origin.line if rule.origin is not None else 0


def _append(draft: ChainDraft, rule: Rule) -> None:
    number = len(draft.rules) + 1
    draft.rules.append(rule if rule.number == number else replace(rule, number=number))
