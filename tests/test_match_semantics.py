"""Matches and targets of real nodes, decided as the kernel decides them (no root needed;
tests/test_match_kernel.py holds the same answers against the real kernel)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from kpsim.engine.packet import Packet, State
from kpsim.engine.trace import Disposition, Outcome, Tracer
from kpsim.formats import parse_text
from kpsim.model.node import NodeContext

NODE = "10.0.1.5"
CTX = NodeContext.of([NODE], on={"eth0": [NODE]}, routes={"0.0.0.0/0": "eth0"})
HEAD = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
HEAD += ":POSTROUTING ACCEPT [0:0]\n"


def nat(*pre: str, post: tuple[str, ...] = ()) -> str:
    lines = [f"-A PREROUTING -p tcp {r}" for r in pre] + [f"-A POSTROUTING {r}" for r in post]
    return HEAD + "\n".join(lines) + "\nCOMMIT\n"


def outcomes(text: str, packet: Packet | None = None, state: State | None = None) -> list[Outcome]:
    rs = parse_text(text, "t")
    pkt = packet or Packet.of("203.0.113.9", "192.0.2.10", 80, in_interface="eth0")
    return list(Tracer(rs, CTX).trace(pkt, state).outcomes)


def own(o: Outcome) -> tuple[str, ...]:
    """Assumptions the rules caused (not the tables this small capture leaves out)."""
    return tuple(a for a in o.assumptions if not a.startswith("not captured"))


def only(text: str, packet: Packet | None = None) -> Outcome:
    (o,) = outcomes(text, packet)
    return o


DNAT_A = "-j DNAT --to-destination 192.0.2.20:8080"
DNAT_B = "-j DNAT --to-destination 192.0.2.30:8080"


def test_nfacct_always_matches() -> None:
    o = only(nat(f"-m nfacct --nfacct-name kube-proxy {DNAT_A}"))
    assert (o.verdict, o.destination) == (Disposition.DNAT, ("192.0.2.20", 8080))


@pytest.mark.parametrize(
    "guard",
    [
        "-m limit --limit 5/min -j LOG --log-prefix x",
        "-m hashlimit --hashlimit-upto 1/sec --hashlimit-name h -j NFLOG --nflog-group 2",
        "-m limit --limit 1/sec -j TRACE",
        "-m socket",  # no target: a counting rule
        "-m owner --uid-owner 0 -j ULOG",
    ],
)
def test_unknown_match_guarding_only_logging_is_skipped(guard: str) -> None:
    o = only(nat(guard, DNAT_A))
    assert (o.verdict, o.destination, own(o)) == (
        Disposition.DNAT,
        ("192.0.2.20", 8080),
        (),
    )


@pytest.mark.parametrize(
    "guard",
    [
        "-m limit --limit 5/min -j ACCEPT",  # ends the nat hook: changes the answer
        "-m limit --limit 5/min -j MARK --set-xmark 0x1/0x1",  # a later rule may read it
        "-m limit --limit 5/min -m recent --set --name L -j LOG",  # recent state left behind
        "-m limit --limit 5/min -m statistic --mode nth --every 2 -j LOG",  # nth counter
    ],
)
def test_unknown_match_guarding_state_or_verdict_stays_unknown(guard: str) -> None:
    os = outcomes(nat(guard, DNAT_A))
    assert [o.verdict for o in os] == [Disposition.UNKNOWN]
    assert "limit" in (os[0].reason or "")


def test_nth_first_connections_cycle_in_kernel_order() -> None:
    text = nat(
        f"-m statistic --mode nth --every 3 --packet 0 {DNAT_A}",
        f"-m statistic --mode nth --every 2 --packet 0 {DNAT_B}",
        "-j DNAT --to-destination 192.0.2.40:8080",
    )
    assert only(text).destination == ("192.0.2.20", 8080)  # connection 0 takes rule 1
    # Kernel counters after connection 0 (rule 1 at 0; rule 2 not reached, at 1):
    second = outcomes(text, state=State(nth={("nat", "PREROUTING", 1): 0}))
    assert [o.destination for o in second] == [("192.0.2.30", 8080)]
    third = outcomes(
        text, state=State(nth={("nat", "PREROUTING", 1): 1, ("nat", "PREROUTING", 2): 0})
    )
    assert [o.destination for o in third] == [("192.0.2.40", 8080)]


def test_nth_packet_offset() -> None:
    text = nat(f"-m statistic --mode nth --every 3 --packet 2 {DNAT_A}", DNAT_B)
    assert only(text).destination == ("192.0.2.30", 8080)
    due = outcomes(text, state=State(nth={("nat", "PREROUTING", 1): 2}))
    assert [o.destination for o in due] == [("192.0.2.20", 8080)]


@pytest.mark.parametrize(
    ("options", "inside", "hit"),
    [
        ("! --physdev-is-in", "eth0", True),
        ("! --physdev-is-bridged ! --physdev-in veth1", "eni9", True),
        ("--physdev-is-in", "eth0", False),
        ("! --physdev-is-in --physdev-out veth1", "eth0", False),
        ("! --physdev-is-in", "docker0", None),  # a bridge: its port is unknown
    ],
)
def test_physdev(options: str, inside: str, hit: bool | None) -> None:
    text = nat(f"-m physdev {options} {DNAT_A}", DNAT_B)
    pkt = Packet.of("203.0.113.9", "192.0.2.10", 80, in_interface=inside)
    o = outcomes(text, pkt)[0]
    if hit is None:
        assert o.verdict is Disposition.UNKNOWN and "docker0" in (o.reason or "")
    else:
        assert o.destination == (("192.0.2.20" if hit else "192.0.2.30"), 8080)


@pytest.mark.parametrize(
    ("options", "hit"),
    [
        ("--src-range 203.0.113.1-203.0.113.9", True),
        ("! --src-range 203.0.113.1-203.0.113.9", False),
        ("--src-range 203.0.113.10-203.0.113.20", False),
        ("--dst-range 192.0.2.10 ! --src-range 10.0.0.0-10.255.255.255", True),
    ],
)
def test_iprange(options: str, hit: bool) -> None:
    o = only(nat(f"-m iprange {options} {DNAT_A}", DNAT_B))
    assert o.destination == (("192.0.2.20" if hit else "192.0.2.30"), 8080)


@pytest.mark.parametrize(
    ("options", "hit"),
    [
        ("--dports 70:90,443", True),
        ("! --dports 70:90,443", False),
        ("--sports 1:1024", False),
        ("--ports 1000,80", True),
        ("! --ports 81:90", True),
    ],
)
def test_multiport_ranges_and_negation(options: str, hit: bool) -> None:
    o = only(nat(f"-m multiport {options} {DNAT_A}", DNAT_B))
    assert o.destination == (("192.0.2.20" if hit else "192.0.2.30"), 8080)


def test_physdev_in_postrouting_of_forwarded_traffic_is_unknown() -> None:
    post = ("-m physdev ! --physdev-is-in -j MASQUERADE",)
    o = only(nat(DNAT_A, post=post))
    assert o.verdict is Disposition.UNKNOWN and "POSTROUTING" in (o.reason or "")


def test_owner_on_forwarded_traffic_and_elsewhere() -> None:
    post = ("-m owner ! --uid-owner 0 -j MASQUERADE",)
    assert only(nat(DNAT_A, post=post)).masquerade is True  # no socket: negated matches
    post = ("-m owner --uid-owner 0 -j MASQUERADE",)
    assert only(nat(DNAT_A, post=post)).masquerade is False
    o = only(nat(f"-m owner --uid-owner 0 {DNAT_B}", DNAT_A))
    assert o.verdict is Disposition.UNKNOWN and "OUTPUT" in (o.reason or "")


def test_netmap_maps_destination_and_source() -> None:
    o = only(nat("-d 192.0.2.0/24 -j NETMAP --to 198.51.100.0/24"))
    assert (o.verdict, o.destination) == (Disposition.DNAT, ("198.51.100.10", 80))
    o = only(nat(DNAT_A, post=("-s 203.0.113.0/24 -j NETMAP --to 100.64.0.0/16",)))
    assert o.snat_to == "100.64.113.9" and o.destination == ("192.0.2.20", 8080)


def test_snat_range_and_random_fully_are_reported() -> None:
    post = ("-j SNAT --to-source 100.64.0.1-100.64.0.3:1024-2047 --random-fully",)
    o = only(nat(DNAT_A, post=post))
    assert o.snat_to == "100.64.0.1-100.64.0.3:1024-2047"


def test_redirect_is_a_dnat_to_the_in_interface_address() -> None:
    o = only(nat("-j REDIRECT --to-ports 15001"))
    assert (o.verdict, o.destination, own(o)) == (
        Disposition.DNAT,
        (NODE, 15001),
        (),
    )


def test_return_from_a_base_chain_is_its_policy_and_drops_carry_no_masquerade() -> None:
    text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    text += "-A FORWARD -p tcp -j RETURN\n-A FORWARD -j ACCEPT\nCOMMIT\n"
    text += nat(DNAT_A, post=("-j MASQUERADE",))
    o = only(text)
    assert (o.verdict, o.masquerade, o.probability) == (Disposition.DROP, None, Fraction(1))


IPSET = """create KPSIM-SVC hash:ip,port family inet hashsize 1024 maxelem 65536
add KPSIM-SVC 192.0.2.10,tcp:80
add KPSIM-SVC 192.0.2.11,udp:53
create KPSIM-NETS hash:net family inet hashsize 1024 maxelem 65536
add KPSIM-NETS 203.0.113.0/24
add KPSIM-NETS 203.0.113.8/29 nomatch
"""


@pytest.mark.parametrize(
    ("match", "dest", "want"),
    [
        ("--match-set KPSIM-SVC dst,dst", "192.0.2.10", "192.0.2.20"),
        ("! --match-set KPSIM-SVC dst,dst", "192.0.2.10", "192.0.2.30"),
        ("--match-set KPSIM-SVC dst,dst", "192.0.2.11", "192.0.2.30"),  # udp entry, tcp packet
        ("--match-set KPSIM-SVC dst", "192.0.2.10", "192.0.2.30"),  # fewer flags: no match
        ("--match-set KPSIM-NETS dst", "192.0.2.10", "192.0.2.30"),
    ],
)
def test_ipset_membership_from_the_capture(match: str, dest: str, want: str) -> None:
    text = IPSET + nat(f"-m set {match} {DNAT_A}", DNAT_B)
    o = only(text, Packet.of("203.0.113.9", dest, 80))
    assert (o.verdict, o.destination) == (Disposition.DNAT, (want, 8080))


def test_ipset_not_captured_or_nomatch_is_unknown_naming_the_set() -> None:
    o = outcomes(nat(f"-m set --match-set KUBE-LOOP-BACK dst,dst,src {DNAT_A}"))[0]
    assert o.verdict is Disposition.UNKNOWN and "KUBE-LOOP-BACK" in (o.reason or "")
    o = outcomes(IPSET + nat(f"-m set --match-set KPSIM-NETS src {DNAT_A}"))[0]
    assert o.verdict is Disposition.UNKNOWN and "nomatch" in (o.reason or "")
    rs = parse_text(IPSET + nat(DNAT_A), "t")
    assert not rs.diagnostics and any("2 set(s)" in n for n in rs.notes)
