"""Read a clean iptables-save on demand: one cheap pass finds where each chain's lines are,
and a chain's rules are built when first asked for.

    text ─ one regex pass ─▶ runs of ``-A NAME`` lines (offsets), ``:NAME - [0:0]`` blocks
         └ every other line (headers, built-in chains, rules of other shapes) read now
    Ruleset(tables → chains: LazyChain) ─ chain.rules ─▶ FastRules.take on its runs

Why: ``kpsim trace --port N`` on a 10,000-service dump meets ~30 of its 61,000 chains.

Same answers as ``save.parse_save``, or none: a run is only deferred when every line of it
is in a shape the fast path builds without a word of doubt (``_BODY``: ports up to 65535,
probabilities in [0, 1], comments without escapes, …), so no deferred line can hold a
diagnostic. Any input this reader cannot vouch for — a diagnostic or note on a line it
reads now, a table without COMMIT, no newline at the end, ``-I``/``-N``/``-X``/``-F``/
``-P`` commands, a target keyword declared as a chain, a jump to a chain not captured, rules
of a chain never declared or a declaration after its table's rules — gives None, and the
caller reads it whole (``tests/test_lazy_load.py`` compares the two on every shipped
capture).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import replace
from itertools import compress, repeat
from operator import add, eq, not_
from types import MappingProxyType
from typing import Any, cast

from kpsim.formats.capture import assess
from kpsim.formats.common import ChainDraft, RulesetBuilder, Sink
from kpsim.formats.iptables.construct import constructor, new_chain, new_location
from kpsim.formats.iptables.fast import FastRules
from kpsim.formats.iptables.lazy_places import Places
from kpsim.formats.iptables.lazy_scan import JUMP_TARGET, Lines, Runs, scan
from kpsim.formats.iptables.prescan import jump_targets, taken
from kpsim.formats.iptables.save import _SaveParser
from kpsim.formats.iptables.save_detect import declares_keyword, detect_save_format
from kpsim.formats.iptables.sketch import SKETCH_MIN_RULES, Sketch, builder, sketch_runs
from kpsim.formats.iptables.targets import TARGET_KEYWORDS
from kpsim.formats.on_demand import ChainsOnDemand, Recipe
from kpsim.model import Chain, Counters, Format, Jump, Rule, Ruleset, SourceLocation, Table


class _NotClean(Exception):
    """The input holds something only the whole reader answers exactly."""


_RULES_SLOT: Any = Chain.__dict__["rules"]
_ORIGIN_SLOT: Any = Chain.__dict__["origin"]


class LazyChain(Chain):
    """A ``Chain`` whose rules are built on first use; then it *is* a plain ``Chain``
    (its class is switched: the layouts are the same), equal to the one the whole
    reader builds. Until then its ``rules`` slot holds the ``_Source`` that builds them,
    and its ``origin`` slot the source too when the declaration is deferred."""

    __slots__ = ()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._load()

    @property
    def origin(self) -> SourceLocation | None:
        found = _ORIGIN_SLOT.__get__(self, Chain)
        if isinstance(found, _Source):
            found = found.origin(self.name)
            _ORIGIN_SLOT.__set__(self, found)
        return found  # type: ignore[no-any-return]

    def sketch(self) -> Sketch | None:
        source = _RULES_SLOT.__get__(self, Chain)
        return source.sketch(self.name) if isinstance(source, _Source) else None

    def rule(self, at: int) -> Rule:
        sketch = self.sketch()
        return sketch.rule(at) if sketch is not None else self.rules[at]

    def _load(self) -> tuple[Rule, ...]:
        source: _Source = _RULES_SLOT.__get__(self, Chain)
        origin = self.origin
        enabled = gc.isenabled()  # rules are acyclic: the collector would only rescan them,
        gc.disable()  # 0.139 s → 0.089 s for KUBE-SERVICES' 10,001 rules (measured)
        try:
            rules = source.rules(self.name)
        finally:
            if enabled:
                gc.enable()
        _RULES_SLOT.__set__(self, rules)
        _ORIGIN_SLOT.__set__(self, origin)
        object.__setattr__(self, "__class__", Chain)
        return rules

    def __eq__(self, other: object) -> bool:
        self._load()
        return self == other

    def __hash__(self) -> int:
        self._load()
        return hash(self)


#: ``new_lazy(name, source, policy, counters, origin)``: a LazyChain, as ``new_chain``
_new_lazy: Callable[..., LazyChain] = constructor(Chain, LazyChain)
_ZERO = Counters(0, 0)


class _Source:
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
        self.targets: list[str] = []  # each deferred line's ``-j NAME`` (``_no_missing``)
        self.view: object = None  # ``lazy_text.table_text``'s answer, made once

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


# ---------------------------------------------------------------- the pass


def lazy_save(text: str, path: str) -> Ruleset | None:
    """The ruleset of a clean iptables-save, its chains built on demand; None when the
    whole reader must answer (see the module's docstring)."""
    if not text.endswith("\n") or "\r" in text or "\n*" not in text or text.startswith("-"):
        return None
    # target keywords declared as chains: looked for by the pass (a search took 20 ms)
    if detect_save_format(text) is not Format.SAVE:
        return None
    parser = _SaveParser(path, Format.SAVE, Sink(path, False))
    try:
        return _Pass(text, path, parser).run()
    except _NotClean:
        return None


class _Pass:
    def __init__(self, text: str, path: str, parser: _SaveParser) -> None:
        self.text = text
        self.path = path
        self.parser = parser
        self.builder: RulesetBuilder = parser.builder
        self.lines = Lines(text)
        self.fast = FastRules(frozenset())
        self.sources: dict[str, _Source] = {}
        self.order: dict[str, dict[str, object]] = {}  # per table, chains as first seen
        self.seen: dict[str, int] = {}  # per table, eager chains already in ``order``
        self.ruled: set[str] = set()  # tables with deferred runs so far
        self.shape = 0  # the scanner's order (``lazy_scan.pick``)

    def run(self) -> Ruleset:
        """One ``finditer`` cuts the text into items (``lazy_scan``); Python visits only the
        items that are not runs (45 in a 10,000-service dump) and hands tables the rest."""
        text = self.text
        start = text.index("\n")
        self._eager(0, start)
        # the one pass, made while kpsim was starting when the command line named this text
        self.shape, runs = taken(text) or scan(text, start)
        names, offsets, blocks = runs.names, runs.offsets, runs.blocks
        done = 0  # the items up to which the text is read
        for at in [*compress(range(len(names)), map(not_, names)), len(names)]:
            if at > done:  # items done:at are runs, all of the current table
                table = self.parser.table
                if table is None:
                    raise _NotClean
                self._runs(self._source(table), runs, done, at)
            if at == len(names):
                break
            if at in blocks:
                table = self.parser.table
                if table is None:
                    raise _NotClean
                self._declarations(self._source(table), offsets[at], offsets[at + 1])
            else:
                self._eager(offsets[at], offsets[at + 1])
            done = at + 1
        return self._finish()

    def _source(self, table: str) -> _Source:
        source = self.sources.get(table)
        if source is None:
            source = self.sources[table] = _Source(self.text, self.path, table, self.fast)
            source.lines, source.order = self.lines, self.shape
            self.order.setdefault(table, {})
        return source

    def _runs(self, source: _Source, runs: Runs, lo: int, hi: int) -> None:
        """Runs come after their table's declarations (``_declared_first``)."""
        self.ruled.add(source.table)
        source.add_runs(runs, lo, hi)

    def _declarations(self, source: _Source, offset: int, end: int) -> None:
        block = self.text[offset:end]  # ":NAME - [0:0]" lines, each after its newline
        if source.table in self.ruled:
            raise _NotClean  # a declaration after rules (``_declared_first``)
        # every line of the block is ":NAME - [0:0]" (``lazy_scan``): 7 ms against 12 ms
        # for a findall of the names (61,000 in a 10,000-service dump, measured)
        names = block.replace(" - [0:0]", "").split("\n:")[1:]
        fresh = dict.fromkeys(names, offset)
        order = self.order[source.table]
        if len(fresh) != len(names) or not fresh.keys().isdisjoint(order):
            raise _NotClean  # declared twice, or after its rules: as the whole reader says
        if not TARGET_KEYWORDS.isdisjoint(fresh):
            raise _NotClean  # a target keyword declared: ``-j`` it is a jump
        source.declared = {**source.declared, **fresh} if source.declared else fresh
        order.update(fresh)

    def _eager(self, start: int, end: int) -> None:
        """Read ``text[start:end]`` (whole lines, after the newline that ends a run) now."""
        if start >= end:
            return
        chunk = self.text[start:end].split("\n")
        if start > 0:  # the newline that ends the last run
            chunk = chunk[1:]
            number = self.lines.at(start + 1)
        else:
            number = 1
        parser = self.parser
        for offset, line in enumerate(chunk):
            head = line[:1]
            if head == ":" and parser.table in self.ruled:
                raise _NotClean  # a declaration after rules (``_declared_first``)
            if (head == "-" and not line.startswith("-A ")) or (
                (head == "*" and line[1:] in self.order) or declares_keyword(line)
            ):
                raise _NotClean  # -I -N -X -F -P; a table read twice; -j KEYWORD a jump
            parser.line(number + offset, line)
            if parser.sink.items or self.builder.notes:
                raise _NotClean
            if parser.table is not None:
                self._seen(parser.table)

    def _seen(self, table: str) -> None:
        """Chains the eager reader created, in the order it created them."""
        self._source(table)
        drafts = self.builder.tables.get(table, {})
        if len(drafts) > self.seen.get(table, 0):
            order = self.order[table]
            for name in list(drafts)[self.seen.get(table, 0) :]:
                if name not in order:
                    if table in self.ruled:  # created by a rule after deferred runs: the
                        raise _NotClean  # whole reader may have created it earlier
                    order[name] = None
            self.seen[table] = len(drafts)

    def _finish(self) -> Ruleset:
        parser, facts = self.parser, self.parser.facts
        if not parser.committed or parser.banner is not None or parser.inserted:
            raise _NotClean
        if facts.uncommitted or facts.elisions or facts.lost or facts.dropped is not None:
            raise _NotClean
        self._declared_first()
        tables: dict[str, Table] = {}
        for tname in self.builder.tables:
            tables[tname] = Table(tname, self._chains(tname))
        ruleset = Ruleset(
            path=self.path,
            format=Format.SAVE,
            family=self.builder.family,
            tables=MappingProxyType(tables),
            metadata=MappingProxyType(dict(self.builder.metadata)),
        )
        self._no_missing(ruleset)
        return replace(ruleset, capture=assess(ruleset, facts, (), missing=[]))

    def _declared_first(self) -> None:
        """Every chain of a deferred run was known before its table's first run: declared
        (iptables-save and kube-proxy declare every chain before any rule), or a built-in
        chain read at once; else the whole reader, which creates a chain at its first rule,
        answers. One C-level set comparison per table, where a check per run cost 0.12 s."""
        for tname, source in self.sources.items():
            if not self.order[tname].keys() >= source.first.keys():
                raise _NotClean

    def _chains(self, tname: str) -> ChainsOnDemand:
        """The table's chains in declaration order; one declared, its rules deferred, kept
        as its recipe (``_new_lazy``'s arguments) until first looked up (``on_demand``):
        a LazyChain for each of 61,000 cost 0.068 s of a 0.55 s trace (profiled)."""
        source = self._source(tname)
        drafts = source.eager = self.builder.tables.get(tname, {})
        recipe = (source, None, _ZERO, source)  # one tuple shared by all
        chains: dict[str, Chain | Recipe] = dict.fromkeys(self.order[tname], recipe)
        for name, d in drafts.items():  # a name in ``order`` is declared or a draft's
            if name in source.declared:
                if d.origin is not None:
                    raise _NotClean  # declared twice
            elif name in source.first:  # its declaration read now, its rules later
                chains[name] = _new_lazy(name, source, d.policy, d.counters, d.origin)
            else:
                chains[name] = new_chain(name, tuple(d.rules), d.policy, d.counters, d.origin)
        return ChainsOnDemand(chains, _new_lazy)

    def _no_missing(self, ruleset: Ruleset) -> None:
        """Every jump lands on a captured chain (else the whole reader says which not)."""
        for tname, source in self.sources.items():
            chains = ruleset.tables[tname].chains
            if source.runs is not None and source.first:
                offsets = source.runs.offsets
                lo = offsets[min(source.first.values())]
                hi = offsets[max(source.last.values()) + 1] + 1  # the newline after the last
                found = jump_targets(self.text, lo, hi)  # the prescan's, or found here
                source.targets = JUMP_TARGET.findall(self.text, lo, hi) if found is None else found
                targets = set(source.targets)
                targets -= TARGET_KEYWORDS
                # a set minus a dict looks each name up in the dict: 36 ms → 3 ms against
                # ``targets <= chains.keys()`` on a mapping proxy's keys (measured)
                if targets.difference(self.order[tname]):
                    raise _NotClean
            for draft in source.eager.values():
                for rule in draft.rules:
                    t = rule.target
                    if isinstance(t, Jump) and t.chain not in chains:
                        raise _NotClean
