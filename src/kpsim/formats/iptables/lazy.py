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
``-P`` commands, a target keyword declared as a chain, a jump to a chain not captured —
gives None, and the caller reads it whole (``tests/test_lazy_load.py`` compares the two
on every shipped capture).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from itertools import count, repeat
from types import MappingProxyType
from typing import Any

from kpsim.formats.capture import assess
from kpsim.formats.common import ChainDraft, RulesetBuilder, Sink
from kpsim.formats.iptables import fast
from kpsim.formats.iptables.construct import constructor, new_chain, new_location
from kpsim.formats.iptables.fast import FastRules
from kpsim.formats.iptables.save import _SaveParser
from kpsim.formats.iptables.save_detect import declared_keywords, detect_save_format
from kpsim.formats.iptables.targets import TARGET_KEYWORDS
from kpsim.model import Chain, Counters, Format, Jump, Rule, Ruleset, SourceLocation, Table

# ---------------------------------------------------------------- what may be deferred

_NAME = fast._NAME
_NET = fast._NET
#: A port the fast path reads without a doubt: 1-65535, no leading zero.
_PORT = r"(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})"
#: A comment the fast path keeps as written: no backslash, not "!", at most 1,000 characters.
_COMMENT = r' -m comment --comment (?:"(?!!")[^"\\\n]{0,1000}+"|[^ \t"!\n\\][^ \t"\n\\]{0,1000}+)'
_PROBABILITY = r"(?:0(?:\.\d{1,20}+)?|1(?:\.0{1,20}+)?)"
_STATISTIC = rf" -m statistic --mode random --probability {_PROBABILITY}"
_TARGET = rf"(?: -j DNAT --to-destination {fast._IP}(?::{_PORT})?| -j {_NAME})"
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


def _scanner(body: str) -> re.Pattern[str]:
    """Runs of one chain's ``-A`` lines in ``body``'s shape, or blocks of user-chain
    declarations; each from the newline before its first line to the end of its last."""
    line = rf"(?:{body})(?=\n)"
    return re.compile(
        rf"\n-A (?P<chain>{_NAME}){line}(?:\n-A (?P=chain){line})*+"
        rf"|(?:\n:{_NAME} - \[0:0\](?=\n))++",
        re.ASCII,
    )


@cache
def _scanner_of(order: int) -> re.Pattern[str]:  # compiled when needed: 3-6 ms (measured)
    return _scanner((_RESTORE_BODY, _SAVE_BODY)[order])


_DECLARED_NAME = re.compile(r"\n:([^ \n]++)")
#: A deferred line ends with its target (``_TARGET``: ``-j``, never ``-g``); a literal start
#: lets ``re`` skip to each " -j ": 64 ms on 10,000 services, 104 ms for " -[jg] (…)" (measured).
_JUMP_TARGET = re.compile(r" -j ([A-Za-z0-9_.-]++)\n", re.ASCII)
_BLOCK = 1 << 16  # bytes of text per line-count checkpoint


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
        self.runs: dict[str, list[tuple[int, int]]] = {}  # chain → (start, end) of each run
        self.declared: dict[str, tuple[int, int]] = {}  # chain → (its block, index in it)
        self.blocks: list[int] = []  # the offset of each declaration block
        self.eager: dict[str, ChainDraft] = {}  # rules read at once, by chain
        self.lines: _Lines | None = None

    def origin(self, name: str) -> SourceLocation:
        block, index = self.declared[name]
        assert self.lines is not None
        number = self.lines.at(self.blocks[block] + 1) + index
        return new_location(self.path, number, f":{name} - [0:0]")

    def rules(self, name: str) -> tuple[Rule, ...]:
        """The chain's rules in line order: its deferred runs (built by the fast path,
        which must take every line of them) and any rule read at once."""
        text, lines = self.text, self.lines
        assert lines is not None
        block: list[str] = []
        numbers: list[int] = []
        at, number = -1, 0
        for start, end in self.runs.get(name, ()):
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


class _Lines:
    """Line numbers of offsets: a newline count every ``_BLOCK`` characters, then a count
    within the block."""

    def __init__(self, text: str) -> None:
        self.text = text
        marks = [0]
        for at in range(0, len(text), _BLOCK):
            marks.append(marks[-1] + text.count("\n", at, at + _BLOCK))
        self.marks = marks

    def at(self, offset: int) -> int:
        """The number of the line that starts at ``offset``."""
        block = offset // _BLOCK
        return self.marks[block] + self.text.count("\n", block * _BLOCK, offset) + 1


# ---------------------------------------------------------------- the pass


