"""Same kernel state, same model: every ``iptables -L`` variant of a real ruleset.

A throw-away network namespace gets a kube-proxy-like ruleset through
iptables-restore; each listing variant is parsed and compared, chain by chain, with
the model written out below (independent of the save parser, built concurrently),
projected onto what that variant shows.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shutil
from collections.abc import Iterator

import pytest

from kpsim.formats.iptables.listing import parse_list
from kpsim.formats.iptables.save import parse_save
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
    Jump,
    Log,
    MarkMatch,
    MarkTarget,
    Masquerade,
    Match,
    MultiportMatch,
    NatRange,
    OpaqueMatch,
    Option,
    PortMatch,
    PortRange,
    Protocol,
    RecentCommand,
    RecentMatch,
    Redirect,
    Reject,
    Rule,
    Ruleset,
    Snat,
    Standard,
    StatisticMatch,
    StatisticMode,
    Target,
    Verdict,
    probability_threshold,
)
from kpsim.verify import netns as kns

TOOLS = ("ip", "iptables", "iptables-save", "iptables-restore")
pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        os.geteuid() != 0 or any(shutil.which(t) is None for t in TOOLS),
        reason="needs root plus ip, iptables, iptables-save and iptables-restore",
    ),
]

RULES = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 53 -j CT --notrack
-A OUTPUT -p udp -m udp --dport 53 -j NOTRACK
-A OUTPUT -p tcp -j CT --zone 1
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-AAA - [0:0]
:KUBE-SEP-A1 - [0:0]
:KUBE-SEP-A2 - [0:0]
:KUBE-SEP-A3 - [0:0]
:KUBE-MISC - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" \
-j MASQUERADE --random-fully
-A KUBE-SERVICES ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m comment \
--comment "kube-system/kube-dns:dns-tcp cluster IP" -m tcp --dport 53 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment \
--comment "kube-system/kube-dns:dns-tcp cluster IP" -m tcp --dport 53 -j KUBE-SVC-AAA
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be \
the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web:http" -m tcp --dport 30080 \
-j KUBE-MARK-MASQ
-A KUBE-NODEPORTS -p udp -m udp --sport 1000:2000 --dport 30081 -g KUBE-SVC-AAA
-A KUBE-NODEPORTS -p tcp -m multiport --dports 80,443,8000:8080 -j KUBE-SVC-AAA
-A KUBE-NODEPORTS -p tcp -m multiport ! --sports 22 -j RETURN
-A KUBE-SVC-AAA -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A1 \
--mask 255.255.255.255 --rsource -j KUBE-SEP-A1
-A KUBE-SVC-AAA -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-A1
-A KUBE-SVC-AAA -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A2
-A KUBE-SVC-AAA -m statistic --mode nth --every 3 --packet 1 -j KUBE-SEP-A3
-A KUBE-SVC-AAA -j KUBE-SEP-A3
-A KUBE-SEP-A1 -s 10.244.0.4/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-A1 -p tcp -m recent --set --name KUBE-SEP-A1 --mask 255.255.255.255 --rsource \
-m tcp -j DNAT --to-destination 10.244.0.4:53
-A KUBE-SEP-A2 -p tcp -j DNAT --to-destination 10.244.0.5:53 --random --persistent
-A KUBE-SEP-A3 -p udp -j DNAT --to-destination 10.244.0.6-10.244.0.7:53-54
-A KUBE-MISC -i eth0 ! -o docker0 -s 192.168.1.0/24 -j SNAT --to-source 1.2.3.4
-A KUBE-MISC -o eth+ -p tcp -j SNAT --to-source 1.2.3.4-1.2.3.9:1000-2000 --random-fully
-A KUBE-MISC -p tcp -j MASQUERADE --to-ports 1024-2048 --random
-A KUBE-MISC -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 80
-A KUBE-MISC -f -j RETURN
-A KUBE-MISC ! -f -j RETURN
-A KUBE-MISC -m addrtype ! --src-type LOCAL,BROADCAST --limit-iface-in -j RETURN
-A KUBE-MISC -m addrtype --dst-type LOCAL --limit-iface-out -j RETURN
-A KUBE-MISC -m mark --mark 0x1 -j MARK --set-mark 0x4d415351
-A KUBE-MISC -j MARK --and-mark 0xff
-A KUBE-MISC -j MARK --set-xmark 0x4000/0xc000
-A KUBE-MISC -m connmark --mark 0x10/0xf0 -j CONNMARK --set-xmark 0x1/0xff
-A KUBE-MISC -m connmark ! --mark 0x2 -j CONNMARK --save-mark
-A KUBE-MISC -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff00
-A KUBE-MISC -m conntrack --ctstate NEW,ESTABLISHED -j RETURN
-A KUBE-MISC -m conntrack ! --ctstate INVALID -j RETURN
-A KUBE-MISC -m state --state RELATED,ESTABLISHED -j RETURN
-A KUBE-MISC -p icmp -j RETURN
-A KUBE-MISC -p sctp -m sctp --dport 9000 -j RETURN
-A KUBE-MISC ! -p udp -j RETURN
-A KUBE-MISC -p 47 -j RETURN
-A KUBE-MISC -s 127.0.0.1/32 -d 224.0.0.0/4 -j RETURN
-A KUBE-MISC -p tcp -m tcp ! --dport 22 -j RETURN
-A KUBE-MISC -p tcp -m tcp --dport 22:25 ! --sport 1024:65535 -j RETURN
-A KUBE-MISC -m statistic --mode random ! --probability 0.25 -j RETURN
-A KUBE-MISC -m recent --update --seconds 60 --hitcount 5 --rttl --name FOO --rdest -j RETURN
-A KUBE-MISC -m recent --remove --name FOO -j RETURN
-A KUBE-MISC -m recent ! --rcheck --name BAR -j RETURN
-A KUBE-MISC -m comment --comment "a comment with  spaces" -j LOG --log-prefix "kp: " \
--log-level 6
-A KUBE-MISC -j LOG
-A KUBE-MISC -m limit --limit 5/sec -j RETURN
-A KUBE-MISC
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
-A INPUT -j KUBE-FIREWALL
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 443 -j REJECT --reject-with tcp-reset
-A INPUT -p udp -j REJECT --reject-with icmp-port-unreachable
-A INPUT -j REJECT
-A FORWARD -m mark --mark 0x8000/0x8000 -j DROP
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment \
--comment "block incoming localnet connections" -m conntrack \
! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A OUTPUT -j KUBE-FIREWALL
-A OUTPUT -p icmp -j ACCEPT
COMMIT
""".replace("\\\n", "")

