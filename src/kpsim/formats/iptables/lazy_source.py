"""One table's deferred lines, as ``lazy`` found them: where each chain's runs and
declaration are, and what a chain read on demand asks of them (its rules, its sketch,
its origin; the table's jump targets, which ``show`` counts)."""

from __future__ import annotations

from dataclasses import replace
from itertools import compress, repeat
from operator import add, eq
from typing import cast

from kpsim.formats.common import ChainDraft
from kpsim.formats.iptables.construct import new_location
from kpsim.formats.iptables.fast import FastRules
from kpsim.formats.iptables.lazy_places import Places
from kpsim.formats.iptables.lazy_scan import JUMP_TARGET, Lines, Runs
from kpsim.formats.iptables.sketch import SKETCH_MIN_RULES, Sketch, builder, sketch_runs
from kpsim.model import Rule, SourceLocation


class Source:
    """One table's deferred lines: where each chain's runs and declaration are."""

    def __init__(self, text: str, path: str, table: str, fast_rules: FastRules) -> None:
        self.text, self.path, self.table, self.fast = text, path, table, fast_rules
        self.runs: Runs | None = None
        self.first: dict[str, int] = {}  # chain → its first run (an index in ``runs``)
        self.last: dict[str, int] = {}  # chain → its last run
        self.declared: dict[str, int] = {}  # chain → the offset of its declaration block
        self.eager: dict[str, ChainDraft] = {}  # rules read at once, by chain
        self.lines: Lines | None = None
        self.order = 0  # the scanner's: 0 kube-proxy's restore input, 1 iptables-save's
        self.sketches: dict[str, Sketch | None] = {}
        self.places = Places()  # where each declaration is (``origin``)
        self.bounds = (0, 0)  # from the first run to the newline after the last
        self.blocks: list[int] = []  # where its blocks of declarations are
        self.found: list[str] | None = None  # ``targets``, once found
        self.view: object = None  # ``lazy_text.table_text``'s answer, made once

    @property
    def targets(self) -> list[str]:
        """Each deferred line's ``-j NAME`` (show counts them), found when first asked."""
        if self.found is None:
            self.found = JUMP_TARGET.findall(self.text, *self.bounds)
        return self.found

    def add_runs(self, runs: Runs, lo: int, hi: int) -> None:
        """Items ``lo:hi`` (no special one among them) are runs of this table: first and
        last run of each chain by two dicts built in C (a later segment's last wins, an
        earlier one's first)."""
        self.runs = runs
        names, index = cast(list[str], runs.names[lo:hi]), range(lo, hi)
        self.last.update(zip(names, index, strict=True))
        first = dict(zip(reversed(names), reversed(index), strict=True))
        first.update(self.first)
        self.first = first

    def spans(self, name: str) -> list[tuple[int, int]]:
        """(start, end) of each run of ``name``, in line order."""
        at = self.first.get(name)
        if at is None or self.runs is None:
            return []
        names, offsets, last = self.runs.names, self.runs.offsets, self.last[name] + 1
        # several runs (KUBE-SERVICES in kube-proxy's order): picked among the items in C
        found = list(compress(range(at, last), map(eq, names[at:last], repeat(name))))
        ends = map(offsets.__getitem__, map(add, found, repeat(1)))  # pairs made in C too
        return list(zip(map(offsets.__getitem__, found), ends, strict=True))

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
            found = sketch_runs(self.text, spans, self.lines.at, build, self.order)
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
