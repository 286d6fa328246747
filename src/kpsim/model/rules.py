"""The immutable rule model every stage shares.

    Ruleset ─ tables ─▶ Table ─ chains ─▶ Chain ─ rules ─▶ Rule
                                                          ├─ core fields (-s -d -p -i -o -f)
                                                          ├─ matches (-m …, typed or Opaque)
                                                          └─ target (-j / -g …, typed or Opaque)

Standard library only. Every parsed thing carries its ``SourceLocation`` so any
answer can quote the line that produced it. Fields hold what the kernel holds
(e.g. a statistic probability is the kernel's integer over 2^31), not what a
particular printer showed.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from kpsim.model.capture import Capture
from kpsim.model.matches import CommentMatch, Match
from kpsim.model.targets import Target, Verdict
from kpsim.model.values import (
    Address,
    Counters,
    Family,
    Format,
    Interface,
    Protocol,
    SourceLocation,
)

BUILTIN_CHAINS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "raw": ("PREROUTING", "OUTPUT"),
        "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
        "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
        "filter": ("INPUT", "FORWARD", "OUTPUT"),
        "security": ("INPUT", "FORWARD", "OUTPUT"),
    }
)

# ---------------------------------------------------------------- structure


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule, in chain order (``number`` is 1-based, as ``--line-numbers``)."""

    table: str
    chain: str
    number: int
    target: Target | None
    source: Address | None = None
    destination: Address | None = None
    protocol: Protocol | None = None
    in_interface: Interface | None = None
    out_interface: Interface | None = None
    fragment: bool | None = None  # True: -f, False: ! -f
    matches: tuple[Match, ...] = ()
    counters: Counters | None = None
    origin: SourceLocation | None = field(default=None, compare=False)

    @property
    def comment(self) -> str | None:
        for m in self.matches:
            if isinstance(m, CommentMatch):
                return m.text
        return None


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain; ``policy`` is set for built-in chains whose policy the input showed."""

    name: str
    rules: tuple[Rule, ...] = ()
    policy: Verdict | None = None
    counters: Counters | None = None
    origin: SourceLocation | None = field(default=None, compare=False)

    def sketch(self) -> RuleSketch | None:
        """Its rules as written, without building them; None: read ``rules`` (only a big
        chain read on demand has one, ``formats.iptables.sketch``)."""
        return None

    def rule(self, at: int) -> Rule:
        """``rules[at]``; a chain read on demand builds that rule alone."""
        return self.rules[at]


class RuleSketch(typing.Protocol):
    """A chain's rules position by position, as a reader that vouched for every line read
    them off the text: per rule ``jumps`` (the chain it jumps to, "" for any other
    target), ``dsts`` (``-d`` as written, "!" first when negated, "" none), ``protos``
    (``-p``), ``dports`` and ``modules`` (its one ``--dport`` and the match module that
    reads it), ``stateful`` (a statistic or recent match comes before that port match),
    ``comments`` (its one comment's text); "" where the rule has none. ``rule(at)`` builds
    the rule itself, equal to ``rules[at]``.
    Its rules have nothing else: no ``-i``/``-o``/``-f``, no counters, no match but a
    comment, ``-m recent``, ``-m addrtype``, that port match and ``-m statistic``, and a
    ``-j`` target (a jump, a built-in target or DNAT), never ``-g``."""

    jumps: Sequence[str]
    dsts: Sequence[str]
    protos: Sequence[str]
    dports: Sequence[str]
    modules: Sequence[str]
    stateful: Sequence[bool]
    comments: Sequence[str]

    def rule(self, at: int) -> Rule: ...


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    chains: Mapping[str, Chain]

    def chain(self, name: str) -> Chain | None:
        return self.chains.get(name)

    @property
    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains.values())


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A line kpsim skipped or doubted, with where and why.

    ``text`` is the line, or for a long one a slice around ``col`` with "…" where it was
    cut (``excerpt``); ``text_col`` is the column of the line its first character after
    any "…" stands at, so the caret lands under ``col`` either way."""

    path: str
    line: int
    col: int
    message: str
    text: str = ""
    text_col: int = 1

    def render(self) -> str:
        head = f"{self.path}:{self.line}:{self.col}: {self.message}"
        return f"{head}\n    {self.text}\n    {' ' * caret_offset(self.col, self.text_col)}^"


#: How much of a line a diagnostic keeps (``excerpt``): around its column, in characters.
EXCERPT = 200
_ELLIPSIS = "…"


def excerpt(line: str, col: int, width: int = EXCERPT) -> tuple[str, int]:
    """``(text, text_col)`` for a Diagnostic: ``line`` when it is short, else ``width``
    characters around ``col`` (a third before it), with "…" where they were cut."""
    if len(line) <= width:
        return line, 1
    start = min(max(col - 1 - width // 3, 0), len(line) - width)
    text = line[start : start + width]
    head = _ELLIPSIS if start > 0 else ""
    tail = _ELLIPSIS if start + width < len(line) else ""
    return head + text + tail, start + 1


def caret_offset(col: int, text_col: int) -> int:
    """How many blanks put a caret under ``col`` in an ``excerpt`` starting at ``text_col``."""
    return max(col - text_col, 0) + (len(_ELLIPSIS) if text_col > 1 else 0)


@dataclass(frozen=True, slots=True)
class Ruleset:
    """Everything read from one input: tables, detected format, metadata, diagnostics."""

    path: str
    format: Format
    family: Family
    tables: Mapping[str, Table]
    metadata: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    diagnostics: tuple[Diagnostic, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. "nft syntax: recognised, not translated"
    capture: Capture = field(default_factory=Capture)  # what the input can and cannot tell

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def chain(self, table: str, name: str) -> Chain | None:
        t = self.tables.get(table)
        return t.chains.get(name) if t else None
