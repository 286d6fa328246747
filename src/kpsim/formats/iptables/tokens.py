"""Split one rule line into words the way ``iptables-restore`` does.

    [12:340] -A KUBE-SVC-X -m comment --comment "ns/svc:p \\"q\\"" -j KUBE-SEP-Y
    └counters┘ └──────────────── words, 1-based columns ───────────────────────┘

iptables-restore splits on spaces and tabs only; a double quote opens a quoted
part in which ``\\x`` stands for ``x``; the closing quote ends the word. Single
quotes and backslashes outside quotes are ordinary characters.

The pyparsing grammar (``tokenize_grammar``) is the definition of record. A
kube-proxy dump of 10,000 services has ~240k lines, and pyparsing costs tens of
microseconds per line, so ``tokenize`` is a hand-written equivalent: ``str.split``
for lines without a quote (nearly all of them) and one compiled regex otherwise.
A test checks that both agree on every corpus line and on generated lines. Only that
reference needs pyparsing, so it is imported (and the grammar built) on first use: ~20 ms
of startup every command would otherwise pay.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING

from kpsim.formats.numbers import BAD_COUNTERS
from kpsim.formats.numbers import counters as read_counters
from kpsim.model import Counters

if TYPE_CHECKING:
    import pyparsing as pp

_SPACE = " \t"


class LineError(Exception):
    """A problem at a 1-based column of the current line; the caller adds path and line."""

    def __init__(self, col: int, message: str) -> None:
        super().__init__(message)
        self.col = col
        self.message = message


class Words:
    """The words of one line, an optional ``[p:b]`` prefix, and 1-based columns.

    Columns are worked out only when asked for (to place a diagnostic): the fast
    path never needs them for a good line."""

    __slots__ = ("_cols", "_line", "_start", "counters", "values")

    def __init__(
        self,
        values: tuple[str, ...],
        counters: Counters | None = None,
        *,
        line: str = "",
        start: int = 0,
        cols: tuple[int, ...] | None = None,
    ) -> None:
        self.values = values
        self.counters = counters
        self._line = line
        self._start = start
        self._cols = cols

    @property
    def cols(self) -> tuple[int, ...]:
        if self._cols is None:
            self._cols = _columns(self._line, self._start)
        return self._cols

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Words):
            return NotImplemented
        return (self.values, self.counters, self.cols) == (other.values, other.counters, other.cols)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Words({self.values!r}, {self.counters!r}, cols={self.cols!r})"


# ---------------------------------------------------------------- grammar of record


def _unescape(text: str) -> str:
    """``abc"x\\"y"`` → ``abcx"y``: strip the quotes, resolve escapes inside them."""
    quote = text.find('"')
    if quote < 0:
        return text
    return text[:quote] + re.sub(r"\\(.)", r"\1", text[quote + 1 : -1])


@cache
def _grammar() -> pp.ParserElement:
    import pyparsing as pp

    ws = _SPACE
    counters = pp.Regex(r"\[(?P<p>[0-9]+):(?P<b>[0-9]+)\]").set_whitespace_chars(ws)
    quoted = pp.Regex(r'[^ \t"]*"(?:[^"\\]|\\.)*"').set_whitespace_chars(ws)
    bare = pp.Regex(r'[^ \t"]+').set_whitespace_chars(ws)
    for part in (quoted, bare):
        part.set_parse_action(lambda s, loc, t: [(_unescape(t[0]), loc + 1)])
    word = (quoted | bare).set_whitespace_chars(ws)
    end = pp.StringEnd().set_whitespace_chars(ws)
    grammar = pp.Opt(counters("counters")) + pp.Group(pp.ZeroOrMore(word))("words") + end
    return grammar.parse_with_tabs()  # columns count a tab as one character


def tokenize_grammar(line: str) -> Words:
    """Tokenise with the pyparsing grammar (slow; the reference for ``tokenize``)."""
    import pyparsing as pp

    try:
        result = _grammar().parse_string(line, parse_all=True)
    except pp.ParseBaseException as exc:
        raise _quote_error(line, exc.loc) from None
    counters = None
    if "counters" in result:
        match = _COUNTERS_RE.match(line)
        assert match is not None
        counters = _counters(match)
    pairs = list(result["words"])
    return Words(tuple(v for v, _ in pairs), counters, cols=tuple(c for _, c in pairs))


def _quote_error(line: str, loc: int) -> LineError:
    """Only an unterminated quote can stop the grammar; point at that quote."""
    quote = line.find('"', loc)
    at = quote if quote >= 0 else loc
    return LineError(at + 1, "unterminated quote")


# ---------------------------------------------------------------- fast path

_COUNTERS_RE = re.compile(r"[ \t]*\[([0-9]+):([0-9]+)\]")
_WORD_RE = re.compile(r'[ \t]*+(?:([^ \t"]*+"[^"\\]*+(?:\\.[^"\\]*+)*+")|([^ \t"]++))')
_ESCAPE_RE = re.compile(r"\\(.)")


def tokenize(line: str) -> Words:
    """Fast equivalent of ``tokenize_grammar``; raises LineError on a bad quote."""
    counters = None
    start = 0
    if "[" in line:
        match = _COUNTERS_RE.match(line)
        if match:
            counters = _counters(match)
            start = match.end()
    text = line[start:] if start else line
    if '"' not in text:
        if "\t" in text:
            text = text.replace("\t", " ")
        return Words(tuple([w for w in text.split(" ") if w]), counters, line=line, start=start)
    # One word after the other, stopping at the first that cannot be read (an unclosed
    # quote): ``findall`` would skip it and try again at every later character.
    values: list[str] = []
    word = _WORD_RE.match
    pos = start
    while (found := word(line, pos)) is not None:
        quoted = found[1]
        values.append(_unquote(quoted) if quoted is not None else found[2])
        pos = found.end()
    if line[pos:].strip(_SPACE):
        raise _quote_error(line, pos)
    return Words(tuple(values), counters, line=line, start=start)


def _counters(match: re.Match[str]) -> Counters:
    """``[packets:bytes]``, each 0 to 2^64-1."""
    found = read_counters(match[1], match[2])
    if found is None:
        raise LineError(match.start(1) + 1, BAD_COUNTERS)
    return found


def _unquote(word: str) -> str:
    cut = word.index('"')
    return word[:cut] + unescape(word[cut + 1 : -1])


def unescape(inner: str) -> str:
    """The text between a pair of quotes, where ``\\x`` stands for ``x``."""
    return _ESCAPE_RE.sub(r"\1", inner) if "\\" in inner else inner


def _columns(line: str, start: int) -> tuple[int, ...]:
    """1-based column of each word (the slow walk, also used to place quote errors)."""
    cols: list[int] = []
    pos, end = start, len(line)
    while pos < end:
        match = _WORD_RE.match(line, pos)
        if match is None:
            if line[pos:].strip(_SPACE) == "":
                break
            raise _quote_error(line, pos)
        cols.append(match.start(1 if match.group(1) is not None else 2) + 1)
        pos = match.end()
    return tuple(cols)