# ---------------------------------------------------------------- the expected model

RET = Standard(Verdict.RETURN)
TCP, UDP = Protocol("tcp"), Protocol("udp")


def net(text: str, negated: bool = False) -> Address:
    return Address(ipaddress.ip_network(text), negated)


def port(lo: int, hi: int | None = None) -> PortRange:
    return PortRange(lo, lo if hi is None else hi)


def r(target: Target | None, *matches: Match, **core: object) -> dict[str, object]:
    return {"target": target, "matches": matches, **core}


def comment(text: str) -> CommentMatch:
    return CommentMatch(text)


def recent(cmd: RecentCommand, name: str, **kw: object) -> RecentMatch:
    return RecentMatch(cmd, name, **kw)  # type: ignore[arg-type]


SVC_COMMENT = comment("kube-system/kube-dns:dns-tcp cluster IP")
EXPECTED: dict[str, dict[str, list[dict[str, object]]]] = {
    "raw": {
        "PREROUTING": [r(Ct(notrack=True), PortMatch("udp", port(53)), protocol=UDP)],
        "OUTPUT": [
            r(Ct(notrack=True, legacy=True), PortMatch("udp", port(53)), protocol=UDP),
            r(Ct(options=(Option("--zone", ("1",)),)), protocol=TCP),
        ],
    },
    "nat": {
        "PREROUTING": [r(Jump("KUBE-SERVICES"), comment("kubernetes service portals"))],
        "INPUT": [],
        "OUTPUT": [r(Jump("KUBE-SERVICES"), comment("kubernetes service portals"))],
        "POSTROUTING": [r(Jump("KUBE-POSTROUTING"), comment("kubernetes postrouting rules"))],
        "KUBE-MARK-MASQ": [r(MarkTarget(0x4000, 0x4000))],
        "KUBE-MISC": [
            r(
                Snat((NatRange("1.2.3.4"),)),
                source=net("192.168.1.0/24"),
                in_interface=Interface("eth0"),
                out_interface=Interface("docker0", negated=True),
            ),
            r(
                Snat((NatRange("1.2.3.4", "1.2.3.9", 1000, 2000),), random_fully=True),
                protocol=TCP,
                out_interface=Interface("eth+"),
            ),
            r(Masquerade(port(1024, 2048), random=True), protocol=TCP),
            r(Redirect(port(80)), PortMatch("tcp", port(8080)), protocol=TCP),
            r(RET, fragment=True),
            r(RET, fragment=False),
            r(RET, AddrTypeMatch(("LOCAL", "BROADCAST"), True, limit_iface_in=True)),
            r(RET, AddrTypeMatch(dst_type=("LOCAL",), limit_iface_out=True)),
            r(MarkTarget(0x4D415351, 0xFFFFFFFF), MarkMatch(1)),
            r(MarkTarget(0, 0xFFFFFF00)),
            r(MarkTarget(0x4000, 0xC000)),
            r(ConnmarkTarget(ConnmarkMode.SET, 1, 0xFF), ConnmarkMatch(0x10, 0xF0)),
            r(ConnmarkTarget(ConnmarkMode.SAVE), ConnmarkMatch(2, negated=True)),
            r(ConnmarkTarget(ConnmarkMode.RESTORE, nfmask=0xFF, ctmask=0xFF00)),
            r(RET, ConntrackMatch(("NEW", "ESTABLISHED"))),
            r(RET, ConntrackMatch(("INVALID",), negated=True)),
            r(RET, ConntrackMatch(("RELATED", "ESTABLISHED"), module="state")),
            r(RET, protocol=Protocol("icmp")),
            r(RET, PortMatch("sctp", port(9000)), protocol=Protocol("sctp")),
            r(RET, protocol=Protocol("udp", negated=True)),
            r(RET, protocol=Protocol("gre")),
            r(RET, source=net("127.0.0.1/32"), destination=net("224.0.0.0/4")),
            r(RET, PortMatch("tcp", port(22), dport_negated=True), protocol=TCP),
            r(
                RET,
                PortMatch("tcp", port(22, 25), False, port(1024, 65535), True),
                protocol=TCP,
            ),
            r(
                RET,
                StatisticMatch(StatisticMode.RANDOM, probability_threshold("0.25"), negated=True),
            ),
            r(
                RET,
                recent(RecentCommand.UPDATE, "FOO", seconds=60, hitcount=5, rttl=True, side="dest"),
            ),
            r(RET, recent(RecentCommand.REMOVE, "FOO")),
            r(RET, recent(RecentCommand.RCHECK, "BAR", negated=True)),
            r(Log("kp: ", "6"), comment("a comment with  spaces")),
            r(Log()),
            r(RET, OpaqueMatch("?", text="limit: avg 5/sec burst 5")),
            r(None),
        ],
        "KUBE-NODEPORTS": [
            r(
                Jump("KUBE-MARK-MASQ"),
                comment("default/web:http"),
                PortMatch("tcp", port(30080)),
                protocol=TCP,
            ),
            r(
                Jump("KUBE-SVC-AAA", goto=True),
                PortMatch("udp", port(30081), sport=port(1000, 2000)),
                protocol=UDP,
            ),
            r(
                Jump("KUBE-SVC-AAA"),
                MultiportMatch("dports", (port(80), port(443), port(8000, 8080))),
                protocol=TCP,
            ),
            r(RET, MultiportMatch("sports", (port(22),), negated=True), protocol=TCP),
        ],
        "KUBE-POSTROUTING": [
            r(RET, MarkMatch(0x4000, 0x4000, negated=True)),
            r(MarkTarget(0x4000, 0)),
            r(
                Masquerade(random_fully=True),
                comment("kubernetes service traffic requiring SNAT"),
            ),
        ],
        "KUBE-SEP-A1": [
            r(Jump("KUBE-MARK-MASQ"), source=net("10.244.0.4/32")),
            r(
                Dnat((NatRange("10.244.0.4", None, 53),)),
                recent(RecentCommand.SET, "KUBE-SEP-A1"),
                PortMatch("tcp"),
                protocol=TCP,
            ),
        ],
        "KUBE-SEP-A2": [
            r(
                Dnat((NatRange("10.244.0.5", None, 53),), True, True),
                protocol=TCP,
            )
        ],
        "KUBE-SEP-A3": [
            r(Dnat((NatRange("10.244.0.6", "10.244.0.7", 53, 54),)), protocol=UDP),
        ],
        "KUBE-SERVICES": [
            r(
                Jump("KUBE-MARK-MASQ"),
                SVC_COMMENT,
                PortMatch("tcp", port(53)),
                source=net("10.244.0.0/16", True),
                destination=net("10.96.0.10/32"),
                protocol=TCP,
            ),
            r(
                Jump("KUBE-SVC-AAA"),
                SVC_COMMENT,
                PortMatch("tcp", port(53)),
                destination=net("10.96.0.10/32"),
                protocol=TCP,
            ),
            r(
                Jump("KUBE-NODEPORTS"),
                comment(
                    "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
                ),
                AddrTypeMatch(dst_type=("LOCAL",)),
            ),
        ],
        "KUBE-SVC-AAA": [
            r(
                Jump("KUBE-SEP-A1"),
                recent(RecentCommand.RCHECK, "KUBE-SEP-A1", seconds=10800, reap=True),
            ),
            r(
                Jump("KUBE-SEP-A1"),
                StatisticMatch(StatisticMode.RANDOM, probability_threshold("0.33333333349")),
            ),
            r(
                Jump("KUBE-SEP-A2"),
                StatisticMatch(StatisticMode.RANDOM, probability_threshold("0.5")),
            ),
            r(Jump("KUBE-SEP-A3"), StatisticMatch(StatisticMode.NTH, every=3, packet=1)),
            r(Jump("KUBE-SEP-A3")),
        ],
    },
    "filter": {
        "INPUT": [
            r(Jump("KUBE-FIREWALL")),
            r(Standard(Verdict.ACCEPT), ConntrackMatch(("RELATED", "ESTABLISHED"))),
            r(Standard(Verdict.ACCEPT), PortMatch("tcp", port(22)), protocol=TCP),
            r(Reject("tcp-reset"), PortMatch("tcp", port(443)), protocol=TCP),
            r(Reject(), protocol=UDP),
            r(Reject()),
        ],
        "FORWARD": [r(Standard(Verdict.DROP), MarkMatch(0x8000, 0x8000))],
        "OUTPUT": [
            r(Jump("KUBE-FIREWALL")),
            r(Standard(Verdict.ACCEPT), protocol=Protocol("icmp")),
        ],
        "KUBE-FIREWALL": [
            r(
                Standard(Verdict.DROP),
                comment("block incoming localnet connections"),
                ConntrackMatch(("RELATED", "ESTABLISHED", "DNAT"), negated=True),
                source=net("127.0.0.0/8", True),
                destination=net("127.0.0.0/8"),
            )
        ],
    },
}
POLICIES = {"FORWARD": Verdict.DROP}


