"""The nft reader's fast paths (kp_fast.fast_lower for kube-proxy's hot rule shapes,
NftReader.line and fast_command for its hot commands, kp_maps for its maps' and sets'
plain elements, kp_plain and kp_shapes for the rest of its lines) give the very rules the
general reader (the grammar, grammar.py) gives: on every shipped fixture, kube-proxy's own test
dumps and generated rulesets, whole rulesets compared with the fast paths switched off,
and rule by rule on generated rule texts (more in test_nft_grammar.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpsim.formats.common import Sink
from kpsim.formats.nft import grammar, kp_commands, kp_lower, kp_text, kube_proxy
from kpsim.formats.nft.kp_fast import fast_lower
from kpsim.formats.nft.kp_lower import Statement, StatementError
from kpsim.formats.nft.kp_text import NftSet, NftText
from kpsim.inputs import synth
from kpsim.inputs.synth.nft import render_kube_proxy_nft
from kpsim.model import Ruleset

ROOT = Path(__file__).parent.parent
CAPTURES = [
    *sorted((ROOT / "fixtures" / "nftables").glob("**/*.nft")),
    *sorted((ROOT / "tests" / "data" / "kube-proxy-nft").glob("*.nft")),
]


def _generated() -> list[tuple[str, str]]:
    seed = synth.seed_workshop()
    big = synth.synth_large(40, 3, seed=7)
    out = [(f"seed {n.name}", render_kube_proxy_nft(seed, n)) for n in seed.nodes]
    return out + [(f"synth {n.name}", render_kube_proxy_nft(big, n)) for n in big.nodes[:2]]


def _slow(text: str, path: str, monkeypatch: pytest.MonkeyPatch) -> Ruleset:
    with monkeypatch.context() as m:
        m.setattr(kube_proxy, "fast_lower", lambda text, sets: None)
        m.setattr(kp_commands.NftReader, "line", NftText.line)
        m.setattr(kp_commands, "fast_command", lambda stmt: None)  # the grammar reads all
        m.setattr(kp_text, "_block", lambda words, stmt: None)
        m.setattr(kp_lower, "map_branches", lambda found, keys, name: None)
        m.setattr(kp_lower, "set_elements", lambda found, keys: None)
        m.setattr(kp_text, "plain_chain_spec", lambda text: None)
        m.setattr(kp_text, "plain_set_body", lambda text: None)
        m.setattr(grammar, "SHAPES", {})  # every rule shape parsed by the grammar
        return kube_proxy.parse_kube_proxy(text, path)


def _texts() -> list[tuple[str, str]]:
    return [(p.name, p.read_text()) for p in CAPTURES] + _generated()


@pytest.mark.parametrize("name, text", _texts(), ids=[n for n, _ in _texts()])
def test_fast_paths_give_the_general_readers_ruleset(
    name: str, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = kube_proxy.parse_kube_proxy(text, name)
    slow = _slow(text, name, monkeypatch)
    assert fast == slow
    assert sum(len(c.rules) for t in fast.tables.values() for c in t.chains.values()) > 20


def test_the_fast_path_takes_most_generated_rules() -> None:
    """It must be used at all: nearly every rule of kube-proxy's transaction is hot."""
    _, text = _generated()[-1]
    reader = kp_commands.NftReader("x", Sink("x", True))
    reader.read(text)
    table = reader.tables[("ip", "kube-proxy")]
    rules = [r for c in table.chains.values() for _, _, r in c.rules]
    taken = sum(fast_lower(r, table.sets) is not None for r in rules)
    assert taken >= 0.9 * len(rules)


_SETS = {
    "aff": NftSet("aff", 0, False, ("ipv4_addr",), flags={"dynamic", "timeout"}, timeout=10800),
    "plain": NftSet("plain", 0, False, ("ipv4_addr",)),
}
_octet = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "1a", ""]))
_addr = st.one_of(
    st.lists(_octet, min_size=3, max_size=5).map(".".join),
    st.sampled_from(["@aff", "@plain", "@gone", "10.0.0.0/8", "::1", "10.1.1.1,", "{"]),
    st.sampled_from(["fd00::1", "fd00::/64", "dead", "Fd00::2", "::ffff:10.0.0.1", "a:b"]),
)
_port = st.one_of(st.integers(0, 70000).map(str), st.sampled_from(["http", "08", "1-2"]))
_name = st.sampled_from(["endpoint-X-ns/a/tcp/p__10.0.0.1/80", "mark-for-masquerade", "x;"])
_verb = st.sampled_from(["jump", "goto", "accept", "counter"])


def _numgen(draw: st.DrawFn) -> str:
    n = draw(st.integers(1, 4))
    keys = draw(st.lists(st.sampled_from(["0", "1", "2", "3", "03", "x"]), min_size=1))
    values = draw(st.lists(st.sampled_from(["goto a", "jump b", "drop", "goto", "x y"])))
    items = ", ".join(f"{k} : {v}" for k, v in zip(keys, values, strict=False))
    return f"numgen random mod {draw(st.sampled_from([str(n), '0', '07', 'x']))} vmap {{ {items} }}"


@st.composite
def _rule(draw: st.DrawFn) -> str:
    shape = draw(st.integers(0, 6))
    if shape == 0:
        return f"{draw(_verb)} {draw(_name)}"
    if shape == 1:
        family = draw(st.sampled_from(["ip", "ip6"]))
        return f"{family} saddr {draw(_addr)} {draw(_verb)} {draw(_name)}"
    if shape == 2:
        proto = draw(st.sampled_from(["tcp", "udp", "sctp", "TCP", "icmp"]))
        dst = draw(st.sampled_from(["{}:{}", "{} . {}", "[{}]:{}", "{}"]))
        return f"meta l4proto {proto} dnat to {dst.format(draw(_addr), draw(_port))}"
    if shape == 3:
        return f"ct state {draw(st.sampled_from(['new', 'established']))} jump {draw(_name)}"
    if shape == 4:
        return f"update {draw(st.sampled_from(['@aff', '@x,y', 'aff']))} {{ ip saddr }}"
    if shape == 5:
        return _numgen(draw)
    return draw(st.text(alphabet=" {},;.:@0123456789abcjumpgotdnat", max_size=40))


@settings(max_examples=400, deadline=None)
@given(_rule())
def test_fast_lower_is_the_statement_reader_or_declines(text: str) -> None:
    fast = fast_lower(text, _SETS)
    if fast is None:
        return
    try:
        slow = Statement(text, _SETS).read()
    except StatementError as exc:  # the fast path must never take what is an error
        raise AssertionError(f"fast path took {text!r}; the reader says {exc}") from None
    assert fast == slow


def test_split_tokens_keep_an_anonymous_sets_text_as_written() -> None:
    """Tokens by str.split must not change what answers show: a set's text as written."""
    text = "ip daddr { 10.0.0.1, 10.0.0.2 } tcp dport { 80, 443 } accept"
    low = Statement(text, {}).read()
    names = [getattr(m, "name", None) for m in low.matches]
    assert names == ["{ 10.0.0.1, 10.0.0.2 }", "{ 80, 443 }"]
    assert fast_lower(text, {}) is None
