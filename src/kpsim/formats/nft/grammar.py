"""The pyparsing grammar of the nft language kpsim reads: the general path of the
kube-proxy nftables reader (kp_fast.py and NftReader.line take the hot shapes first).

    rule       := statement* END
    statement  := counter | comment | verdict | reject | nat | masquerade | log | notrack
                | set-update | mark-set | match
    match      := selector ("." selector)* [("and"|"&") NUM] [== | != | eq | ne] rhs
    selector   := ip saddr | meta l4proto | th dport | ct state | fib … type
                | numgen random mod N [offset N] | mark | iifname | …
    rhs        := vmap (@map | { k : v, … }) | @set | { e, … } | value ("," value)*
    nat        := (dnat|snat) [ip|ip6] to (ADDR[:PORT] | numgen … map { … }) flags
    mark-set   := [meta] mark set ([meta] mark (or|"|"|xor|"^"|and|"&") NUM | NUM)
    set-update := (update|add) @set { selector ("." selector)* }

    chain-spec := type WORD hook WORD [device WORD] priority PRIO [; policy WORD] [;]
    PRIO       := (NAME | INT) [(+|-) INT]          ``dstnat - 10`` → -110

A statement's tokens are nft's words (``kp_text.TOKEN``: a quoted string, a brace, a
comma, a semicolon or a run of other characters), each kept with its offset, so
kp_lower.Statement lowers the parsed statements and every error points at its column.
Once a statement's leading keyword is read the rest must follow (pyparsing's ``-``): a
bad address or a missing word is reported where it is, not where the statement began.

pyparsing costs ~50–100 µs a statement; kube-proxy's 10,000-service transaction has
~115k rules, ~99% of which kp_fast.py lowers without it. Built on first use, as
iptables/tokens.py's grammar: startup every command would otherwise pay.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyparsing as pp

#: One parsed statement: its kind and its words with their offsets in the rule text.
Parsed = tuple[str, tuple[tuple[str, int], ...]]

_WORD = r'[^\s{},;"]+'
_END = r'(?![^\s{},;"])'  # a keyword is a whole word: ``mark`` is not ``mark-for-…``
_WORD_AT = re.compile(r'"(?:[^"\\\n]|\\.)*"?|[{},;]|' + _WORD)
_ACTIONS = ("jump", "goto", "accept", "drop", "return", "continue", "reject", "dnat", "snat",
            "masquerade", "counter", "comment", "log", "notrack")  # fmt: skip
_TWO = {
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


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """A base chain's header: ``type nat hook prerouting priority dstnat; policy accept;``."""

    kind: str
    hook: str
    priority_text: str
    priority_offset: int
    policy: str | None


def _located(expr: pp.ParserElement) -> pp.ParserElement:
    """Each word with its offset: the column of every later error."""
    return expr.set_parse_action(lambda s, loc, t: [(t[0], loc)])


def _kw(*words: str) -> pp.ParserElement:
    import pyparsing as pp

    pattern = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return _located(pp.Regex(f"(?:{pattern}){_END}").set_name(" or ".join(repr(w) for w in words)))


@cache
def _rule_grammar() -> pp.ParserElement:
    import pyparsing as pp

    word = _located(pp.Regex(_WORD).set_name("a word"))
    quoted = _located(pp.Regex(r'"(?:[^"\\\n]|\\.)*"').set_name("a quoted string"))
    number = _located(pp.Regex(r"(?:0x[0-9a-fA-F]+|[0-9]+)" + _END).set_name("a number"))
    setref = _located(pp.Regex("@" + _WORD).set_name("a set name (@name)"))
    comma, dot = _located(pp.Literal(",")), _kw(".")
    lbrace, rbrace = _located(pp.Literal("{")), _located(pp.Literal("}").set_name("'}'"))
    value = ~_kw(*_ACTIONS) + (quoted | word).set_name("a value")

    braces = pp.Forward()
    braces.set_name("{ … }")
    element = pp.OneOrMore(quoted | braces | word).set_name("an element")
    braces <<= lbrace - pp.Opt(element + pp.ZeroOrMore(comma - pp.Opt(element))) + rbrace

    pairs = pp.MatchFirst([_kw(head) - _kw(*fields) for head, fields in _TWO.items()])
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
    to = (numgen + _kw("map") - braces) | word.copy().set_name("an address")
    to = to.set_name("an address or numgen … map { … }")
    nat = _kw("dnat", "snat") - pp.Opt(_kw("ip", "ip6")) + _kw("to") - to + flags
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
    """A rule's statements, each ``(kind, ((word, offset), …))``; GrammarError else."""
    import pyparsing as pp

    try:
        return list(_rule_grammar().parse_string(text, parse_all=True))
    except pp.ParseBaseException as exc:
        raise _error(text, exc.loc, str(exc.msg)) from None


