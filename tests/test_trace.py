"""The trace engine on rulesets built from model objects (and from iptables-save text
when the parser is there): exact shares, NAT, marks, control flow, unknowns, state."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from kpsim.engine import prepare, walk
from kpsim.engine.packet import Packet, State
from kpsim.engine.trace import Disposition, Outcome, Tracer, trace
from kpsim.errors import TraceError
from kpsim.formats import parse_text
from kpsim.formats.iptables.save import parse_save
from kpsim.inputs import synth
from kpsim.kube import services as kube
from kpsim.model import (
    PROBABILITY_SCALE,
    Address,
    AddrTypeMatch,
    Chain,
    CommentMatch,
    ConntrackMatch,
    Ct,
    Dnat,
    Family,
    Format,
    Interface,
    Jump,
    MarkMatch,
    MarkTarget,
    Masquerade,
    NatRange,
    OpaqueMatch,
    PortMatch,
    PortRange,
    Protocol,
    RecentCommand,
    RecentMatch,
    Reject,
    Rule,
    Ruleset,
    SetMatch,
    Standard,
    StatisticMatch,
    StatisticMode,
    Table,
    Target,
    Verdict,
    probability_threshold,
)
from kpsim.model.node import NodeContext

NODE_IP = "10.0.1.5"
NODE = NodeContext.of([NODE_IP])
CLIENT = "203.0.113.9"
MARK_MASQ = MarkTarget(0x4000, 0x4000)  # --or-mark 0x4000
TWO31 = PROBABILITY_SCALE

# ---------------------------------------------------------------- building rulesets


def r(target: Target | None, *matches: object, **fields: object) -> Rule:
    """A rule whose table/chain/number ``build`` fills in."""
    return Rule("", "", 0, target, matches=tuple(matches), **fields)  # type: ignore[arg-type]


def build(spec: dict[str, dict[str, object]]) -> Ruleset:
    """``{"nat": {"PREROUTING": [rules] or (policy, [rules])}}`` → Ruleset."""
    tables = {}
    for tname, chains in spec.items():
        out = {}
        for cname, body in chains.items():
            policy, rules = body if isinstance(body, tuple) else (None, body)
            numbered = tuple(
                replace(x, table=tname, chain=cname, number=i) for i, x in enumerate(rules, 1)
            )
            out[cname] = Chain(cname, numbered, policy)
        tables[tname] = Table(tname, out)
    return Ruleset("<test>", Format.SAVE, Family.IPV4, tables)


def net(text: str, negated: bool = False) -> Address:
    return Address(ipaddress.ip_network(text), negated)


def tcp(dport: int) -> PortMatch:
    return PortMatch("tcp", PortRange(dport, dport))


def stat(probability: str) -> StatisticMatch:
    return StatisticMatch(StatisticMode.RANDOM, threshold=probability_threshold(probability))


def dnat(addr: str, port: int) -> Dnat:
    return Dnat((NatRange(addr, None, port, None),))


def kube_nat(svc_rules: list[Rule], extra: dict[str, object] | None = None) -> dict[str, object]:
    """kube-proxy's nat shape: NodePort 30080 and ClusterIP 10.96.0.10:80 → KUBE-SVC-X."""
    chains: dict[str, object] = {
        "PREROUTING": [r(Jump("KUBE-SERVICES"))],
        "OUTPUT": [r(Jump("KUBE-SERVICES"))],
        "POSTROUTING": [r(Jump("KUBE-POSTROUTING"))],
        "KUBE-SERVICES": [
            r(
                Jump("KUBE-SVC-X"),
                tcp(80),
                destination=net("10.96.0.10/32"),
                protocol=Protocol("tcp"),
            ),
            r(Jump("KUBE-NODEPORTS"), AddrTypeMatch(dst_type=("LOCAL",))),
        ],
        "KUBE-NODEPORTS": [r(Jump("KUBE-EXT-X"), tcp(30080), protocol=Protocol("tcp"))],
        "KUBE-EXT-X": [r(Jump("KUBE-MARK-MASQ")), r(Jump("KUBE-SVC-X"))],
        "KUBE-MARK-MASQ": [r(MARK_MASQ)],
        "KUBE-POSTROUTING": [
            r(Standard(Verdict.RETURN), MarkMatch(0x4000, 0x4000, negated=True)),
            r(MarkTarget(0x4000, 0)),  # --xor-mark 0x4000
            r(Masquerade()),
        ],
        "KUBE-SVC-X": svc_rules,
    }
    chains.update(extra or {})
    return chains