def lazy_save(text: str, path: str) -> Ruleset | None:
    """The ruleset of a clean iptables-save, its chains built on demand; None when the
    whole reader must answer (see the module's docstring)."""
    if not text.endswith("\n") or "\r" in text or "\n*" not in text or text.startswith("-"):
        return None
    if detect_save_format(text) is not Format.SAVE or declared_keywords(text):
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
        self.lines = _Lines(text)
        self.fast = FastRules(frozenset())
        self.sources: dict[str, _Source] = {}
        self.order: dict[str, dict[str, None]] = {}  # per table, chains as first seen
        self.seen: dict[str, int] = {}  # per table, eager chains already in ``order``

    def run(self) -> Ruleset:
        """The hot loop (72,000 runs in a 10,000-service dump): the table changes only on
        a line read now, so what depends on it is looked up again only then."""
        text = self.text
        done = 0  # the offset up to which the text is read
        runs_of: dict[str, list[tuple[int, int]]] = {}
        order: dict[str, None] = {}
        source: _Source | None = None
        for m in _pick(text).finditer(text):
            start, end = m.span()
            if start != done or source is None:
                self._eager(done, start)
                table = self.parser.table
                if table is None:
                    raise _NotClean
                source = self._source(table)
                runs_of, order = source.runs, self.order[table]
            done = end
            chain = m["chain"]
            if chain is None:
                self._declarations(source, order, start, end)
                continue
            runs = runs_of.get(chain)
            if runs is None:
                runs = runs_of[chain] = []
                if chain not in order:
                    order[chain] = None
            runs.append((start, end))
        self._eager(done, len(text))
        return self._finish()

    def _source(self, table: str) -> _Source:
        source = self.sources.get(table)
        if source is None:
            source = self.sources[table] = _Source(self.text, self.path, table, self.fast)
            source.lines = self.lines
            self.order.setdefault(table, {})
        return source

    def _declarations(self, source: _Source, order: dict[str, None], start: int, end: int) -> None:
        names = _DECLARED_NAME.findall(self.text, start, end)
        block = len(source.blocks)
        source.blocks.append(start)
        before = len(source.declared)
        source.declared.update(zip(names, zip(repeat(block), count()), strict=False))
        if len(source.declared) != before + len(names) or not order.keys().isdisjoint(names):
            raise _NotClean  # declared twice, or after its rules: as the whole reader says
        order.update(dict.fromkeys(names))

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
            if (head == "-" and not line.startswith("-A ")) or (
                head == "*" and line[1:] in self.order
            ):
                raise _NotClean  # -I -N -X -F -P: order and deletions; a table read twice
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
                    order[name] = None
            self.seen[table] = len(drafts)

    def _finish(self) -> Ruleset:
        parser, facts = self.parser, self.parser.facts
        if not parser.committed or parser.banner is not None or parser.inserted:
            raise _NotClean
        if facts.uncommitted or facts.elisions or facts.lost or facts.dropped is not None:
            raise _NotClean
        tables: dict[str, Table] = {}
        for tname in self.builder.tables:
            tables[tname] = Table(tname, MappingProxyType(self._chains(tname)))
        ruleset = Ruleset(
            path=self.path,
            format=Format.SAVE,
            family=self.builder.family,
            tables=MappingProxyType(tables),
            metadata=MappingProxyType(dict(self.builder.metadata)),
        )
        self._no_missing(ruleset)
        return replace(ruleset, capture=assess(ruleset, facts, (), missing=[]))

    def _chains(self, tname: str) -> dict[str, Chain]:
        source = self._source(tname)
        drafts = self.builder.tables.get(tname, {})
        source.eager = drafts
        lazy = _new_lazy
        declared = source.declared
        chains: dict[str, Chain] = {
            name: lazy(name, source, None, _ZERO, source)
            if name in declared
            else lazy(name, source, None, None, None)  # created by its first rule
            for name in self.order[tname]
        }
        for name, d in drafts.items():
            deferred = name in source.runs or name in source.declared
            if name in source.declared and d.origin is not None:
                raise _NotClean  # declared twice
            if not deferred:
                chains[name] = new_chain(name, tuple(d.rules), d.policy, d.counters, d.origin)
            elif name not in source.declared:  # its declaration read now, its rules later
                chains[name] = lazy(name, source, d.policy, d.counters, d.origin)
        return chains

    def _no_missing(self, ruleset: Ruleset) -> None:
        """Every jump lands on a captured chain (else the whole reader says which not)."""
        for tname, source in self.sources.items():
            chains = ruleset.tables[tname].chains
            if source.runs:  # a chain's runs are in line order: its first starts first
                lo = min(runs[0][0] for runs in source.runs.values())
                hi = max(runs[-1][1] for runs in source.runs.values()) + 1  # its newline
                targets = set(_JUMP_TARGET.findall(self.text, lo, hi)) - TARGET_KEYWORDS
                if not targets <= chains.keys():
                    raise _NotClean
            for draft in source.eager.values():
                for rule in draft.rules:
                    t = rule.target
                    if isinstance(t, Jump) and t.chain not in chains:
                        raise _NotClean


def _pick(text: str) -> re.Pattern[str]:
    """The scanner for the order this text writes its rules in (the other order's lines
    are read at once, correctly, only slower)."""
    sample = text[: 1 << 18]
    rules = sample.count("\n-A ")
    covered = [0, 0]
    for order in (0, 1):
        scanner = _scanner_of(order)
        covered[order] = sum(sample.count("\n-A ", *m.span()) for m in scanner.finditer(sample))
        if covered[order] * 2 > rules:  # most lines are in this order: no need to try the other
            return scanner
    return _scanner_of(0 if covered[0] >= covered[1] else 1)
