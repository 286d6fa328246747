"""The pyparsing grammar of nft rule statements kpsim reads: the general path of the
kube-proxy nftables reader (kp_fast.py takes the hot shapes first); blocks.py holds the
grammar of the text's structure (commands, blocks, chain headers, set bodies).

    rule       := statement* END
    statement  := counter | comment | verdict | reject | nat | masquerade | log | notrack
                | set-update | mark-set | match
    match      := selector ("." selector)* [("and"|"&") NUM] [== | != | eq | ne] rhs
    selector   := ip saddr | meta l4proto | th dport | ct state | fib … type
                | numgen random mod N [offset N] | mark | iifname | …
    rhs        := vmap (@map | { k : v, … }) | @set | { e, … } | value ("," value)*
    nat        := (dnat|snat) [ip|ip6] [addr . port] to (ADDR[:PORT] | ADDR . PORT
                | numgen … map { … }) flags
    mark-set   := [meta] mark set ([meta] mark (or|"|"|xor|"^"|and|"&") NUM | NUM)
    set-update := (update|add) @set { selector ("." selector)* }

A statement's tokens are nft's words (a quoted string, a brace, a comma, a semicolon or
a run of other characters, as ``kp_text.TOKEN``), each kept with its offset, so
kp_lower.Statement lowers the parsed statements and every error points at its column.
Once a statement's leading keyword is read the rest must follow (pyparsing's ``-``): a
bad address or a missing word is reported where it is, not where the statement began.

pyparsing costs 0.2–0.4 ms a rule, so a rule is parsed once per shape (parse_rule), and
of the 114,605 rules of kube-proxy's 10,000-service transaction kp_fast.py lowers all but
12 without it. Built on first use, as iptables/tokens.py's grammar: startup every command
would otherwise pay.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from kpsim.formats.nft.kp_shapes import KEYWORDS, SHAPES

if TYPE_CHECKING:
    import pyparsing as pp

#: One parsed statement: its kind and its words with their offsets in the rule text.
Parsed = tuple[str, tuple[tuple[str, int], ...]]

WORD = r'[^\s{},;"]+'
END = r'(?![^\s{},;"])'  # a keyword is a whole word: ``mark`` is not ``mark-for-…``
_WORD_AT = re.compile(r'"(?:[^"\\\n]|\\.)*"?|[{},;]|' + WORD)
#: Words that start a statement and are never a value (``dnat``/``snat`` are: ``ct status
#: dnat``), so a missing value is reported where it is missing.
_ACTIONS = ("jump", "goto", "accept", "drop", "return", "continue", "reject", "masquerade",
            "counter", "comment", "log", "notrack")  # fmt: skip
#: Selectors of two words (``ip daddr``, ``th dport``): the grammar's and kp_lower's one list.
TWO_WORDS = {
    "ip": ("saddr", "daddr", "protocol"),
    "ip6": ("saddr", "daddr", "nexthdr"),
    "meta": ("l4proto", "mark", "iifname", "oifname", "nfproto", "iif", "oif"),
    "th": ("dport", "sport"),
    "tcp": ("dport", "sport"),
    "udp": ("dport", "sport"),
    "sctp": ("dport", "sport"),
    "ct": ("state", "status", "mark", "direction"),
}
_ONE = ("mark", "iifname", "oifname", "l4proto")


class GrammarError(ValueError):
    """What the grammar could not read and its offset in the text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def _located(expr: pp.ParserElement) -> pp.ParserElement:
    """Each word with its offset: the column of every later error."""
    return expr.set_parse_action(lambda s, loc, t: [(t[0], loc)])


def _kw(*words: str) -> pp.ParserElement:
    import pyparsing as pp

    _KEYWORDS.update(words)
    pattern = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return _located(pp.Regex(f"(?:{pattern}){END}").set_name(" or ".join(repr(w) for w in words)))


