"""kpsim's exact trace against the real kernel (root only; CI runs these).

Each test replays a node's rules in throw-away namespaces (kpsim.verify.replay), sends real TCP
connections and checks that the kernel reaches exactly the endpoints the trace gives a
probability > 0, masquerades when the trace says so, drops/rejects when the trace says so,
and — with >= 300 connections — splits traffic consistently with the exact probabilities.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType

import pytest
from scipy.stats import chisquare

from kpsim.engine.packet import Packet
from kpsim.engine.trace import Disposition, Tracer
from kpsim.formats import load_file, parse_text
from kpsim.inputs import synth
from kpsim.inputs.synth import ClusterSpec, EndpointSpec, NodeSpec, ServicePortSpec, ServiceSpec
from kpsim.kube.routing import node_context
from kpsim.kube.scenario import NodeInput, NodeTrace, TraceRequest, trace_node
from kpsim.model import Ruleset
from kpsim.verify import netns
from kpsim.verify.replay import KernelResult, open_replay, replay

pytestmark = [
    pytest.mark.kernel,
    # χ² against the kernel's own random draws: one rerun turns a correct tracer's 1e-4
    # false failures per test into 1e-8; a real disagreement fails both runs.
    pytest.mark.flaky(reruns=1),
    pytest.mark.skipif(
        not netns.available(), reason="needs root plus ip/iptables/iptables-save/iptables-restore"
    ),
]

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = ROOT / "fixtures/iptables/eks-nodeport-workshop"
NODES = sorted(p.name for p in FIXTURE_DIR.iterdir() if (p / "iptables-save.txt").is_file())
N_STAT = 300  # connections where the split is checked statistically
P_MIN = 1e-4  # chi-square p-value floor: a correct kernel fails this 1 run in 10,000


def _no_endpoints_port() -> int:
    """The seed lab's NodePort service without endpoints (REJECT in the filter table)."""
    for info in synth.SEED_SERVICES.values():
        if info.get("endpoints") == "none" and (m := re.search(r":(\d+)/", info["ports"])):
            return int(m.group(1))
    raise AssertionError("no endpoint-less NodePort service in the seed lab")


REJECT_PORT = _no_endpoints_port()


def our_namespaces() -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    mine = f"{netns.PREFIX}{os.getpid()}-"
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(mine)]


@pytest.fixture(autouse=True)
def no_namespace_left_behind() -> Iterator[None]:
    yield
    assert our_namespaces() == []


# ---------------------------------------------------------------- comparing


def predicted(rs: Ruleset, request: TraceRequest) -> NodeTrace:
    return trace_node(NodeInput(rs.path, rs), request)


def dnat_shares(t: NodeTrace) -> dict[str, Fraction]:
    """DNAT destinations the trace gives a probability > 0."""
    out: dict[str, Fraction] = {}
    for o in t.result.outcomes:
        if o.verdict is Disposition.DNAT and o.probability > 0:
            key = f"{o.destination[0]}:{o.destination[1]}"
            out[key] = out.get(key, Fraction(0)) + o.probability
    return out


def predicted_masquerade(t: NodeTrace) -> dict[str, bool]:
    return {
        f"{o.destination[0]}:{o.destination[1]}": o.masquerade or o.snat_to is not None
        for o in t.result.outcomes
        if o.verdict is Disposition.DNAT
    }


def verdicts(t: NodeTrace) -> set[Disposition]:
    return {o.verdict for o in t.result.outcomes if o.probability > 0}


def assert_same_endpoints(t: NodeTrace, k: KernelResult, *, statistics: bool) -> None:
    """Reached set == predicted set; masquerade as predicted; split fits (chi-square)."""
    shares = dnat_shares(t)
    n = len(k.connections)
    assert k.answered == n, f"unanswered connections: {[c for c in k.connections][:3]}"
    assert set(k.reached) == set(shares), (dict(k.reached), shares)
    masq = predicted_masquerade(t)
    for dest in k.reached:
        assert k.masquerade_seen(dest) is masq[dest], (dest, dict(k.masqueraded))
    if statistics and len(shares) > 1:
        keys = sorted(shares)
        observed = [k.reached.get(x, 0) for x in keys]
        expected = [float(shares[x]) * n for x in keys]
        p = chisquare(observed, expected).pvalue
        assert p > P_MIN, (dict(zip(keys, observed, strict=True)), expected, p)


