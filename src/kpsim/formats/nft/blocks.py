"""The structure of both forms of nft text kpsim reads, as pyparsing grammars (the
statements inside a rule are grammar.py's):

    command    := VERB OBJECT [FAMILY] TABLE [NAME] [REST]   ``add set ip kube-proxy s { … }``
    block      := (table [FAMILY] | chain | set | map) NAME "{" [INSIDE "}"]
    chain-spec := type WORD hook WORD [device WORD] priority PRIO [; policy WORD] [; comment "…"]
    PRIO       := (NAME | INT) [(+|-) INT]                   ``dstnat - 10`` → -110
    set-body   := [ITEM] (";" [ITEM])*    ITEM: type|typeof K (. K)* [: V (. V)*], flags A,B,
                  comment "…", elements = { … }, timeout 3h, size N, policy/gc-interval W,
                  counter, auto-merge

The general path of kp_text.py (``nft list``) and kp_commands.py (``nft -f``); their
str.split fast paths take kube-proxy's hot lines and are checked equal to these
(tests/test_nft_grammar.py). Each is built on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from kpsim.formats.nft.grammar import (
    FAMILIES,
    WORD,
    braces_and_inside,
    keywords,
    named,
    parse,
)

if TYPE_CHECKING:
    import pyparsing as pp


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """A base chain's header: ``type nat hook prerouting priority dstnat; policy accept;``."""

    kind: str
    hook: str
    priority_text: str
    priority_offset: int
    policy: str | None


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
    got = parse(_chain_grammar(), text, "chain header")
    start, prio, _ = got["priority"]
    policy = named(got, "policy")
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


@cache
def _command_grammar() -> pp.ParserElement:
    """``VERB OBJECT [FAMILY] TABLE [NAME] REST``; a ``{ … }`` body must be balanced and
    end the command (a rule's statements are parse_rule's)."""
    import pyparsing as pp

    kw = keywords
    name = pp.Regex(WORD).set_name("a name")
    family = kw(FAMILIES)("family") + pp.FollowedBy(name)
    braces, _ = braces_and_inside()
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
    got = parse(_command_grammar(), text, "command")
    found = named(got, "rest") if "rest" in got else named(got, "body")
    start, end = (found[0], found[2]) if found is not None else (len(text), len(text))
    table = named(got, "table")
    return Command(got["verb"], got["what"], named(got, "family"), table, named(got, "name"),
                   text[start:end], start)  # fmt: skip


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


@lru_cache(maxsize=256)  # bounded: a body may be a big element list with a quote in it
def _set_body(text: str) -> tuple[SetItem, ...]:
    """Cached: kube-proxy gives every affinity set the same body (1,002 in the 10k bench)."""
    return tuple(parse(_set_grammar(), text, "set statement"))


@dataclass(frozen=True, slots=True)
class Block:
    """A block's first line in ``nft list``: ``table ip kube-proxy {``, ``chain x {``, or
    a block on one line (``chain a { type …; policy accept; }``: ``inner`` is its inside)."""

    what: str
    family: str | None
    name: str
    inner: str | None
    inner_offset: int


@cache
def _block_grammar() -> pp.ParserElement:
    import pyparsing as pp

    name = pp.Regex(WORD).set_name("a name")
    family = keywords(FAMILIES)("family") + pp.FollowedBy(name)
    _, inside = braces_and_inside()
    table = pp.Keyword("table")("what") - pp.Opt(family) + name("name")
    other = keywords(("chain", "set", "map"))("what") - name("name")
    closed = pp.Located(pp.original_text_for(inside))("inner") + pp.Literal("}")
    end = pp.StringEnd().set_name("the end of the line")
    return (table | other) - pp.Literal("{").set_name("'{'") + pp.Opt(closed) + end


def parse_block(text: str) -> Block:
    """``chain NAME {`` and the like; GrammarError at the word it cannot read."""
    got = parse(_block_grammar(), text, "block header")
    inner = named(got, "inner")
    text_inner, at = (inner[1][0], inner[0]) if inner is not None else (None, len(text))
    return Block(got["what"], named(got, "family"), got["name"], text_inner, at)
