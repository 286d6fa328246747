"""Unit tests of the ``iptables -L`` reader: each decoded form, noise, strict mode,
and that any text gives diagnostics or a ParseError, never another exception."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpsim.errors import ParseError
from kpsim.formats.iptables import names
from kpsim.formats.iptables.listing import parse_list
from kpsim.formats.iptables.listing_matches import decode
from kpsim.model import (
    Address,
    AddrTypeMatch,
    CommentMatch,
    ConnmarkMatch,
    ConnmarkMode,
    ConnmarkTarget,
    ConntrackMatch,
    Counters,
    Ct,
    Dnat,
    Interface,
    IPRangeMatch,
    Jump,
    Log,
    MarkMatch,
    MarkTarget,
    Masquerade,
    MultiportMatch,
    NatRange,
    NfacctMatch,
    OpaqueMatch,
    OpaqueTarget,
    Option,
    PhysdevMatch,
    PortMatch,
    PortRange,
    Protocol,
    RecentCommand,
    RecentMatch,
    Redirect,
    Reject,
    Rule,
    SetMatch,
    Snat,
    Standard,
    StatisticMatch,
    StatisticMode,
    Verdict,
    probability_threshold,
)

HEAD = "Chain KUBE-X (1 references)\ntarget     prot opt source               destination\n"
ANY = "0.0.0.0/0            0.0.0.0/0            "


def one(line: str, header: str = HEAD) -> Rule:
    rs = parse_list(header + line + "\n", "t.txt", table="nat")
    assert rs.diagnostics == (), [d.render() for d in rs.diagnostics]
    chain = rs.chain("nat", "KUBE-X")
    assert chain is not None and len(chain.rules) == 1
    return chain.rules[0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("/* ns/svc:p cluster IP */", CommentMatch("ns/svc:p cluster IP")),
        ("tcp dpt:80", PortMatch("tcp", PortRange(80, 80))),
        ("tcp dpt:http", PortMatch("tcp", PortRange(80, 80))),
        ("udp spt:53", PortMatch("udp", sport=PortRange(53, 53))),
        ("tcp dpts:30000:32767", PortMatch("tcp", PortRange(30000, 32767))),
        ("tcp dpt:!22", PortMatch("tcp", PortRange(22, 22), dport_negated=True)),
        ("sctp dpt:9000", PortMatch("sctp", PortRange(9000, 9000))),
        ("tcp dpt:foo", PortMatch("tcp", PortRange(-1, -1, name="foo"))),
        (
            "tcp flags:0x17/0x02",
            PortMatch("tcp", extra=(Option("--tcp-flags", ("FIN,SYN,RST,ACK", "SYN")),)),
        ),
        (
            "multiport dports 80,443,8000:8080",
            MultiportMatch(
                "dports", (PortRange(80, 80), PortRange(443, 443), PortRange(8000, 8080))
            ),
        ),
        ("multiport sports  !22", MultiportMatch("sports", (PortRange(22, 22),), True)),
        (
            "statistic mode random probability 0.33333333349",
            StatisticMatch(StatisticMode.RANDOM, probability_threshold("0.33333333349")),
        ),
        (
            "statistic mode random probability 0.33332999982",
            StatisticMatch(StatisticMode.RANDOM, probability_threshold("0.33333")),
        ),
        (
            "statistic mode random probability 0.50000000000",
            StatisticMatch(StatisticMode.RANDOM, 1 << 30),
        ),
        (
            "statistic mode nth every 3 packet 1",
            StatisticMatch(StatisticMode.NTH, every=3, packet=1),
        ),
        (
            "recent: CHECK seconds: 10800 reap name: KUBE-SEP-X side: source mask: 255.255.255.255",
            RecentMatch(RecentCommand.RCHECK, "KUBE-SEP-X", 10800, True),
        ),
        (
            "recent: CHECK seconds: 180 reap name: KUBE-SEP-X side: source",
            RecentMatch(RecentCommand.RCHECK, "KUBE-SEP-X", 180, True),
        ),
        (
            "recent: SET name: KUBE-SEP-X side: source",
            RecentMatch(RecentCommand.SET, "KUBE-SEP-X"),
        ),
        (
            "! recent: UPDATE seconds: 60 hit_count: 5 TTL-Match name: A side: dest",
            RecentMatch(RecentCommand.UPDATE, "A", 60, False, 5, True, None, "dest", True),
        ),
        ("recent: REMOVE name: A side: source", RecentMatch(RecentCommand.REMOVE, "A")),
        ("ADDRTYPE match dst-type LOCAL", AddrTypeMatch(dst_type=("LOCAL",))),
        (
            "ADDRTYPE match src-type !LOCAL,BROADCAST limit-in",
            AddrTypeMatch(("LOCAL", "BROADCAST"), True, limit_iface_in=True),
        ),
        (
            "ADDRTYPE match dst-type LOCAL limit-out",
            AddrTypeMatch(dst_type=("LOCAL",), limit_iface_out=True),
        ),
        ("mark match 0x4000/0x4000", MarkMatch(0x4000, 0x4000)),
        ("mark match ! 0x4000/0x4000", MarkMatch(0x4000, 0x4000, True)),
        ("mark match 0x1", MarkMatch(1)),
        ("connmark match  0x10/0xf0", ConnmarkMatch(0x10, 0xF0)),
        ("connmark match ! 0x2", ConnmarkMatch(2, negated=True)),
        ("ctstate NEW", ConntrackMatch(("NEW",))),
        ("! ctstate INVALID", ConntrackMatch(("INVALID",), True)),
        ("state RELATED,ESTABLISHED", ConntrackMatch(("RELATED", "ESTABLISHED"), module="state")),
        ("match-set KUBE-CLUSTER-IP dst,dst", SetMatch("KUBE-CLUSTER-IP", ("dst", "dst"))),
        ("! match-set S src", SetMatch("S", ("src",), True)),
        (
            "PHYSDEV match --physdev-in eth0 ! --physdev-is-bridged",
            PhysdevMatch(
                (Option("--physdev-in", ("eth0",)), Option("--physdev-is-bridged", (), True))
            ),
        ),
        ("nfacct-name  acct1", NfacctMatch("acct1")),
        (
            "source IP range ! 10.0.0.1-10.0.0.9 destination IP range 10.1.0.1-10.1.0.1",
            IPRangeMatch(("10.0.0.1", "10.0.0.9"), True, ("10.1.0.1", "10.1.0.1")),
        ),
        ("source IP range 10.0.0.1-10.0.0.9", IPRangeMatch(("10.0.0.1", "10.0.0.9"))),
        (
            "destination IP range ! 10.1.0.1-10.1.0.1",
            IPRangeMatch(None, False, ("10.1.0.1", "10.1.0.1"), True),
        ),
        ("PKTTYPE = multicast", OpaqueMatch("?", text="PKTTYPE = multicast")),
    ],
)
def test_match_forms(text: str, match: object) -> None:
    assert one(f"RETURN     all  --  {ANY}{text}").matches == (match,)


@pytest.mark.parametrize(
    ("target", "text", "want"),
    [
        ("DNAT", "tcp to:10.244.0.25:53", Dnat((NatRange("10.244.0.25", None, 53),))),
        (
            "DNAT",
            "to:10.0.0.1-10.0.0.2:80-81 random persistent",
            Dnat((NatRange("10.0.0.1", "10.0.0.2", 80, 81),), True, True),
        ),
        ("DNAT", "to:[fd00::1]:80", Dnat((NatRange("fd00::1", None, 80),))),
        ("SNAT", "to:1.2.3.4", Snat((NatRange("1.2.3.4"),))),
        (
            "SNAT",
            "to:1.2.3.4 random-fully",
            Snat((NatRange("1.2.3.4"),), random_fully=True),
        ),
        ("MASQUERADE", "", Masquerade()),
        ("MASQUERADE", "random-fully", Masquerade(random_fully=True)),
        ("MASQUERADE", "masq ports: 1024-2048 random", Masquerade(PortRange(1024, 2048), True)),
        ("REDIRECT", "redir ports 80", Redirect(PortRange(80, 80))),
        ("MARK", "MARK or 0x4000", MarkTarget(0x4000, 0x4000)),
        ("MARK", "MARK set 0x4d415351", MarkTarget(0x4D415351, 0xFFFFFFFF)),
        ("MARK", "MARK xor 0x4000", MarkTarget(0x4000, 0)),
        ("MARK", "MARK and 0xff", MarkTarget(0, 0xFFFFFF00)),
        ("MARK", "MARK xset 0x4000/0xc000", MarkTarget(0x4000, 0xC000)),
        ("CONNMARK", "CONNMARK xset 0x1/0xff", ConnmarkTarget(ConnmarkMode.SET, 1, 0xFF)),
        ("CONNMARK", "CONNMARK or 0x10", ConnmarkTarget(ConnmarkMode.SET, 0x10, 0x10)),
        ("CONNMARK", "CONNMARK save", ConnmarkTarget(ConnmarkMode.SAVE)),
        (
            "CONNMARK",
            "CONNMARK save mask 0xff",
            ConnmarkTarget(ConnmarkMode.SAVE, nfmask=0xFF, ctmask=0xFF),
        ),
        (
            "CONNMARK",
            "CONNMARK restore ctmask 0xff00 nfmask ~0xff",
            ConnmarkTarget(ConnmarkMode.RESTORE, nfmask=0xFF, ctmask=0xFF00),
        ),
        ("LOG", 'LOG flags 0 level 4 prefix "x y "', Log("x y ")),
        ("LOG", "LOG level info", Log(level="6")),
        (
            "LOG",
            "LOG flags 1 level 6",
            Log(level="6", extra=(Option("--log-tcp-sequence"),)),
        ),
        ("REJECT", "reject-with icmp-port-unreachable", Reject()),
        ("REJECT", "reject-with tcp-reset", Reject("tcp-reset")),
        (
            "DNAT",
            "recent: SET name: A side: source mask: 255.255.255.0 tcp to:1.1.1.1",
            Dnat((NatRange("1.1.1.1"),)),
        ),
        ("CT", "CT notrack", Ct(notrack=True)),
        ("CT", "NOTRACK", Ct(notrack=True, legacy=True)),  # how iptables-nft lists -j NOTRACK
        ("NOTRACK", "", Ct(notrack=True, legacy=True)),
        ("CT", "CT zone 1", Ct(options=(Option("--zone", ("1",)),))),
        ("ACCEPT", "", Standard(Verdict.ACCEPT)),
        ("KUBE-SVC-X", "", Jump("KUBE-SVC-X")),
        ("NFLOG", "nflog-group 5", OpaqueTarget("NFLOG", text="nflog-group 5")),
    ],
)
def test_target_forms(target: str, text: str, want: object) -> None:
    assert one(f"{target:<10} tcp  --  {ANY}{text}").target == want


def test_goto_and_empty_target() -> None:
    rule = one("KUBE-SVC-A  17   --  0.0.0.0/0            0.0.0.0/0           [goto]  udp dpt:53")
    assert rule.target == Jump("KUBE-SVC-A", goto=True)
    assert rule.protocol == Protocol("udp")
    assert one(f"           all  --  {ANY}").target is None


@pytest.mark.parametrize(
    ("col", "want"),
    [
        ("all", None),
        ("0", None),
        ("6", Protocol("tcp")),
        ("17", Protocol("udp")),
        ("132", Protocol("sctp")),
        ("1", Protocol("icmp")),
        ("58", Protocol("ipv6-icmp")),
        ("!udp", Protocol("udp", True)),
        ("47", Protocol("gre")),
        ("253", Protocol("253")),
    ],
)
def test_protocol_column(col: str, want: Protocol | None) -> None:
    assert one(f"RETURN     {col:<4} --  {ANY}").protocol == want


def test_addresses_and_fragments() -> None:
    rule = one("RETURN     all  -f !10.0.0.0/8           localhost            ")
    assert rule.source == Address(ipaddress.ip_network("10.0.0.0/8"), True)
    assert rule.destination == Address(ipaddress.ip_network("127.0.0.1/32"))
    assert rule.fragment is True
    assert one(f"RETURN     all  !f  {ANY}").fragment is False
    rule = one("RETURN     all  --  anywhere             base-address.mcast.net/4")
    assert rule.source is None
    assert rule.destination == Address(ipaddress.ip_network("224.0.0.0/4"))
    assert names.address("node-1") == Address(None, unresolved="node-1")


def test_verbose_numbered_columns() -> None:
    head = (
        "Chain KUBE-X (1 references)\n"
        "num   pkts bytes target     prot opt in     out     source               destination\n"
    )
    rule = one(f"1     12K   3M RETURN     all  --  eth0   !docker0  {ANY}", head)
    assert rule.counters == Counters(12000, 3000000)
    assert rule.in_interface == Interface("eth0")
    assert rule.out_interface == Interface("docker0", negated=True)
    assert one(f"1     0     0 RETURN     all  --  any    *       {ANY}", head).in_interface is None


def test_policy_header_and_notes() -> None:
    text = (
        "Chain FORWARD (policy DROP 12 packets, 600 bytes)\n"
        " pkts bytes target     prot opt in     out     source               destination\n"
    )
    rs = parse_list(text, "t.txt")
    chain = rs.chain("filter", "FORWARD")
    assert chain is not None and chain.policy is Verdict.DROP
    assert chain.counters == Counters(12, 600)
    assert any("read as filter" in n for n in rs.notes)


def test_table_from_prompt_and_argument() -> None:
    text = "$ sudo iptables -t mangle -L -n\n" + HEAD
    assert list(parse_list(text, "t").tables) == ["mangle"]
    assert list(parse_list(text, "t", table="raw").tables) == ["raw"]
    assert list(parse_list("# iptables -L -n\n" + HEAD, "t").tables) == ["filter"]
    assert list(parse_list(HEAD, "t").tables) == ["nat"]


def test_number_column_checked() -> None:
    head = (
        "Chain KUBE-X (1 references)\nnum  target     prot opt source               destination\n"
    )
    rs = parse_list(head + f"2    RETURN     all  --  {ANY}\n", "t", table="nat")
    assert [(d.line, d.col) for d in rs.diagnostics] == [(3, 1)]
    assert "rule number 2, expected 1" in rs.diagnostics[0].message


def test_footer_count() -> None:
    body = HEAD + f"RETURN     all  --  {ANY}\n"
    assert parse_list(body + "Total Number of Rules: 1\n", "t", table="nat").diagnostics == ()
    rs = parse_list(body + "=======\nTotal Number of Rules: 3\n", "t", table="nat")
    assert [(d.line, d.col) for d in rs.diagnostics] == [(5, 24)]


def test_author_note_and_metadata() -> None:
    text = '# kpsim:meta {"node": "n1"}\n' + HEAD + f"RETURN     all  --  {ANY}  ← 1\n"
    rs = parse_list(text, "t", table="nat")
    assert rs.metadata["node"] == "n1"
    assert [(d.line, d.message) for d in rs.diagnostics] == [(4, "skipped author note '← 1'")]
    chain = rs.chain("nat", "KUBE-X")
    assert chain is not None and chain.rules[0].matches == ()


def test_cut_lines_are_diagnostics() -> None:
    text = HEAD + "DNAT       tcp  --  0.0.0.0/0\nDNAT       tcp  --  " + ANY + "/* cut"
    rs = parse_list(text, "t", table="nat")
    assert [d.line for d in rs.diagnostics] == [3, 4, 4]
    assert "ends before the destination" in rs.diagnostics[0].message
    chain = rs.chain("nat", "KUBE-X")
    assert chain is not None and len(chain.rules) == 1
    assert isinstance(chain.rules[0].target, OpaqueTarget)


def test_strict_raises_with_line_and_col() -> None:
    with pytest.raises(ParseError) as err:
        parse_list("```\n" + HEAD, "t.txt", strict=True)
    assert (err.value.line, err.value.col) == (1, 1)
    text = HEAD + "RETURN     all  xx  " + ANY
    with pytest.raises(ParseError) as err:
        parse_list(text, "t.txt", strict=True)
    assert (err.value.line, err.value.col) == (3, 17)
    assert "opt column" in err.value.message


def test_repeated_chain_listing_is_skipped() -> None:
    rule = f"RETURN     all  --  {ANY}\n"
    rs = parse_list(HEAD + rule + "\n" + HEAD + rule, "t", table="nat")
    chain = rs.chain("nat", "KUBE-X")
    assert chain is not None and len(chain.rules) == 1
    assert [d.line for d in rs.diagnostics] == [5, 7]


def test_decode_reports_damaged_known_text() -> None:
    decoded = decode("statistic mode random probability x", "KUBE-SEP-A")
    assert decoded.matches == (OpaqueMatch("?", text="statistic mode random probability x"),)
    assert decoded.problems and decoded.problems[0][0] == 0


SAMPLE = (
    "Chain KUBE-SVC-X (1 references)\n"
    " pkts bytes target     prot opt in     out     source               destination\n"
    "   12  720K KUBE-SEP-A  all  --  *      *       0.0.0.0/0            0.0.0.0/0            "
    "/* a */ statistic mode random probability 0.50000000000\n"
    "    0     0 DNAT       tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            "
    "tcp to:10.0.0.1:80\n"
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_random_text_never_crashes(text: str) -> None:
    try:
        parse_list(text, "fuzz.txt")
        parse_list(text, "fuzz.txt", strict=True)
    except ParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(SAMPLE)), st.integers(0, 40), st.text(max_size=12))
def test_mutated_listing_never_crashes(at: int, cut: int, insert: str) -> None:
    text = SAMPLE[:at] + insert + SAMPLE[at + cut :]
    try:
        rs = parse_list(text, "fuzz.txt")
        parse_list(text, "fuzz.txt", strict=True)
    except ParseError:
        return
    assert all(d.line >= 1 and d.col >= 1 for d in rs.diagnostics)