def sep(i: int) -> str:
    return f"KUBE-SEP-{i}"


def seps(n: int) -> dict[str, object]:
    return {sep(i): [r(dnat(f"10.244.{i}.7", 8080), protocol=Protocol("tcp"))] for i in range(n)}


def by_dest(outcomes: tuple[Outcome, ...]) -> dict[tuple[str, int], Outcome]:
    return {o.destination: o for o in outcomes}


NODEPORT = Packet.of(CLIENT, NODE_IP, 30080)

# ---------------------------------------------------------------- probabilities


def test_three_endpoints_exact_shares() -> None:
    svc = [
        r(Jump(sep(0)), stat("0.3333333333")),
        r(Jump(sep(1)), stat("0.5000000000")),
        r(Jump(sep(2))),
    ]
    res = Tracer(build({"nat": kube_nat(svc, seps(3))}), NODE).trace(NODEPORT)
    p1 = Fraction(715827883, TWO31)
    p2 = (1 - p1) * Fraction(1073741824, TWO31)
    got = by_dest(res.outcomes)
    assert got[("10.244.0.7", 8080)].probability == p1
    assert got[("10.244.1.7", 8080)].probability == p2
    assert got[("10.244.2.7", 8080)].probability == 1 - p1 - p2
    assert res.total == 1
    assert all(o.verdict is Disposition.DNAT and o.masquerade for o in res.outcomes)
    assert all(type(o.probability) is Fraction for o in res.outcomes)


def test_skewed_chain() -> None:
    svc = [r(Jump(sep(0)), stat("0.9")), r(Jump(sep(1)), stat("0.1")), r(Jump(sep(2)))]
    res = trace(build({"nat": kube_nat(svc, seps(3))}), NODEPORT, NODE)
    p = [Fraction(probability_threshold(x), TWO31) for x in ("0.9", "0.1")]
    got = by_dest(res.outcomes)
    assert got[("10.244.0.7", 8080)].probability == p[0]
    assert got[("10.244.1.7", 8080)].probability == (1 - p[0]) * p[1]
    assert res.total == 1


def test_fall_through_accepts_original_destination() -> None:
    svc = [r(Jump(sep(0)), stat("0.5")), r(Jump(sep(1)), stat("0.5"))]
    res = trace(build({"nat": kube_nat(svc, seps(2))}), NODEPORT, NODE)
    rest = by_dest(res.outcomes)[(NODE_IP, 30080)]
    assert rest.verdict is Disposition.LOCAL  # no DNAT: the node itself receives it
    assert rest.probability == Fraction(1, 4)
    cluster_ip = trace(build({"nat": kube_nat(svc, seps(2))}), Packet.of(CLIENT, "10.96.0.10", 80))
    miss = by_dest(cluster_ip.outcomes)[("10.96.0.10", 80)]
    assert miss.verdict is Disposition.ACCEPT and miss.probability == Fraction(1, 4)
    assert cluster_ip.total == 1


def test_nth_uses_state_counters() -> None:
    nth = StatisticMatch(StatisticMode.NTH, every=3, packet=0)
    rs = build({"nat": kube_nat([r(Jump(sep(0)), nth), r(Jump(sep(1)))], seps(2))})
    # The kernel starts the counter at every-1-packet: packet 0 of the cycle matches.
    first = trace(rs, NODEPORT, NODE)
    assert [o.destination for o in first.outcomes] == [("10.244.0.7", 8080)]
    # After the first packet the kernel counter is 0: the second packet steps it to 1.
    second = trace(rs, NODEPORT, NODE, State(nth={("nat", "KUBE-SVC-X", 1): 0}))
    assert [o.destination for o in second.outcomes] == [("10.244.1.7", 8080)]
    third = trace(rs, NODEPORT, NODE, State(nth={("nat", "KUBE-SVC-X", 1): 2}))
    assert [o.destination for o in third.outcomes] == [("10.244.0.7", 8080)]


# ---------------------------------------------------------------- marks and NAT


def test_mark_then_masquerade_only_when_marked() -> None:
    svc = [r(Jump(sep(0)))]
    rs = build({"nat": kube_nat(svc, seps(1))})
    (np,) = trace(rs, NODEPORT, NODE).outcomes
    assert np.masquerade and np.verdict is Disposition.DNAT
    steps = [(s.chain, s.number) for s in np.path]
    assert ("KUBE-MARK-MASQ", 1) in steps and ("KUBE-POSTROUTING", 3) in steps
    # ClusterIP from a pod: no KUBE-MARK-MASQ, so KUBE-POSTROUTING returns early.
    (pod,) = trace(rs, Packet.of("10.244.9.9", "10.96.0.10", 80, in_interface="cni0")).outcomes
    assert not pod.masquerade and pod.destination == ("10.244.0.7", 8080)
    assert ("KUBE-POSTROUTING", 1) in [(s.chain, s.number) for s in pod.path]


