"""Read ``nft list ruleset`` text of iptables-nft rules into the model, by its nesting.

    table ip nat {                            ── a table (``table ip6``: family IPv6)
        set cluster-ips {                     ── data: skipped, counted, named in a note
            flags interval
            elements = { 10.0.0.0/8,          ── nested braces over several lines
                         172.16.0.0/12 }
        }                                     ── ends the set, not the table
        chain KUBE-SERVICES {                 ── a chain: each line a statement (rule)
            meta l4proto tcp ip daddr 10.96.0.1 tcp dport 443 counter packets 0 bytes 0 jump X
        }
    }

A closing brace ends the innermost open block. Sets, maps and the other named objects hold
nft's data, not rules: kpsim does not model them yet, so their bodies are skipped without a
diagnostic. Each statement is translated by ``statements.Draft``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from kpsim.formats.common import RulesetBuilder, Sink, classify_noise, read_meta, too_long
from kpsim.formats.iptables.tokens import LineError, tokenize
from kpsim.formats.nft.families import other_family, why_left_out
from kpsim.formats.nft.statements import Draft
from kpsim.formats.numbers import clip
from kpsim.model import Family, Format, Rule, Ruleset, SourceLocation

NOTE = "nft syntax: translated from `nft list ruleset`; untranslated statements are kept as unknown"


def parse_nft(text: str, path: str, *, strict: bool = False, family: str | None = None) -> Ruleset:
    """Parse ``nft list ruleset`` text (iptables-nft tables) into a Ruleset (format NFT):
    the tables of one IP family (``family``, else ip when there are ip tables), each table
    of the other named in a note (families.py says why)."""
    text, left_out = other_family(text, family)
    parser = _NftParser(path, Sink(path, strict))
    for block in left_out:
        parser.builder.note(why_left_out(block, family or "ip"))
    for number, line in enumerate(text.split("\n"), 1):
        parser.line(number, line.removesuffix("\r"))
    parser.finish()
    return parser.builder.freeze(parser.sink.items)


#: A chain's own comment: nft prints it first in the chain, before the hook line.
_CHAIN_COMMENT = re.compile(r'^comment\s+"(?:[^"\\]|\\.)*"$')


@dataclass(slots=True)
class _Pending:
    """A statement whose braces are still open at the end of its first line."""

    number: int
    first: str
    rest: list[str]
    depth: int


class _NftParser:
    """Reads line by line, keeping the blocks open at each line: a table; in it a chain or
    a data block (set, map, …); in a chain, a statement whose braces span lines. A closing
    brace ends the innermost of them, so a set's brace never ends its table."""

    def __init__(self, path: str, sink: Sink) -> None:
        self.path = path
        self.sink = sink
        self.builder = RulesetBuilder(path, Format.NFT)
        self.builder.note(NOTE)
        self.table: str | None = None  # the table of the chain being read
        self.table_open = False  # a ``table … {`` read, its closing brace not yet
        self.chain: str | None = None
        self.fresh = False  # nothing read yet in this chain: a ``comment`` is the chain's
        self.block: _DataBlock | None = None
        self.pending: _Pending | None = None
        self.data: dict[str | None, _TableData] = {}
        self.seen: set[tuple[str, str]] = set()
        self.last_line = 0  # the last line with text: where a text cut inside a block ends

    def line(self, number: int, line: str) -> None:
        stripped = line.strip()
        if not stripped:
            return
        self.last_line = number
        words = _words(stripped)
        if self.block is not None:
            self._data(number, line, words)
        elif self.pending is not None:
            self._continue(number, line, words)
        elif words[0] == "table" and len(words) >= 3:
            self._open_table(number, words)
        elif stripped.startswith("#"):
            meta = read_meta(line, number, self.sink)
            if meta is not None:
                self.builder.metadata.update(meta)
            else:
                self.sink.skip_line(number, line, classify_noise(line) or "comment")
        elif stripped == "}":
            self._close(number, line)
        elif words[0] == "chain" and len(words) >= 2:
            self._open_chain(number, line, words[1])
        elif self.chain is not None:
            self._statement(number, line, stripped, words)
        else:
            self._outside(number, line, words)

    def finish(self) -> None:
        """Whatever is still open at the end of the text, and one note per table of data."""
        if self.pending is not None:
            self._abandon(self.pending)
        if self.block is not None:
            self._unclosed_block(self.block)
        if self.chain is not None or self.table_open:
            self.builder.note(f"{self._open_name()} has no closing brace: the text may be cut")
            # as a table with no COMMIT: its chains may have lost rules, and a table the
            # text does not show (it may have come after the cut) is not known empty
            self.builder.facts.uncommitted.append((self.table or "nat", self.last_line))
        for table, data in self.data.items():
            self.builder.note(data.note(table))

    # -- blocks

    def _open_table(self, number: int, words: list[str]) -> None:
        if self.chain is not None or self.table_open:
            self.builder.note(f"{self._open_name()} has no closing brace before line {number}")
        self.table, self.table_open, self.chain = words[2], True, None
        if words[1] == "ip6":
            self.builder.family = Family.IPV6
        self.builder.tables.setdefault(self.table, {})

    def _open_chain(self, number: int, line: str, name: str) -> None:
        if self.chain is not None:
            self.builder.note(f"{self._open_name()} has no closing brace before line {number}")
        if self.table is None:
            self.table = "nat"
            self.builder.note("no table header: assumed table nat")
        key = (self.table, name)
        if key in self.seen:
            col = line.index(name) + 1
            shown = clip(name)
            self.sink.report(number, col, f"chain {shown} defined again; rules appended", line)
            self.builder.note(f"chain {shown} appears more than once; its rules were appended")
        else:
            self.builder.declare(
                self.table, name, None, None, SourceLocation(self.path, number, line)
            )
        self.seen.add(key)
        self.chain = name
        self.fresh = True

    def _close(self, number: int, line: str) -> None:
        if self.chain is not None:
            self.chain = None
            if not self.table_open:  # a chain pasted without its table header
                self.table = None
        elif self.table_open:
            self.table, self.table_open = None, False
        else:
            self.sink.skip_line(number, line, "closing brace with no block open")

    def _open_name(self) -> str:
        if self.chain is not None:
            return f"chain {clip(self.chain)}"
        return f"table {clip(self.table or '')}"

    # -- outside a chain: the table's data and attributes

    def _outside(self, number: int, line: str, words: list[str]) -> None:
        header = _data_header(words)
        depth = _braces(line)
        if header is not None:
            block = _DataBlock(*header, number, depth)
            if depth > 0:
                self.block = block
            else:
                self._store(block)
        elif self.table_open and words[0] in ("comment", "flags"):
            return  # the table's own comment and flags
        elif depth > 0:
            self.sink.skip_line(number, line, "unknown nft block (its body is not read)")
            self.block = _DataBlock("", words[0], number, depth)
        else:
            self.sink.skip_line(number, line, classify_noise(line) or "line outside a chain")

    def _data(self, number: int, line: str, words: list[str]) -> None:
        """A line of a data block: skipped as data, unless it shows the block lost its
        closing brace (a chain or table header at the block's top level)."""
        block = self.block
        assert block is not None
        if block.depth == 1 and _opens_block(words):
            self._unclosed_block(block)
            self.line(number, line)
        elif block.feed(line):
            self.block = None
            self._store(block)

    def _unclosed_block(self, block: _DataBlock) -> None:
        what = f"{block.kind or 'block'} {clip(block.name)} (line {block.line})"
        self.builder.note(f"{what} has no closing brace: read as data up to the next block")
        self.block = None
        self._store(block)

    def _store(self, block: _DataBlock) -> None:
        if block.kind:  # an unknown block has its diagnostic already
            table = self.table if self.table_open else None
            self.data.setdefault(table, _TableData()).add(block)

    # -- in a chain

    def _statement(self, number: int, line: str, stripped: str, words: list[str]) -> None:
        if words[0] == "type":
            return  # the hook line of a base chain
        if self.fresh and _CHAIN_COMMENT.match(stripped):
            return  # the chain's own comment, not a rule
        self.fresh = False
        depth = _braces(line)
        if depth > 0:
            self.pending = _Pending(number, line, [], depth)
        else:
            self._rule(number, line)

    def _continue(self, number: int, line: str, words: list[str]) -> None:
        """The next line of a statement with open braces: its braces span lines."""
        pending = self.pending
        assert pending is not None
        if _opens_block(words) or words[0] == "table":
            self._abandon(pending)
            self.line(number, line)
            return
        pending.rest.append(line.strip())
        pending.depth += _braces(line)
        if pending.depth <= 0:
            self.pending = None
            self._rule(pending.number, " ".join([pending.first, *pending.rest]))

    def _abandon(self, pending: _Pending) -> None:
        self.pending = None
        self.sink.skip_line(pending.number, pending.first, "statement whose brace is never closed")

    def _rule(self, number: int, line: str) -> None:
        assert self.table is not None and self.chain is not None
        try:
            if (long := too_long(line)) is not None:
                raise LineError(len(line) - len(line.lstrip()) + 1, long)
            words = tokenize(line)
        except LineError as exc:
            self.sink.report(number, exc.col, exc.message, line)
            return
        draft = Draft()
        draft.translate(list(words.values))
        for index, message in draft.problems:
            self.sink.report(number, words.cols[index], message, line)
        if draft.ipv6:
            self.builder.family = Family.IPV6
        rule = Rule(
            table=self.table,
            chain=self.chain,
            number=self.builder.next_number(self.table, self.chain),
            target=draft.target,
            source=draft.source,
            destination=draft.destination,
            protocol=draft.protocol,
            in_interface=draft.in_interface,
            out_interface=draft.out_interface,
            matches=tuple(draft.matches),
            counters=draft.counters,
            origin=SourceLocation(self.path, number, line),
        )
        self.builder.add_rule(rule)


