"""kube-proxy's own nftables test dump (tests/data/kube-proxy-nft, see its README) through
kpsim's trace: the endpoints, verdicts and masquerade kube-proxy's packet-flow tests expect
for these service shapes (TestClusterIPGeneral, TestLoadBalancer, TestNoEndpointsReject,
TestExternalTrafficPolicyLocal in pkg/proxy/nftables/proxier_test.go)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from kpsim.formats import load_file
from kpsim.kube import services as kube
from kpsim.kube.scenario import NodeInput, TraceRequest, trace_nodes
from kpsim.model import Ruleset

DUMP = Path(__file__).parent / "data" / "kube-proxy-nft" / "overall-nftables-rules.nft"
POD, EXTERNAL, BLOCKED, NODE = "10.0.0.2", "203.0.113.2", "203.0.113.130", "192.168.0.2"

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
    ("nodePort bypasses LoadBalancerSourceRanges", BLOCKED, NODE, 3002, {"10.180.0.3:80"}, True),
    ("cluster IP with no endpoints", POD, "172.30.0.46", 80, {"REJECT"}, None),
    ("svc1 does not accept other ports", POD, "172.30.0.41", 443, {"REJECT"}, None),
    ("packet to unallocated cluster ip", POD, "172.30.0.50", 80, {"DROP"}, None),
]  # fmt: skip


@pytest.fixture(scope="module")
def dump() -> Ruleset:
    rs = load_file(DUMP)
    assert rs.diagnostics == ()
    return rs


@pytest.mark.parametrize(("case", "source", "dest", "port", "want", "masq"), FLOWS)
def test_packet_flows(
    dump: Ruleset, case: str, source: str, dest: str, port: int, want: set[str], masq: bool | None
) -> None:
    report = trace_nodes([NodeInput("test-node", dump)], TraceRequest(port, dest, source=source))
    outcomes = report.nodes[0].outcomes
    got = {o.destination if o.outcome.verdict.value == "DNAT" else o.outcome.verdict.value
           for o in outcomes}  # fmt: skip
    assert got == want, case
    assert {o.outcome.masquerade for o in outcomes} == {masq}, case
    assert sum(o.outcome.probability for o in outcomes) == 1


def test_services_and_shares(dump: Ruleset) -> None:
    found = {s.name: s for s in kube.services(dump)}
    assert sorted(found) == [f"ns{i}/svc{i}:p80" for i in range(1, 7)]
    assert [(e.destination, e.probability) for e in found["ns4/svc4:p80"].endpoints] == [
        ("10.180.0.4:80", Fraction(1, 2)),
        ("10.180.0.5:80", Fraction(1, 2)),
    ]
    assert found["ns6/svc6:p80"].no_endpoints
    assert found["ns3/svc3:p80"].node_ports == (3003,)
