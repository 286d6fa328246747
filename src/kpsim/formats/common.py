"""What every format parser shares: the diagnostics sink (lenient or strict),
fixture metadata lines (read against their schema in meta.py), shell-prompt and
markdown noise, and a mutable builder that freezes into the immutable ``Ruleset``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import cast

from kpsim.errors import ParseError
from kpsim.formats.capture import CaptureFacts, assess
from kpsim.formats.iptables.construct import new_chain
from kpsim.formats.meta import META_PREFIX as META_PREFIX
from kpsim.formats.meta import check_meta, load_meta
from kpsim.formats.meta import meta_line as meta_line
from kpsim.formats.meta import parse_meta as parse_meta
from kpsim.formats.numbers import clip
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
from kpsim.model.rules import excerpt

#: Shell prompts people paste with their dumps: ``root@host:~# cmd``, ``$ cmd``, ``/ # cmd``.
#: The definition of record; ``is_prompt`` decides the same in linear time (this regex
#: backtracks over every ``@`` and ``:`` of a long word: seconds on a line of them).
PROMPT_RE = re.compile(r"^\s*(?:\S+@\S+[:\s][^#$]*[#$]|[$#]|/ #|\S*\$)\s+\S")
FENCE_RE = re.compile(r"^\s*(```|~~~)")
_BLANKS = re.compile(r"\s*")
_WORD = re.compile(r"\S*")
_THEN_WORD = re.compile(r"\s+\S")
_PROMPT_END = re.compile(r"[#$]")


#: Notes a ruleset keeps, and the longest; then one saying how many more there were.
NOTES = 50
NOTE_LENGTH = 1000
#: Diagnostics kept for one line; then one saying how many more there were.
PER_LINE = 20
#: The longest message a diagnostic keeps (input it quotes is cut shorter still).
MESSAGE = 300
#: The longest rule line a reader reads, in characters: a longer one is one diagnostic
#: (iptables writes none near it: a comment is at most 255 characters, a chain name 28).
#: Each word of a rule costs Python work, so this bounds the work of one line.
MAX_LINE = 65536


def too_long(line: str) -> str | None:
    """The diagnostic's message for a rule line longer than ``MAX_LINE``, else None."""
    if len(line) <= MAX_LINE:
        return None
    return f"line of {len(line):,} characters (at most {MAX_LINE:,}): not read"


class LineParseError(ParseError):
    """A ParseError whose text is an ``excerpt`` of a long line: its caret is placed as
    ``Diagnostic.render`` places it, under the column, not ``col`` blanks in."""

    def __init__(
        self, path: str, line: int, col: int, message: str, text: str, text_col: int
    ) -> None:
        self.text_col = text_col
        super().__init__(path, line, col, message, text)

    def render(self) -> str:
        return Diagnostic(
            self.path, self.line, self.col, self.message, self.text, self.text_col
        ).render()


class Sink:
    """Collects diagnostics. Lenient: keep going. Strict: raise at the first.

    Each keeps a bounded ``excerpt`` of its line and a bounded message, and one line
    gives at most ``PER_LINE`` of them: a 50 MB line is never copied into, nor
    rendered by, a diagnostic."""

    def __init__(self, path: str, strict: bool) -> None:
        self.path = path
        self.strict = strict
        self.items: list[Diagnostic] = []
        self._line = 0  # the line of the last diagnostic, and how many it has had
        self._count = 0

    def report(self, line: int, col: int, message: str, text: str = "") -> None:
        if len(message) > MESSAGE:
            message = message[: MESSAGE - 21] + " … " + message[-18:]
        shown, text_col = excerpt(text, col)
        if self.strict:
            if text_col > 1:
                raise LineParseError(self.path, line, col, message, shown, text_col)
            raise ParseError(self.path, line, col, message, shown)
        if line == self._line:
            self._count += 1
            if self._count > PER_LINE:
                self._more(line)
                return
        else:
            self._line, self._count = line, 1
        self.items.append(Diagnostic(self.path, line, col, message, shown, text_col))

    def _more(self, line: int) -> None:
        """Past ``PER_LINE`` on one line: one diagnostic counts the rest."""
        more = self._count - PER_LINE
        last = self.items[-1]
        text = f"… and {more} more diagnostic(s) on this line"
        item = Diagnostic(self.path, line, last.col, text, last.text, last.text_col)
        if more == 1:
            self.items.append(item)
        else:
            self.items[-1] = item

    def skip_line(self, line: int, text: str, what: str) -> None:
        """Report a whole line as skipped; the caret goes to its first non-blank."""
        col = len(text) - len(text.lstrip()) + 1
        self.report(line, col, f"skipped {what}", text)