def expected_rules(table: str, chain: str, verbose: bool) -> list[Rule]:
    rules = []
    for n, spec in enumerate(EXPECTED[table][chain], start=1):
        kw = dict(spec)
        if not verbose:
            kw.pop("in_interface", None)
            kw.pop("out_interface", None)
        counters = Counters(0, 0) if verbose else None
        rules.append(Rule(table=table, chain=chain, number=n, counters=counters, **kw))  # type: ignore[arg-type]
    return rules


# ---------------------------------------------------------------- the namespace


@pytest.fixture(scope="module")
def captures() -> Iterator[dict[str, str]]:
    """Load RULES in a fresh namespace and capture every listing variant."""
    # hosts={}: a namespace-local resolver, so reverse lookups of -L without -n fail fast
    with kns.Namespace(hosts={}) as ns:

        def run(*args: str, stdin: str | None = None) -> str:
            return kns.run(ns.name, list(args), input=stdin, timeout=60).stdout

        run("iptables-restore", stdin=RULES)
        out = {"save": run("iptables-save")}
        for table in ("nat", "filter", "raw"):
            for key, flags in VARIANTS.items():
                out[f"{table}:{key}"] = run("iptables", "-t", table, "-L", *flags)
        yield out


VARIANTS = {
    "nvl": ("-n", "-v", "--line-numbers"),
    "n": ("-n",),
    "nvx": ("-n", "-v", "-x"),
    "names": (),
    "vnames": ("-v",),
}