def test_snat_and_reject_and_dnat_port_range_note() -> None:
    from kpsim.model import Snat

    rs = build(
        {
            "nat": {
                "PREROUTING": [r(Dnat((NatRange("10.1.0.1", "10.1.0.9", 80, 90),)))],
                "POSTROUTING": [r(Snat((NatRange("192.0.2.1"),)))],
            },
            "filter": {"FORWARD": [r(Reject(), tcp(81))]},
        }
    )
    (o,) = trace(rs, NODEPORT, NODE).outcomes
    assert o.destination == ("10.1.0.1", 80) and o.snat_to == "192.0.2.1"
    assert any("range" in a for a in o.assumptions)
    rej = trace(rs, Packet.of(CLIENT, "10.9.9.9", 81), NODE)
    assert rej.outcomes[0].destination == ("10.1.0.1", 80)  # DNAT to port 80, not 81
    rs2 = build({"filter": {"FORWARD": [r(Reject(), tcp(81))]}})
    assert trace(rs2, Packet.of(CLIENT, "10.9.9.9", 81)).outcomes[0].verdict is Disposition.REJECT


# ---------------------------------------------------------------- control flow


def test_return_goto_and_policy_drop() -> None:
    rs = build(
        {
            "filter": {
                "FORWARD": (
                    Verdict.DROP,
                    [r(Jump("A")), r(Standard(Verdict.ACCEPT), tcp(22))],
                ),
                "A": [
                    r(Jump("B", goto=True), tcp(443)),
                    r(Standard(Verdict.RETURN)),
                    r(Standard(Verdict.DROP)),
                ],
                "B": [r(Standard(Verdict.RETURN), tcp(443)), r(Standard(Verdict.DROP))],
            }
        }
    )
    t = Tracer(rs, NODE)
    # 22: A returns, FORWARD accepts.
    assert t.trace(Packet.of(CLIENT, "10.9.9.9", 22)).outcomes[0].verdict is Disposition.ACCEPT
    # 443: goto B, B returns straight to FORWARD (not to A's DROP), then policy DROP.
    (o,) = t.trace(Packet.of(CLIENT, "10.9.9.9", 443)).outcomes
    assert o.verdict is Disposition.DROP
    assert (o.path[-1].chain, o.path[-1].number, o.path[-1].rule) == ("FORWARD", 0, None)


def test_return_in_builtin_chain_uses_policy() -> None:
    rs = build({"filter": {"FORWARD": (Verdict.DROP, [r(Standard(Verdict.RETURN))])}})
    assert trace(rs, NODEPORT).outcomes[0].verdict is Disposition.DROP


@pytest.mark.parametrize("goto", [False, True])
def test_loop_is_unknown(goto: bool) -> None:
    rs = build(
        {"nat": {"PREROUTING": [r(Jump("A"))], "A": [r(Jump("B"))], "B": [r(Jump("A", goto))]}}
    )
    (o,) = trace(rs, NODEPORT, NODE).outcomes
    assert o.verdict is Disposition.UNKNOWN and "loop" in (o.reason or "")


def test_missing_chain_is_unknown() -> None:
    rs = build({"nat": kube_nat([r(Jump(sep(0)), stat("0.5")), r(Jump(sep(1)))], seps(1))})
    res = trace(rs, NODEPORT, NODE)
    unknown = [o for o in res.outcomes if o.verdict is Disposition.UNKNOWN]
    assert len(unknown) == 1 and "KUBE-SEP-1, which is not in the capture" in (
        unknown[0].reason or ""
    )
    assert unknown[0].probability == Fraction(1, 2) and res.total == 1


def test_chain_reused_is_not_a_loop() -> None:
    rs = build({"filter": {"FORWARD": [r(Jump("L")), r(Jump("L"))], "L": [r(None)]}})
    assert trace(rs, NODEPORT).outcomes[0].verdict is Disposition.ACCEPT


# ---------------------------------------------------------------- unknowns


