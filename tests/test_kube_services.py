"""``kube.services`` and ``show.summarize`` take shortcuts for speed: memos keyed by the
parser's shared tuples, hashes checked as numbers, a name read as a comment's first word,
addresses printed in C, rows built as bare tuples. Each is held here to the plain,
rule-by-rule answer it replaces."""

from __future__ import annotations

import base64
import ipaddress
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _paths import CORPUS
from kpsim.formats import load_file, parse_text
from kpsim.inputs import synth
from kpsim.kube import frontends
from kpsim.kube import names as kube_names
from kpsim.kube import services as kube
from kpsim.kube.show import ChainSummary, summarize
from kpsim.model import Address, Chain, Dnat, Jump, RecentCommand, RecentMatch, Rule, Ruleset
from kpsim.model.references import references

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "fixtures" / "iptables" / "eks-nodeport-workshop"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

# Chains that share their ``matches`` tuples (the parser shares equal ones) but differ in
# targets, affinity and statistics: what the memos must not mix up.
A, B, C, D = ("KUBE-SVC-" + 16 * x for x in "ABCD")
P25 = "-m statistic --mode random --probability 0.25"
TCP = "-m tcp -p tcp"


def _rcheck(seconds: int, sep: str) -> str:
    return f"-m recent --rcheck --seconds {seconds} --reap --name {sep} --rsource -j {sep}"


_TRICKY = "\n".join(
    [
        "*nat",
        *(f":{c} - [0:0]" for c in ("KUBE-SERVICES", "KUBE-NODEPORTS", A, B, C, D)),
        *(f":{c} - [0:0]" for c in ("KUBE-SVL-" + 16 * "C", "KUBE-XLB-" + 16 * "D")),
        *(f":KUBE-SEP-{e} - [0:0]" for e in ("A1", "A2", "B1", "B2", "C1", "NODNAT")),
        f'-A KUBE-SERVICES -m comment --comment "ns/a:p cluster IP" {TCP} -d 10.0.0.1/32 '
        f"--dport 80 -j {A}",
        f'-A KUBE-SERVICES -m comment --comment "ns/b:p external IP" {TCP} -d 1.2.3.4/32 '
        f"--dport 80 -j {B}",
        '-A KUBE-SERVICES -m comment --comment "ns/c:p loadbalancer IP" -m udp -p udp '
        f"-d 10.1.0.0/24 --dport 53 -j {C}",
        '-A KUBE-SERVICES -m comment --comment "pod traffic for ns/d:p cluster IP" '
        f"{TCP} -d fd00::1/128 --dport 80 -j {D}",
        f'-A KUBE-NODEPORTS -m comment --comment "ns/b:p" {TCP} --dport 30000:30001 -j {B}',
        f"-A {A} {P25} -j KUBE-SEP-A1",
        f"-A {A} -j KUBE-SEP-A2",
        f"-A {B} {P25} -j KUBE-MARK-MASQ",
        f"-A {B} {P25} -j KUBE-SEP-B1",
        f"-A {B} {_rcheck(60, 'KUBE-SEP-B2')}",
        f"-A {B} -j KUBE-SEP-B2",
        f"-A {C} {_rcheck(60, 'KUBE-SEP-C1')}",
        f"-A {C} -m statistic --mode random ! --probability 0.25 -j KUBE-SEP-C1",
        f"-A {C} -j KUBE-SEP-MISSING",
        f"-A KUBE-SVL-{16 * 'C'} {_rcheck(7, 'KUBE-SEP-C1')}",
        f"-A KUBE-SVL-{16 * 'C'} -j KUBE-SEP-NODNAT",
        f"-A {D} {P25} -j KUBE-SEP-A1",
        "-A KUBE-SEP-A1 -s 10.1.0.1/32 -j KUBE-MARK-MASQ",
        "-A KUBE-SEP-A1 -p tcp -m tcp -j DNAT --to-destination 10.1.0.1:8080",
        "-A KUBE-SEP-A2 -p tcp -m tcp -j DNAT --to-destination 10.1.0.2:8080",
        "-A KUBE-SEP-B1 -p tcp -m tcp -j DNAT --to-destination [fd00::2]:8080",
        "-A KUBE-SEP-B2 -p tcp -m tcp -j DNAT --to-destination 10.1.0.3",
        "-A KUBE-SEP-C1 -p udp -m udp -j DNAT --to-destination 10.1.0.4:53",
        "-A KUBE-SEP-NODNAT -j KUBE-MARK-MASQ",
        "COMMIT",
        "",
    ]
)


