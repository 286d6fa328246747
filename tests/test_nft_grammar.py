"""The nft grammar (formats/nft/grammar.py, blocks.py) is the reader's general path: it reads every
rule and command of every shipped capture, the hand-written fast paths agree with it rule
by rule and command by command (fixtures and hypothesis), and what it cannot read is a
diagnostic at the right line and column, or exit 2 with ``path:line:col:`` when strict."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from kpsim.cli.main import main as cli
from kpsim.errors import ParseError
from kpsim.formats import parse_text
from kpsim.formats.common import Sink
from kpsim.formats.nft import grammar
from kpsim.formats.nft.blocks import (
    _set_body,
    parse_block,
    parse_chain_spec,
    parse_command,
    parse_set_body,
)
from kpsim.formats.nft.grammar import GrammarError, parse_rule
from kpsim.formats.nft.kp_commands import NftReader, fast_command
from kpsim.formats.nft.kp_fast import fast_lower
from kpsim.formats.nft.kp_lower import Statement, StatementError
from kpsim.formats.nft.kp_text import NftSet, _block
from kpsim.formats.nft.kube_proxy import parse_kube_proxy
from kpsim.inputs import synth
from kpsim.inputs.synth.nft import render_kube_proxy_nft

ROOT = Path(__file__).parent.parent
CAPTURES = sorted((ROOT / "fixtures" / "nftables").glob("**/*.nft")) + sorted(
    (ROOT / "tests" / "data" / "kube-proxy-nft").glob("*.nft")
)


def _texts() -> list[tuple[str, str]]:
    seed = synth.seed_workshop()
    big = synth.synth_large(40, 3, seed=7)
    out = [(str(p.relative_to(ROOT)), p.read_text()) for p in CAPTURES]
    out += [(f"seed {n.name}", render_kube_proxy_nft(seed, n)) for n in seed.nodes]
    return out + [(f"synth {n.name}", render_kube_proxy_nft(big, n)) for n in big.nodes[:2]]


TEXTS = _texts()
IDS = [name for name, _ in TEXTS]


@pytest.mark.parametrize("name, text", TEXTS, ids=IDS)
def test_the_grammar_reads_every_rule_and_the_fast_path_agrees(name: str, text: str) -> None:
    reader = NftReader(name, Sink(name, False))  # some dumps are excerpts (known diagnostics)
    reader.read(text)
    table = reader.tables[("ip", "kube-proxy")]
    rules = [r for c in table.chains.values() for _, _, r in c.rules]
    assert len(rules) > 5
    kinds = set()
    for rule in rules:
        parsed = parse_rule(rule)
        kinds |= {kind for kind, _ in parsed}
        words = [w for _, ws in parsed for w in ws]
        assert all(rule[o : o + len(w)] == w for w, o in words), rule  # offsets are exact
        general = Statement(rule, table.sets).read()
        fast = fast_lower(rule, table.sets)
        assert fast is None or fast == general, rule
    assert {"match", "verdict"} <= kinds


@pytest.mark.parametrize("name, text", TEXTS, ids=IDS)
def test_every_command_line_is_the_grammars_and_fast_command_agrees(name: str, text: str) -> None:
    commands = [line for line in text.splitlines() if line.split(" ", 1)[0] in ("add", "flush")]
    if not commands:  # an ``nft list ruleset`` capture: its chain headers instead
        specs = [line.strip() for line in text.splitlines() if " hook " in line]
        assert specs and all(parse_chain_spec(s).hook for s in specs)
        return
    for line in commands:
        general = parse_command(line)
        fast = fast_command(line)
        assert fast is None or fast == general, line
        assert general.rest == line[general.rest_offset :].rstrip()
    assert sum(fast_command(line) is not None for line in commands) > 0


@pytest.mark.parametrize("name, text", TEXTS, ids=IDS)
def test_set_bodies_are_the_grammars_and_the_element_shortcut_agrees(name: str, text: str) -> None:
    bodies = [line[line.index("{") + 1 : line.rindex("}")] for line in text.splitlines()
              if line.startswith(("add set ", "add map "))]  # fmt: skip
    lines = [line.strip() for line in text.splitlines()]
    bodies += [line for line in lines if line.startswith(("type", "flags", "timeout", "size"))]
    listed = [line for line in lines if line.startswith("elements = {") and line.endswith("}")]
    assert bodies or listed
    for body in bodies:
        assert parse_set_body(body) == _set_body(body)
    for line in listed:
        ((what, inner, at),) = _set_body(line)
        assert parse_set_body(line) == ((what, inner, at),) and what == "elements"


@given(
    st.sampled_from(["table", "chain", "set", "map", "rule"]),
    st.sampled_from(["", "ip ", "inet ", "bogus "]),
    st.sampled_from(["kube-proxy", "a/b__1.2.3.4/80", "x;y", "{", "a b"]),
    st.sampled_from([" {", "", " { }", " { type ipv4_addr ; }", " { jump x", " {{"]),
)
def test_block_headers_by_split_are_the_grammars(what: str, fam: str, name: str, end: str) -> None:
    line = f"{what} {fam}{name}{end}"
    fast = _block(line.split(), line)
    try:
        general = parse_block(line)
    except GrammarError:
        assert fast is None, line
        return
    assert fast is None or fast == general
    if fast is not None:
        assert general.inner is None


def test_every_listing_block_header_is_read_by_split_as_by_the_grammar() -> None:
    heads = [line.strip() for _, t in TEXTS for line in t.splitlines()
             if line.strip().startswith(("table ", "chain ", "set ", "map "))]  # fmt: skip
    assert len(heads) > 20
    for head in heads:
        assert _block(head.split(), head) == parse_block(head), head


_element = st.sampled_from(["10.0.0.1", "tcp . 80 : goto x", '1.1.1.1 comment "a}"', "{", ""])


@given(st.lists(_element, max_size=4), st.sampled_from(["", " ", "; timeout 3h", "}", " {"]))
def test_the_element_list_shortcut_is_the_grammars_or_declines(items: list[str], end: str) -> None:
    text = "elements = { " + ", ".join(items) + " }" + end
    try:
        general = _set_body(text)
    except GrammarError:
        general = None
    try:
        fast = parse_set_body(text)
    except GrammarError:
        fast = None
    assert fast == general


def _direct(text: str) -> list[grammar.Parsed] | str:
    """The grammar over the text itself (no shape cache), or its error."""
    try:
        return list(grammar.parse(grammar._rule_grammar(), text, "statement"))
    except GrammarError as exc:
        return f"{exc.offset}: {exc}"


def _cached(text: str) -> list[grammar.Parsed] | str:
    try:
        return parse_rule(text)
    except GrammarError as exc:
        return f"{exc.offset}: {exc}"


@pytest.mark.parametrize("name, text", TEXTS, ids=IDS)
def test_a_rule_parses_as_its_shape_does(name: str, text: str) -> None:
    reader = NftReader(name, Sink(name, False))
    reader.read(text)
    for table in reader.tables.values():
        for chain in table.chains.values():
            for _, _, rule in chain.rules:
                assert _cached(rule) == _direct(rule), rule


# ------------------------------------------------------------------ generated statements

_SETS = {
    "aff": NftSet("aff", 0, False, ("ipv4_addr",), flags={"dynamic", "timeout"}, timeout=10800),
    "plain": NftSet("plain", 0, False, ("ipv4_addr",)),
    "service-ips": NftSet("service-ips", 0, True, ("ipv4_addr", "inet_proto", "inet_service"),
                          value="verdict", elements=[(0, 0, "10.0.0.1 . tcp . 80 : goto x")]),
}  # fmt: skip
_addr = st.sampled_from(["10.0.0.1", "10.0.0.0/8", "10.0.0.300", "::1", "fd00::1", "dead", "@aff"])
_name = st.sampled_from(["endpoint-X-ns/a/tcp/p__10.0.0.1/80", "mark-for-masquerade", "x"])
_comment = st.sampled_from(['"masquerade local traffic"', '"a, {b}"', '"q\\"x"', "plain", '"'])
_statement = st.one_of(
    st.builds("{} {}".format, st.sampled_from(["jump", "goto"]), _name),
    st.sampled_from(["accept", "drop", "return", "counter", "counter packets 1 bytes 2"]),
    st.builds("{} {}".format, st.sampled_from(["ip saddr", "ip6 saddr", "ip daddr"]), _addr),
    st.builds(
        "fib {} type {}".format,
        st.sampled_from(["saddr", "daddr"]),
        st.sampled_from(["local", "unicast", "jump", "banana"]),
    ),
    st.builds("comment {}".format, _comment),
    st.sampled_from(["ct state new", "ct state established,related", "meta l4proto tcp"]),
    st.sampled_from(["tcp dport 80", "th dport { 80, 443 }", "tcp dport 99999", "mark set"]),
    st.sampled_from(["meta mark set meta mark | 0x4000", "mark set mark xor 0x4000"]),
    st.sampled_from(["update @aff { ip saddr }", "update @aff { ip daddr }", "update aff"]),
    st.sampled_from(["ip daddr . meta l4proto . th dport vmap @service-ips", "masquerade"]),
    st.builds("meta l4proto tcp dnat to {}:80".format, _addr),
    st.builds(
        "ip daddr {} {}ip saddr != {} jump mark-for-masquerade".format,
        _addr,
        st.sampled_from(["", "tcp dport 80 ", "udp dport 1-2 ", "tcp dport x ", "th dport 8 "]),
        _addr,
    ),
    st.builds(
        "numgen random mod {} vmap {{ 0 : goto a, 1 : goto {} }}".format,
        st.sampled_from(["2", "0", "x"]),
        _name,
    ),
    st.sampled_from(["reject", "reject with icmp type port-unreachable", "{", "}", "frob"]),
)
_rule = st.lists(_statement, min_size=1, max_size=4).map(" ".join)


@settings(max_examples=500, deadline=None)
@given(_rule)
def test_generated_rules_lower_alike_through_the_fast_path_and_the_grammar(text: str) -> None:
    fast = fast_lower(text, _SETS)
    try:
        general = Statement(text, _SETS).read()
    except StatementError as exc:
        assert 0 <= exc.offset <= len(text)
        assert fast is None, f"the fast path took {text!r}; the grammar says {exc}"
        return
    assert fast is None or fast == general


@settings(max_examples=300, deadline=None)
@given(_rule)
def test_a_generated_rule_parses_as_its_shape_does(text: str) -> None:
    assert _cached(text) == _direct(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=' {},;.:@"\\0123456789abcdijmnoprstuvxy-/|!=&\t\x0c', max_size=50))
def test_the_grammar_reads_anything_or_names_a_column(text: str) -> None:
    assert _cached(text) == _direct(text)
    try:
        parsed = parse_rule(text)
    except GrammarError as exc:
        assert 0 <= exc.offset <= len(text)
        return
    assert all(text[o : o + len(w)] == w for _, ws in parsed for w, o in ws)


_word = st.sampled_from(["kube-proxy", "service-ips", "a/b__1.2.3.4/80", "x,y", "q;", "@s", "{"])
_body = st.sampled_from(["", "{ type ipv4_addr ; }", "{ 1.2.3.4 : goto x }", "{ a }}", "{ a",
                         '{ comment "x" ; }', "{ type nat hook input priority 0 ; }",
                         '{ a "b }', '{ a "b\\" c" }',
                         '{ 1.1.1.1 comment "n/s" : goto x }'])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["add", "delete", "flush", "create", "frob"]),
    st.sampled_from(["chain", "set", "map", "element", "table", "rule"]),
    st.sampled_from(["ip", "ip6", "inet", "bogus"]),
    _word,
    _word,
    _body,
)
def test_fast_command_is_the_grammars_or_declines(
    verb: str, what: str, family: str, table: str, name: str, body: str
) -> None:
    line = f"{verb} {what} {family} {table} {name} {body}".rstrip()
    fast = fast_command(line)
    try:
        general = parse_command(line)
    except GrammarError:
        assert fast is None, f"fast_command took {line!r}"
        return
    assert fast is None or fast == general


def test_named_priorities_and_offsets() -> None:
    spec = parse_chain_spec("type filter hook prerouting priority dstnat - 10; policy accept;")
    assert (spec.kind, spec.hook, spec.priority_text, spec.policy) == (
        "filter",
        "prerouting",
        "dstnat - 10",
        "accept",
    )
    rs = parse_text(
        "table ip kube-proxy {\n"
        "\tchain a {\n\t\ttype filter hook prerouting priority dstnat - 10; policy accept;\n\t}\n"
        "\tchain b {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t}\n}\n",
        "p.nft",
    )
    assert rs.diagnostics == ()
    assert [r.target.chain for r in rs.chain("mangle", "PREROUTING").rules] == ["a"]  # type: ignore[union-attr]


# ------------------------------------------------------------------ errors

_HEAD = (
    "add table ip kube-proxy\n"
    "add chain ip kube-proxy services\n"
    "add map ip kube-proxy m { type ipv4_addr : verdict ; }\n"
)
_RULE = "add rule ip kube-proxy services "

#: (name, bad line 4, column, words of the message)
ERRORS = [
    ("unknown statement", _RULE + "ip daddr 10.0.0.1 frobnicate 3 jump x", 51, "'frobnicate'"),
    ("bad address", _RULE + "ip daddr 10.0.0.300 accept", 42, "address '10.0.0.300'"),
    ("bad dnat address", _RULE + "meta l4proto tcp dnat to 10.0.0.999:80", 58, "dnat"),
    ("bad port", _RULE + "tcp dport 99999 accept", 43, "port '99999'"),
    ("bad selector", _RULE + "ip frob 1.2.3.4 accept", 36, "'saddr' or 'daddr'"),
    ("unclosed set", _RULE + "ip daddr { 10.0.0.1, 10.0.0.2 accept", 69, "expected '}'"),
    ("stray brace", _RULE + "ip daddr 10.0.0.1 } accept", 51, "'}'"),
    ("cut rule", _RULE + "ip daddr . meta l4proto", 56, "ends too early"),
    ("unclosed quote", _RULE + 'jump x comment "cut', 48, "unterminated quote"),
    ("deep braces", _RULE + "ip daddr " + "{ " * 40, 74, "nested more than 16 deep"),
    ("long word, stray quote", _RULE + "jump " + "a" * 3000 + ' "x', 3039, "unterminated quote"),
    ("cut element", "add element ip kube-proxy m { 10.0.0.1 : goto x", 48, "expected '}'"),
    ("extra brace", "add element ip kube-proxy m { 10.0.0.1 : goto x }}", 50, "end of the command"),
    ("unknown command", "add thing ip kube-proxy x", 5, "'thing'"),
    ("no chain name", "add rule ip kube-proxy", 23, "ends too early"),
    ("unknown set statement", "add set ip kube-proxy s { type ipv4_addr ; frob 1 ; }", 44,
     "set statement 'frob'"),
    ("bad timeout", "add set ip kube-proxy s { type ipv4_addr ; flags timeout ; timeout banana ; }",
     68, "a duration"),
    ("unknown set statement2", "add map ip kube-proxy n { typo ipv4_addr ; }", 27,
     "set statement 'typo'"),
    ("bad priority", "add chain ip kube-proxy q { type nat hook input priority ; }", 58,
     "priority"),
]  # fmt: skip


@pytest.mark.parametrize("name, line, col, words", ERRORS, ids=[e[0] for e in ERRORS])
def test_malformed_input_is_a_diagnostic_at_its_column_and_exit_2(
    name: str, line: str, col: int, words: str, tmp_path: Path
) -> None:
    text = _HEAD + line + "\n"
    rs = parse_text(text, "bad.nft")
    found = [(d.line, d.col) for d in rs.diagnostics]
    assert (4, col) in found, [(d.line, d.col, d.message) for d in rs.diagnostics]
    (diag,) = [d for d in rs.diagnostics if (d.line, d.col) == (4, col)]
    assert words in diag.message
    with pytest.raises(ParseError) as err:
        parse_kube_proxy(text, "bad.nft", strict=True)
    assert (err.value.line, err.value.col) == (4, col)
    bad = tmp_path / "bad.nft"
    bad.write_text(text)
    out = CliRunner().invoke(cli, ["show", "--strict", str(bad)])
    assert out.exit_code == 2, out.output
    assert f"{bad}:4:{col}:" in out.output
    assert "Traceback" not in out.output and "pyparsing" not in out.output


def test_a_listing_cut_inside_a_chain_is_reported_at_its_end() -> None:
    text = (ROOT / CAPTURES[0]).read_text()
    cut = text[: text.index("\tchain services {")] + "\tchain services {\n\t\tip daddr . meta"
    rs = parse_text(cut, "cut.nft")
    last = cut.count("\n") + 1
    at_end = [d.message for d in rs.diagnostics if (d.line, d.col) == (last, 18)]
    assert f"the text ends inside chain services (line {last - 1}): '}}' expected" in at_end
    assert any(m.startswith("statement ends too early") for m in at_end)
    assert not rs.capture.complete


@pytest.mark.parametrize(
    "line, col, words",
    [("\tchain y", 9, "expected '{'"), ("\tchain a b {", 10, "'b'"),
     ("\tchain c { jump x", 12, "'jump'"), ("\tset s {{", 10, "expected '}'")],
)  # fmt: skip
def test_a_bad_block_header_in_a_listing_is_reported_at_its_column(
    line: str, col: int, words: str
) -> None:
    text = f"table ip kube-proxy {{\n{line}\n\tchain services {{\n\t\tjump x\n\t}}\n}}\n"
    rs = parse_text(text, "h.nft")
    (diag,) = [d for d in rs.diagnostics if d.line == 2]
    assert diag.col == col and words in diag.message, diag


def test_a_mismatched_brace_in_a_listing_is_not_silent() -> None:
    text = (
        "table ip kube-proxy {\n\tchain services {\n\t\tjump x\n\t}\n"
        "\tchain x {\n\t\tip daddr { 10.0.0.1\n\t}\n}\n"
    )
    rs = parse_text(text, "m.nft")
    assert [(d.line, d.col) for d in rs.diagnostics] == [(8, 2)]
    assert "ends inside table kube-proxy" in rs.diagnostics[0].message
