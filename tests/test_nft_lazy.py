"""kube-proxy's nftables transaction read in one pass (``formats.nft.kp_lazy``, its hot
chains built on first use or at the end) gives the answers of the whole reader
(``kube_proxy.parse_kube_proxy``).

Every shipped nft fixture, kube-proxy's own test dump, generated transactions and damaged
ones are read both ways: the models must be equal (tables, chains in order, every rule and
its line, diagnostics, capture, metadata), and so must the JSON of traces of NodePorts,
ClusterIPs and a port nobody has — the lazy one traced before anything else reads it — and
``show``'s JSON, byte for byte. Inputs the pass cannot vouch for must fall back.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _paths import REPO
from kpsim.errors import KpsimError, ParseError
from kpsim.formats import parse_captures, read_text
from kpsim.formats.common import Sink
from kpsim.formats.iptables.lazy import LazyChain
from kpsim.formats.nft import kp_lazy
from kpsim.formats.nft.kp_hot import hot_rules
from kpsim.formats.nft.kp_text import NftChain, NftSet, NftTable
from kpsim.formats.nft.kube_proxy import _lower_chain, parse_kube_proxy
from kpsim.inputs import synth
from kpsim.inputs.synth.nft import render_kube_proxy_nft
from kpsim.kube import services as kube
from kpsim.kube.show import ShowReport, summarize
from kpsim.model import Rule, Ruleset
from kpsim.render.json import show_json
from lazy_compare import answer as _answer
from lazy_compare import model as _model
from lazy_compare import requests as _requests


def _inputs() -> list[Path]:
    found = sorted((REPO / "fixtures" / "nftables").rglob("*.nft"))
    return found + sorted((REPO / "tests" / "data" / "kube-proxy-nft").glob("*.nft"))


def _generated() -> dict[str, str]:
    big = synth.synth_large(300, 3, seed=7)
    out = {f"large-{n.name}": render_kube_proxy_nft(big, n) for n in big.nodes}
    seed = synth.seed_workshop()
    out.update({f"seed-{n.name}": render_kube_proxy_nft(seed, n) for n in seed.nodes})
    return out


def _show(rs: Ruleset) -> str:
    try:
        return show_json(ShowReport("set", "origin", (summarize(rs, "n"),)))
    except KpsimError as exc:
        return f"{type(exc).__name__}: {exc}"


def _compare(text: str, path: str) -> bool:
    """Both ways read the same; True when the one pass took the input."""
    try:
        whole = parse_kube_proxy(text, path)
    except KpsimError as exc:
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            kp_lazy.read_kube_proxy(text, path, lazy=True)
        return False
    lazy = kp_lazy.read_kube_proxy(text, path, lazy=True)
    for request in _requests(whole):  # the lazy ruleset is traced before it is read
        assert _answer(lazy, request) == _answer(whole, request), (path, request)
    assert _show(kp_lazy.read_kube_proxy(text, path, lazy=True)) == _show(whole), path
    assert _model(kp_lazy.read_kube_proxy(text, path, lazy=True)) == _model(whole), path
    assert _model(lazy) == _model(whole), path  # read after the traces
    built = kp_lazy.read_kube_proxy(text, path)  # every chain built at the end
    assert not any(type(c) is LazyChain for t in built.tables.values() for c in t.chains.values())
    assert _model(built) == _model(whole), path
    return kp_lazy.scan_kube_proxy(text, path) is not None


@pytest.mark.parametrize("path", _inputs(), ids=lambda p: str(p.relative_to(REPO)))
def test_one_pass_reads_every_nft_input_as_the_whole_reader(path: Path) -> None:
    _compare(read_text(path), str(path))


def test_one_pass_takes_kube_proxys_own_test_dump() -> None:
    path = REPO / "tests" / "data" / "kube-proxy-nft" / "overall-nftables-rules.nft"
    assert _compare(read_text(path), str(path))


def test_one_pass_reads_generated_transactions_and_takes_them() -> None:
    texts = _generated()
    taken = [name for name, text in texts.items() if _compare(text, name)]
    assert taken == list(texts)  # clean transactions: every one is read in one pass


def test_a_listing_is_read_whole() -> None:
    """``nft list ruleset`` blocks are the line reader's alone (for now)."""
    for path in sorted((REPO / "fixtures" / "nftables").rglob("*.nft")):
        assert kp_lazy.scan_kube_proxy(read_text(path), str(path)) is None


