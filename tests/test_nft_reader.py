"""The nft reader follows the nesting of ``nft list`` text: a set's or map's closing brace
ends that block, never its table, and a block's body is nft's data, not rules.

The kube-proxy nftables fixture's chains and rules are counted by hand from the file; the
iptables-nft paste 008 must read exactly as it did before the reader knew about blocks.
"""

from __future__ import annotations

import pytest

from _paths import CORPUS, REPO, needs_corpus
from kpsim.errors import ParseError
from kpsim.formats.nft.iptables_nft import NOTE, parse_nft
from kpsim.model import (
    Counters,
    Family,
    Format,
    Jump,
    OpaqueMatch,
    PortMatch,
    PortRange,
    Protocol,
    Ruleset,
    Standard,
    Verdict,
)

FIXTURE = REPO / "fixtures" / "damaged" / "nftables-mode.nft"

#: Every kind of block kube-proxy's table and `nft list ruleset` print between chains.
NESTED = """\
table ip filter {
	comment "a table comment"
	flags dormant
	set allowed {
		type ipv4_addr
		flags interval
		auto-merge
		elements = { 10.0.0.0/8, 172.16.0.0/12,
				192.168.0.0/16 }
	}
	chain INPUT {
		type filter hook input priority filter; policy accept;
		ip saddr @allowed counter packets 1 bytes 2 accept
	}
	map dispatch {
		type ipv4_addr . inet_proto . inet_service : verdict
		flags interval
		comment "a } in a string"
		elements = { 10.0.0.1 . tcp . 80 : goto svc-a,
				10.0.0.2 . udp . 53 : jump svc-b,
				{ 10.0.0.3 . tcp . 443 } : drop
		}
	}
	chain FORWARD {
		ip daddr . meta l4proto . th dport vmap @dispatch
	}
	flowtable ft {
		hook ingress priority filter
		devices = { eth0, eth1 }
	}
	counter hits {
		packets 0 bytes 0
	}
	quota q {
		over 1 gbytes
	}
	ct helper ftp-standard {
		type "ftp" protocol tcp
		l3proto ip
	}
	ct timeout agressive-tcp {
		protocol tcp
		l3proto ip
		policy = { established : 100, close_wait : 4 }
	}
	chain OUTPUT {
		tcp dport 22 accept
	}
}
table ip nat {
	chain KUBE-SERVICES {
		meta l4proto tcp ip daddr 10.96.0.1 tcp dport 443 counter packets 0 bytes 0 accept
	}
}
"""


def _nested() -> Ruleset:
    return parse_nft(NESTED, "nested.nft")


def _shape(rs: Ruleset) -> dict[str, dict[str, int]]:
    return {t: {c: len(ch.rules) for c, ch in tb.chains.items()} for t, tb in rs.tables.items()}


# ---------------------------------------------------------------- nesting


def test_blocks_between_chains_do_not_end_the_table() -> None:
    rs = _nested()
    assert _shape(rs) == {
        "filter": {"INPUT": 1, "FORWARD": 1, "OUTPUT": 1},
        "nat": {"KUBE-SERVICES": 1},
    }
    assert "no table header: assumed table nat" not in rs.notes
    output = rs.chain("filter", "OUTPUT")
    assert output is not None and output.rules[0].target == Standard(Verdict.ACCEPT)
    assert output.rules[0].origin is not None and output.rules[0].origin.line == 47


def test_set_and_map_bodies_give_no_diagnostics() -> None:
    rs = _nested()
    assert rs.diagnostics == ()
    assert rs.capture.complete


def test_data_blocks_are_counted_and_sets_and_maps_named_in_a_note() -> None:
    rs = _nested()
    notes = [n for n in rs.notes if n.startswith("table filter:")]
    assert notes == [
        "table filter: 1 set, 1 map, 1 flowtable, 1 counter, 1 quota, 1 ct helper, "
        "1 ct timeout read as nft data, not rules (kpsim does not model nft sets and maps "
        "yet; rules that look them up are kept as unknown): set allowed, map dispatch "
        "(6 line(s) of elements)"
    ]
    assert not any(n.startswith("table nat:") for n in rs.notes)


