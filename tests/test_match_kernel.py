"""Matches and targets real nodes carry, decided by kpsim and by the kernel (root only).

One ruleset with a chain per case is loaded into a throw-away namespace with each
iptables backend on this machine (iptables-nft-restore, iptables-legacy-restore); a client
namespace, joined by a veth, opens real TCP connections to the node namespace. The kernel's
answer is read from the rule counters (``iptables-save -c``: which rule fired), from a
listener bound to one address and port (where REDIRECT and NETMAP sent the connection),
or from a connection that times out (DROP); each is compared with ``kpsim trace``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import pytest

from kpsim.engine.answers import nth_start
from kpsim.engine.packet import Packet, State
from kpsim.engine.trace import Disposition, Outcome, Tracer
from kpsim.formats import parse_text
from kpsim.model import Log, OpaqueMatch, Ruleset, StatisticMatch
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

CLIENT, NODE, ON_LO = "198.18.0.1", "198.18.0.2", "198.18.1.2"
CONTEXT = NodeContext.of(
    [NODE, ON_LO], on={"eth0": [NODE], "lo": [ON_LO]}, routes={"198.18.0.0/24": "eth0"}
)

#: (case, dport, the rules of chain CASE-<case> in nat, other tables' rules for that port).
CASES: list[tuple[str, int, list[str]]] = [
    ("NTH", 1001, [
        "-m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination 198.18.0.2:81",
        "-m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 198.18.0.2:82",
        "-j DNAT --to-destination 198.18.0.2:83",
    ]),
    ("NTHP", 1002, [
        "-m statistic --mode nth --every 3 --packet 2 -j DNAT --to-destination 198.18.0.2:81",
        "-m statistic --mode nth ! --every 2 --packet 1 -j DNAT --to-destination 198.18.0.2:82",
        "-j DNAT --to-destination 198.18.0.2:83",
    ]),
    ("LIMIT", 1003, [
        "-m limit --limit 1/hour --limit-burst 1 -j LOG --log-prefix kpsim",
        "-m hashlimit --hashlimit-upto 1/hour --hashlimit-name kpsim -j NFLOG",
        "-m limit --limit 1/hour",
        "-j DNAT --to-destination 198.18.0.2:81",
    ]),
    ("PHYS", 1004, [
        "-m physdev --physdev-is-bridged -j DNAT --to-destination 198.18.0.2:81",
        "-m physdev --physdev-in eth0 -j DNAT --to-destination 198.18.0.2:82",
        "-m physdev ! --physdev-is-in ! --physdev-out veth0 -j DNAT --to-destination 198.18.0.2:83",
    ]),
    ("ADDR", 1005, [
        "-m addrtype --dst-type LOCAL --limit-iface-in -j DNAT --to-destination 198.18.0.2:81",
        "-m addrtype ! --dst-type LOCAL -j DNAT --to-destination 198.18.0.2:82",
        "-m addrtype --dst-type LOCAL -j DNAT --to-destination 198.18.0.2:83",
    ]),
    ("RANGE", 1006, [
        "-m iprange --src-range 198.18.0.5-198.18.0.9 -j DNAT --to-destination 198.18.0.2:81",
        "-m iprange ! --dst-range 198.18.0.2-198.18.0.3 -j DNAT --to-destination 198.18.0.2:82",
        "-m iprange --src-range 198.18.0.0-198.18.0.1 ! --dst-range 198.18.0.3-198.18.0.9 "
        "-j DNAT --to-destination 198.18.0.2:83",
    ]),
    ("MPORT", 1007, [
        "-p tcp -m multiport ! --dports 1000:1010,2000 -j DNAT --to-destination 198.18.0.2:81",
        "-p tcp -m multiport --sports 1:1024 -j DNAT --to-destination 198.18.0.2:82",
        "-p tcp -m multiport --ports 2000,1005:1007 -j DNAT --to-destination 198.18.0.2:83",
    ]),
    ("MARK", 1008, [
        "-m mark --mark 0x5 -j DNAT --to-destination 198.18.0.2:81",
        "-m mark ! --mark 0x5/0xf -j DNAT --to-destination 198.18.0.2:82",
        "-m mark --mark 0x15/0x1f -j DNAT --to-destination 198.18.0.2:83",
    ]),
    ("CTMARK", 1009, [
        "-m connmark ! --mark 0x105/0x10f -j DNAT --to-destination 198.18.0.2:81",
        "-m mark --mark 0x5/0xff -m connmark --mark 0x5/0xf -j DNAT --to-destination 198.18.0.2:82",
        "-j DNAT --to-destination 198.18.0.2:83",
    ]),
    ("REDIR", 1010, ["-p tcp -j REDIRECT --to-ports 1201"]),
    ("SET", 1013, [
        "-m set --match-set KPSIM src -j DNAT --to-destination 198.18.0.2:81",
        "-m set ! --match-set KPSIM dst -j DNAT --to-destination 198.18.0.2:82",
        "-m set --match-set KPSIM dst,src -j DNAT --to-destination 198.18.0.2:83",
    ]),
    ("NFACCT", 1012, [
        "-m addrtype --dst-type LOCAL -m nfacct --nfacct-name kpsim "
        "-j DNAT --to-destination 198.18.0.2:81",
        "-j DNAT --to-destination 198.18.0.2:82",
    ]),
    ("NETMAP", 1011, ["-d 198.18.1.0/24 -j NETMAP --to 198.18.0.0/24"]),
]  # fmt: skip

#: Rules of other tables, by case (the mark-setting ones run before nat PREROUTING).
MANGLE = {
    "MARK": ["-j MARK --set-xmark 0x35/0xff", "-j MARK --and-mark 0x1f"],
    "CTMARK": [
        "-j MARK --set-xmark 0x35/0xff",
        "-j CONNMARK --save-mark --mask 0xf",
        "-j CONNMARK --set-xmark 0x100/0x100",
        "-j MARK --set-xmark 0x0",
        "-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xf",
    ],
}
#: Where a case's connections go: the node address, or the one the node holds on lo.
DEST = {"ADDR": ON_LO, "REDIR": ON_LO, "NETMAP": ON_LO}
#: Cases whose kernel answer is a listener on one address: port (where NAT sent it).
LISTEN = {"REDIR": (NODE, 1201), "NETMAP": (NODE, 1011)}
RETURN_PORT = 1099  # filter INPUT: RETURN from the base chain, whose policy is DROP


#: The set the SET case asks about, as ``ipset save`` prints it (kpsim reads it from here).
IPSET_SAVE = "create KPSIM hash:ip family inet hashsize 1024 maxelem 65536\n"
IPSET_SAVE += "add KPSIM 198.18.0.2\nadd KPSIM 198.18.0.9\n"


def ruleset_text(nfacct: bool = True, sets: bool = True) -> str:
    """The cases as iptables-restore input (without NFACCT / SET when the nfacct object or
    the set could not be made in the namespace)."""
    left_out = {n for n, ok in (("NFACCT", nfacct), ("SET", sets)) if not ok}
    cases = [c for c in CASES if c[0] not in left_out]
    nat = [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")]
    nat += [f":CASE-{name} - [0:0]" for name, _, _ in cases]
    nat += [f"-A PREROUTING -p tcp -m tcp --dport {port} -j CASE-{n}" for n, port, _ in cases]
    nat += [
        f"-A CASE-{name} {'' if rule.startswith('-p tcp') else '-p tcp '}{rule}"
        for name, _, rules in cases
        for rule in rules
    ]
    port = {name: p for name, p, _ in CASES}
    mangle = [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT")]
    mangle += [":POSTROUTING ACCEPT [0:0]"] + [
        f"-A PREROUTING -p tcp -m tcp --dport {port[name]} {rule}"
        for name, rules in MANGLE.items()
        for rule in rules
    ]
    accept = [f"-A INPUT -p tcp -m tcp --dport {p} -j ACCEPT" for _, p, _ in CASES]
    accept += ["-A INPUT -p tcp -m tcp --dport 81:83 -j ACCEPT"]
    accept += ["-A INPUT -p tcp -m tcp --dport 1201 -j ACCEPT"]
    filt = [":INPUT DROP [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    filt += [f"-A INPUT -p tcp -m tcp --dport {RETURN_PORT} -j RETURN"]
    filt += accept
    return "\n".join(
        ["*mangle", *mangle, "COMMIT", "*nat", *nat, "COMMIT", "*filter", *filt, "COMMIT", ""]
    )


CONNECT = """
import json, socket, sys
dest, port, n, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sport = int(sys.argv[5])
out = []
for i in range(n):
    s = socket.socket()
    s.settimeout(timeout)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sport:
        s.bind(("", sport + i))
    try:
        s.connect((dest, port))
        out.append("open")
    except ConnectionRefusedError:
        out.append("refused")
    except OSError:
        out.append("timeout")
    finally:
        s.close()