def _error(text: str, loc: int, expected: str, what: str = "statement") -> GrammarError:
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


@cache
def _chain_grammar() -> pp.ParserElement:
    import pyparsing as pp

    word = pp.Regex(r"[^\s;{}]+").set_name("a word")
    integer = pp.Regex(r"-?[0-9]+").set_name("a number")
    name = pp.Regex(r"[a-z]+").set_name("a priority name")
    offset = pp.one_of("+ -") - pp.Regex(r"[0-9]+").set_name("a number")
    prio = pp.original_text_for((integer | name) + pp.Opt(offset)).set_name("a priority")
    head = pp.Keyword("type") - word("kind") - pp.Keyword("hook") - word("hook")
    head = head + pp.Opt(pp.Keyword("device") - word) - pp.Keyword("priority")
    head = head - pp.Located(prio)("priority")
    policy = pp.Keyword("policy") - word("policy")
    comment = pp.Keyword("comment") - pp.QuotedString('"', esc_char="\\")
    item = (head | policy | comment).set_name("type …, policy … or comment …")
    body = pp.Opt("{") + pp.OneOrMore(item + pp.Opt(";")) + pp.Opt("}")
    return body + pp.StringEnd().set_name("the end of the chain's header")


def parse_chain_spec(text: str) -> ChainSpec:
    """``type nat hook prerouting priority dstnat - 10; policy accept;`` (either form)."""
    import pyparsing as pp

    try:
        got = _chain_grammar().parse_string(text, parse_all=True)
    except pp.ParseBaseException as exc:
        raise _error(text, exc.loc, str(exc.msg), "chain header") from None
    start, prio, _ = got["priority"]
    policy = _get(got, "policy")
    return ChainSpec(got["kind"], got["hook"], prio[0].strip(), start, policy)


@dataclass(frozen=True, slots=True)
class Command:
    """One ``nft -f`` command: ``add set ip kube-proxy NAME { … }``. ``rest`` is what
    follows the object's name (a rule's statements, a ``{ … }`` body), at ``rest_offset``."""

    verb: str
    what: str
    family: str | None
    table: str | None
    name: str | None
    rest: str
    rest_offset: int


_VERBS = ("add", "create", "insert", "replace", "flush", "delete", "destroy")
_OBJECTS = ("table", "chain", "rule", "set", "map", "element", "ruleset")
FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")


@cache
def _command_grammar() -> pp.ParserElement:
    """``VERB OBJECT [FAMILY] TABLE [NAME] REST``; a ``{ … }`` body must be balanced and
    end the command (a rule's statements are parse_rule's)."""
    import pyparsing as pp

    def kw(words: tuple[str, ...]) -> pp.ParserElement:
        return pp.Regex(f"(?:{'|'.join(words)}){_END}").set_name(" or ".join(words))

    name = pp.Regex(_WORD).set_name("a name")
    family = kw(FAMILIES)("family") + pp.FollowedBy(name)
    quoted = pp.Regex(r'"(?:[^"\\\n]|\\.)*"').set_name("a quoted string")
    braces = pp.Forward()
    braces.set_name("{ … }")
    inside = pp.ZeroOrMore(quoted | braces | pp.Regex(r'[^\s{}"]+').set_name("a word"))
    braces <<= "{" - inside + pp.Literal("}").set_name("'}'")
    body = pp.Opt(pp.Located(braces)("body"))
    rest = pp.Located(pp.Regex(r".+").set_name("a statement"))("rest")
    ruleset = pp.Keyword("ruleset")("what") + pp.Opt(kw(FAMILIES)("family"))
    table = pp.Keyword("table")("what") - pp.Opt(family) + name("table") + body
    rule = pp.Keyword("rule")("what") - pp.Opt(family) + name("table") - name("name") - rest
    other = kw(("chain", "set", "map", "element"))("what") - pp.Opt(family) + name("table")
    obj = (ruleset | table | rule | other - name("name") + body).set_name(" or ".join(_OBJECTS))
    end = pp.StringEnd().set_name("the end of the command")
    return kw(_VERBS)("verb") - obj + end


def parse_command(text: str) -> Command:
    """``add chain ip kube-proxy x { type nat hook … ; }`` into its parts; GrammarError
    at the word the grammar could not read (a missing name, a brace never closed)."""
    import pyparsing as pp

    try:
        got = _command_grammar().parse_string(text, parse_all=True)
    except pp.ParseBaseException as exc:
        raise _error(text, exc.loc, str(exc.msg), "command") from None
    found = _get(got, "rest") if "rest" in got else _get(got, "body")
    start, end = (found[0], found[2]) if found is not None else (len(text), len(text))
    table = _get(got, "table")
    return Command(got["verb"], got["what"], _get(got, "family"), table, _get(got, "name"),
                   text[start:end], start)  # fmt: skip