def test_a_lookup_of_a_set_stays_unknown() -> None:
    chain = _nested().chain("filter", "FORWARD")
    assert chain is not None
    (rule,) = chain.rules
    assert rule.target is None
    assert all(isinstance(m, OpaqueMatch) for m in rule.matches)
    assert "vmap @dispatch" in " ".join(m.text for m in rule.matches if isinstance(m, OpaqueMatch))


def test_a_statement_whose_braces_span_lines_is_one_rule() -> None:
    text = (
        "table ip kube-proxy {\n"  # 1
        "\tchain service-X {\n"  # 2
        "\t\tnumgen random mod 2 vmap {\n"  # 3
        "\t\t\t0 : goto endpoint-a,\n"  # 4
        "\t\t\t1 : goto endpoint-b\n"  # 5
        "\t\t}\n"  # 6: ends the vmap, not the chain
        "\t\tjump after\n"  # 7
        "\t}\n"
        "\tchain after {\n"
        "\t}\n"
        "}\n"
    )
    rs = parse_nft(text, "multi.nft")
    assert rs.diagnostics == ()
    chain = rs.chain("kube-proxy", "service-X")
    assert chain is not None
    assert [r.origin.line for r in chain.rules if r.origin is not None] == [3, 7]
    assert chain.rules[1].target == Jump("after")
    assert _shape(rs) == {"kube-proxy": {"service-X": 2, "after": 0}}


def test_a_set_that_lost_its_closing_brace_ends_at_the_next_chain() -> None:
    text = "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\tchain c {\n\t\taccept\n\t}\n}\n"
    rs = parse_nft(text, "cut.nft")
    assert _shape(rs) == {"t": {"c": 1}}
    assert "set s (line 2) has no closing brace: read as data up to the next block" in rs.notes


def test_families_are_kept() -> None:
    six = parse_nft("table ip6 nat {\n\tset s {\n\t\ttype ipv6_addr\n\t}\n}\n", "six.nft")
    assert six.family is Family.IPV6 and list(six.tables) == ["nat"]
    inet = parse_nft("table inet fw {\n\tchain c {\n\t\taccept\n\t}\n}\n", "inet.nft")
    assert inet.family is Family.IPV4 and _shape(inet) == {"fw": {"c": 1}}


def test_ip6_tables_beside_ip_ones_are_left_out_with_their_lines() -> None:
    """``nft list ruleset`` prints ``ip nat`` and ``ip6 nat`` with the same chain names:
    read together, the ip6 DROP would be walked by IPv4 packets. The IPv4 tables are read,
    the ip6 one is named with its lines, and line numbers after it are kept."""
    text = (
        "table ip nat {\n\tchain POSTROUTING {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\treturn\n\t}\n}\n"
        "table ip6 nat {\n\tchain POSTROUTING {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tdrop\n\t}\n}\n"
        "table ip filter {\n\tchain INPUT {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n\t\taccept\n\t}\n}\n"
    )
    rs = parse_nft(text, "both.nft")
    assert rs.family is Family.IPV4 and rs.diagnostics == ()
    assert _shape(rs) == {"nat": {"POSTROUTING": 1}, "filter": {"INPUT": 1}}
    assert rs.tables["nat"].chains["POSTROUTING"].rules[0].origin.line == 4
    assert rs.tables["filter"].chains["INPUT"].rules[0].origin.line == 16
    assert (
        "table ip6 nat (lines 7-12) not read: an IPv4 packet never passes a table of "
        "family ip6" in rs.notes
    )
    six = text[text.index("table ip6") : text.index("table ip filter")]
    alone = parse_nft(six, "six.nft")  # ip6 tables alone: read, as IPv6
    assert alone.family is Family.IPV6 and _shape(alone) == {"nat": {"POSTROUTING": 1}}


# ---------------------------------------------------------------- the kube-proxy fixture

#: Counted by hand from fixtures/damaged/nftables-mode.nft: 16 fixed chains, then per
#: service its endpoint, service, external and local chains (46 in all, 79 rules).
FIXED_CHAINS = {
    "cluster-ips-check": 2,
    "filter-prerouting-pre-dnat": 1,
    "filter-output-pre-dnat": 1,
    "filter-forward": 2,
    "filter-input": 2,
    "filter-output": 2,
    "firewall-check": 1,
    "mark-for-masquerade": 1,
    "masquerading": 3,
    "nat-output": 1,
    "nat-postrouting": 1,
    "nat-prerouting": 1,
    "nodeport-endpoints-check": 1,
    "reject-chain": 1,  # its `comment "…"` line is the chain's comment, not a rule
    "services": 2,
    "service-endpoints-check": 1,
}
#: prefix → (chains, rules): 18 endpoints (the two with affinity have an `update` rule).
PER_SERVICE = {"endpoint-": (18, 38), "service-": (8, 10), "external-": (3, 7), "local-": (1, 1)}