def compare(ruleset: Ruleset, table: str, verbose: bool, what: str) -> None:
    got = ruleset.table(table)
    assert got is not None, f"{what}: no {table} table; notes {ruleset.notes}"
    assert list(got.chains) == list(EXPECTED[table]), f"{what}: chain list"
    for chain, expected_specs in EXPECTED[table].items():
        c = got.chains[chain]
        want = expected_rules(table, chain, verbose)
        assert len(c.rules) == len(want), f"{what} {chain}: {len(c.rules)} rules"
        for have, exp in zip(c.rules, want, strict=True):
            assert have == exp, f"{what} {chain} rule {exp.number}:\n have {have}\n want {exp}"
        builtin = chain.isupper() and not chain.startswith("KUBE")
        policy = POLICIES.get(chain, Verdict.ACCEPT) if builtin else None
        assert c.policy == policy, f"{what} {chain}: policy"
        if verbose and builtin:
            assert c.counters == Counters(0, 0), f"{what} {chain}: chain counters"
        assert len(expected_specs) == len(c.rules)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("table", ["nat", "filter", "raw"])
def test_listing_matches_loaded_state(captures: dict[str, str], table: str, variant: str) -> None:
    text = captures[f"{table}:{variant}"]
    ruleset = parse_list(text, f"{table}-{variant}.txt", table=table)
    assert ruleset.diagnostics == (), [d.render() for d in ruleset.diagnostics]
    compare(ruleset, table, "v" in variant, f"-t {table} -L {' '.join(VARIANTS[variant])}")