def test_unknown_match_stops_or_is_assumed() -> None:
    svc = [r(Jump(sep(0)), SetMatch("blocked", ("src",))), r(Jump(sep(1)))]
    rs = build({"nat": kube_nat(svc, seps(2))})
    (stop,) = trace(rs, NODEPORT, NODE).outcomes
    assert stop.verdict is Disposition.UNKNOWN and "match-set blocked" in (stop.reason or "")
    (no,) = trace(rs, NODEPORT, NODE, unknown="assume-no-match").outcomes
    assert no.destination == ("10.244.1.7", 8080)
    assert no.assumptions and "does not match" in no.assumptions[0]
    (yes,) = trace(rs, NODEPORT, NODE, unknown="assume-match").outcomes
    assert yes.destination == ("10.244.0.7", 8080) and "matches" in yes.assumptions[0]
    with pytest.raises(TraceError):
        trace(rs, NODEPORT, NODE, unknown="guess")  # type: ignore[arg-type]


def test_definite_miss_beats_unknown() -> None:
    rule = r(Standard(Verdict.DROP), OpaqueMatch("foo"), tcp(9))
    res = trace(build({"filter": {"FORWARD": [rule]}}), NODEPORT)
    assert res.outcomes[0].verdict is Disposition.ACCEPT and not res.outcomes[0].assumptions


def test_out_interface_needs_a_route() -> None:
    rs = build(
        {"filter": {"FORWARD": [r(Standard(Verdict.DROP), out_interface=Interface("eth1"))]}}
    )
    pkt = Packet.of(CLIENT, "10.9.9.9", 80)
    assert trace(rs, pkt).outcomes[0].verdict is Disposition.UNKNOWN
    routed = NodeContext.of([NODE_IP], routes={"10.9.0.0/16": "eth1", "0.0.0.0/0": "eth0"})
    assert trace(rs, pkt, routed).outcomes[0].verdict is Disposition.DROP
    assert (
        trace(rs, Packet.of(CLIENT, "8.8.8.8", 80), routed).outcomes[0].verdict
        is Disposition.ACCEPT
    )


# ---------------------------------------------------------------- state


def affinity_svc() -> list[Rule]:
    def rc(i: int) -> RecentMatch:
        return RecentMatch(RecentCommand.RCHECK, sep(i), seconds=10800, reap=True)

    return [
        r(Jump(sep(0)), rc(0)),
        r(Jump(sep(1)), rc(1)),
        r(Jump(sep(0)), stat("0.5")),
        r(Jump(sep(1))),
    ]


def affinity_seps() -> dict[str, object]:
    return {
        sep(i): [r(dnat(f"10.244.{i}.7", 8080), RecentMatch(RecentCommand.SET, sep(i)))]
        for i in range(2)
    }


def test_affinity_new_client_and_what_if() -> None:
    rs = build({"nat": kube_nat(affinity_svc(), affinity_seps())})
    new = trace(rs, NODEPORT, NODE)
    assert [o.probability for o in new.outcomes] == [Fraction(1, 2), Fraction(1, 2)]
    assert any("no recent-list entries" in n for n in new.notes)
    sticky = trace(rs, NODEPORT, NODE, State.with_affinity(sep(1)))
    (o,) = sticky.outcomes
    assert o.destination == ("10.244.1.7", 8080) and o.probability == 1
    assert ("KUBE-SVC-X", 2) in [(s.chain, s.number) for s in o.path]


def test_etp_local_src_type_local() -> None:
    ext = {
        "KUBE-EXT-X": [
            r(Jump("KUBE-MARK-MASQ"), AddrTypeMatch(src_type=("LOCAL",))),
            r(Jump("KUBE-SVC-X"), AddrTypeMatch(src_type=("LOCAL",))),
            r(Jump("KUBE-SVL-X")),
        ],
        "KUBE-SVL-X": [r(Jump(sep(0)))],
    }
    svc = [r(Jump(sep(0)), stat("0.5")), r(Jump(sep(1)))]
    rs = build({"nat": kube_nat(svc, {**seps(2), **ext})})
    (outside,) = trace(rs, NODEPORT, NODE).outcomes  # external: local endpoints only, no masq
    assert outside.destination == ("10.244.0.7", 8080) and not outside.masquerade
    local = trace(rs, Packet.of(NODE_IP, NODE_IP, 30080), NODE)  # from the node itself
    assert len(local.outcomes) == 2 and all(o.masquerade for o in local.outcomes)
    assert any("locally generated" in n for n in local.notes)


