"""What every format parser shares: the diagnostics sink (lenient or strict),
fixture metadata lines, shell-prompt and markdown noise, and a mutable builder
that freezes into the immutable ``Ruleset``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from kpsim.errors import ParseError
from kpsim.formats.capture import CaptureFacts, assess
from kpsim.formats.iptables.construct import new_chain
from kpsim.model import (
    Counters,
    Diagnostic,
    Family,
    Format,
    Rule,
    Ruleset,
    SourceLocation,
    Table,
    Verdict,
)

#: First line(s) of a kpsim fixture: ``# kpsim:meta {json}``; iptables-restore
#: ignores it as a comment, so fixtures stay loadable by the real tools.
META_PREFIX = "# kpsim:meta "

#: Shell prompts people paste with their dumps: ``root@host:~# cmd``, ``$ cmd``, ``/ # cmd``.
PROMPT_RE = re.compile(r"^\s*(?:\S+@\S+[:\s][^#$]*[#$]|[$#]|/ #|\S*\$)\s+\S")
FENCE_RE = re.compile(r"^\s*(```|~~~)")


class Sink:
    """Collects diagnostics. Lenient: keep going. Strict: raise at the first."""

    def __init__(self, path: str, strict: bool) -> None:
        self.path = path
        self.strict = strict
        self.items: list[Diagnostic] = []

    def report(self, line: int, col: int, message: str, text: str = "") -> None:
        if self.strict:
            raise ParseError(self.path, line, col, message, text)
        self.items.append(Diagnostic(self.path, line, col, message, text))

    def skip_line(self, line: int, text: str, what: str) -> None:
        """Report a whole line as skipped; the caret goes to its first non-blank."""
        col = len(text) - len(text.lstrip()) + 1
        self.report(line, col, f"skipped {what}", text)


def parse_meta(line: str) -> dict[str, object] | None:
    """The metadata dict of a ``# kpsim:meta {...}`` line, or None for other lines."""
    if not line.startswith(META_PREFIX):
        return None
    try:
        value = json.loads(line[len(META_PREFIX) :])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def meta_line(meta: dict[str, object]) -> str:
    """Render metadata as the one comment line fixtures start with."""
    return META_PREFIX + json.dumps(meta, sort_keys=True, separators=(", ", ": "))


def classify_noise(text: str) -> str | None:
    """Name the kind of non-rule line a human left in a paste, or None."""
    stripped = text.strip()
    if FENCE_RE.match(text):
        return "markdown fence"
    if PROMPT_RE.match(text):
        return "shell prompt"
    if stripped in ("...", "…", "---") or stripped.startswith("..."):
        return "elision"
    if stripped.startswith("#"):
        return "comment"
    return None


@dataclass(slots=True)
class ChainDraft:
    name: str
    policy: Verdict | None = None
    counters: Counters | None = None
    origin: SourceLocation | None = None
    rules: list[Rule] = field(default_factory=list)


class RulesetBuilder:
    """Mutable accumulation while parsing; ``freeze()`` gives the immutable model.

    Chains keep first-seen order (declaration order in iptables-save)."""

    def __init__(self, path: str, fmt: Format, family: Family = Family.IPV4) -> None:
        self.path = path
        self.format = fmt
        self.family = family
        self.tables: dict[str, dict[str, ChainDraft]] = {}
        self.metadata: dict[str, object] = {}
        self.notes: list[str] = []
        self.facts = CaptureFacts()

    def chain(self, table: str, name: str) -> ChainDraft:
        chains = self.tables.setdefault(table, {})
        draft = chains.get(name)
        if draft is None:
            draft = chains[name] = ChainDraft(name)
        return draft

    def declare(
        self,
        table: str,
        name: str,
        policy: Verdict | None,
        counters: Counters | None,
        origin: SourceLocation | None,
    ) -> ChainDraft:
        chains = self.tables.setdefault(table, {})
        draft = chains.get(name)
        if draft is None:  # nearly always: one call, not chain() and three stores
            draft = chains[name] = ChainDraft(name, policy, counters, origin)
            return draft
        draft.policy = policy
        draft.counters = counters
        draft.origin = origin
        return draft

    def next_number(self, table: str, chain: str) -> int:
        return len(self.chain(table, chain).rules) + 1

    def add_rule(self, rule: Rule) -> None:
        self.chain(rule.table, rule.chain).rules.append(rule)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def freeze(self, diagnostics: list[Diagnostic]) -> Ruleset:
        tables = {
            tname: Table(
                tname,
                MappingProxyType(
                    {
                        d.name: new_chain(d.name, tuple(d.rules), d.policy, d.counters, d.origin)
                        for d in chains.values()
                    }
                ),
            )
            for tname, chains in self.tables.items()
        }
        ruleset = Ruleset(
            path=self.path,
            format=self.format,
            family=self.family,
            tables=MappingProxyType(tables),
            metadata=MappingProxyType(dict(self.metadata)),
            diagnostics=tuple(diagnostics),
            notes=tuple(self.notes),
        )
        return replace(ruleset, capture=assess(ruleset, self.facts, diagnostics))