# ---------------------------------------------------------------- shipped fixtures


@pytest.fixture(scope="module")
def fixture_rulesets() -> dict[str, Ruleset]:
    return {n: load_file(FIXTURE_DIR / n / "iptables-save.txt") for n in NODES}


@pytest.mark.parametrize("port", [30080, 30081])
@pytest.mark.parametrize("node", NODES)
def test_fixture_nodeport_split(fixture_rulesets: dict[str, Ruleset], node: str, port: int) -> None:
    rs = fixture_rulesets[node]
    t = predicted(rs, TraceRequest(port=port))
    assert verdicts(t) == {Disposition.DNAT}
    k = replay(rs, port=port, n=N_STAT, timeout_s=60)
    assert_same_endpoints(t, k, statistics=True)
    # The kernel walked the SVC chain's rules, as the trace did.
    svc = {s.chain for o in t.result.outcomes for s in o.path if s.chain.startswith("KUBE-SVC-")}
    assert {c for (_, c, _) in k.counters if c.startswith("KUBE-SVC-")} == svc


@pytest.mark.parametrize("node", NODES)
def test_fixture_local_policy_and_no_endpoints(
    fixture_rulesets: dict[str, Ruleset], node: str
) -> None:
    """30082 (externalTrafficPolicy Local) and the endpoint-less service, in one namespace set."""
    rs = fixture_rulesets[node]
    local = predicted(rs, TraceRequest(port=30082))
    rejected = predicted(rs, TraceRequest(port=REJECT_PORT))
    assert verdicts(rejected) == {Disposition.REJECT}
    with open_replay(rs, timeout_s=40) as session:
        if verdicts(local) == {Disposition.DROP}:
            k = session.probe(30082, n=2, connect_timeout_s=0.5)
            assert k.timed_out == 2, k.connections
            drop_rule = next(o.path[-1] for o in local.result.outcomes)
            assert k.counters.get((drop_rule.table, drop_rule.chain, drop_rule.number)) == 2
        else:
            k = session.probe(30082, n=40)
            assert_same_endpoints(local, k, statistics=False)
        k = session.probe(REJECT_PORT, n=20, connect_timeout_s=1.0)
        assert k.refused == 20, k.connections  # the harness lifts ICMP rate limiting


def test_fixture_local_policy_drops_somewhere() -> None:
    """The seed lab has a node without crystal endpoints: the DROP case is exercised."""
    rs = load_file(FIXTURE_DIR / "ip-10-11-3-14" / "iptables-save.txt")
    assert verdicts(predicted(rs, TraceRequest(port=30082))) == {Disposition.DROP}


def test_fixture_cluster_ip_is_not_masqueraded(fixture_rulesets: dict[str, Ruleset]) -> None:
    rs = fixture_rulesets[NODES[0]]
    request = TraceRequest(port=8080, dest="172.20.177.168")
    t = predicted(rs, request)
    k = replay(rs, port=8080, dest="172.20.177.168", n=60)
    assert_same_endpoints(t, k, statistics=False)
    assert not any(predicted_masquerade(t).values())


@pytest.mark.parametrize("dest", [None, "127.0.0.1"], ids=["node-ip", "localhost"])
def test_fixture_from_the_node_itself(
    fixture_rulesets: dict[str, Ruleset], dest: str | None
) -> None:
    """Locally generated NodePort traffic (OUTPUT path), incl. kube-proxy's localhost
    NodePorts. Masquerade from the node keeps the address, so it shows as a new source port
    (--random-fully); a random port equal to the old one is possible, hence >= 90 %."""
    rs = fixture_rulesets[NODES[0]]
    source = dest or str(rs.metadata["private_ips"][0])  # type: ignore[index]
    t = predicted(rs, TraceRequest(port=30080, dest=dest, source=source))
    k = replay(rs, port=30080, dest=dest, n=60, from_node=True)
    assert k.answered == 60, k.connections[:3]
    assert {c.source for c in k.connections} == {source}
    assert set(k.reached) == set(dnat_shares(t))
    masq = predicted_masquerade(t)
    for d, count in k.reached.items():
        assert masq[d] is (k.masqueraded.get(d, 0) >= 0.9 * count), (d, dict(k.masqueraded))


