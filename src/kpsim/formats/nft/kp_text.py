"""kube-proxy's nftables table as text, in both forms nft reads, into plain drafts: the
table's chains (hook, priority, policy, statement lines) and its sets and maps (key
types, flags, element texts). model building is kp_lower.py's and kube_proxy.py's.

    table ip kube-proxy {                      ── ``nft list ruleset`` / ``list table``
        chain nat-prerouting {
            type nat hook prerouting priority dstnat; policy accept;
            jump services
        }
        map service-ips { type … : verdict; elements = { 10.0.0.1 . tcp . 80 : goto x } }
    }
    add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
                                               ── the ``nft -f`` input kube-proxy writes

Statements are kept as (line, column, text) so every later error points into the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import cast

from kpsim.formats.common import Sink, classify_noise, read_meta
from kpsim.formats.nft.blocks import Block, parse_block, parse_chain_spec, parse_set_body
from kpsim.formats.nft.grammar import FAMILIES, GrammarError
from kpsim.formats.nft.kp_plain import plain_chain_spec, plain_set_body

#: A token of nft's syntax: a quoted string, a brace, comma or semicolon, or a word.
TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[{},;]|[^\s{},;"]+')
_COMMANDS = ("add", "create", "insert", "flush", "delete", "destroy", "replace")
_FAMILIES = ("ip", "ip6", "inet")


@dataclass(slots=True)
class NftChain:
    name: str
    line: int
    text: str
    kind: str | None = None  # filter | nat | route, for a base chain
    hook: str | None = None
    priority: int | None = None
    policy: str | None = None
    comment: str | None = None
    rules: list[tuple[int, int, str]] = field(default_factory=list)


@dataclass(slots=True)
class NftSet:
    name: str
    line: int
    is_map: bool
    keys: tuple[str, ...] = ()
    value: str | None = None
    flags: set[str] = field(default_factory=set)
    comment: str | None = None
    elements: list[tuple[int, int, str]] = field(default_factory=list)
    timeout: int | None = None  # seconds, ``timeout 3h``: how long an element lives
    size: int | None = None  # ``size 65535``: the most elements it holds (None: no bound)

    @property
    def dynamic(self) -> bool:
        return bool(self.flags & {"dynamic", "timeout"})


@dataclass(slots=True)
class NftTable:
    family: str
    name: str
    line: int
    chains: dict[str, NftChain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)


#: nft's named priorities (``nft list`` prints them for these families and hooks).
NAMED_PRIORITIES = {
    "raw": -300,
    "mangle": -150,
    "dstnat": -100,
    "filter": 0,
    "security": 50,
    "srcnat": 100,
}


def priority(text: str) -> int | None:
    """``dstnat - 10`` → -110; ``-110`` → -110; None when not understood."""
    m = re.fullmatch(r"\s*(-?\w+)\s*(?:([+-])\s*(\d+))?\s*", text)
    if m is None:
        return None
    head, sign, n = m.groups()
    base = NAMED_PRIORITIES.get(head)
    if base is None:
        try:
            base = int(head)
        except ValueError:
            return None
    return base + (int(n) if sign == "+" else -int(n) if sign == "-" else 0)


class NftText:
    """Reads the text line by line into ``tables``; what it cannot read goes to the sink
    with its line and column (strict: a ParseError, exit 2)."""

    def __init__(self, path: str, sink: Sink) -> None:
        self.path = path
        self.sink = sink
        self.tables: dict[tuple[str, str], NftTable] = {}
        self.metadata: dict[str, object] = {}
        self.notes: list[str] = []
        self.listed = False  # a ``table … {`` block was read (``nft list`` output)
        #: the text ended inside a block: (its last line, the chain left open, if one)
        self.cut: tuple[int, str | None] | None = None
        self._table: NftTable | None = None
        self._chain: NftChain | None = None
        self._set: NftSet | None = None
        self._pending: tuple[int, int, list[str], int] | None = None  # line, col, parts, depth

    def read(self, text: str) -> None:
        for number, raw in enumerate(text.split("\n"), 1):
            self.line(number, raw.removesuffix("\r"))
        last_line = text.rstrip().count("\n") + 1
        if self._pending is not None:
            line, col, parts, _ = self._pending
            self.sink.report(line, col, "braces opened here are never closed", parts[0])
            self.cut = (last_line, self._chain.name if self._chain else None)
        block = self._set or self._chain or self._table
        if block is not None:
            self.cut = (last_line, self._chain.name if self._chain else None)
            self.notes.append("the nft text ends inside a block: it may be cut")
            kind = "set" if block is self._set else "chain" if block is self._chain else "table"
            last = text.rstrip().split("\n")[-1]
            number = text.rstrip().count("\n") + 1
            message = f"the text ends inside {kind} {block.name} (line {block.line}): '}}' expected"
            self.sink.report(number, len(last.rstrip()) + 1, message, last)

    def table(self, family: str, name: str, line: int) -> NftTable:
        key = (family, name)
        found = self.tables.get(key)
        if found is None:
            found = self.tables[key] = NftTable(family, name, line)
        return found

    def command(self, number: int, col: int, stmt: str, line: str) -> None:
        """An ``nft -f`` command: read by the subclass in kp_commands.py."""
        self.sink.report(number, col, "nft commands are not read here", line)

    # -------------------------------------------------------------- lines

    def line(self, number: int, line: str) -> None:
        if self._pending is not None:
            self._continue(number, line)
            return
        stripped = line.strip()
        if not stripped:
            return
        if stripped.startswith("#"):
            meta = read_meta(line, number, self.sink)
            if meta is not None:
                self.metadata.update(meta)
            return
        col = len(line) - len(line.lstrip()) + 1
        depth = _depth(stripped)
        if depth > 0 and (self._set is not None or self._chain is not None):
            self._pending = (number, col, [stripped], depth)
            return
        self._complete(number, col, stripped, line)

    def _continue(self, number: int, line: str) -> None:
        first, col, parts, depth = self._pending or (0, 0, [], 0)
        parts.append(line.strip())
        depth += _depth(line)
        if depth > 0:
            self._pending = (first, col, parts, depth)
            return
        self._pending = None
        self._complete(first, col, " ".join(parts), parts[0])

    def _complete(self, number: int, col: int, stmt: str, line: str) -> None:
        words = stmt.split()
        if self._set is not None:
            self._set_line(number, col, stmt, words)
        elif self._chain is not None:
            self._chain_line(number, col, stmt, words)
        elif words[0] == "table" or (self._table is not None and words[0] in _BLOCKS):
            try:
                block = _block(words, stmt) or parse_block(stmt)
            except GrammarError as exc:
                self.sink.report(number, col + exc.offset, str(exc), line)
                return
            if block.what == "table":
                self._table = self.table(block.family or "ip", block.name, number)
                self.listed = True
            else:
                self._open(number, block, line, col)
        elif words[0] == "}":
            self._table = None
        elif self._table is not None and words[0] in ("comment", "flags"):
            return
        elif words[0] in _COMMANDS and self._table is None:
            self.command(number, col, stmt, line)
        else:
            self.sink.report(number, col, f"not nft syntax kpsim reads: {words[0]!r}", line)

    def _open(self, number: int, block: Block, line: str, col: int) -> None:
        """A chain, set or map opened; or, on one line, read and closed here
        (``chain a { type …; policy accept; }``)."""
        assert self._table is not None
        name, inner, at = block.name, block.inner, col + block.inner_offset
        if block.what == "chain":
            chain = self._table.chains.get(name)
            if chain is None:
                chain = self._table.chains[name] = NftChain(name, number, line)
            if inner is None:
                self._chain = chain
            elif "hook" in inner:
                hook_spec(chain, inner, self.sink, number, at)
            elif inner:
                chain.rules.append((number, at, inner))
        else:
            found = self._table.sets.get(name)
            if found is None:
                found = self._table.sets[name] = NftSet(name, number, block.what == "map")
            if inner is None:
                self._set = found
            else:
                set_attributes(found, number, at, inner, self.sink)

    def _chain_line(self, number: int, col: int, stmt: str, words: list[str]) -> None:
        chain = self._chain
        assert chain is not None
        if stmt == "}":
            self._chain = None
        elif words[0] == "type" and "hook" in words:
            hook_spec(chain, stmt, self.sink, number, col)
        elif words[0] == "policy":
            chain.policy = stmt.split()[1].rstrip(";")
        elif words[0] == "comment" and not chain.rules:
            chain.comment = _unquote(stmt[len("comment") :].strip())
        else:
            chain.rules.append((number, col, stmt))

    def _set_line(self, number: int, col: int, stmt: str, words: list[str]) -> None:
        found = self._set
        assert found is not None
        if stmt == "}":
            self._set = None
            return
        set_attributes(found, number, col, stmt, self.sink)


_BLOCKS = ("chain", "set", "map")
_NAME = re.compile(r'[^\s{},;"]+')


def _block(words: list[str], stmt: str) -> Block | None:
    """``chain NAME {`` / ``table FAMILY NAME {`` by str.split: a listing has one a chain
    (60k in a 10k-service table; the grammar takes ~0.1 ms a line), parse_block's very
    answer; None for any other shape (tests/test_nft_grammar.py checks both agree)."""
    if words[-1] != "{" or not _NAME.fullmatch(words[-2]):
        return None
    if len(words) == 3 and (words[0] in _BLOCKS or words[0] == "table"):
        return Block(words[0], None, words[1], None, len(stmt))
    if len(words) == 4 and words[0] == "table" and words[1] in FAMILIES:
        return Block("table", words[1], words[2], None, len(stmt))
    return None


def hook_spec(chain: NftChain, stmt: str, sink: Sink, number: int, col: int) -> None:
    """``type nat hook prerouting priority dstnat; policy accept;`` (either form), read
    by the grammar (grammar.parse_chain_spec) unless kp_plain.py vouches for it."""
    try:
        spec = plain_chain_spec(stmt) or parse_chain_spec(stmt)
    except GrammarError as exc:
        sink.report(number, col + exc.offset, f"base chain header: {exc}", stmt)
        return
    chain.kind, chain.hook = spec.kind, spec.hook
    chain.priority = priority(spec.priority_text)
    if chain.priority is None:
        where = col + spec.priority_offset
        sink.report(number, where, f"priority {spec.priority_text!r} not understood", stmt)
    if spec.policy is not None:
        chain.policy = spec.policy


def set_attributes(found: NftSet, number: int, col: int, stmt: str, sink: Sink) -> None:
    """The statements of a set or map block, or of ``add set … { … ; … }``, read by the
    grammar (grammar.parse_set_body) unless kp_plain.py vouches for them; ``col`` is the
    column of ``stmt``'s first character."""
    try:
        items = plain_set_body(stmt)
        items = parse_set_body(stmt) if items is None else items
    except GrammarError as exc:
        sink.report(number, col + exc.offset, f"set {found.name}: {exc}", stmt)
        return
    for what, value, offset in items:
        if what == "type":
            found.keys, found.value = cast(tuple[tuple[str, ...], "str | None"], value)
        elif what == "flags":
            found.flags |= set(cast(tuple[str, ...], value))
        elif what == "comment":
            found.comment = str(value)
        elif what == "elements":
            body = str(value)
            start = col + offset + stmt[offset:].index("{") + 1
            found.elements.extend((number, start, e) for e in elements(body))
        elif what == "timeout":
            found.timeout = duration(str(value))
        elif what == "size":
            found.size = cast(int, value)


def elements(body: str) -> list[str]:
    """The elements of ``{ a, b : c, … }``'s inside, split at top-level commas."""
    if '"' not in body and "{" not in body:  # nearly every element list: str.split in C
        return [e for e in (p.strip() for p in body.split(",")) if e]
    return [e.strip() for e in _split(body, ",") if e.strip()]


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@lru_cache(maxsize=256)  # every affinity set of kube-proxy's says ``timeout 10800s``
def duration(text: str) -> int | None:
    """nft's ``3h``, ``10800s``, ``2h59m30s`` in seconds (milliseconds dropped)."""
    parts = re.findall(r"(\d+)(ms|[dhms])", text)
    if not parts or "".join(n + u for n, u in parts) != text.rstrip(";"):
        return None
    return sum(int(n) * _UNITS[u] for n, u in parts if u != "ms")


def braced(text: str) -> str | None:
    """What ``{ … }`` on one line holds; None when there is no such pair."""
    first, last = text.find("{"), text.rfind("}")
    return text[first + 1 : last] if 0 <= first < last else None


def _split(text: str, sep: str) -> list[str]:
    out, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return out


def _depth(text: str) -> int:
    """Braces opened minus closed, outside quotes."""
    if '"' not in text:  # nearly every line: two C calls, not a loop over its characters
        return text.count("{") - text.count("}")
    depth, quoted = 0, False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted:
            depth += (ch == "{") - (ch == "}")
    return depth


def _unquote(text: str) -> str:
    text = text.strip().rstrip(";").strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


__all__ = ["NftChain", "NftSet", "NftTable", "NftText", "classify_noise", "elements", "priority"]