def _rulesets() -> list[Ruleset]:
    out = [parse_text(_TRICKY, "tricky.save")]
    out += [load_file(p) for p in sorted(SEED.glob("*/*.txt"))]
    if CORPUS.is_dir():
        out += [load_file(p) for p in sorted(CORPUS.glob("*.txt"))]
    cluster = synth.synth_large(120, 3, seed=2)  # affinity, policy Local, node ports
    out += [parse_text(synth.render_restore(cluster, n), f"{n.name}.save") for n in cluster.nodes]
    return out


RULESETS = _rulesets()


def _plain_destination(nat: dict[str, Chain], chain: str) -> str | None:
    sep = nat.get(chain)
    for rule in sep.rules if sep else ():
        if isinstance(rule.target, Dnat) and rule.target.to:
            return str(rule.target.to[0])
    return None


def _plain_endpoints(nat: dict[str, Chain], chain: Chain | None) -> tuple[kube.Endpoint, ...]:
    """Each KUBE-SEP jump with ``endpoint_shares``' chance, as services() once did."""
    out = []
    for rule, share in kube.endpoint_shares(chain.rules if chain else ()):
        assert isinstance(rule.target, Jump)
        sep = rule.target.chain
        out.append(kube.Endpoint(sep, _plain_destination(nat, sep), share))
    return tuple(out)


def _plain_affinity(*chains: Chain | None) -> int | None:
    seconds = None
    for chain in chains:
        for rule in chain.rules if chain else ():
            for m in rule.matches:
                if isinstance(m, RecentMatch) and m.command is RecentCommand.RCHECK:
                    seconds = m.seconds
    return seconds


def _plain_frontend(rule: Rule) -> tuple[str | None, int | None, str | None]:
    dest = rule.destination
    address = None
    if dest is not None and not dest.negated:
        net = dest.network
        if net is None:
            address = dest.unresolved
        else:
            single = net.prefixlen == net.max_prefixlen
            address = str(net.network_address) if single else str(net)
    port = next(
        (
            m.dport.lo
            for m in rule.matches
            if getattr(m, "dport", None) is not None and m.dport.lo == m.dport.hi  # type: ignore[union-attr]
        ),
        None,
    )
    return address, port, rule.protocol.name if rule.protocol else None


@pytest.mark.parametrize("rs", RULESETS, ids=lambda rs: Path(rs.path).name)
def test_services_are_the_plain_rule_by_rule_answer(rs: Ruleset) -> None:
    table = rs.table("nat")
    nat = dict(table.chains) if table else {}
    for s in kube.services(rs):
        for f in s.frontends:
            assert (f.address, f.port, f.protocol) == _plain_frontend(f.rule)
        if any(f.rule.table == "filter" for f in s.frontends):
            continue  # known only from a REJECT: no chains, named by its comment
        svc, svl = nat.get(f"KUBE-SVC-{s.hash}"), nat.get(f"KUBE-SVL-{s.hash}")
        assert s.endpoints == _plain_endpoints(nat, svc)
        assert s.local_endpoints == _plain_endpoints(nat, svl)
        assert s.affinity_seconds == _plain_affinity(svc, svl)
        assert all(type(e.probability) is Fraction for e in s.endpoints)
        spellings = [
            kube_names.port_proto_hash(n, p)
            for n in (s.name, s.name + ":")
            for p in (s.protocol or "tcp", "tcp", "udp", "sctp")
        ]
        assert (s.hash in spellings) == (s.named_by == "hash")