POD_CASES = [
    ("10.11.16.79", "172.20.177.168", 8080),  # ClusterIP; one endpoint is the pod itself
    ("10.11.22.178", "172.20.210.120", 80),  # same, another service
    ("10.11.16.79", "172.20.0.10", 53),  # kube-dns over TCP: other pods only
    ("10.11.16.79", "10.11.41.25", 80),  # pod to pod: no NAT at all
    ("10.11.16.79", "203.0.113.10", 30080),  # leaving the VPC: AWS-SNAT-CHAIN-0 SNAT
]


@pytest.mark.parametrize(("pod", "dest", "port"), POD_CASES)
def test_fixture_from_a_pod(
    fixture_rulesets: dict[str, Ruleset], pod: str, dest: str, port: int
) -> None:
    """Pod traffic enters on eni+ (VPC CNI chains); hairpin to itself is masqueraded."""
    rs = next(r for r in fixture_rulesets.values() if "28-53" in r.path)
    ctx, _ = node_context(rs.metadata, [])
    result = Tracer(rs, ctx).trace(Packet.of(pod, dest, port, in_interface="eni0"))
    want = {
        f"{o.destination[0]}:{o.destination[1]}": o.masquerade or o.snat_to is not None
        for o in result.outcomes
        if o.probability > 0
    }
    assert {o.verdict for o in result.outcomes} <= {Disposition.DNAT, Disposition.ACCEPT}
    with open_replay(rs, timeout_s=30) as session:
        k = session.probe(port, dest=dest, from_pod=pod, n=40)
    assert k.answered == 40, k.connections[:3]
    assert {c.source for c in k.connections} == {pod}
    assert set(k.reached) == set(want), (dict(k.reached), want)
    for d in k.reached:
        assert k.masquerade_seen(d) is want[d], (d, dict(k.masqueraded), want)


# ---------------------------------------------------------------- generated rulesets

NODE = NodeSpec("ip-10-11-1-10.test.internal", "i-0000000000000001", "az-a", "10.11.1.10")
OTHER = NodeSpec("ip-10-11-2-20.test.internal", "i-0000000000000002", "az-b", "10.11.2.20")


def endpoints(k: int) -> tuple[EndpointSpec, ...]:
    nodes = (NODE.name, OTHER.name)
    return tuple(
        EndpointSpec(f"10.11.{32 + i // 200}.{2 + i % 200}", nodes[i % 2]) for i in range(k)
    )


def service(k: int, **kw: object) -> ServiceSpec:
    port = ServicePortSpec("", "TCP", 80, 8080, 30100)
    fields: dict[str, object] = {"type": "NodePort", "endpoints": endpoints(k)} | kw
    return ServiceSpec("demo", f"web-{k}", "172.20.9.9", (port,), **fields)  # type: ignore[arg-type]


def node_ruleset(cluster: ClusterSpec, text: str | None = None) -> Ruleset:
    """NODE's rules (optionally hand-edited text) with the metadata a capture carries."""
    rs = parse_text(text or synth.render_restore(cluster, NODE), "synth:" + NODE.short_name)
    pods = [
        {"ip": e.ip, "name": f"{s.name}-{i}", "namespace": s.namespace, "node": e.node}
        for s in cluster.services
        for i, e in enumerate(s.endpoints)
    ]
    meta = {
        "node": NODE.name,
        "private_ips": [NODE.ip],
        "local_addresses": [NODE.local_cidr, "127.0.0.1/8"],
        "pods": pods,
    }
    return replace(rs, metadata=MappingProxyType(meta))


