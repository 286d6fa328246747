"""Reading kube-proxy's table without pyparsing: kp_shapes.py's written-out rule shapes,
kp_plain.py's chain headers and set bodies and ``fast_command``'s ``add table`` give the
grammar's very answers (every shape, generated texts, odd ones declined), and a
kube-proxy table is read, lazily or whole, without importing pyparsing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpsim.formats.common import Sink
from kpsim.formats.nft import grammar, kp_shapes
from kpsim.formats.nft.blocks import _set_body, parse_chain_spec, parse_command
from kpsim.formats.nft.grammar import GrammarError
from kpsim.formats.nft.kp_commands import NftReader, fast_command
from kpsim.formats.nft.kp_plain import plain_chain_spec, plain_set_body
from kpsim.formats.nft.kp_text import NftText

ROOT = Path(__file__).parent.parent


def test_the_written_out_keywords_are_the_grammars() -> None:
    grammar._rule_grammar()  # fills grammar._KEYWORDS
    assert kp_shapes.KEYWORDS == grammar._KEYWORDS


@pytest.mark.parametrize("shape", sorted(kp_shapes.SHAPES))
def test_each_written_out_shape_is_the_grammars_answer(shape: str) -> None:
    parsed = grammar.parse(grammar._rule_grammar(), shape, "statement")
    assert tuple((kind, len(words)) for kind, words in parsed) == kp_shapes.SHAPES[shape]
    assert tuple(grammar._class(w) for w in shape.split(" ")) == tuple(shape.split(" "))


def _answer(read: object, text: str) -> object:
    try:
        return read(text)  # type: ignore[operator]
    except GrammarError as exc:
        return f"{exc.offset}: {exc}"


_kind = st.sampled_from(["nat", "filter", "route", "Nat", "type", "a;b", ""])
_hook = st.sampled_from(["prerouting", "output", "input", "hook", "ingress", "x1"])
_prio = st.sampled_from(["-100", "0", "100", "dstnat", "dstnat - 10", "-", "1x", "+5", "--1"])
_policy = st.sampled_from(["", " policy accept ;", " policy drop;", " policy ;", " policy a b ;"])
_semi = st.sampled_from([" ;", ";", "", " ; ;"])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["{ ", "", "{", "  "]), _kind, _hook, _prio, _semi, _policy,
       st.sampled_from([" }", "", "}", " } }"]))  # fmt: skip
def test_plain_chain_headers_are_the_grammars_or_declined(
    head: str, kind: str, hook: str, prio: str, semi: str, policy: str, tail: str
) -> None:
    text = f"{head}type {kind} hook {hook} priority {prio}{semi}{policy}{tail}"
    plain = plain_chain_spec(text)
    if plain is not None:
        assert plain == _answer(parse_chain_spec, text), text


def test_kube_proxys_chain_headers_take_the_plain_path() -> None:
    for text in ("{ type nat hook prerouting priority -100 ; }",
                 "type filter hook input priority filter; policy accept;"):  # fmt: skip
        assert plain_chain_spec(text) == parse_chain_spec(text)


_item = st.sampled_from([
    "type ipv4_addr", "type ipv4_addr . inet_proto . inet_service : verdict",
    "type inet_proto . inet_service : verdict", "type ipv4_addr : ipv4_addr . inet_service",
    "type ipv4_addr x", "type", "typeof ip daddr", "flags dynamic,timeout", "flags interval",
    "flags dynamic, timeout", "flags", "timeout 10800s", "timeout 3h", "timeout 2h59m30s",
    "timeout 3hx", "timeout banana", "size 65535", "size x", 'comment "Active ClusterIPs"',
    'comment "a;b"', 'comment "q\\"x"', 'comment "', "comment x", "policy memory",
    "elements = { 1.2.3.4 }", "counter", "frob 1", "", ";",
])  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(_item, max_size=5), st.sampled_from([" ; ", ";", " ;", "; ", " "]),
       st.sampled_from(["", " ", " ; "]))  # fmt: skip
def test_plain_set_bodies_are_the_grammars_or_declined(
    items: list[str], sep: str, end: str
) -> None:
    text = " " + sep.join(items) + end
    plain = plain_set_body(text)
    if plain is not None:
        assert plain == _answer(_set_body, text), text


def test_kube_proxys_set_bodies_take_the_plain_path() -> None:
    for text in (" type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; ",
                 ' type ipv4_addr . inet_proto . inet_service : verdict ; comment "a b" ; ',
                 " type ipv4_addr ; size 65535 ;"):  # fmt: skip
        found = plain_set_body(text)
        assert found is not None and found == _set_body(text)


_word = st.sampled_from(["kube-proxy", "ip", "a/b", "x,y", "q;", "{", "t"])
_body = st.sampled_from(["", '{ comment "rules for kube-proxy" ; }', "{ }", "{ a }}", "{ a",
                         '{ a "b }', '{ comment "x\\"" ; }', "{ flags dormant ; }"])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["add", "delete", "flush", "create", "frob"]),
       st.sampled_from(["ip ", "ip6 ", "inet ", "bogus ", ""]), _word, _body)  # fmt: skip
def test_fast_add_table_is_the_grammars_or_declined(
    verb: str, family: str, name: str, body: str
) -> None:
    line = f"{verb} table {family}{name} {body}".rstrip()
    fast = fast_command(line)
    if fast is not None:
        assert fast == _answer(parse_command, line), line
    assert fast_command('add table ip kube-proxy { comment "rules for kube-proxy" ; }')


_NO_PYPARSING = """
import sys
from kpsim.formats.nft.kp_lazy import read_kube_proxy
from kpsim.formats.nft.kube_proxy import parse_kube_proxy
from kpsim.inputs import synth
from kpsim.inputs.synth.nft import render_kube_proxy_nft
cluster = synth.synth_large(30, 3, seed=5)
text = render_kube_proxy_nft(cluster, cluster.nodes[0])
for ruleset in (read_kube_proxy(text, "a"), read_kube_proxy(text, "b", lazy=True),
                parse_kube_proxy(text, "c")):
    assert not ruleset.diagnostics and ruleset.tables
    for table in ruleset.tables.values():
        assert sum(len(c.rules) for c in table.chains.values()) > 0
print("pyparsing" in sys.modules)
"""


def test_a_kube_proxy_table_is_read_without_pyparsing() -> None:
    out = subprocess.run([sys.executable, "-c", _NO_PYPARSING], capture_output=True, text=True,
                         check=True, cwd=ROOT)  # fmt: skip
    assert out.stdout.strip() == "False", out.stderr


_add_set_body = st.sampled_from([
    "{ type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }",
    '{ type ipv4_addr . inet_proto . inet_service : verdict ; comment "a" ; }',
    "{ type ipv4_addr ; frob ; }", "{ typo x ; }", "{ a", "{ a }}", "",
    '{ comment "x\\"" ; }', "{ timeout banana ; }", "  ",
])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["set", "map"]), st.sampled_from(["ip", "ip6", "inet", "bogus"]),
       _word, _word, _add_set_body)  # fmt: skip
def test_reading_an_add_set_line_by_split_is_the_command_path(
    what: str, family: str, table: str, name: str, body: str
) -> None:
    """NftReader.line's ``add set|map`` shortcut: the very tables and diagnostics the
    command path (fast_command or the grammar, then _command) gives."""
    line = f"add {what} {family} {table} {name} {body}"
    fast, slow = NftReader("x", Sink("x", False)), NftReader("x", Sink("x", False))
    fast.line(3, line)
    NftText.line(slow, 3, line)
    assert fast.tables == slow.tables
    assert fast.sink.items == slow.sink.items
