"""``trace`` against the kernel where the egress interface matters (root only).

A Docker hostPort node (DNAT to a bridge pod, FORWARD policy DROP with ``-o docker0``
accepts, ``! -o docker0`` masquerade) and a VPC CNI node (per-pod ``eni`` veths, policy
rule 512, AWS-SNAT-CHAIN-0 / AWS-CONNMARK-CHAIN-0, kube-proxy's NodePort masquerade) are
built in namespaces (kpsim.verify.lab); real connections say where the kernel sent each
one, by which interface, and with which source. The trace must say the same, from the
node's captured ``ip -j`` outputs and, for Docker, from the rules alone.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
from click.testing import CliRunner

from kpsim.cli.main import main
from kpsim.engine.trace import Disposition
from kpsim.formats import load_file, parse_text
from kpsim.kube.scenario import NodeInput, NodeTrace, TraceRequest, trace_node
from kpsim.model import Ruleset
from kpsim.verify import netns
from kpsim.verify.lab import Lab, LabPlan, Landing, build_lab

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        not netns.available(), reason="needs root plus ip/iptables/iptables-save/iptables-restore"
    ),
]

NODE, CLIENT, POD, FAR = "198.18.1.1", "198.18.1.2", "198.18.64.2", "198.19.255.5"
NODE_ADDRS = {
    "eth0": NODE,
    "eth1": "198.19.255.1",
    "docker0": "198.18.64.1",
    "eni0a1b2c3d4e5": NODE,
}

DOCKER = f"""\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 198.18.64.0/24 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s {POD}/32 -d {POD}/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination {POD}:80
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 9090 -j DNAT --to-destination {FAR}:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d {POD}/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"""

ENI_POD, ENI = "198.18.1.50", "eni0a1b2c3d4e5"
NODE_ADDRS[ENI] = NODE  # the veth has no address: the kernel takes the node's primary one
VPC = "198.18.0.0/16"
CNI = f"""\
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth0 -m comment --comment "AWS, primary ENI" -m addrtype --dst-type LOCAL \
--limit-iface-in -j CONNMARK --set-xmark 0x80/0x80
-A PREROUTING -i eni+ -m comment --comment "AWS, primary ENI" -j CONNMARK --restore-mark \
--nfmask 0x80 --ctmask 0x80
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:AWS-CONNMARK-CHAIN-0 - [0:0]
:AWS-SNAT-CHAIN-0 - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-EXT-A - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -i eni+ -m comment --comment "AWS, outbound connections" -j AWS-CONNMARK-CHAIN-0
-A PREROUTING -m comment --comment "AWS, CONNMARK" -j CONNMARK --restore-mark --nfmask 0x80 \
--ctmask 0x80
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -m comment --comment "AWS SNAT CHAIN" -j AWS-SNAT-CHAIN-0
-A AWS-CONNMARK-CHAIN-0 -d {VPC} -m comment --comment "AWS CONNMARK CHAIN, VPC CIDR" -j RETURN
-A AWS-CONNMARK-CHAIN-0 -m comment --comment "AWS, CONNMARK" -j CONNMARK --set-xmark 0x80/0x80
-A AWS-SNAT-CHAIN-0 -d {VPC} -m comment --comment "AWS SNAT CHAIN" -j RETURN
-A AWS-SNAT-CHAIN-0 ! -o vlan+ -m comment --comment "AWS, SNAT" -m addrtype ! --dst-type LOCAL \
-j SNAT --to-source {NODE} --random-fully
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" \
-j MASQUERADE --random-fully
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j KUBE-EXT-A
-A KUBE-NODEPORTS -p tcp -m tcp --dport 30081 -j DNAT --to-destination 203.0.113.99:80
-A KUBE-EXT-A -j KUBE-MARK-MASQ
-A KUBE-EXT-A -j KUBE-SVC-A
-A KUBE-SVC-A -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A
-A KUBE-SVC-A -j KUBE-SEP-B
-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination {ENI_POD}:80
-A KUBE-SEP-B -p tcp -m tcp -j DNAT --to-destination {FAR}:80
COMMIT
"""


def traced(rules: str, port: int, meta: dict[str, object] | None) -> NodeTrace:
    rs: Ruleset = parse_text(rules, "lab.txt")
    if meta is not None:
        rs = replace(rs, metadata=MappingProxyType(meta))
    req = TraceRequest(port=port, source=CLIENT, node_ips=(NODE,))
    return trace_node(NodeInput("lab", rs), req)


def compare(t: NodeTrace, k: Landing) -> None:
    """Destinations, egress and masquerade equal; nothing delivered where the trace drops."""
    delivered = {
        (o.destination[0], o.destination[1], o.egress or "?"): o
        for o in t.result.outcomes
        if o.verdict in (Disposition.DNAT, Disposition.ACCEPT) and o.probability > 0
    }
    assert set(k.reached) == set(delivered), (dict(k.reached), list(delivered))
    for (dst, _port, _egress), o in delivered.items():
        masq = o.masquerade or o.snat_to is not None
        seen = {s for d, s in k.sources if d == dst}
        # MASQUERADE takes the address of the interface the packet leaves by
        assert seen == ({NODE_ADDRS[o.egress or "eth0"]} if masq else {CLIENT}), (dst, seen, o)
    dropped = sum(o.probability for o in t.result.outcomes if o.verdict is Disposition.DROP)
    assert (k.failed.get("timeout", 0) > 0) == (dropped > 0), (dict(k.failed), t.result.outcomes)


@pytest.fixture(scope="module")
def docker_lab() -> object:
    plan = LabPlan(NODE, CLIENT, DOCKER, bridge_cidr="198.18.64.1/24", bridge_pods=(POD,),
                   far=(FAR,))  # fmt: skip
    with build_lab(plan) as lab:
        yield lab


@pytest.mark.parametrize("port", [8080, 9090])
@pytest.mark.parametrize("routes", ["captured", "inferred"])
def test_docker_hostport(docker_lab: Lab, port: int, routes: str) -> None:
    k = docker_lab.probe(port, 4, sport_base=20000 + port % 1000 * 10)
    meta = {"ip": docker_lab.ip_json()} if routes == "captured" else None
    t = traced(DOCKER, port, meta)
    compare(t, k)
    if port == 8080:
        assert set(k.reached) == {(POD, 80, "docker0")}
    else:
        assert not k.reached and k.failed["timeout"] == 4  # FORWARD DROP: no -o docker0


def test_vpc_cni_node() -> None:
    plan = LabPlan(NODE, CLIENT, CNI, eni_pods=((ENI_POD, ENI),), far=(FAR,),
                   ip_rules=(f"to {ENI_POD} lookup main prio 512",
                             "fwmark 0x80/0x80 lookup main prio 1024"))  # fmt: skip
    with build_lab(plan) as lab:
        k = lab.probe(30080, 60)
        t = traced(CNI, 30080, {"ip": lab.ip_json()})
        compare(t, k)
        assert {e for _, _, e in k.reached} == {ENI, "eth1"}
        k2 = lab.probe(30081, 3, sport_base=21000)
        ipj = lab.ip_json()
    assert k2.failed == {"timeout": 3}  # 203.0.113.99 is nowhere: out eth1, unanswered
    [o] = traced(CNI, 30081, {"ip": ipj}).result.outcomes
    assert o.verdict is Disposition.DNAT and o.egress == "eth1"  # the default route
    local_only = [r for r in ipj["route"] if isinstance(r, dict) and r.get("table") == "local"]
    [o] = traced(CNI, 30081, {"ip": {**ipj, "route": local_only}}).result.outcomes
    # no route: the trace does not guess eth0; AWS-SNAT-CHAIN-0's ``! -o vlan+`` is open
    assert o.verdict is Disposition.UNKNOWN and "out interface unknown" in (o.reason or "")


def test_fetch_collects_routes_and_trace_uses_them(docker_lab: Lab, tmp_path: Path) -> None:
    """``kpsim fetch --netns`` on the lab node: the fixture carries ``ip -j`` outputs, and
    trace on the fixture alone finds the bridge the kernel used."""
    result = CliRunner().invoke(main, ["fetch", "--netns", docker_lab.node, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [save] = sorted(tmp_path.rglob("iptables-save.txt"))
    rs = load_file(save)
    ip = rs.metadata["ip"]
    assert isinstance(ip, dict) and {"addr", "route", "rule"} <= set(ip)
    req = TraceRequest(port=8080, source=CLIENT, node_ips=(NODE,))
    t = trace_node(NodeInput("lab", rs), req)
    [o] = t.result.outcomes
    assert (o.destination, o.egress, o.masquerade) == ((POD, 80), "docker0", False)
    assert not any("assumed" in a for a in o.assumptions)