def cluster_of(*services: ServiceSpec) -> ClusterSpec:
    return ClusterSpec(nodes=(NODE, OTHER), services=services)


@pytest.mark.parametrize("k", [1, 2, 7, 20])
def test_generated_uniform(k: int) -> None:
    rs = node_ruleset(cluster_of(service(k)))
    t = predicted(rs, TraceRequest(port=30100))
    assert len(dnat_shares(t)) == k
    res = replay(rs, port=30100, n=N_STAT, clients=3)
    assert_same_endpoints(t, res, statistics=True)


def test_generated_hand_skewed_ladder() -> None:
    """Probabilities edited by hand: 0.1 / 0.8 instead of kube-proxy's 1/3 / 1/2."""
    text = synth.render_restore(cluster_of(service(3)), NODE)
    assert text.count("--probability 0.3333333333") == 1
    text = text.replace("--probability 0.3333333333", "--probability 0.1000000000")
    text = text.replace("--probability 0.5000000000", "--probability 0.8000000000")
    rs = node_ruleset(cluster_of(service(3)), text)
    t = predicted(rs, TraceRequest(port=30100))
    shares = sorted(dnat_shares(t).values())
    assert [round(float(s), 6) for s in shares] == [0.1, 0.18, 0.72]
    res = replay(rs, port=30100, n=N_STAT)
    assert_same_endpoints(t, res, statistics=True)


def test_generated_session_affinity_one_client() -> None:
    rs = node_ruleset(cluster_of(service(3, session_affinity_seconds=10800)))
    res = replay(rs, port=30100, n=30, clients=1)
    assert res.answered == 30
    first = res.connections[0].destination
    assert first is not None
    assert set(res.reached) == {first}, dict(res.reached)
    fresh = predicted(rs, TraceRequest(port=30100))
    assert first in dnat_shares(fresh)
    sticky = predicted(rs, TraceRequest(port=30100, affinity=(first,)))
    assert dnat_shares(sticky) == {first: Fraction(1)}


def test_generated_session_affinity_per_client() -> None:
    rs = node_ruleset(cluster_of(service(3, session_affinity_seconds=10800)))
    res = replay(rs, port=30100, n=48, clients=6)
    assert res.answered == 48
    per_client: dict[str, set[str | None]] = {}
    for c in res.connections:
        per_client.setdefault(c.source, set()).add(c.destination)
    assert len(per_client) == 6 and all(len(d) == 1 for d in per_client.values()), per_client


LB_IP = "192.0.2.50"
ALLOWED = "198.51.100.0/24"


@pytest.mark.parametrize(("client", "inside"), [("198.51.100.7", True), ("203.0.113.10", False)])
def test_generated_load_balancer_source_ranges(client: str, inside: bool) -> None:
    svc = service(
        2, type="LoadBalancer", load_balancer_ips=(LB_IP,), load_balancer_source_ranges=(ALLOWED,)
    )
    rs = node_ruleset(cluster_of(svc))
    t = predicted(rs, TraceRequest(port=80, dest=LB_IP, source=client))
    res = replay(rs, port=80, dest=LB_IP, source=client, n=20 if inside else 2,
                 connect_timeout_s=0.5)  # fmt: skip
    if inside:
        assert verdicts(t) == {Disposition.DNAT}
        assert_same_endpoints(t, res, statistics=False)
    else:
        assert verdicts(t) == {Disposition.DROP}
        assert res.timed_out == 2, res.connections
        assert any(c == "KUBE-PROXY-FIREWALL" for (_, c, _) in res.counters), res.counters


def test_kernel_result_keeps_the_map(fixture_rulesets: dict[str, Ruleset]) -> None:
    rs = fixture_rulesets[NODES[0]]
    k = replay(rs, port=30080, n=5)
    rows = dict(k.address_map.rows())
    assert rows["10.11.0.0/16"].startswith("198.1")
    assert all(d.startswith("10.11.") for d in k.reached)
    assert isinstance(k.counters, Mapping)