def test_table_inferred_from_builtin_chains(captures: dict[str, str]) -> None:
    nat = parse_list(captures["nat:n"], "nat.txt")
    flt = parse_list(captures["filter:n"], "filter.txt")
    assert list(nat.tables) == ["nat"] and list(flt.tables) == ["filter"]
    assert any("read as nat" in n for n in nat.notes)


def test_pasted_with_prompt_reads_table(captures: dict[str, str]) -> None:
    text = "root@node:~# iptables -t filter -L -n -v\n" + captures["filter:nvx"]
    ruleset = parse_list(text, "pasted.txt")
    assert [d.line for d in ruleset.diagnostics] == [1]
    compare(ruleset, "filter", True, "pasted")


def test_agrees_with_save_parser_where_both_are_typed(captures: dict[str, str]) -> None:
    """Rules without opaque parts must be identical in both parsers
    (opaque ones differ by nature: -L prints text, save prints options)."""
    saved = parse_save(captures["save"], "save.txt")
    for table in ("nat", "filter"):
        listed = parse_list(captures[f"{table}:nvl"], "l.txt", table=table)
        for name, chain in listed.tables[table].chains.items():
            other = saved.chain(table, name)
            assert other is not None, f"save has no {table}/{name}"
            for a, b in zip(chain.rules, other.rules, strict=True):
                if "Opaque" in repr(a) or "Opaque" in repr(b):
                    continue
                b2 = dataclasses.replace(b, counters=a.counters)
                assert a == b2, f"{table}/{name} rule {a.number}:\n list {a}\n save {b}"