def read_meta(line: str, number: int, sink: Sink) -> dict[str, object] | None:
    """The metadata of a ``# kpsim:meta`` line, or None for another line or one whose
    JSON cannot be read (its reader reports that line). A field that does not fit the
    schema (``meta.check_meta``) is dropped with a diagnostic at the column of its key."""
    text = line.lstrip()
    if not text.startswith(META_PREFIX):  # nearly every line: no copy, no JSON
        return None
    raw = load_meta(text.rstrip())
    if raw is None:
        return None
    kept, problems = check_meta(raw)
    lead = len(line) - len(text)
    for key, why in problems:
        name = key.partition("[")[0].partition(".")[0]
        at = text.find(json.dumps(name), len(META_PREFIX))
        col = lead + (at if at >= 0 else len(META_PREFIX)) + 1
        sink.report(number, col, f"kpsim:meta {clip(key)} {why}: dropped", line)
    return kept


def is_prompt(text: str) -> bool:
    """``PROMPT_RE.match(text)``, in one pass: the prompt is the first word (``$``, ``#``,
    ``…$``, ``/ #``, or ``user@host:…`` up to the first ``#``/``$`` after a ``:`` or blank
    past the ``@``), then blanks and a word."""
    if "#" not in text and "$" not in text:  # every prompt ends in one
        return False
    at = cast(re.Match[str], _BLANKS.match(text)).end()
    end = cast(re.Match[str], _WORD.match(text, at)).end()  # the first word: text[at:end]
    if end == at:
        return False

    def then_word(i: int) -> bool:  # text[i] ends the prompt; blanks and a word follow
        return _THEN_WORD.match(text, i + 1) is not None

    if text[at] in "$#" and then_word(at):
        return True
    if text.startswith("/ #", at) and then_word(at + 2):
        return True
    if text[end - 1] == "$" and then_word(end - 1):
        return True
    first_at = text.find("@", at + 1, end)  # ``\S+@\S+``: an @ past the first character
    if first_at < 0 or first_at + 2 > end:  # and a character between it and k
        return False
    # ``[:\s]`` at k: a ":" at least two past the @, or the blank after the word; then
    # ``[^#$]*[#$]`` reaches the first # or $ after k, which must be followed by a word. A
    # # or $ inside the word is followed by more of it: only a ":" after the last of them
    # can do, and any such ":" reaches the same mark as the first.
    inside = max(text.rfind("#", first_at + 2, end - 1), text.rfind("$", first_at + 2, end - 1))
    colon = text.find(":", max(first_at + 2, inside + 1), end)
    for k in (colon, end) if colon >= 0 else (end,):
        mark = _PROMPT_END.search(text, k + 1) if k < len(text) else None
        if mark is not None and then_word(mark.start()):
            return True
    return False


def classify_noise(text: str) -> str | None:
    """Name the kind of non-rule line a human left in a paste, or None."""
    stripped = text.strip()
    if FENCE_RE.match(text):
        return "markdown fence"
    if is_prompt(text):
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
        self._noted: set[str] = set()
        self._unlisted = 0
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
        """A note, once; past ``NOTES`` of them only counted (each is a sentence for a
        reader; a damaged text can make one per line)."""
        if len(text) > NOTE_LENGTH:  # names in it are cut already: this is a safety net
            text = text[: NOTE_LENGTH - 41] + " … " + text[-38:]
        if text in self._noted:
            return
        self._noted.add(text)
        if len(self.notes) < NOTES:
            self.notes.append(text)
        else:
            self._unlisted += 1

    def all_notes(self) -> tuple[str, ...]:
        """The notes as the ruleset holds them: past ``NOTES``, how many more."""
        more = (f"… and {self._unlisted} more note(s)",) if self._unlisted else ()
        return tuple(self.notes) + more

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
            notes=self.all_notes(),
        )
        return replace(ruleset, capture=assess(ruleset, self.facts, diagnostics))