print(json.dumps(out))
"""

#: Creates the nfacct object an ``-m nfacct`` rule needs (no ``nfacct`` tool here): one
#: NFNL_MSG_ACCT_NEW netlink request with the name attribute.
NFACCT = """
import socket, struct, sys
name = sys.argv[1].encode() + b"\\0"
attr = struct.pack("HH", 4 + len(name), 1) + name
attr += b"\\0" * (-len(attr) % 4)
body = struct.pack("BBH", 0, 0, 0) + attr
msg = struct.pack("IHHII", 16 + len(body), 7 << 8, 0x1 | 0x4 | 0x400, 1, 0) + body
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
s.bind((0, 0))
s.send(msg)
sys.exit(0 if struct.unpack("i", s.recv(4096)[16:20])[0] == 0 else 1)
"""

#: Creates set KPSIM (hash:ip) with the addresses given: IPSET_CMD_CREATE and IPSET_CMD_ADD
#: netlink requests, protocol 6 (there is no ``ipset`` tool here).
IPSET = """
import socket, struct, sys
def attr(t, payload, flags=0):
    a = struct.pack("HH", 4 + len(payload), t | flags) + payload
    return a + b"\\0" * (-len(a) % 4)
def send(sock, cmd, attrs, seq):
    body = struct.pack("BBH", 2, 0, 0) + b"".join(attrs)
    head = struct.pack("IHHII", 16 + len(body), 6 << 8 | cmd, 0x1 | 0x4 | 0x400 | 0x200, seq, 0)
    sock.send(head + body)
    return struct.unpack("i", sock.recv(4096)[16:20])[0]
sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
sock.bind((0, 0))
name = sys.argv[1].encode() + b"\\0"
proto = attr(1, bytes([6]))
errors = send(sock, 2, [proto, attr(2, name), attr(3, b"hash:ip\\0"), attr(4, bytes([0])),
                        attr(5, bytes([2])), attr(7, b"", 0x8000)], 1)
for i, ip in enumerate(sys.argv[2:]):
    data = attr(7, attr(1, attr(1, socket.inet_aton(ip), 0x4000), 0x8000), 0x8000)
    errors |= send(sock, 9, [proto, attr(2, name), data], 2 + i)
sys.exit(1 if errors else 0)
"""

LISTENER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
try:
    while True:
        c, _ = s.accept()
        c.close()
except OSError:
    pass
"""


@dataclass
class Lab:
    client: str
    node: str
    backend: str
    nfacct: bool
    sets: bool

    def connect(self, dest: str, port: int, n: int = 1, *, sport: int = 0) -> list[str]:
        argv = [sys.executable, "-c", CONNECT, dest, str(port), str(n), "0.5", str(sport)]
        out = netns.run(self.client, argv, timeout=5 + n).stdout
        return list(json.loads(out))

    def counters(self) -> dict[tuple[str, str, int], int]:
        text = netns.run(self.node, [f"iptables-{self.backend}-save", "-c"]).stdout
        rs = parse_text(text, "kernel")
        return {
            (t.name, c.name, r.number): r.counters.packets
            for t in rs.tables.values()
            for c in t.chains.values()
            for r in c.rules
            if r.counters is not None
        }