_CHAIN = r"endpoint-\S+"
_DAMAGE = [
    # an address kpsim cannot read, in a chain no trace of 30000 reaches: a diagnostic
    (rf"(add rule ip kube-proxy {_CHAIN} ip saddr )10\.\d+\.\d+\.\d+", r"\g<1>10.0.0.300"),
    # a rule for a chain not added before it
    (rf"add rule ip kube-proxy ({_CHAIN}) (ip saddr)", r"add rule ip kube-proxy zz-\1 \2"),
    # commands that reorder or remove what was added
    (r"(\n# [^\n]*\n)", r"\1flush chain ip kube-proxy services\n"),
    (r"(\n# [^\n]*\n)", r"\1insert rule ip kube-proxy services jump mark-for-masquerade\n"),
    (r"(\n# [^\n]*\n)", r"\1delete element ip kube-proxy cluster-ips { 172.20.0.1 }\n"),
    # an element of a set never added
    (r"(\n# [^\n]*\n)", r"\1add element ip kube-proxy no-such-set { 10.0.0.1 }\n"),
    # a plain set read as affinity state: the whole reader looks it up
    (rf"(\nadd rule ip kube-proxy ({_CHAIN}) )ip saddr \S+ jump", r"\1ip saddr @cluster-ips goto"),
    # another table beside kube-proxy's, a second family, a listing's block
    (r"^", r"add table ip6 kube-proxy\n"),
    (r"^", "table ip nat {\n}\n"),
    # text the line reader reads otherwise: carriage returns, no newline at the end
    (r"\n", "\r\n"),
    (r"\n$", r""),
    # a kpsim:meta line with a field that does not fit the schema
    (r"^", '# kpsim:meta {"node": 5}\n'),
]


@pytest.mark.parametrize(("pattern", "replacement"), _DAMAGE)
def test_one_pass_falls_back_where_it_cannot_vouch(pattern: str, replacement: str) -> None:
    clean = _generated()["seed-" + synth.SEED_NODES[0].name]
    damaged = re.sub(pattern, replacement, clean, count=1)
    assert damaged != clean
    assert kp_lazy.scan_kube_proxy(damaged, "d") is None
    _compare(damaged, "d")


def test_a_jump_to_a_chain_not_captured_is_a_gap_either_way() -> None:
    """A hot line may name a chain the capture lacks: no diagnostic, but the capture says
    which chain is missing, read off the text without building the chain."""
    clean = _generated()["seed-" + synth.SEED_NODES[0].name]
    damaged = re.sub(r"jump mark-for-masquerade\n", "jump not-captured\n", clean, count=1)
    assert damaged != clean and _compare(damaged, "d")
    lazy = kp_lazy.read_kube_proxy(damaged, "d", lazy=True)
    assert ("nat", "not-captured") in lazy.capture.missing


@pytest.mark.parametrize(
    "extra",
    [
        "jump mark-for-masquerade",  # deferred too: a second run of the chain
        'jump mark-for-masquerade comment "read now"',  # read now: the chain built at once
    ],
)
def test_a_chains_rules_in_two_places(extra: str) -> None:
    """More rules for a chain later in the text (an endpoint's, a service's): in line
    order after the first ones, numbered on, whichever way each line is read."""
    clean = _generated()["seed-" + synth.SEED_NODES[0].name]
    damaged = clean
    for kind in ("endpoint", "service"):
        name = re.search(rf"\nadd chain ip kube-proxy ({kind}-\S+)\n", damaged)
        assert name is not None
        at = damaged.index("\n# ", name.end())  # a comment line after the chain's rules
        more = f"\nadd rule ip kube-proxy {name[1]} {extra}"
        damaged = damaged[:at] + more + damaged[at:]
    assert damaged.count(extra) >= 2 + clean.count(extra)
    assert _compare(damaged, "d")