@cache
def _rule_grammar() -> pp.ParserElement:
    import pyparsing as pp

    word = _located(pp.Regex(WORD).set_name("a word"))
    quoted = _located(pp.Regex(r'"(?:[^"\\\n]|\\.)*"').set_name("a quoted string"))
    number = _located(pp.Regex(r"(?:0x[0-9a-fA-F]+|[0-9]+)" + END).set_name("a number"))
    setref = _located(pp.Regex("@" + WORD).set_name("a set name (@name)"))
    comma, dot = _located(pp.Literal(",")), _kw(".")
    lbrace, rbrace = _located(pp.Literal("{")), _located(pp.Literal("}").set_name("'}'"))
    value = ~_kw(*_ACTIONS) + (quoted | word).set_name("a value")

    braces = pp.Forward()
    braces.set_name("{ … }")
    element = pp.OneOrMore(quoted | braces | word).set_name("an element")
    braces <<= lbrace - pp.Opt(element + pp.ZeroOrMore(comma - pp.Opt(element))) + rbrace

    pairs = pp.MatchFirst([_kw(head) - _kw(*fields) for head, fields in TWO_WORDS.items()])
    fib = _kw("fib") - pp.OneOrMore(~_kw("type") + word) + _kw("type")
    numgen = _kw("numgen") - _kw("random") - _kw("mod") - number
    numgen = numgen + pp.Opt(_kw("offset") - number)
    selector = (pairs | _kw(*_ONE) | fib | numgen).set_name("an nft expression")
    concat = selector + pp.ZeroOrMore(dot - selector)

    relop = _kw("==", "!=", "eq", "ne")
    rhs = (_kw("vmap") - (setref | braces)) | setref | braces | value + pp.ZeroOrMore(comma - value)
    mask = _kw("and", "&") - number
    match = concat - pp.Opt(mask) + pp.Opt(relop) + rhs.set_name("a value, @set or { … }")

    flags = pp.ZeroOrMore(_kw("random", "fully-random", "persistent") | comma)
    # ``dnat ip addr . port to A . P`` (a map's layout): kp_lower checks the pair is whole
    pair = pp.Opt(_kw("addr") + pp.Opt(dot + pp.Opt(_kw("port"))))
    address = word + pp.Opt(dot + word)
    to = (numgen + _kw("map") - braces) | address.set_name("an address")
    to = to.set_name("an address or numgen … map { … }")
    nat = _kw("dnat", "snat") - pp.Opt(_kw("ip", "ip6")) + pair + _kw("to") - to + flags
    mark = _kw("mark") | _kw("meta") + _kw("mark")
    change = mark - _kw("or", "|", "xor", "^", "and", "&") - number
    mark_set = mark + _kw("set") - (change | number)
    update = _kw("update", "add") + setref - lbrace - concat - rbrace
    stop = _kw("comment", "counter")
    statements = {
        "counter": _kw("counter") + pp.ZeroOrMore(_kw("packets", "bytes") - number),
        "comment": _kw("comment") - (quoted | word),
        "verdict": (_kw("jump", "goto") - word) | _kw("accept", "drop", "return", "continue"),
        "reject": _kw("reject") + pp.Opt(_kw("with") - pp.OneOrMore(~stop + word)),
        "nat": nat,
        "masquerade": _kw("masquerade") + flags,
        "log": _kw("log") + pp.ZeroOrMore(_kw("prefix", "level", "group", "flags") - value),
        "notrack": _kw("notrack"),
        "update": update,
        "mark-set": mark_set,
        "match": match,
    }
    alternatives = [pp.Group(e).set_parse_action(_kind(k)) for k, e in statements.items()]
    statement = pp.MatchFirst(alternatives).set_name("a statement")
    return pp.ZeroOrMore(statement) + pp.StringEnd().set_name("the end of the rule")


def _kind(kind: str) -> Callable[[pp.ParseResults], list[Parsed]]:
    """A statement's words under its kind (a closure: pyparsing counts a lambda's
    parameters, defaults included, to choose how to call it)."""
    return lambda t: [(kind, tuple(t[0]))]


def parse_rule(text: str) -> list[Parsed]:
    """A rule's statements, each ``(kind, ((word, offset), …))``; GrammarError else.

    Parsed once per shape: kube-proxy writes the same rule for every service with other
    addresses, ports and names (``ip daddr A tcp dport P ip saddr != C jump X``), and
    pyparsing takes ~0.3 ms a rule (a 10k-service table: 3 s a per-service shape). The
    grammar's terminals match whole words (kp_text.TOKEN's), each by being one of its
    keywords, a number, an ``@name``, a quoted string or any other word; so a rule parses
    as its shape does, the shape being its words with every non-keyword replaced by one
    of its class (``ip daddr w tcp dport 0 …``). A shape that does not parse, or text
    the word split cannot vouch for, is parsed as it is (errors are always the text's).
    kube-proxy's shapes are answered from kp_shapes.py: no grammar built, no pyparsing."""
    words = _words(text)
    if words is not None:
        shape = tuple(_class(w) for w, _ in words)
        counts = SHAPES.get(" ".join(shape)) or _SHAPES.get(shape)
        if counts is None and len(_SHAPES) < _MAX_SHAPES:
            try:
                parsed = parse(_rule_grammar(), " ".join(shape), "statement")
                counts = _SHAPES[shape] = tuple((k, len(ws)) for k, ws in parsed)
            except GrammarError:
                counts = _SHAPES[shape] = ()  # parse the text itself: its error
        if counts:
            out, i = [], 0
            for kind, n in counts:
                out.append((kind, tuple(words[i : i + n])))
                i += n
            return out
    return list(parse(_rule_grammar(), text, "statement"))