def test_fixture_chains_land_in_table_kube_proxy() -> None:
    # the iptables-nft reader's view; parse_text gives it to the kube-proxy reader now
    rs = parse_nft(FIXTURE.read_text(), str(FIXTURE))
    assert rs.format is Format.NFT
    assert list(rs.tables) == ["kube-proxy"]
    chains = rs.tables["kube-proxy"].chains
    assert len(chains) == 46
    assert sum(len(c.rules) for c in chains.values()) == 79
    fixed = {n: len(c.rules) for n, c in chains.items() if n in FIXED_CHAINS}
    assert fixed == FIXED_CHAINS
    for prefix, (count, rules) in PER_SERVICE.items():
        mine = [c for n, c in chains.items() if n not in FIXED_CHAINS and n.startswith(prefix)]
        assert (len(mine), sum(len(c.rules) for c in mine)) == (count, rules), prefix
    assert "no table header: assumed table nat" not in rs.notes


def test_fixture_diagnostics_are_its_three_header_comments_only() -> None:
    rs = parse_nft(FIXTURE.read_text(), str(FIXTURE))
    assert [(d.line, d.col) for d in rs.diagnostics] == [(1, 1), (2, 1), (3, 1)]
    assert all(d.text.startswith("# ") for d in rs.diagnostics)
    (note,) = [n for n in rs.notes if n.startswith("table kube-proxy:")]
    assert note.startswith("table kube-proxy: 4 sets, 5 maps read as nft data, not rules")
    assert "set cluster-ips, set nodeport-ips, map firewall-ips" in note
    assert note.endswith("and 3 more (18 line(s) of elements)")


# ---------------------------------------------------------------- 008: as before

_SVC = {
    "NPX": ("KUBE-SVC-NPX46M4PTMTKRN6Y", "10.96.0.1/32", "tcp", 443),
    "TCO": ("KUBE-SVC-TCOU7JCQXEZGVUNU", "10.96.0.10/32", "udp", 53),
    "ERI": ("KUBE-SVC-ERIFXISQEP7F7OF4", "10.96.0.10/32", "tcp", 53),
    "JD5": ("KUBE-SVC-JD5MR3NA4I4DYORP", "10.96.0.10/32", "tcp", 9153),
}
#: (line, service or node address, counters) of each rule, as the reader gave them before.
_008_RULES = [
    (4, "NPX", (0, 0)),
    (5, "TCO", (0, 0)),
    (6, "ERI", (0, 0)),
    (7, "JD5", (0, 0)),
    (8, "192.168.0.100/32", (77, 4824)),
    (14, "ERI", (0, 0)),
    (15, "NPX", (1, 60)),
    (16, "JD5", (0, 0)),
    (17, "TCO", (0, 0)),
    (18, "192.168.0.101/32", (7, 696)),
]


@needs_corpus
def test_008_reads_exactly_as_before() -> None:
    path = next(CORPUS.glob("008-*"))
    rs = parse_nft(path.read_text(), str(path))
    assert rs.family is Family.IPV4
    assert rs.notes == (
        NOTE,
        "no table header: assumed table nat",
        "chain KUBE-SERVICES appears more than once; its rules were appended",
    )
    assert [(d.line, d.col, d.message) for d in rs.diagnostics] == [
        (2, 1, "skipped comment"),
        (12, 1, "skipped comment"),
        (13, 7, "chain KUBE-SERVICES defined again; rules appended"),
    ]
    assert _shape(rs) == {"nat": {"KUBE-SERVICES": 10}}
    chain = rs.chain("nat", "KUBE-SERVICES")
    assert chain is not None
    for number, (rule, (line, what, counters)) in enumerate(
        zip(chain.rules, _008_RULES, strict=True), 1
    ):
        assert rule.origin is not None and rule.origin.line == line
        assert rule.number == number and rule.counters == Counters(*counters)
        if what in _SVC:
            target, dest, proto, port = _SVC[what]
            assert rule.target == Jump(target)
            assert rule.protocol == Protocol(proto)
            assert rule.matches == (PortMatch(proto, dport=PortRange(port, port)),)
        else:
            dest = what
            assert rule.target == Jump("KUBE-NODEPORTS") and rule.protocol is None
            assert rule.matches == ()
        assert rule.destination is not None and str(rule.destination.network) == dest
    assert [g.kind.value for g in rs.capture.gaps] == ["chain-not-captured"] * 5 + ["skipped-lines"]