def test_helper_chains_keep_the_whole_readers_order() -> None:
    """A rule of several statements becomes a jump to a helper chain (``X#1``), which the
    whole reader lists just before its chain: in a chain no hook reaches, that order is
    the table's."""
    clean = _generated()["seed-" + synth.SEED_NODES[0].name]
    orphan = (
        "add chain ip kube-proxy orphan\n"
        "add rule ip kube-proxy orphan meta mark set meta mark | 0x4000 masquerade\n"
        "add rule ip kube-proxy orphan jump mark-for-masquerade\n"
    )
    damaged = clean.replace("\n# ", "\n" + orphan + "# ", 1)
    assert _compare(damaged, "d")
    names = list(kp_lazy.read_kube_proxy(damaged, "d", lazy=True).tables["nat"].chains)
    assert names.index("orphan#1") == names.index("orphan") - 1


def test_strict_reading_is_the_whole_readers() -> None:
    clean = _generated()["seed-" + synth.SEED_NODES[0].name]
    damaged = clean.replace("ip saddr 10.", "ip saddr 1000.", 1)
    with pytest.raises(ParseError) as whole:
        parse_kube_proxy(damaged, "d", strict=True)
    with pytest.raises(ParseError) as scanned:
        parse_captures(damaged, "d", strict=True, lazy=True)
    assert str(scanned.value) == str(whole.value)


def test_a_chain_read_on_demand_is_a_plain_chain() -> None:
    text = _generated()["seed-" + synth.SEED_NODES[0].name]
    rs = kp_lazy.read_kube_proxy(text, "g", lazy=True)
    lazy = [c for c in rs.tables["nat"].chains.values() if type(c) is LazyChain]
    assert lazy  # the endpoint and service chains
    chain = lazy[0]
    assert chain.rules and type(chain) is not LazyChain  # now a Chain, as the whole reader's
    assert chain == parse_kube_proxy(text, "g").tables["nat"].chains[chain.name]


def test_api_load_reads_a_transaction_in_one_pass() -> None:
    text = _generated()["seed-" + synth.SEED_NODES[0].name]
    (rs,) = parse_captures(text, "g", lazy=True)
    assert any(type(c) is LazyChain for t in rs.tables.values() for c in t.chains.values())
    assert _model(parse_captures(text, "g")[0]) == _model(parse_kube_proxy(text, "g"))


# ---------------------------------------------------------------- line by line

_SETS = {
    "aff": NftSet("aff", 0, False, ("ipv4_addr",), flags={"dynamic", "timeout"}, timeout=10800),
    "plain": NftSet("plain", 0, False, ("ipv4_addr",)),
}
_octet = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", ""]))
_addr = st.one_of(
    st.lists(_octet, min_size=3, max_size=5).map(".".join),
    st.sampled_from(["@aff", "@plain", "10.0.0.0/8", "10.0.0.0/33", "10.1.1.1/08", "::1"]),
)
_name = st.sampled_from(["endpoint-X-ns/a/tcp/p__10.0.0.1/80", "mark-for-masquerade", "x;",
                         "jump", "a,b", "m"])  # fmt: skip
_verb = st.sampled_from(["jump", "goto", "accept"])


@st.composite
def _line(draw: st.DrawFn) -> str:
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return f"{draw(_verb)} {draw(_name)}"
    if shape == 1:
        return f"ip saddr {draw(_addr)} {draw(_verb)} {draw(_name)}"
    if shape == 2:
        proto = draw(st.sampled_from(["tcp", "udp", "sctp", "icmp"]))
        port = draw(st.one_of(st.integers(0, 99999).map(str), st.just("")))
        dst = draw(_addr) + (f":{port}" if port else "")
        return f"meta l4proto {proto} dnat to {dst}"
    if shape == 3:
        return f"ct state {draw(st.sampled_from(['new', 'established']))} jump {draw(_name)}"
    if shape == 4:
        return f"update @{draw(_name)} {{ ip saddr }}"
    mod = draw(st.sampled_from(["1", "3", "0", "07"]))
    keys = draw(st.lists(st.sampled_from(["0", "1", "2", "03", "x"]), min_size=1, max_size=4))
    items = ", ".join(f"{k} : {draw(_verb)} {draw(_name)}" for k in keys)
    return f"numgen random mod {mod} vmap {{ {items} }}"