_KEYWORDS: set[str] = set()  # every word the rule grammar names (filled as it is built)
_SHAPES: dict[tuple[str, ...], tuple[tuple[str, int], ...]] = {}
_MAX_SHAPES = 4096
_PUNCTUATION = frozenset("{},;")
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[{},;]|' + WORD)
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|[0-9]+")
#: Possessive throughout: a text it does not cover fails in linear time (with backtracking
#: a long word followed by a stray quote took minutes, every split of the word tried).
_COVERED = re.compile(r'(?:[ \t\r\n]*+(?:"(?:[^"\\\n]|\\.)*+"|[{},;]|[^\s{},;"]++))*+[ \t\r\n]*+')


def _words(text: str) -> list[tuple[str, int]] | None:
    """The words and offsets, or None if something between them is not pyparsing's
    whitespace (an unterminated quote, a form feed): the text is then parsed as it is."""
    if _COVERED.fullmatch(text) is None:
        return None
    return [(m.group(), m.start()) for m in _TOKEN.finditer(text)]


def _class(word: str) -> str:
    """The word itself if the grammar tells it apart (a keyword, a brace, a comma), else
    a stand-in every terminal takes or refuses as it does the word."""
    if word in KEYWORDS or word in _PUNCTUATION:  # KEYWORDS: _KEYWORDS, written out
        return word
    if word[0] == '"':
        return '"q"'
    if word[0] == "@" and len(word) > 1:
        return "@s"
    return "0" if _NUMBER.fullmatch(word) else "w"


#: Braces nested deeper are an error before pyparsing sees them: its recursion would end
#: in a RecursionError, a traceback (kube-proxy nests two at most).
MAX_NESTING = 16


def parse(grammar: pp.ParserElement, text: str, what: str) -> pp.ParseResults:
    """``grammar`` over all of ``text``; a GrammarError, never pyparsing's, else."""
    import pyparsing as pp

    if text.count("{") > MAX_NESTING:
        _check_nesting(text)
    try:
        return grammar.parse_string(text, parse_all=True)
    except pp.ParseBaseException as exc:
        raise grammar_error(text, exc.loc, str(exc.msg), what) from None


def _check_nesting(text: str) -> None:
    depth, quoted, escaped = 0, False, False
    for i, ch in enumerate(text):
        if quoted:
            escaped, quoted = ch == "\\" and not escaped, quoted and (ch != '"' or escaped)
        elif ch == '"':
            quoted = True
        elif ch == "{":
            depth += 1
            if depth > MAX_NESTING:
                raise GrammarError(f"braces nested more than {MAX_NESTING} deep", i)
        elif ch == "}":
            depth -= 1


def grammar_error(text: str, loc: int, expected: str, what: str = "statement") -> GrammarError:
    """pyparsing's failure as kpsim says it: the word at the column and what was due."""
    while loc < len(text) and text[loc].isspace():
        loc += 1
    found = _WORD_AT.match(text, loc)
    if found is None:
        return GrammarError(f"{what} ends too early ({expected.lower()})", len(text))
    word = found.group()
    if word.startswith('"') and (len(word) == 1 or not word.endswith('"')):
        return GrammarError("unterminated quote", loc)
    if expected.startswith(("Expected the end of the rule", "Expected a statement")):
        return GrammarError(f"nft statement {word!r} not understood", loc)
    if expected.startswith("Expected ';' or the end of the set statement"):
        return GrammarError(f"set statement {word!r} not understood", loc)
    return GrammarError(f"{word!r} not understood: {expected.lower()}", loc)


def keywords(words: tuple[str, ...]) -> pp.ParserElement:
    import pyparsing as pp

    return pp.Regex(f"(?:{'|'.join(words)}){END}").set_name(" or ".join(words))


FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")


def braces_and_inside() -> tuple[pp.ParserElement, pp.ParserElement]:
    """``{ … }`` balanced, quotes opaque; and what may stand inside it."""
    import pyparsing as pp

    quoted = pp.Regex(r'"(?:[^"\\\n]|\\.)*"').set_name("a quoted string")
    braces = pp.Forward()
    braces.set_name("{ … }")
    inside = pp.ZeroOrMore(quoted | braces | pp.Regex(r'[^\s{}"]+').set_name("a word"))
    braces <<= "{" - inside + pp.Literal("}").set_name("'}'")
    return braces, inside


def named(got: pp.ParseResults, name: str) -> Any:
    """A named result or None (ParseResults.get is untyped)."""
    return got.get(name, None)  # type: ignore[no-untyped-call]
