"""kube-proxy's own nftables test dumps (tests/data/kube-proxy-nft, see its README), one per
layout kube-proxy has emitted from the 1.29 alpha to a post-1.35 master, through kpsim's
trace: the endpoints, verdicts and masquerade kube-proxy's packet-flow tests expect for
these service shapes (TestClusterIPGeneral, TestLoadBalancer, TestNoEndpointsReject,
TestExternalTrafficPolicyLocal in each version's pkg/proxy/nftables/proxier_test.go)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from kpsim.formats import load_file, parse_text
from kpsim.kube import services as kube
from kpsim.kube.scenario import NodeInput, TraceRequest, trace_nodes
from kpsim.model import ConntrackMatch, Ruleset

DATA = Path(__file__).parent / "data" / "kube-proxy-nft"
POD, EXTERNAL, BLOCKED, NODE = "10.0.0.2", "203.0.113.2", "203.0.113.130", "192.168.0.2"

#: The dumps, oldest layout first, and the lines kpsim must report in each: the alphas'
#: expected text adds rules to chains before their ``add chain`` (nft -f refuses that;
#: kpsim reports the first rule of each such chain and keeps the rules).
DUMPS = {
    "first-nat-drop.nft": (19,),
    "alpha-firewall-set.nft": (21, 22),
    "endpoints-check.nft": (),
    "nodeport-ips.nft": (),
    "filter-prio-110.nft": (),
    "overall-nftables-rules.nft": (),
    "dnat-map-hairpin.nft": (),
}

#: (case, source, destination, port) → the destinations (or verdict) and masquerade.
FLOWS = [
    ("pod to cluster IP", POD, "172.30.0.41", 80, {"10.180.0.1:80"}, False),
    ("external to cluster IP", EXTERNAL, "172.30.0.41", 80, {"10.180.0.1:80"}, True),
    ("hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, {"10.180.0.1:80"}, True),
    ("external to NodePort", EXTERNAL, NODE, 3003, {"10.180.0.3:80"}, True),
    ("ETP Local NodePort, no local endpoints", EXTERNAL, NODE, 3001, {"DROP"}, None),
    ("ETP Local LB IP, no local endpoints", EXTERNAL, "1.2.3.4", 80, {"DROP"}, None),
    ("pod to ETP Local LB IP short-circuits", POD, "1.2.3.4", 80, {"10.180.0.2:80"}, False),
    ("external IP, two endpoints", EXTERNAL, "192.168.99.33", 80,
     {"10.180.0.4:80", "10.180.0.5:80"}, True),
    ("accepted external to LB", EXTERNAL, "5.6.7.8", 80, {"10.180.0.3:80"}, True),
    ("blocked external to LB", BLOCKED, "5.6.7.8", 80, {"DROP"}, None),
    ("pod to LB blocked by LoadBalancerSourceRanges", POD, "5.6.7.8", 80, {"DROP"}, None),
    ("nodePort bypasses LoadBalancerSourceRanges", BLOCKED, NODE, 3002, {"10.180.0.3:80"}, True),
    ("cluster IP with no endpoints", POD, "172.30.0.46", 80, {"REJECT"}, None),
    ("svc1 does not accept other ports", POD, "172.30.0.41", 443, {"REJECT"}, None),
    ("packet to unallocated cluster ip", POD, "172.30.0.50", 80, {"DROP"}, None),
]  # fmt: skip

#: Where a version's own packet-flow tests expect otherwise: the alphas had no
#: cluster-ips-check, so their TestClusterIPGeneral expects another port of a cluster IP to
#: pass un-NATed (output "") and has no unallocated-cluster-IP case (None: not asserted).
_NO_CLUSTER_IPS_CHECK: dict[str, tuple[set[str], bool | None] | None] = {
    "svc1 does not accept other ports": ({"ACCEPT"}, False),
    "packet to unallocated cluster ip": None,
}
DIFFERENT = {
    "first-nat-drop.nft": _NO_CLUSTER_IPS_CHECK,
    "alpha-firewall-set.nft": _NO_CLUSTER_IPS_CHECK,
}

CASES = [
    pytest.param(name, flow, id=f"{name.removesuffix('.nft')}: {flow[0]}")
    for name in DUMPS
    for flow in FLOWS
    if DIFFERENT.get(name, {}).get(flow[0], ()) is not None
]

_LOADED: dict[str, Ruleset] = {}


def _dump(name: str) -> Ruleset:
    if name not in _LOADED:
        _LOADED[name] = load_file(DATA / name)
    return _LOADED[name]


@pytest.mark.parametrize("name", DUMPS)
def test_each_dump_reads_with_only_its_known_diagnostics(name: str) -> None:
    rs = _dump(name)
    assert tuple(d.line for d in rs.diagnostics) == DUMPS[name]
    assert all("not added before" in d.message for d in rs.diagnostics)


@pytest.mark.parametrize(("name", "flow"), CASES)
def test_packet_flows(name: str, flow: tuple[str, str, str, int, set[str], bool | None]) -> None:
    case, source, dest, port, want, masq = flow
    want, masq = DIFFERENT.get(name, {}).get(case) or (want, masq)
    request = TraceRequest(port, dest, source=source)
    report = trace_nodes([NodeInput("test-node", _dump(name))], request)
    outcomes = report.nodes[0].outcomes
    got = {o.destination if o.outcome.verdict.value == "DNAT" else o.outcome.verdict.value
           for o in outcomes}  # fmt: skip
    assert got == want, case
    assert {o.outcome.masquerade for o in outcomes} == {masq}, case
    assert sum(o.outcome.probability for o in outcomes) == 1


@pytest.mark.parametrize("name", DUMPS)
def test_services_and_shares(name: str) -> None:
    found = {s.name: s for s in kube.services(_dump(name))}
    assert sorted(found) == [f"ns{i}/svc{i}:p80" for i in range(1, 7)]
    assert [(e.destination, e.probability) for e in found["ns4/svc4:p80"].endpoints] == [
        ("10.180.0.4:80", Fraction(1, 2)),
        ("10.180.0.5:80", Fraction(1, 2)),
    ]
    assert [e.destination for e in found["ns1/svc1:p80"].endpoints] == ["10.180.0.1:80"]
    assert found["ns5/svc5:p80"].affinity_seconds == 10800
    assert found["ns6/svc6:p80"].no_endpoints
    assert found["ns3/svc3:p80"].node_ports == (3003,)
    # ETP Local frontends are in both @service-ips and @no-endpoint-*: each listed once
    fronts = [(f.kind, f.address, f.port) for f in found["ns2/svc2:p80"].frontends]
    assert len(fronts) == len(set(fronts)) == 4
    assert found["ns2/svc2:p80"].node_ports == (3001,)


def test_dnat_map_layout_has_no_endpoint_chains() -> None:
    """``dnat ip addr . port to numgen … map``: the service chain translates itself, so
    the endpoint is named by it (affinity services still go through endpoint chains)."""
    found = {s.name: s for s in kube.services(_dump("dnat-map-hairpin.nft"))}
    assert [e.chain for e in found["ns4/svc4:p80"].endpoints] == [
        "service-LAUZTJTB-ns4/svc4/tcp/p80"
    ] * 2
    assert found["ns5/svc5:p80"].endpoints[0].chain.startswith("endpoint-GTK6MW7G-")


_HEAD = (
    "add table ip kube-proxy\n"
    "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }\n"
    "add chain ip kube-proxy services\n"
    "add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }\n"
    "add rule ip kube-proxy nat-prerouting jump services\n"
)


def test_ct_status_dnat_is_the_conntrack_dnat_bit_and_other_bits_stay_unknown() -> None:
    text = _HEAD + (
        "add rule ip kube-proxy nat-postrouting ct status dnat masquerade\n"
        "add rule ip kube-proxy nat-postrouting ct status assured masquerade\n"
    )
    rs = parse_text(text, "ct.nft")
    assert rs.diagnostics == ()
    nat = rs.table("nat")
    assert nat is not None
    first, second = nat.chains["nat-postrouting"].rules
    assert first.matches == (ConntrackMatch(("DNAT",)),)
    assert not any(isinstance(m, ConntrackMatch) for m in second.matches)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("dnat ip addr . port to 10.0.0.1 . 80", None),
        ("dnat ip addr to 10.0.0.1 . 80", "'addr . port' expected"),
        ("dnat ip addr . port to 10.0.0.1", "dnat destination not understood"),
    ],
)
def test_dnat_to_an_address_port_pair(statement: str, message: str | None) -> None:
    text = _HEAD + f"add rule ip kube-proxy services ip daddr 172.30.0.9 tcp dport 80 {statement}\n"
    rs = parse_text(text, "pair.nft")
    assert [d.message for d in rs.diagnostics] == ([message] if message else [])
    if message is None:
        report = trace_nodes([NodeInput("n", rs)], TraceRequest(80, "172.30.0.9"))
        assert [o.destination for o in report.nodes[0].outcomes] == ["10.0.0.1:80"]
    else:
        assert rs.diagnostics[0].line == 6 and rs.diagnostics[0].col > 1
