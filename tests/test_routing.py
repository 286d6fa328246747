"""Routing as data: the node's ``ip -j`` outputs decide where a packet leaves; without
them the rules' own hints do, and the outcome says so."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from kpsim.fetch.capture import node_capture
from kpsim.formats import load_file, parse_text
from kpsim.formats.iproute import node_from_ip
from kpsim.formats.meta import check_meta
from kpsim.inputs.synth import seed_workshop
from kpsim.inputs.synth.routing import host_veth, node_ip_json
from kpsim.kube.scenario import NodeInput, TraceRequest, trace_node

ROOT = Path(__file__).resolve().parents[1]
NODE = ROOT / "fixtures/iptables/eks-nodeport-workshop/ip-10-11-28-53/iptables-save.txt"

DOCKER = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
"""


def ip(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)


def test_fixture_routes_put_local_pods_behind_their_eni() -> None:
    rs = load_file(NODE)
    ctx = node_from_ip(rs.metadata, [])
    assert ctx is not None
    cluster = seed_workshop()
    node = next(n for n in cluster.nodes if n.ip == "10.11.28.53")
    local = [p for p in cluster.pods if p.node == node.name]
    assert local
    for pod in local:  # rule 512 "to <pod> lookup main", then the /32 route to its veth
        assert ctx.route(ip(pod.ip), ip("203.0.113.10")) == host_veth(pod)
    remote = next(p for p in cluster.pods if p.node != node.name)
    assert ctx.route(ip(remote.ip), ip("203.0.113.10")) == "eth0"
    assert ctx.route(ip("10.11.28.53")) == "lo"
    assert ctx.is_local(ip("10.11.28.53"))


def test_trace_says_which_interface_each_endpoint_leaves_by() -> None:
    rs = load_file(NODE)
    t = trace_node(NodeInput("n", rs), TraceRequest(port=30080))
    egress = {o.destination[0]: o.egress for o in t.result.outcomes}
    assert egress["10.11.16.79"].startswith("eni")  # the pod on this node
    assert egress["10.11.11.70"] == egress["10.11.41.25"] == "eth0"
    assert "routes and policy rules from the capture (ip -j route, ip -j rule)" in t.context_notes


def test_policy_rule_by_source_and_mark() -> None:
    meta = {"ip": node_ip_json(seed_workshop(), seed_workshop().nodes[0])}
    rules = meta["ip"]["rule"]
    assert isinstance(rules, list)
    rules.append({"priority": 1536, "src": "10.11.99.9", "table": "2"})
    routes = meta["ip"]["route"]
    assert isinstance(routes, list)
    routes.append({"dst": "default", "gateway": "10.11.16.1", "dev": "eth1", "table": "2"})
    ctx = node_from_ip(meta, [])
    assert ctx is not None
    assert ctx.route(ip("8.8.8.8"), ip("10.11.99.9")) == "eth1"  # from the pod: table 2
    assert ctx.route(ip("8.8.8.8"), ip("10.11.99.8")) == "eth0"
    assert ctx.route(ip("8.8.8.8"), None) is None  # source not chosen: cannot tell


def test_meta_checks_ip_outputs() -> None:
    kept, problems = check_meta({"ip": {"route": "default dev eth0", "rule": [], "x": []}})
    assert kept["ip"] == {"rule": []}
    assert {k for k, _ in problems} == {"ip.'route'", "ip.'x'"}


def test_fetch_keeps_ip_json_sections() -> None:
    sections = {
        "iptables-save": "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n",
        "ip-json-route": '[{"dst":"default","gateway":"10.0.0.1","dev":"eth0","flags":[]}]',
        "ip-json-rule": 'Option "-j" is unknown',  # an ip without JSON: left out
    }
    cap = node_capture(sections)
    assert cap.ip == {"route": [{"dst": "default", "gateway": "10.0.0.1", "dev": "eth0",
                                 "flags": []}]}  # fmt: skip


def test_without_routes_the_rules_tell_docker0_and_the_outcome_says_so() -> None:
    rs = parse_text(DOCKER, "docker.txt")
    req = TraceRequest(port=8080, node_ips=("192.0.2.10",))
    t = trace_node(NodeInput("docker", rs), req)
    [o] = t.result.outcomes
    assert o.verdict.value == "DNAT" and o.destination == ("172.17.0.2", 80)
    assert o.egress == "docker0" and o.masquerade is False
    assert any("172.17.0.2/32 leaves by docker0" in a for a in o.assumptions), o.assumptions
    assert any("docker0" in n for n in t.context_notes)