def _ns_exec(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, timeout=10,
                   capture_output=True)  # fmt: skip


@pytest.fixture(scope="module", params=BACKENDS)
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    backend: str = request.param
    with netns.netns_session() as client, netns.netns_session() as node:
        netns.veth(client.name, node.name, "kpc0", "eth0")
        netns.add_address(client.name, "kpc0", f"{CLIENT}/24")
        netns.add_address(node.name, "eth0", f"{NODE}/24")
        netns.add_address(node.name, "lo", f"{ON_LO}/32")
        for ns, dev in ((client.name, "kpc0"), (node.name, "eth0"), (node.name, "lo")):
            netns.link_up(ns, dev)
        netns.link_up(client.name, "lo")
        _ns_exec(client.name, "ip", "route", "add", "198.18.1.0/24", "via", NODE)
        made = netns.run(node.name, [sys.executable, "-c", NFACCT, "kpsim"], check=False)
        members = ["198.18.0.2", "198.18.0.9"]
        argv = [sys.executable, "-c", IPSET, "KPSIM", *members]
        sets = netns.run(node.name, argv, check=False).returncode == 0
        text = ruleset_text(nfacct=made.returncode == 0, sets=sets)
        proc = netns.run(node.name, [f"iptables-{backend}-restore"], input=text, check=False)
        if proc.returncode != 0:
            pytest.skip(f"iptables-{backend}-restore refused the cases: {proc.stderr.strip()}")
        yield Lab(client.name, node.name, backend, made.returncode == 0, sets)


@pytest.fixture(scope="module")
def rules() -> Ruleset:
    return parse_text(IPSET_SAVE + ruleset_text(), "cases")


def fired(counters: dict[tuple[str, str, int], int], chain: str) -> dict[int, int]:
    return {n: p for (t, c, n), p in counters.items() if t == "nat" and c == chain and p}


def decisive(rs: Ruleset, packet: Packet, state: State | None = None) -> tuple[int, Outcome]:
    """The CASE rule that decides kpsim's single outcome, and the outcome."""
    (o,) = Tracer(rs, CONTEXT).trace(packet, state).outcomes
    steps = [
        s
        for s in o.path
        if s.chain.startswith("CASE-") and s.rule and not isinstance(s.rule.target, Log)
    ]
    return (steps[-1].number if steps else 0), o


STATIC = ["NFACCT", "SET", "LIMIT", "PHYS", "ADDR", "RANGE", "MPORT", "MARK", "CTMARK"]


@pytest.mark.parametrize("case", STATIC)
def test_static_case(lab: Lab, rules: Ruleset, case: str) -> None:
    """Exactly the rule kpsim decides on fires in the kernel, once per connection."""
    if (case == "NFACCT" and not lab.nfacct) or (case == "SET" and not lab.sets):
        pytest.skip(f"could not create the {case.lower()} object in the namespace")
    port = next(p for n, p, _ in CASES if n == case)
    dest = DEST.get(case, NODE)
    before = fired(lab.counters(), f"CASE-{case}")
    assert lab.connect(dest, port, 2, sport=40100) == ["refused", "refused"]
    after = fired(lab.counters(), f"CASE-{case}")
    grew = {n: after[n] - before.get(n, 0) for n in after if after[n] != before.get(n, 0)}
    number, o = decisive(rules, Packet.of(CLIENT, dest, port, sport=40100, in_interface="eth0"))
    assert o.verdict is Disposition.DNAT, o
    target = [n for n, k in grew.items() if "DNAT" in _rule_text(rules, case, n)]
    assert target == [number] and grew[number] == 2, (grew, number)


def _rule_text(rs: Ruleset, case: str, number: int) -> str:
    rule = rs.tables["nat"].chains[f"CASE-{case}"].rules[number - 1]
    return type(rule.target).__name__.upper()