def _whole(text: str) -> list[Rule]:
    table = NftTable("ip", "kube-proxy", 1, sets=_SETS)
    chain = NftChain("c", 1, "add chain ip kube-proxy c", rules=[(3, 27, text)])
    chains: dict[str, list[Rule] | None] = {}
    sink = Sink("p", False)
    _lower_chain(chain, table, sink, chains)
    assert not sink.items, (text, sink.items)  # a vouched line can hold no diagnostic
    assert list(chains) == ["c"]  # and no statement list (no helper chain)
    return chains["c"] or []


@settings(max_examples=500, deadline=None)
@given(_line())
def test_a_vouched_line_builds_the_whole_readers_rules(text: str) -> None:
    """A line the scan defers (``_BODY``) is lowered by the general reader without a
    diagnostic, and kp_hot builds the very same rules from it."""
    if re.fullmatch(kp_lazy._BODY, text, re.ASCII) is None:
        return
    if " @plain " in text:
        return  # the scan defers ``ip saddr @set`` only when every such set is dynamic
    line = f"\nadd rule ip kube-proxy c {text}"
    rules = hot_rules("nat", "c", line, [(0, len(line), 3)], len(line) - len(text) - 1, "p", _SETS)
    assert list(rules) == _whole(text)
    assert [r.origin for r in rules] == [r.origin for r in _whole(text)]


def test_the_nodeport_quick_yes_is_what_services_say() -> None:
    """``trace --port``'s quick yes reads the ``services`` chain alone; it says yes for
    exactly the NodePorts ``services`` gives (a no there means: ask ``services``)."""
    for name, text in _generated().items():
        rs = kp_lazy.read_kube_proxy(text, name, lazy=True)
        found = kube.services(rs)
        ports = {p for s in found for p in s.node_ports}
        served = {p for s in found if s.endpoints for p in s.node_ports if 30000 <= p < 30100}
        offered = {p for p in range(30000, 30100) if kube.offers_node_port(rs, p)}
        assert served and offered <= ports, name  # (no endpoints: a reject, not offered)
        assert offered >= served, name


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("name", ["cluster-ips", "no-such-set"])
def test_a_set_not_dynamic_as_affinity_state_is_refused_whole_or_lazily(
    name: str, lazy: bool
) -> None:
    """A whole load checks each ``ip saddr @set`` as hot_rules builds it, a lazy one by a
    turn over the text first: both leave the input to the whole reader."""
    clean = _generated()["seed-" + synth.SEED_NODES[0].name]
    pattern = rf"(\nadd rule ip kube-proxy ({_CHAIN}) )ip saddr \S+ jump"
    damaged = re.sub(pattern, rf"\1ip saddr @{name} goto", clean, count=1)
    assert damaged != clean
    assert kp_lazy.scan_kube_proxy(damaged, "d", lazy=lazy) is None
    _compare(damaged, "d")


@pytest.mark.parametrize(
    "extra",
    [
        "add rule ip kube-proxy {ep} jump mark-for-masquerade",  # a deferred third rule
        "add rule ip kube-proxy {ep} counter",  # one read now
        "add chain ip kube-proxy {ep} {{ type nat hook output priority 0 ; }}",  # a hook
    ],
)
def test_an_endpoint_chain_added_to_later_is_not_the_scans_two_rules(extra: str) -> None:
    """A whole load makes each endpoint's nat chain as it reads its two lines; one more
    line for it later in the text (a rule, deferred or read now, a hook) leaves it to
    freeze: the model is still the whole reader's."""
    clean = _generated()["seed-" + synth.SEED_NODES[0].name]
    ep = re.search(r"\nadd chain ip kube-proxy (endpoint-\S+)\n", clean)
    assert ep is not None
    text = clean + extra.format(ep=ep.group(1)) + "\n"
    assert kp_lazy.scan_kube_proxy(text, "e") is not None  # the one pass takes it
    _compare(text, "e")
