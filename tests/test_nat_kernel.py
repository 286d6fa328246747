"""Source rewrites on forwarded traffic, by kpsim and by the kernel (root only).

Three namespaces: a client, the node (forwarding, with the rules under test in nat
POSTROUTING, loaded by each iptables backend on this machine) and a server that records the
source address and port each connection arrives from. Compared with ``kpsim trace``: SNAT
to an address/port range with ``--random-fully``, NETMAP of the source, MASQUERADE, and
``-m owner`` on a packet that has no local socket (forwarded).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kpsim.engine.packet import Packet
from kpsim.engine.trace import Disposition, Tracer
from kpsim.formats import parse_text
from kpsim.model.node import NodeContext
from kpsim.verify import netns

BACKENDS = [b for b in ("nft", "legacy") if shutil.which(f"iptables-{b}-restore")]

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        not netns.available(), reason="needs root plus ip/iptables/iptables-save/iptables-restore"
    ),
    pytest.mark.skipif(not BACKENDS, reason="no iptables-nft-restore or iptables-legacy-restore"),
]

CLIENT, NODE, NODE_IN, SERVER = "198.18.0.1", "198.18.0.2", "198.18.2.1", "198.18.2.2"
CONTEXT = NodeContext.of(
    [NODE, NODE_IN],
    on={"eth0": [NODE], "eth1": [NODE_IN]},
    routes={"198.18.0.0/24": "eth0", "198.18.2.0/24": "eth1"},
)

#: dport → (the POSTROUTING rule, the source the server should see: address or range).
CASES = {
    2001: ("-m owner ! --uid-owner 0 -j SNAT --to-source 198.18.3.77", "198.18.3.77"),
    2002: (
        "-j SNAT --to-source 198.18.3.1-198.18.3.3:20000-20010 --random-fully",
        "198.18.3.1-198.18.3.3:20000-20010",
    ),
    2003: ("-s 198.18.0.0/24 -j NETMAP --to 198.18.3.0/24", "198.18.3.1"),
    2004: ("-j MASQUERADE", NODE_IN),
    2005: ("-m owner --uid-owner 0 -j SNAT --to-source 198.18.3.77", CLIENT),
}


def ruleset_text() -> str:
    post = [f"-A POSTROUTING -p tcp -m tcp --dport {p} {rule}" for p, (rule, _) in CASES.items()]
    nat = [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")]
    filt = [f":{c} ACCEPT [0:0]" for c in ("INPUT", "FORWARD", "OUTPUT")]
    return "\n".join(["*nat", *nat, *post, "COMMIT", "*filter", *filt, "COMMIT", ""])


SERVE = """
import json, select, socket, sys, time
socks = []
for port in sys.argv[2:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(port)))
    s.listen(16)
    socks.append(s)
print("ready", flush=True)
end = time.monotonic() + 8
while time.monotonic() < end:
    ready, _, _ = select.select(socks, [], [], 0.2)
    for s in ready:
        c, peer = s.accept()
        print(json.dumps([s.getsockname()[1], peer[0], peer[1]]), flush=True)
        c.close()
"""

CONNECT = """
import socket, sys
for port in sys.argv[2:]:
    s = socket.create_connection((sys.argv[1], int(port)), timeout=2)
    s.close()
"""


@dataclass
class Seen:
    peers: dict[int, tuple[str, int]]


def _ip(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, timeout=10,
                   capture_output=True)  # fmt: skip


@pytest.fixture(scope="module", params=BACKENDS)
def seen(request: pytest.FixtureRequest) -> Iterator[Seen]:
    """Every case's connection made once; the server's view of each source."""
    backend: str = request.param
    with (
        netns.netns_session() as client,
        netns.netns_session() as node,
        netns.netns_session() as server,
    ):
        netns.veth(client.name, node.name, "kpc0", "eth0")
        netns.veth(node.name, server.name, "eth1", "kps0")
        for ns, dev, cidr in (
            (client.name, "kpc0", f"{CLIENT}/24"),
            (node.name, "eth0", f"{NODE}/24"),
            (node.name, "eth1", f"{NODE_IN}/24"),
            (server.name, "kps0", f"{SERVER}/24"),
        ):
            netns.add_address(ns, dev, cidr)
            netns.link_up(ns, dev)
        _ip(client.name, "ip", "route", "add", "198.18.2.0/24", "via", NODE)
        _ip(server.name, "ip", "route", "add", "198.18.3.0/24", "via", NODE_IN)
        _ip(server.name, "ip", "route", "add", "198.18.0.0/24", "via", NODE_IN)
        _ip(node.name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        proc = netns.run(node.name, [f"iptables-{backend}-restore"], input=ruleset_text(),
                         check=False)  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"iptables-{backend}-restore refused the cases: {proc.stderr.strip()}")
        ports = [str(p) for p in CASES]
        argv = ["ip", "netns", "exec", server.name, sys.executable, "-c", SERVE, SERVER, *ports]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as listener:
            try:
                assert listener.stdout is not None
                assert listener.stdout.readline().strip() == "ready"
                netns.run(client.name, [sys.executable, "-c", CONNECT, SERVER, *ports])
                peers: dict[int, tuple[str, int]] = {}
                while len(peers) < len(CASES):
                    port, addr, sport = json.loads(listener.stdout.readline())
                    peers[port] = (addr, sport)
            finally:
                listener.kill()
        yield Seen(peers)


def _within(spec: str, addr: str, port: int) -> bool:
    """Is addr:port inside ``a-b:p-q`` (or equal to a bare address)?"""
    addrs, _, ports = spec.partition(":")
    lo, _, hi = addrs.partition("-")
    a = ipaddress.IPv4Address(addr)
    if not ipaddress.IPv4Address(lo) <= a <= ipaddress.IPv4Address(hi or lo):
        return False
    if not ports:
        return True
    plo, _, phi = ports.partition("-")
    return int(plo) <= port <= int(phi or plo)


@pytest.mark.parametrize("dport", sorted(CASES))
def test_source_as_the_server_sees_it(seen: Seen, dport: int) -> None:
    rs = parse_text(ruleset_text(), "nat-cases")
    (o,) = Tracer(rs, CONTEXT).trace(Packet.of(CLIENT, SERVER, dport)).outcomes
    assert o.verdict is Disposition.ACCEPT, o
    addr, sport = seen.peers[dport]
    want = CASES[dport][1]
    assert _within(want, addr, sport), (addr, sport, want)
    if want == NODE_IN:
        assert o.masquerade is True and o.snat_to is None
    elif want == CLIENT:
        assert o.masquerade is False and o.snat_to is None
    else:
        assert o.snat_to == want and not o.masquerade