@pytest.mark.parametrize("case", ["NTH", "NTHP"])
def test_nth_counter_order(lab: Lab, rules: Ruleset, case: str) -> None:
    """Connection i (from 0) takes the rule whose cycle it is; kpsim, carrying the kernel's
    counters from one connection to the next, names the same rule each time."""
    port = next(p for n, p, _ in CASES if n == case)
    chain = rules.tables["nat"].chains[f"CASE-{case}"]
    nth = {
        ("nat", chain.name, r.number): m
        for r in chain.rules
        for m in r.matches
        if isinstance(m, StatisticMatch)
    }
    reached = dict.fromkeys(nth, 0)
    for i in range(6):
        state = State(nth={k: (nth_start(m.every or 1, m.packet or 0) + reached[k]) % (m.every or 1)
                           for k, m in nth.items()})  # fmt: skip
        number, _ = decisive(rules, Packet.of(CLIENT, NODE, port, sport=41000 + i), state)
        before = fired(lab.counters(), chain.name)
        assert lab.connect(NODE, port, 1, sport=41000 + i) == ["refused"]
        after = fired(lab.counters(), chain.name)
        grew = [n for n in after if after[n] != before.get(n, 0)]
        assert grew == [number], (i, grew, number)
        for k in nth:
            reached[k] += k[2] <= number


@pytest.mark.parametrize("case", sorted(LISTEN))
def test_nat_address_by_listener(lab: Lab, rules: Ruleset, case: str) -> None:
    """REDIRECT and NETMAP: a listener bound to the address and port kpsim names accepts."""
    port = next(p for n, p, _ in CASES if n == case)
    packet = Packet.of(CLIENT, DEST[case], port, in_interface="eth0")
    (o,) = Tracer(rules, CONTEXT).trace(packet).outcomes
    assert o.verdict is Disposition.DNAT and o.destination == LISTEN[case]
    assert not o.assumptions, o.assumptions
    addr, lport = LISTEN[case]
    argv = ["ip", "netns", "exec", lab.node, sys.executable, "-c", LISTENER, addr, str(lport), "3"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as listener:
        try:
            assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
            assert lab.connect(DEST[case], port, 2) == ["open", "open"]
        finally:
            listener.kill()


def test_return_from_base_chain_is_the_policy(lab: Lab, rules: Ruleset) -> None:
    (o,) = Tracer(rules, CONTEXT).trace(Packet.of(CLIENT, NODE, RETURN_PORT)).outcomes
    assert o.verdict is Disposition.DROP and o.masquerade is None
    assert lab.connect(NODE, RETURN_PORT, 1) == ["timeout"]


def test_cases_are_exact_shares(rules: Ruleset) -> None:
    """Every case is decided (probability 1, no UNKNOWN, no assumption)."""
    for name, port, _ in CASES:
        res = Tracer(rules, CONTEXT).trace(Packet.of(CLIENT, DEST.get(name, NODE), port))
        assert [o.probability for o in res.outcomes] == [Fraction(1)], (name, res.outcomes)
        assert res.outcomes[0].verdict is Disposition.DNAT, (name, res.outcomes[0])


def test_iptables_save_text_reads_back_to_the_same_rules(lab: Lab, rules: Ruleset) -> None:
    """Every ``!`` placement and option form the backend's iptables-save prints for these
    matches and targets is read to the same typed model as the input was (modules kpsim
    keeps opaque, such as hashlimit with its defaults printed, aside)."""
    text = netns.run(lab.node, [f"iptables-{lab.backend}-save"]).stdout
    saved = parse_text(IPSET_SAVE + text, "saved")
    for name, _, _ in CASES:
        chain = f"CASE-{name}"
        if chain not in saved.tables["nat"].chains:
            continue  # left out: its object could not be made here
        pairs = zip(
            saved.tables["nat"].chains[chain].rules,
            rules.tables["nat"].chains[chain].rules,
            strict=True,
        )
        for got, want in pairs:
            if not any(isinstance(m, OpaqueMatch) for m in want.matches):
                assert (got.matches, got.target) == (want.matches, want.target), name
