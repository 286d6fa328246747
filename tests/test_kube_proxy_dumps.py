"""kube-proxy's own unit-test dumps, read and traced by kpsim, checked against kube-proxy's
own packet-flow expectations (``runPacketFlowTests`` in pkg/proxy/iptables).

The dumps (tests/data/kube-proxy/, see its README) are kube-proxy's test data verbatim.
Some are written by hand with unquoted multi-word comments
(``--comment kubernetes service portals -j KUBE-SERVICES``), which iptables-restore
rejects; the lenient parser reads them as kube-proxy's test parser does, keeping the
target, and says so in a diagnostic.

kube-proxy's tracer (``tracePacket``) and kpsim's differ on purpose; the assertions
compare what both answer, not how:

- kube-proxy starts every packet in nat PREROUTING. kpsim starts a packet from a node
  address (or 127.0.0.1) in nat OUTPUT, as the kernel does; kube-proxy jumps to
  KUBE-SERVICES from both, so the NAT answer is the same.
- kube-proxy then runs four filter chains directly (KUBE-SERVICES, KUBE-EXTERNAL-SERVICES,
  KUBE-NODEPORTS, KUBE-PROXY-FIREWALL) against the first DNAT's address. kpsim routes the
  packet and walks INPUT or FORWARD (or OUTPUT) and POSTROUTING; for a restore payload,
  which has no built-in chains, it adds the jumps kube-proxy installs there (some guarded
  by ``--ctstate NEW``; a traced packet opens a new connection).
- kube-proxy's ``masq`` is "some branch jumped to KUBE-MARK-MASQ"; kpsim's is per outcome,
  from walking POSTROUTING and its MASQUERADE rule: compared as "some outcome masqueraded".
- kube-proxy lists every endpoint reachable through ``--probability`` jumps; kpsim forks
  with the kernel's exact chance: compared as the endpoints with a chance above 0 (the
  chances must add up to exactly 1).
- kube-proxy's "ACCEPT" is an ACCEPT rule in one of its four filter chains; kpsim then
  delivers the packet (LOCAL): compared by that rule being on kpsim's path.
- kube-proxy's "" (no rule decided) is kpsim's unchanged packet, forwarded (ACCEPT) or
  delivered (LOCAL). Neither tracer models martian filtering: "pod to localhost" is
  delivered to 127.0.0.1 by kpsim, where a kernel without route_localnet drops it.
- "LOCAL" addresses: upstream's tracer uses testNodeIPs plus loopback, the older branch's
  testNodeIP plus 127.0.0.1; kpsim's NodeContext always adds loopback.
- History checks (``--rcheck``, ``--mark``, ``--ctstate``) never match in kube-proxy's
  tracer; kpsim evaluates them for a new client with no affinity record: same answer.

Each flow says where its facts come from: ``ported`` (the dump's own test),
``carried`` (TestTracePacket's cases, which describe the same six services as
TestOverallIPTablesRules), ``derived`` (from the test's service definitions; no
runPacketFlowTests case exists for them).
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest

from kpsim.engine.packet import Packet
from kpsim.engine.trace import Disposition, Tracer, TraceResult
from kpsim.errors import ParseError
from kpsim.formats import parse_text
from kpsim.formats.iptables.fast import FastRules
from kpsim.formats.iptables.rule import parse_rule
from kpsim.formats.iptables.save import parse_save
from kpsim.formats.iptables.tokens import tokenize
from kpsim.model import CommentMatch, Jump, MarkMatch, Ruleset, Standard, Verdict
from kpsim.model.node import NodeContext

DATA = Path(__file__).resolve().parent / "data" / "kube-proxy"

# kube-proxy's conventions (proxier_test.go): pods 10.0.0.0/8, node 192.168.0.2, ...
NODE = "192.168.0.2"
POD = "10.0.0.2"
CLIENT = "203.0.113.2"  # testExternalClient, inside the LB source range 203.0.113.0/25
BLOCKED = "203.0.113.130"  # testExternalClientBlocked, outside it
UPSTREAM_NODE_IPS = (NODE, "192.168.1.2", "192.168.99.11")  # testNodeIPs, IPv4 ones
BRANCH_NODE_IPS = (NODE,)  # testNodeIP of the older branch

KUBE_FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS",
                      "KUBE-PROXY-FIREWALL")  # fmt: skip


class Flow(NamedTuple):
    name: str
    src: str
    dst: str
    port: int
    output: str  # as kube-proxy writes it: "10.180.0.1:80, 10.180.2.1:80", "DROP", ""
    masq: bool = False
    origin: str = "ported"


TRACE_PACKET = (
    Flow("no match", POD, "10.0.0.3", 80, ""),
    Flow("single endpoint", POD, "172.30.0.41", 80, "10.180.0.1:80"),
    Flow("multiple endpoints", POD, "172.30.0.44", 80, "10.180.0.4:80, 10.180.0.5:80"),
    Flow("LOCAL, KUBE-MARK-MASQ", NODE, "192.168.99.22", 80, "10.180.0.2:80", True),
    Flow("DROP", CLIENT, "192.168.99.22", 80, "DROP"),
    Flow("ACCEPT (NodePortHealthCheck)", NODE, NODE, 30000, "ACCEPT"),
    Flow("REJECT", POD, "172.30.0.46", 80, "REJECT"),
)
EP = "10.180.0.1:80"
BOTH = "10.180.0.1:80, 10.180.2.1:80"
THREE = "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80"

DUMPS: dict[str, tuple[tuple[str, ...], tuple[Flow, ...]]] = {
    "trace-packet.txt": (UPSTREAM_NODE_IPS, TRACE_PACKET),
    "overall-iptables-rules.txt": (UPSTREAM_NODE_IPS, (
        *(f._replace(origin="carried") for f in TRACE_PACKET),
        Flow("allowed client to LB with affinity", CLIENT, "5.6.7.8", 80, "10.180.0.3:80",
             True, "derived"),
        Flow("blocked client to LB", BLOCKED, "5.6.7.8", 80, "DROP", origin="derived"),
        Flow("external to NodePort", CLIENT, NODE, 3003, "10.180.0.3:80", True, "derived"),
        # kube-proxy >= 1.28 counts localhost NodePorts with -m nfacct, which always matches.
        Flow("localhost to NodePort (nfacct)", "127.0.0.1", "127.0.0.1", 3003, "10.180.0.3:80",
             True, "derived"),
        Flow("external to eTP:Local NodePort, no local endpoints", CLIENT, NODE, 3001, "DROP",
             origin="derived"),
    )),
    "load-balancer.txt": (BRANCH_NODE_IPS, (
        Flow("pod to cluster IP", POD, "172.30.0.41", 80, EP),
        Flow("external to nodePort", CLIENT, NODE, 3001, EP, True),
        Flow("nodePort bypasses LoadBalancerSourceRanges", BLOCKED, NODE, 3001, EP, True),
        Flow("accepted external to LB1", CLIENT, "1.2.3.4", 80, EP, True),
        Flow("accepted external to LB2", CLIENT, "5.6.7.8", 80, EP, True),
        Flow("blocked external to LB1", BLOCKED, "1.2.3.4", 80, "DROP"),
        Flow("blocked external to LB2", BLOCKED, "5.6.7.8", 80, "DROP"),
        Flow("pod to LB1 (blocked by LoadBalancerSourceRanges)", POD, "1.2.3.4", 80, "DROP"),
        Flow("pod to LB2 (blocked by LoadBalancerSourceRanges)", POD, "5.6.7.8", 80, "DROP"),
        Flow("node to LB1 (allowed by LoadBalancerSourceRanges)", NODE, "1.2.3.4", 80, EP, True),
        Flow("node to LB2 (allowed by LoadBalancerSourceRanges)", NODE, "5.6.7.8", 80, EP, True),
        Flow("same node to LB1, SNATted to LB1", "1.2.3.4", "1.2.3.4", 80, EP, True),
        Flow("same node to LB2, SNATted to LB2", "5.6.7.8", "5.6.7.8", 80, EP, True),
    )),
    "node-port.txt": (BRANCH_NODE_IPS, (
        Flow("pod to cluster IP", POD, "172.30.0.41", 80, EP),
        Flow("external to nodePort", CLIENT, NODE, 3001, EP, True),
        Flow("node to nodePort", NODE, NODE, 3001, EP, True),
        Flow("localhost to nodePort gets masqueraded", "127.0.0.1", "127.0.0.1", 3001, EP, True),
    )),
    "external-traffic-policy-local.txt": (BRANCH_NODE_IPS, (
        Flow("pod to cluster IP hits both endpoints", POD, "172.30.0.41", 80, BOTH),
        Flow("external to external IP hits only local endpoint", CLIENT, "192.168.99.11", 80,
             "10.180.2.1:80"),
        Flow("external to LB IP hits only local endpoint", CLIENT, "1.2.3.4", 80,
             "10.180.2.1:80"),
        Flow("external to NodePort hits only local endpoint", CLIENT, NODE, 3001,
             "10.180.2.1:80"),
    )),
    "health-check-node-port.txt": (BRANCH_NODE_IPS, (
        Flow("firewall accepts HealthCheckNodePort", "1.2.3.4", NODE, 30000, "ACCEPT"),
    )),
    "internal-traffic-policy-cluster.txt": (BRANCH_NODE_IPS, (
        Flow("pod to ClusterIP hits all endpoints", POD, "172.30.1.1", 80,
             "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80"),
    )),
    "internal-traffic-policy-local.txt": (BRANCH_NODE_IPS, (
        Flow("pod to ClusterIP hits only local endpoint", POD, "172.30.1.1", 80, "10.0.1.1:80"),
    )),
    "internal-traffic-policy-local-no-local-endpoints.txt": (BRANCH_NODE_IPS, (
        Flow("no endpoints", POD, "172.30.1.1", 80, "DROP"),
    )),
    "terminating-endpoints-local-ready.txt": (BRANCH_NODE_IPS, (
        Flow("pod to clusterIP", POD, "172.30.1.1", 80, THREE),
        Flow("external to LB", CLIENT, "1.2.3.4", 80, "10.0.1.1:80, 10.0.1.2:80"),
    )),
    "terminating-endpoints-local-only-terminating.txt": (BRANCH_NODE_IPS, (
        Flow("pod to clusterIP", POD, "172.30.1.1", 80, "10.0.1.5:80"),
        Flow("external to LB", CLIENT, "1.2.3.4", 80, "10.0.1.2:80, 10.0.1.3:80"),
    )),
    "terminating-endpoints-local-remote.txt": (BRANCH_NODE_IPS, (
        Flow("pod to clusterIP", POD, "172.30.1.1", 80, "10.0.1.5:80"),
        Flow("external to LB, no locally-usable endpoints", CLIENT, "1.2.3.4", 80, "DROP"),
    )),
    "only-local-node-ports.txt": (BRANCH_NODE_IPS, (
        Flow("pod to cluster IP hit both endpoints", POD, "172.30.0.41", 80, BOTH),
        Flow("external to NodePort hits only local endpoint", CLIENT, NODE, 3001,
             "10.180.2.1:80"),
        Flow("pod to localhost doesn't work because localhost is not in nodePortAddresses",
             POD, "127.0.0.1", 3001, ""),
        Flow("pod to NodePort hits both endpoints", POD, NODE, 3001, BOTH),
    )),
}  # fmt: skip

CASES = [(dump, flow) for dump, (_, flows) in DUMPS.items() for flow in flows]


@cache
def _ruleset(name: str) -> Ruleset:
    return parse_text((DATA / name).read_text(), name)


def kube_view(result: TraceResult) -> tuple[frozenset[str], bool]:
    """kpsim's answer the way kube-proxy's tracer words it: its outputs and its masq."""
    outputs: set[str] = set()
    for o in result.outcomes:
        if o.probability == 0:
            continue
        if o.verdict is Disposition.DNAT:
            outputs.add(f"{o.destination[0]}:{o.destination[1]}")
        elif o.verdict in (Disposition.DROP, Disposition.REJECT, Disposition.UNKNOWN):
            outputs.add(o.verdict.value)
        elif any(
            s.table == "filter"
            and s.chain in KUBE_FILTER_CHAINS
            and s.rule is not None
            and s.rule.target == Standard(Verdict.ACCEPT)
            for s in o.path
        ):
            outputs.add("ACCEPT")
    return frozenset(outputs), any(o.masquerade for o in result.outcomes if o.probability)


@pytest.mark.parametrize(("dump", "flow"), CASES, ids=[f"{d[:-4]}: {f.name}" for d, f in CASES])
def test_packet_flow(dump: str, flow: Flow) -> None:
    node_ips, _ = DUMPS[dump]
    result = Tracer(_ruleset(dump), NodeContext.of(node_ips)).trace(
        Packet.of(flow.src, flow.dst, flow.port)
    )
    assert result.total == Fraction(1)
    expected = frozenset(flow.output.split(", ")) - {""}
    assert kube_view(result) == (expected, flow.masq), result.outcomes


def test_every_dump_has_flows() -> None:
    assert sorted(DUMPS) == sorted(p.name for p in DATA.glob("*.txt"))


@pytest.mark.parametrize("dump", sorted(DUMPS))
def test_dump_reads_like_kube_proxy(dump: str) -> None:
    """Only the unquoted multi-word comments are reported; fast and general paths agree."""
    text = (DATA / dump).read_text()
    rs = _ruleset(dump)
    lines = text.splitlines()
    unquoted = [n for n, line in enumerate(lines, 1) if "--comment kubernetes " in line]
    assert [d.line for d in rs.diagnostics] == unquoted
    for d in rs.diagnostics:  # the column of the comment's second word
        assert lines[d.line - 1][d.col - 1 :].startswith(d.text.split("--comment ")[1].split()[1])
    assert parse_save(text, dump) == parse_save(text, dump, fast=False)


# ---------------------------------------------------------------- the comment rule

PORTALS = "-A PREROUTING -m comment --comment kubernetes service portals -j KUBE-SERVICES"
PORTALS_TEXT = '"kubernetes service portals"'


def _one_rule(line: str, **kwargs: bool) -> Ruleset:
    return parse_save(f"*nat\n:PREROUTING ACCEPT [0:0]\n{line}\nCOMMIT\n", "t", **kwargs)


def test_unquoted_comment_keeps_the_target() -> None:
    for fast in (True, False):
        rs = _one_rule(PORTALS, fast=fast)
        (rule,) = rs.chain("nat", "PREROUTING").rules  # type: ignore[union-attr]
        assert rule.matches == (CommentMatch("kubernetes service portals"),)
        assert rule.target == Jump("KUBE-SERVICES")


def test_unquoted_comment_fast_and_general_agree() -> None:
    fast, general = _one_rule(PORTALS), _one_rule(PORTALS, fast=False)
    assert fast == general and fast.diagnostics == general.diagnostics
    assert FastRules(frozenset()).shape(PORTALS) is None  # the shortcut hands it on
    quoted = PORTALS.replace("kubernetes service portals", '"kubernetes service portals"')
    assert _one_rule(quoted).tables == fast.tables  # the rule of the quoted spelling
    assert FastRules(frozenset()).shape(quoted) is not None


def test_unquoted_comment_ends_at_an_option_or_negation() -> None:
    line = "-A PREROUTING -m comment --comment a  b ! -s 10.0.0.0/8 -m mark --mark 0x1 -j X"
    (rule,) = _one_rule(line).chain("nat", "PREROUTING").rules  # type: ignore[union-attr]
    assert rule.matches == (CommentMatch("a b"), MarkMatch(1))
    assert rule.source is not None and rule.source.negated
    assert rule.target == Jump("X")


def test_unquoted_comment_problem_and_column() -> None:
    words = tokenize(PORTALS)
    body = parse_rule(words, 2, frozenset())
    col = PORTALS.index("service") + 1
    assert body.problems == [(col, f"unquoted multi-word comment: read as {PORTALS_TEXT}")]
    assert body.garbage_col == col
    rs = _one_rule(PORTALS)
    assert [(d.line, d.col) for d in rs.diagnostics] == [(3, col)]


def test_unquoted_comment_message() -> None:
    (diagnostic,) = _one_rule(PORTALS).diagnostics
    assert diagnostic.message == f"unquoted multi-word comment: read as {PORTALS_TEXT}"


def test_unquoted_comment_strict_raises_at_the_second_word() -> None:
    for fast in (True, False):
        with pytest.raises(ParseError) as caught:
            _one_rule(PORTALS, strict=True, fast=fast)
        assert (caught.value.line, caught.value.col) == (3, PORTALS.index("service") + 1)


def test_other_stray_words_still_end_the_rule() -> None:
    rs = _one_rule("-A PREROUTING -s 10.0.0.1 foo bar -j X")
    (rule,) = rs.chain("nat", "PREROUTING").rules  # type: ignore[union-attr]
    assert rule.target is None  # what follows a stray word is not guessed at
    assert [(d.col, d.message) for d in rs.diagnostics] == [(27, "ignored text after the rule")]
    words = tokenize("-A P -m comment --comment a b -j X junk")
    body = parse_rule(words, 2, frozenset())
    assert body.target == Jump("X")
    assert [c for c, _ in body.problems] == [29, 36]
    assert body.problems[1][1] == "ignored text after the rule"
    assert body.ignored and not parse_rule(tokenize(PORTALS), 2, frozenset()).ignored