def test_ctstate_and_notrack() -> None:
    dnat_only = r(Standard(Verdict.DROP), ConntrackMatch(ctstate=("DNAT",), negated=True))
    rs = build(
        {
            "raw": {"PREROUTING": [r(Ct(notrack=True), tcp(9))]},
            "nat": {"PREROUTING": [r(dnat("10.244.0.7", 8080))]},
            "filter": {
                "FORWARD": [
                    r(Standard(Verdict.ACCEPT), ConntrackMatch(ctstate=("INVALID",))),
                    dnat_only,
                ]
            },
        }
    )
    assert trace(rs, NODEPORT).outcomes[0].verdict is Disposition.DNAT
    (untracked,) = trace(rs, Packet.of(CLIENT, "10.9.9.9", 9)).outcomes  # nat skipped
    assert untracked.verdict is Disposition.DROP and untracked.destination == ("10.9.9.9", 9)


def test_connmark_save_restore_and_limit_iface() -> None:
    from kpsim.model import ConnmarkMatch, ConnmarkMode, ConnmarkTarget

    eni = AddrTypeMatch(dst_type=("LOCAL",), limit_iface_in=True)
    rs = build(
        {
            "mangle": {
                "PREROUTING": [
                    r(
                        ConnmarkTarget(ConnmarkMode.SET, 0x80, 0x80),
                        eni,
                        in_interface=Interface("eth0"),
                    ),
                    r(ConnmarkTarget(ConnmarkMode.RESTORE, nfmask=0x80, ctmask=0x80)),
                ]
            },
            "filter": {
                "INPUT": [
                    r(Standard(Verdict.DROP), ConnmarkMatch(0x80, 0x80)),
                    r(Reject(), MarkMatch(0x80, 0x80)),
                ]
            },
        }
    )
    pkt = Packet.of(CLIENT, NODE_IP, 22)
    assert trace(rs, pkt, NODE).outcomes[0].verdict is Disposition.UNKNOWN  # who holds NODE_IP?
    on_eth0 = NodeContext.of([NODE_IP], on={"eth0": [NODE_IP]})
    assert trace(rs, pkt, on_eth0).outcomes[0].verdict is Disposition.DROP
    on_eth1 = NodeContext.of([NODE_IP], on={"eth1": [NODE_IP]})  # local, but not on eth0
    assert trace(rs, pkt, on_eth1).outcomes[0].verdict is Disposition.LOCAL
    mangle = {"PREROUTING": list(rs.tables["mangle"].chains["PREROUTING"].rules)}
    restored = build({"mangle": mangle, "filter": {"INPUT": [r(Reject(), MarkMatch(0x80, 0x80))]}})
    assert trace(restored, pkt, on_eth0).outcomes[0].verdict is Disposition.REJECT


def test_redirect_is_dnat_to_the_node_and_vip_on_node_is_local() -> None:
    from kpsim.model import Redirect

    rs = build({"nat": {"PREROUTING": [r(Redirect(PortRange(15001, 15001)), tcp(80))]}})
    (o,) = trace(rs, Packet.of(CLIENT, "10.9.9.9", 80), NODE).outcomes
    assert o.verdict is Disposition.DNAT and o.destination == (NODE_IP, 15001)
    assert o.assumptions  # which node address REDIRECT picks is an assumption
    # Known to be held by the in interface: the kernel's choice, no assumption.
    on_eth0 = NodeContext.of(["10.0.1.9", NODE_IP], on={"eth1": ["10.0.1.9"], "eth0": [NODE_IP]})
    (o,) = trace(rs, Packet.of(CLIENT, "10.9.9.9", 80), on_eth0).outcomes
    assert o.verdict is Disposition.DNAT and o.destination == (NODE_IP, 15001)
    assert not o.assumptions
    half = build({"nat": kube_nat([r(Jump(sep(0)), stat("0.5"))], seps(1))})
    vip = NodeContext.of([NODE_IP, "10.96.0.10"])  # e.g. kube-ipvs0 holds the VIP
    res = trace(half, Packet.of(CLIENT, "10.96.0.10", 80), vip)
    assert {o.verdict for o in res.outcomes} == {Disposition.DNAT, Disposition.LOCAL}


def test_depth_cap_and_family_check() -> None:
    deep = {f"C{i}": [r(Jump(f"C{i + 1}"))] for i in range(100)}
    rs = build({"filter": {"FORWARD": [r(Jump("C0"))], **deep, "C100": []}})
    (o,) = trace(rs, NODEPORT).outcomes
    assert o.verdict is Disposition.UNKNOWN and "depth" in (o.reason or "")
    with pytest.raises(TraceError):
        trace(rs, Packet.of("2001:db8::1", "2001:db8::2", 80))


# ---------------------------------------------------------------- kube-proxy restore input