# ---------------------------------------------------------------- nesting

#: Named objects whose ``KIND NAME {`` opens a block of data (``nft list ruleset``).
_DATA_KINDS = frozenset(
    {"set", "map", "flowtable", "counter", "quota", "limit", "secmark", "synproxy"}
)
#: ``ct KIND NAME {`` objects.
_CT_KINDS = frozenset({"helper", "timeout", "expectation"})
#: How many set and map names a note spells out before "and N more".
_NAMED = 6


#: A quoted string (``\\x`` stands for ``x`` in it), or one that runs to the end of the line.
_QUOTED = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?')


def _braces(line: str) -> int:
    """Opening minus closing braces, not counting those inside a quoted string: a
    comment such as ``comment "a { b"`` must not open a block."""
    if '"' in line:
        line = _QUOTED.sub("", line)
    return line.count("{") - line.count("}")


def _words(stripped: str) -> list[str]:
    """The words a line is read by: its first four and its last (``chain X {``, ``set X {``,
    ``ct helper X {``), never a split of the whole of a long line."""
    words = stripped.split(None, 4)
    if len(words) == 5:
        words[4] = words[4].rsplit(None, 1)[-1]
    return words


def _data_header(words: list[str]) -> tuple[str, str] | None:
    """(kind, name) when the words open a data block (``set NAME {``, ``ct helper NAME {``)."""
    if len(words) >= 3 and words[0] in _DATA_KINDS and words[2].startswith("{"):
        return words[0], words[1]
    if len(words) >= 4 and words[0] == "ct" and words[1] in _CT_KINDS and words[3].startswith("{"):
        return f"ct {words[1]}", words[2]
    return None