# ---------------------------------------------------------------- what is still reported


def test_unknown_statements_still_give_diagnostics_with_line_and_col() -> None:
    text = (
        "table ip t {\n"  # 1
        "\tbogus statement here\n"  # 2: unknown at table level
        "\twidget w {\n"  # 3: an unknown block: its header is reported, its body skipped
        "\t\tsize 3\n"  # 4
        "\t}\n"  # 5
        "\tchain c {\n"  # 6
        '\t\tip daddr 10.0.0.1 comment "unterminated\n'  # 7: cannot be tokenized
        "\t\taccept\n"  # 8
        "\t}\n"  # 9
        "}\n"  # 10
        "}\n"  # 11: nothing open
    )
    rs = parse_nft(text, "bad.nft")
    assert [(d.line, d.col) for d in rs.diagnostics] == [(2, 2), (3, 2), (7, 29), (11, 1)]
    messages = [d.message for d in rs.diagnostics]
    assert messages[0] == "skipped line outside a chain"
    assert messages[1] == "skipped unknown nft block (its body is not read)"
    assert messages[3] == "skipped closing brace with no block open"
    assert _shape(rs) == {"t": {"c": 1}}
    assert not rs.capture.complete


def test_a_statement_whose_brace_never_closes_is_reported() -> None:
    text = "table ip t {\n\tchain c {\n\t\tip daddr { 10.0.0.1,\n\tchain d {\n\t}\n}\n"
    rs = parse_nft(text, "open.nft")
    assert [(d.line, d.col, d.message) for d in rs.diagnostics] == [
        (3, 3, "skipped statement whose brace is never closed")
    ]
    assert _shape(rs) == {"t": {"c": 0, "d": 0}}


def test_strict_raises_at_a_bad_line_not_at_a_set_body() -> None:
    assert parse_nft(NESTED, "nested.nft", strict=True).diagnostics == ()
    bad = NESTED.replace("\tchain OUTPUT {\n", "\tnonsense here\n\tchain OUTPUT {\n")
    with pytest.raises(ParseError) as err:
        parse_nft(bad, "bad.nft", strict=True)
    assert (err.value.line, err.value.col) == (46, 2)
    assert "outside a chain" in err.value.message


def test_a_listing_cut_inside_a_table_knows_no_other_table_empty() -> None:
    """Cut inside ``table ip mangle``: a table the text does not show (nat) may have come
    after the cut, so it is not captured, not empty, and the walk through the cut chain is
    UNKNOWN with the cut line. Before, filter and mangle (two tables) made every missing
    table count as empty, and the packet was ACCEPTed."""
    from kpsim.kube.scenario import NodeInput, TraceRequest, trace_nodes

    text = (
        "table ip filter {\n\tchain FORWARD {\n"
        "\t\ttype filter hook forward priority filter; policy accept;\n"
        "\t\tcounter packets 0 bytes 0 accept\n\t}\n}\n"
        "table ip mangle {\n\tchain PREROUTING {\n"
        "\t\ttype filter hook prerouting priority mangle; policy accept;\n"
        "\t\tcounter packets 0 bytes 0\n"
    )
    rs = parse_nft(text, "cut.nft")
    assert rs.capture.all_tables is False and rs.capture.cut_at == 10
    assert rs.capture.has_table("nat") is None
    assert "capture cut off after line 10: table mangle has no closing brace" in [
        g.message for g in rs.capture.gaps
    ]
    report = trace_nodes([NodeInput("n", rs)], TraceRequest(port=30080, dest="10.0.0.5"))
    (outcome,) = report.nodes[0].outcomes
    assert outcome.outcome.verdict.value == "UNKNOWN"
    assert "line 10" in (outcome.outcome.reason or "")