def test_restore_input_gets_base_chains() -> None:
    chains = kube_nat([r(Jump(sep(0)))], seps(1))
    for base in ("PREROUTING", "OUTPUT", "POSTROUTING"):
        del chains[base]
    filt = {"KUBE-FORWARD": [r(Standard(Verdict.DROP), ConntrackMatch(ctstate=("INVALID",)))]}
    res = trace(build({"nat": chains, "filter": filt}), NODEPORT, NODE)
    (o,) = res.outcomes
    assert o.destination == ("10.244.0.7", 8080) and o.masquerade
    assert any("base-chain jumps" in n for n in res.notes)
    assert o.path[0].rule is not None and o.path[0].rule.origin is not None
    jumps = [s.rule.target for s in o.path if s.chain == "FORWARD" and s.rule is not None]
    assert Jump("KUBE-FORWARD") in jumps


# ---------------------------------------------------------------- iptables-save text

SAVE = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-EXT-X - [0:0]
:KUBE-SVC-X - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-SEP-C - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j KUBE-EXT-X
-A KUBE-EXT-X -m comment --comment "masquerade traffic for default/web external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-X -j KUBE-SVC-X
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 80 -j KUBE-SVC-X
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-X -m comment --comment "default/web -> 10.244.0.7:8080" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-A
-A KUBE-SVC-X -m comment --comment "default/web -> 10.244.1.7:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-B
-A KUBE-SVC-X -m comment --comment "default/web -> 10.244.2.7:8080" -j KUBE-SEP-C
-A KUBE-SEP-A -s 10.244.0.7/32 -m comment --comment "default/web" -j KUBE-MARK-MASQ
-A KUBE-SEP-A -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination 10.244.0.7:8080
-A KUBE-SEP-B -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination 10.244.1.7:8080
-A KUBE-SEP-C -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination 10.244.2.7:8080
COMMIT
"""  # noqa: E501


def test_from_iptables_save_text() -> None:
    rs = parse_save(SAVE, "web.save")
    res = trace(rs, NODEPORT, NODE)
    got = by_dest(res.outcomes)
    p1 = Fraction(715827883, TWO31)  # iptables-save prints 0.33333333349 for 715827883
    assert got[("10.244.0.7", 8080)].probability == p1
    assert got[("10.244.1.7", 8080)].probability == (1 - p1) / 2
    assert res.total == 1 and all(o.masquerade for o in res.outcomes)
    (step,) = [
        s for s in got[("10.244.2.7", 8080)].path if s.rule and isinstance(s.rule.target, Dnat)
    ]
    assert step.rule is not None and step.rule.origin is not None
    assert SAVE.splitlines()[step.rule.origin.line - 1] == step.rule.origin.text


# ---------------------------------------------------------------- scale


def big_ruleset(services: int) -> Ruleset:
    """kube-proxy-shaped nat + filter for ``services`` services with 3 endpoints each."""
    sv: list[Rule] = []
    np: list[Rule] = []
    chains: dict[str, object] = kube_nat([])
    fwd: list[Rule] = []
    ext: list[Rule] = []  # no-endpoint NodePort rejects: not keyed by -d, still indexed
    for i in range(services):
        cip, name = f"10.96.{i // 250}.{i % 250 + 1}", f"S{i}"
        sv.append(
            r(
                Jump(f"KUBE-SVC-{name}"),
                CommentMatch(f"ns/{name} cluster IP"),
                tcp(80),
                destination=net(f"{cip}/32"),
                protocol=Protocol("tcp"),
            )
        )
        np.append(
            r(
                Jump(f"KUBE-EXT-{name}"),
                CommentMatch(name),
                tcp(30000 + i),
                protocol=Protocol("tcp"),
            )
        )
        fwd.append(r(Reject(), tcp(81), destination=net(f"{cip}/32"), protocol=Protocol("tcp")))
        ext.append(
            r(
                Reject(),
                AddrTypeMatch(dst_type=("LOCAL",)),
                tcp(40000 + i),
                protocol=Protocol("tcp"),
            )
        )
        sv.append(
            r(
                Jump(f"KUBE-EXT-{name}"),
                tcp(80),
                destination=net(f"198.18.{i // 250}.{i % 250}/32"),
                protocol=Protocol("tcp"),
            )
        )
        chains[f"KUBE-EXT-{name}"] = [r(Jump("KUBE-MARK-MASQ")), r(Jump(f"KUBE-SVC-{name}"))]
        ep = [f"10.{100 + i // 60000}.{i // 250 % 240}.{(i % 250) + j}" for j in range(3)]
        chains[f"KUBE-SVC-{name}"] = [
            r(
                Jump("KUBE-MARK-MASQ"),
                tcp(80),
                source=net("10.244.0.0/16", True),
                destination=net(f"{cip}/32"),
                protocol=Protocol("tcp"),
            ),
            r(Jump(f"KUBE-SEP-{name}-0"), stat("0.3333333333")),
            r(Jump(f"KUBE-SEP-{name}-1"), stat("0.5")),
            r(Jump(f"KUBE-SEP-{name}-2")),
        ]
        for j in range(3):
            chains[f"KUBE-SEP-{name}-{j}"] = [
                r(Jump("KUBE-MARK-MASQ"), source=net(f"{ep[j]}/32")),
                r(dnat(ep[j], 8080), PortMatch("tcp"), protocol=Protocol("tcp")),
            ]
    chains["KUBE-SERVICES"] = [*sv, *chains["KUBE-SERVICES"][1:]]  # type: ignore[index]
    chains["KUBE-NODEPORTS"] = np
    filt = {
        "FORWARD": [r(Jump("KUBE-SERVICES")), r(Jump("KUBE-EXTERNAL-SERVICES"))],
        "INPUT": [r(Jump("KUBE-EXTERNAL-SERVICES"))],
        "KUBE-SERVICES": fwd,
        "KUBE-EXTERNAL-SERVICES": ext,
    }
    return build({"nat": chains, "filter": filt})


@pytest.fixture(scope="module")
def big() -> Ruleset:
    return big_ruleset(10_000)


def test_index_agrees_with_linear_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    rs = big_ruleset(300)
    fast = Tracer(rs, NODE)
    monkeypatch.setattr(prepare, "INDEX_MIN_RULES", 10**9)
    slow = Tracer(rs, NODE)
    for pkt in (
        Packet.of(CLIENT, NODE_IP, 30123),
        Packet.of("10.244.3.3", "10.96.0.77", 80),
        Packet.of(CLIENT, "10.96.0.77", 81),
        Packet.of(CLIENT, NODE_IP, 29999),
        Packet.of(CLIENT, NODE_IP, 40007),
        Packet.of(CLIENT, "198.18.0.9", 80),
    ):
        assert fast.trace(pkt) == slow.trace(pkt)
    assert not slow._walker.index and fast._walker.index  # built when first entered


def test_nodeport_on_10k_services_is_fast(big: Ruleset) -> None:
    assert sum(t.rule_count for t in big.tables.values()) > 160_000
    tracer = Tracer(big, NODE)
    pkt = Packet.of(CLIENT, NODE_IP, 39_876)
    res = tracer.trace(pkt)
    assert res.total == 1 and len(res.outcomes) == 3
    assert all(o.verdict is Disposition.DNAT and o.masquerade for o in res.outcomes)
    runs = 50
    start = time.perf_counter()
    for _ in range(runs):
        tracer.trace(pkt)
    per_trace = (time.perf_counter() - start) / runs
    print(f"\nNodePort trace on 10k services: {per_trace * 1000:.2f} ms")
    assert per_trace < 0.05  # target ≤ 10 ms; loose bound against slow CI machines


# ---------------------------------------------------------------- remembered walks


@pytest.fixture(scope="module")
def synth300() -> tuple[Ruleset, NodeContext, list[tuple[Packet, State | None]]]:
    """A kube-proxy restore dump of 300 services, and a sample of what to trace in it:
    ClusterIPs and NodePorts from outside, from a pod, from the node itself, with and
    without session affinity."""
    cluster = synth.synth_large(300, 5, seed=3)
    node = cluster.nodes[0]
    rs = parse_text(synth.render_restore(cluster, node), "synth300")
    ctx = NodeContext.of([node.ip], on={"eth0": [node.ip]}, routes={"0.0.0.0/0": "eth0"})
    svcs = kube.services(rs)
    fronts = [f for s in svcs for f in s.frontends if f.address and f.port]
    sample: list[tuple[Packet, State | None]] = []
    for i, f in enumerate(fronts[::7]):
        proto = f.protocol or "tcp"
        src = ("203.0.113.10", "10.11.7.9", node.ip)[i % 3]
        sample.append((Packet.of(src, f.address or "", f.port or 0, protocol=proto), None))
    for port in [p for s in svcs for p in s.node_ports][:20]:
        sample.append((Packet.of("203.0.113.10", node.ip, port), None))
    sticky = [c for c in rs.tables["nat"].chains if c.startswith("KUBE-SEP-")][:3]
    for f in fronts[:40:4]:
        sample.append((Packet.of("198.51.100.7", f.address or "", f.port or 0), State()))
        sample.append((Packet.of("198.51.100.7", f.address or "", f.port or 0), None))
        affinity = State.with_affinity(*sticky)
        sample.append((Packet.of("198.51.100.7", f.address or "", f.port or 0), affinity))
    return rs, ctx, sample


def test_remembered_walks_change_nothing(
    synth300: tuple[Ruleset, NodeContext, list[tuple[Packet, State | None]]],
) -> None:
    """The same packet traced by a fresh Tracer, by one warmed up on every other packet,
    and by one that remembers nothing: identical results, notes and paths included."""
    rs, ctx, sample = synth300
    warm = Tracer(rs, ctx)
    first = [warm.trace(p, s) for p, s in sample]
    again = [warm.trace(p, s) for p, s in reversed(sample)][::-1]
    plain = Tracer(rs, ctx, memo=False)
    assert warm._walker._memo and warm._pipelines  # the warm tracer did replay
    for (pkt, state), one, two in zip(sample, first, again, strict=True):
        fresh = Tracer(rs, ctx).trace(pkt, state)
        assert one == two == fresh == plain.trace(pkt, state)
        assert one.total == 1


@pytest.mark.parametrize("mode", ["stop", "assume-match", "assume-no-match"])
def test_remembered_walks_with_unknown_modes(
    synth300: tuple[Ruleset, NodeContext, list[tuple[Packet, State | None]]], mode: str
) -> None:
    rs, ctx, sample = synth300
    warm, plain = Tracer(rs, ctx), Tracer(rs, ctx, memo=False)
    for pkt, state in sample[:30] * 2:
        got = warm.trace(pkt, state, unknown=mode)  # type: ignore[arg-type]
        assert got == plain.trace(pkt, state, unknown=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rules", "forks"), [(10**9, 3), (25, 10**9), (40, 6)])
def test_remembered_walks_respect_budgets(
    synth300: tuple[Ruleset, NodeContext, list[tuple[Packet, State | None]]],
    monkeypatch: pytest.MonkeyPatch,
    rules: int,
    forks: int,
) -> None:
    """A replay never spends past a budget: where one runs out, the answer is the
    walked one, branch for branch."""
    monkeypatch.setattr(walk, "MAX_RULES", rules)
    monkeypatch.setattr(walk, "MAX_BRANCHES", forks)
    rs, ctx, sample = synth300
    warm, plain = Tracer(rs, ctx), Tracer(rs, ctx, memo=False)
    unknown = 0
    for pkt, state in sample * 2:
        got = warm.trace(pkt, state)
        assert got == plain.trace(pkt, state)
        unknown += any(o.verdict is Disposition.UNKNOWN for o in got.outcomes)
    assert unknown  # the budgets did bite


def test_replayed_walk_looks_only_at_what_it_sees() -> None:
    """A FORWARD walk remembered for one pod address is replayed for another only when
    the table cannot tell them apart: a -d rule for one of them splits them."""
    pod_a, pod_b = "10.244.1.10", "10.244.1.11"
    rs = build(
        {
            "filter": {
                "FORWARD": [
                    r(Standard(Verdict.DROP), destination=net(f"{pod_b}/32")),
                    r(Standard(Verdict.ACCEPT), destination=net("10.244.0.0/16")),
                ],
            }
        }
    )
    tracer = Tracer(rs, NODE)
    for _ in range(3):
        a = tracer.trace(Packet.of(CLIENT, pod_a, 80))
        b = tracer.trace(Packet.of(CLIENT, pod_b, 80))
        c = tracer.trace(Packet.of(CLIENT, "10.244.9.9", 81))
        assert [o.verdict for o in a.outcomes] == [Disposition.ACCEPT]
        assert [o.verdict for o in b.outcomes] == [Disposition.DROP]
        assert c.outcomes[0].destination == ("10.244.9.9", 81)
        assert c.outcomes[0].verdict is Disposition.ACCEPT


def test_loopback_only_nodeport_jump_is_not_the_stand_in_address() -> None:
    """kube-proxy's `-d 127.0.0.1 -j KUBE-NODEPORTS` (localhost NodePorts) names no address
    an outside client reaches: the trace uses the stand-in and answers (it once crashed)."""
    from click.testing import CliRunner

    from kpsim.cli.main import main

    dump = Path(__file__).parent / "data/kube-proxy/health-check-node-port.txt"
    done = CliRunner().invoke(main, ["trace", str(dump), "--port", "3001", "-o", "json"])
    assert done.exit_code == 0, done.output
    assert '"REJECT"' in done.output or '"reject"' in done.output
