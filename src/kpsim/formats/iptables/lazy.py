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
capture). The one exception is asked for: with ``later``, the jump check can be left to be
made once the prescan's child has the targets, and its caller reads the capture whole
when it fails (``api.load``'s ``confirm_later``, ``api.trace``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from itertools import compress
from operator import not_
from types import MappingProxyType
from typing import Any

from kpsim.formats.capture import assess
from kpsim.formats.common import RulesetBuilder, Sink
from kpsim.formats.iptables.construct import constructor, new_chain
from kpsim.formats.iptables.fast import FastRules
from kpsim.formats.iptables.lazy_scan import Lines, Runs, scan
from kpsim.formats.iptables.lazy_source import Source
from kpsim.formats.iptables.prescan import answering, marks_ahead, taken, unruled_ahead
from kpsim.formats.iptables.save import _SaveParser
from kpsim.formats.iptables.save_detect import declares_keyword, detect_save_format
from kpsim.formats.iptables.sketch import Sketch
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
    reader builds. Until then its ``rules`` slot holds the ``Source`` that builds them,
    and its ``origin`` slot the source too when the declaration is deferred."""

    __slots__ = ()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._load()

    @property
    def origin(self) -> SourceLocation | None:
        found = _ORIGIN_SLOT.__get__(self, Chain)
        if isinstance(found, Source):
            found = found.origin(self.name)
            _ORIGIN_SLOT.__set__(self, found)
        return found  # type: ignore[no-any-return]

    def sketch(self) -> Sketch | None:
        source = _RULES_SLOT.__get__(self, Chain)
        return source.sketch(self.name) if isinstance(source, Source) else None

    def rule(self, at: int) -> Rule:
        sketch = self.sketch()
        return sketch.rule(at) if sketch is not None else self.rules[at]

    def _load(self) -> tuple[Rule, ...]:
        source: Source = _RULES_SLOT.__get__(self, Chain)
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


# ---------------------------------------------------------------- the pass


def lazy_save(
    text: str, path: str, later: list[Callable[[], bool]] | None = None
) -> Ruleset | None:
    """The ruleset of a clean iptables-save, its chains built on demand; None when the
    whole reader must answer (see the module's docstring). ``later``: when the prescan's
    child is finding the jump targets to check (``prescan.answering``), the check that
    no jump leaves the capture is appended to it (True: passed) rather than made now;
    until it has passed, the ruleset may not be the whole reader's (the caller answers
    from the whole reader when it fails: ``api.load``'s ``confirm_later``)."""
    if not text.endswith("\n") or "\r" in text or "\n*" not in text or text.startswith("-"):
        return None
    # target keywords declared as chains: looked for by the pass (a search took 20 ms)
    if detect_save_format(text) is not Format.SAVE:
        return None
    parser = _SaveParser(path, Format.SAVE, Sink(path, False))
    try:
        return _Pass(text, path, parser, later).run()
    except _NotClean:
        return None


class _Pass:
    def __init__(
        self, text: str, path: str, parser: _SaveParser, later: list[Callable[[], bool]] | None
    ) -> None:
        self.text = text
        self.later = later
        self.path = path
        self.parser = parser
        self.builder: RulesetBuilder = parser.builder
        self.lines = Lines(text, partial(marks_ahead, text))  # the prescan's, if any
        self.fast = FastRules(frozenset())
        self.sources: dict[str, Source] = {}
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

    def _source(self, table: str) -> Source:
        source = self.sources.get(table)
        if source is None:
            source = self.sources[table] = Source(self.text, self.path, table, self.fast)
            source.lines, source.order = self.lines, self.shape
            self.order.setdefault(table, {})
        return source

    def _runs(self, source: Source, runs: Runs, lo: int, hi: int) -> None:
        """Runs come after their table's declarations (``_declared_first``)."""
        self.ruled.add(source.table)
        source.add_runs(runs, lo, hi)

    def _declarations(self, source: Source, offset: int, end: int) -> None:
        if source.table in self.ruled:
            raise _NotClean  # a declaration after rules (``_declared_first``)
        # every line of the block is ":NAME - [0:0]" after its newline (``lazy_scan``): one
        # split between names, 6.5 ms against 11 for a replace, then a split, and 12 for a
        # findall (61,000 names in a 10,000-service dump, measured)
        names = self.text[offset + 2 : end - 8].split(" - [0:0]\n:")
        fresh = dict.fromkeys(names, offset)
        order = self.order[source.table]
        if len(fresh) != len(names) or not fresh.keys().isdisjoint(order):
            raise _NotClean  # declared twice, or after its rules: as the whole reader says
        if not fresh.keys().isdisjoint(TARGET_KEYWORDS):  # (the ~40 keywords looked up)
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
        for source in self.sources.values():
            if source.runs is not None and source.first:
                offsets, (first, end) = source.runs.offsets, source.items
                source.bounds = (offsets[first], offsets[end] + 1)  # to the newline after
        if self.later is not None and answering(self.text):  # made when the child has it
            self.later.append(partial(self._passes, ruleset))
        else:
            self._no_missing(ruleset)
        return replace(ruleset, capture=assess(ruleset, facts, (), missing=[]))

    def _passes(self, ruleset: Ruleset) -> bool:
        try:
            self._no_missing(ruleset)
        except _NotClean:
            return False
        return True

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
                lo, hi = source.bounds
                # the targets that name no chain of the table's runs, as the prescan found
                # them: a few names where the findall and the set of all 115,000 cost ~30
                # ms; the others are chains ``_declared_first`` found in ``order``
                ahead = unruled_ahead(self.text, lo, hi)
                targets = set(source.targets if ahead is None else ahead) - TARGET_KEYWORDS
                # a set minus a dict looks each name up in the dict: 36 ms → 3 ms against
                # ``targets <= chains.keys()`` on a mapping proxy's keys (measured)
                if targets.difference(self.order[tname]):
                    raise _NotClean
            for draft in source.eager.values():
                for rule in draft.rules:
                    t = rule.target
                    if isinstance(t, Jump) and t.chain not in chains:
                        raise _NotClean