def test_tricky_chains() -> None:
    svcs = {s.hash[0]: s for s in kube.services(RULESETS[0])}
    a, b, c, d = svcs["A"], svcs["B"], svcs["C"], svcs["D"]
    assert [e.probability for e in a.endpoints] == [Fraction(1, 4), Fraction(3, 4)]
    assert [(e.chain, e.destination) for e in b.endpoints] == [
        ("KUBE-SEP-B1", "[fd00::2]:8080"),
        ("KUBE-SEP-B2", "10.1.0.3"),
    ]
    assert b.node_ports == () and [f.kind for f in b.frontends] == ["external-ip", "node-port"]
    assert c.affinity_seconds == 7 and c.traffic_policy_local and c.protocol == "udp"
    assert [e.destination for e in c.local_endpoints] == [None]
    assert [e.probability for e in c.endpoints] == [Fraction(3, 4), Fraction(1, 4)]
    assert d.name == "ns/d:p" and d.traffic_policy_local and d.cluster_ips == ("fd00::1",)
    assert [f.address for f in c.frontends] == ["10.1.0.0/24"]


@pytest.mark.parametrize("rs", RULESETS, ids=lambda rs: Path(rs.path).name)
def test_summary_rows_and_references(rs: Ruleset) -> None:
    refs, missing = references(rs)
    plain_missing = []
    for tname, table in rs.tables.items():
        jumps = Counter(
            r.target.chain
            for c in table.chains.values()
            for r in c.rules
            if isinstance(r.target, Jump)
        )
        assert refs[tname] == jumps
        plain_missing += [(tname, name) for name in jumps if name not in table.chains]
    assert missing == sorted(plain_missing)
    summary = summarize(rs, "n")
    rows = tuple(
        ChainSummary(t, n, c.policy.value if c.policy else None, len(c.rules), refs[t][n])
        for t, table in rs.tables.items()
        for n, c in table.chains.items()
    )
    assert summary.chains == rows and all(type(r) is ChainSummary for r in summary.chains)
    assert summary.tables == {n: (len(t.chains), t.rule_count) for n, t in rs.tables.items()}
    assert list(summary.tables) == list(rs.tables)


def _plain_clean_name(comment: str) -> str:
    """``clean_name`` without its first-word shortcut."""
    text = comment.split(" -> ")[0]
    for suffix in kube_names.NAME_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    for prefix in kube_names.NAME_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text.split(" ")[0].rstrip(":")


_PIECES = [
    *kube_names.NAME_PREFIXES,
    *kube_names.NAME_SUFFIXES,
    " -> ",
    " ",
    ":",
    "ns/svc",
    "x",
    ">",
]


@given(st.lists(st.sampled_from(_PIECES), max_size=8).map("".join) | st.text(max_size=30))
def test_clean_name_shortcut_is_the_plain_rule(comment: str) -> None:
    assert kube.clean_name(comment) == _plain_clean_name(comment)


@given(st.text(max_size=40), st.sampled_from(["tcp", "udp", "sctp", "TCP"]))
def test_hash_numbers_agree_with_the_base32_hash(name: str, protocol: str) -> None:
    assert kube_names.hash_number(
        kube_names.port_proto_hash(name, protocol)
    ) == kube_names.name_number(name, protocol)


@given(st.text(alphabet=B32 + "abz0189=_ -é", min_size=14, max_size=18))
def test_a_hash_number_is_only_what_base32_spells(chain_hash: str) -> None:
    number = kube_names.hash_number(chain_hash)
    if number is None:
        assert len(chain_hash) != 16 or not set(chain_hash) <= set(B32)
    else:
        assert base64.b32encode(number.to_bytes(10, "big")).decode() == chain_hash


@given(st.ip_addresses(), st.integers(0, 128))
def test_addresses_print_as_ipaddress_does(ip: ipaddress._BaseAddress, prefix: int) -> None:
    net = ipaddress.ip_network(f"{ip}/{min(prefix, ip.max_prefixlen)}", strict=False)
    single = net.prefixlen == net.max_prefixlen
    assert frontends.address(Address(net)) == (str(net.network_address) if single else str(net))