def _opens_block(words: list[str]) -> bool:
    """A header line: ``chain``/``table`` can only start outside a data block, so one met
    at a data block's top level means that block lost its closing brace."""
    return bool(words) and words[0] in ("chain", "table") and words[-1] == "{"


@dataclass(slots=True)
class _DataBlock:
    """A data block being skipped; ``depth`` counts its braces still open."""

    kind: str
    name: str
    line: int
    depth: int
    element_lines: int = 0
    in_elements: bool = False

    def feed(self, line: str) -> bool:
        """Take one body line; True once the block's closing brace has been read."""
        stripped = line.lstrip()
        if stripped.startswith("elements") or self.in_elements:
            self.element_lines += 1
        self.depth += _braces(line)
        self.in_elements = self.depth > 1 and (self.in_elements or stripped.startswith("elements"))
        return self.depth <= 0


@dataclass(slots=True)
class _TableData:
    """What one table's data blocks held: how many of each kind, the set and map names,
    and how many lines of elements."""

    kinds: Counter[str] = field(default_factory=Counter)
    names: list[str] = field(default_factory=list)
    element_lines: int = 0

    def add(self, block: _DataBlock) -> None:
        self.kinds[block.kind] += 1
        if block.kind in ("set", "map"):
            self.names.append(f"{block.kind} {clip(block.name)}")
        self.element_lines += block.element_lines

    def note(self, table: str | None) -> str:
        """One line for ``Ruleset.notes``: kpsim reads no nft data yet, so say what it left."""
        counts = ", ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in self.kinds.items())
        where = f"table {clip(table)}" if table is not None else "outside any table"
        text = (
            f"{where}: {counts} read as nft data, not rules (kpsim does not model nft sets "
            "and maps yet; rules that look them up are kept as unknown)"
        )
        if self.names:
            shown = ", ".join(self.names[:_NAMED])
            more = len(self.names) - _NAMED
            text += f": {shown}" + (f" and {more} more" if more > 0 else "")
        if self.element_lines:
            text += f" ({self.element_lines} line(s) of elements)"
        return text