def _get(got: pp.ParseResults, name: str) -> Any:
    """A named result or None (ParseResults.get is untyped)."""
    return got.get(name, None)  # type: ignore[no-untyped-call]


#: One attribute of a set or map: (what, value, offset). what: type (value: the key
#: selectors or types, then the value type or None), flags, comment, elements (the text
#: inside the braces), timeout (seconds), size, or ignored (policy, counter, …).
SetItem = tuple[str, object, int]


@cache
def _set_grammar() -> pp.ParserElement:
    """A set block's statements (``type …``, ``flags …``, ``elements = { … }``, …), one a
    line in ``nft list``, ``;``-separated in ``add set … { … }``."""
    import pyparsing as pp

    def at(kind: str, expr: pp.ParserElement, value: Callable[[Any], object]) -> pp.ParserElement:
        return pp.Located(expr).set_parse_action(lambda t: [(kind, value(list(t[1])), t[0])])

    word = pp.Regex(r'[^\s;{},:."]+|\.(?=\S)[^\s;{},:"]*').set_name("a word")
    key = pp.original_text_for(pp.OneOrMore(word)).set_name("a type")
    keys = pp.Group(key + pp.ZeroOrMore(pp.Suppress(".") - key))
    value = pp.original_text_for(key + pp.ZeroOrMore("." - key))  # ipv4_addr . inet_service
    value = pp.Opt(pp.Suppress(":") - value, None)
    typed = pp.Suppress(pp.Keyword("type") | pp.Keyword("typeof")) - keys + value
    flags = pp.Suppress(pp.Keyword("flags")) - pp.DelimitedList(word)
    quoted = pp.Regex(r'"(?:[^"\\\n]|\\.)*"').set_name("a quoted string")
    comment = pp.Suppress(pp.Keyword("comment")) - quoted
    body = pp.Regex(r'\{((?:[^{}"]|"(?:[^"\\\n]|\\.)*")*)\}').set_name("{ … }")
    body = body.set_parse_action(lambda t: [t[0][1:-1]])
    elements = pp.Suppress(pp.Keyword("elements")) - pp.Suppress("=") - body
    duration = pp.Regex(r"(?:[0-9]+(?:ms|[dhms]))+(?![^\s;])").set_name("a duration (3h)")
    number = pp.Regex(r"[0-9]+(?![^\s;])").set_name("a number")
    ignored = pp.one_of("policy gc-interval", as_keyword=True) - word
    items = [
        at("type", typed, lambda t: (tuple(t[0]), t[1])),
        at("flags", flags, tuple),
        at("comment", comment, lambda t: t[0][1:-1]),
        at("elements", elements, lambda t: t[0]),
        at("timeout", pp.Suppress(pp.Keyword("timeout")) - duration, lambda t: t[0]),
        at("size", pp.Suppress(pp.Keyword("size")) - number, lambda t: int(t[0])),
        at("ignored", ignored | pp.one_of("counter auto-merge", as_keyword=True), lambda t: None),
    ]
    item = pp.MatchFirst(items).set_name("type, flags, comment, elements, timeout or size")
    end = pp.StringEnd().set_name("';' or the end of the set statement")
    return pp.Opt(item) + pp.ZeroOrMore(pp.Suppress(";") + pp.Opt(item)) + end


def parse_set_body(text: str) -> tuple[SetItem, ...]:
    """The attributes of a set or map; GrammarError at the word it cannot read."""
    stripped = text.strip()
    if (
        stripped.startswith("elements = {")
        and stripped.endswith("}")
        and ";" not in stripped
        and stripped.count("{") == 1
        and stripped.count("}") == 1
    ):
        # a listing's element list (a big map's is one logical line of MBs), with no brace
        # but its own: the grammar's answer is the text between them; not kept in the cache
        start = text.index("{") + 1
        return (("elements", text[start : text.rindex("}")], text.index("elements")),)
    return _set_body(text)


@cache
def _set_body(text: str) -> tuple[SetItem, ...]:
    """Cached: kube-proxy gives every affinity set the same body (1,002 in the 10k bench)."""
    import pyparsing as pp

    try:
        return tuple(_set_grammar().parse_string(text, parse_all=True))
    except pp.ParseBaseException as exc:
        raise _error(text, exc.loc, str(exc.msg), "set statement") from None
