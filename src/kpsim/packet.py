"""What a trace starts from: the packet, the node it meets, and the assumptions
about state the kernel would keep (recent lists, conntrack, nth counters).

    Packet ──▶ Tracer(ruleset, NodeContext).trace(packet, State()) ──▶ TraceResult

Every stateful answer comes from ``State`` so a what-if ("this client already has
affinity to KUBE-SEP-X") is an explicit input, never a guess inside the engine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from kpsim.model import (
    PROBABILITY_SCALE,
    AddrTypeMatch,
    CommentMatch,
    ConnmarkMatch,
    ConntrackMatch,
    IPNetwork,
    MarkMatch,
    Match,
    MultiportMatch,
    NfacctMatch,
    OpaqueMatch,
    Option,
    PhysdevMatch,
    PortMatch,
    PortRange,
    RecentCommand,
    RecentMatch,
    SetMatch,
    StatisticMatch,
    StatisticMode,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Always local, whatever the node's addresses are.
LOOPBACK: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)

#: -p values as numbers, mapped to the names the rest of kpsim uses.
PROTOCOL_NUMBERS = MappingProxyType({"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp"})


#: ``NodeContext.facts``: (address type, owner interface, is local, out interface).
AddressFacts = tuple[str, str | None, bool, str | None]


def ip(text: str | IPAddress) -> IPAddress:
    return ipaddress.ip_address(text) if isinstance(text, str) else text


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text, strict=False)


@dataclass(frozen=True, slots=True)
class Packet:
    """The first packet of a new connection. ``mark`` is the skb mark on arrival."""

    src: IPAddress
    sport: int
    dst: IPAddress
    dport: int
    protocol: str = "tcp"
    in_interface: str = "eth0"
    mark: int = 0

    @classmethod
    def of(
        cls,
        src: str | IPAddress,
        dst: str | IPAddress,
        dport: int,
        *,
        sport: int = 40000,
        protocol: str = "tcp",
        in_interface: str = "eth0",
        mark: int = 0,
    ) -> Packet:
        """Build from text addresses: ``Packet.of("203.0.113.9", "10.0.1.5", 30080)``."""
        return cls(ip(src), sport, ip(dst), dport, protocol.lower(), in_interface, mark)

    def __str__(self) -> str:
        return f"{self.protocol} {self.src}:{self.sport} → {self.dst}:{self.dport}"


@dataclass(frozen=True, slots=True)
class NodeContext:
    """The node: its local addresses (as networks; loopback always included), the
    interface names it has, subnet-broadcast addresses, and optional routes that let
    ``-o`` be answered (longest prefix wins; without a route ``-o`` is unknown)."""

    local: tuple[IPNetwork, ...] = LOOPBACK
    interfaces: tuple[str, ...] = ()
    broadcast: frozenset[IPAddress] = frozenset()
    routes: tuple[tuple[IPNetwork, str], ...] = ()
    owners: tuple[tuple[IPNetwork, str], ...] = ()  # which interface holds which address

    @classmethod
    def of(
        cls,
        addresses: Iterable[str] = (),
        *,
        interfaces: Iterable[str] = ("eth0", "lo"),
        broadcast: Iterable[str] = (),
        routes: Mapping[str, str] | None = None,
        on: Mapping[str, Iterable[str]] | None = None,
    ) -> NodeContext:
        """``NodeContext.of(["10.0.1.5"], on={"eth0": ["10.0.1.5"]})``: a bare address
        means that one host; ``on`` says which interface holds which (local) address."""
        owners = tuple(
            (_net(a), iface) for iface, addrs in (on or {}).items() for a in addrs
        ) + tuple((n, "lo") for n in LOOPBACK)
        nets = [_net(a) for a in addresses] + [n for n, _ in owners]
        local = LOOPBACK + tuple(dict.fromkeys(n for n in nets if n not in LOOPBACK))
        rts = tuple((_net(n), i) for n, i in (routes or {}).items())
        bcast = frozenset(ip(b) for b in broadcast)
        return cls(local, tuple(interfaces), bcast, rts, owners if on else ())

    def is_local(self, addr: IPAddress) -> bool:
        # A plain loop: any() over a generator cost twice as much (measured, bench/run.py).
        for net in self.local:  # noqa: SIM110
            if addr in net:
                return True
        return False

    def owner(self, addr: IPAddress) -> str | None:
        """The interface that holds local address ``addr``, when known."""
        return next((iface for net, iface in self.owners if addr in net), None)

    def out_interface(self, addr: IPAddress, *, local: bool | None = None) -> str | None:
        """The interface a packet to ``addr`` leaves by, or None when unknown.
        (``local``: ``is_local(addr)``, when the caller already knows it.)"""
        if self.is_local(addr) if local is None else local:
            return "lo"
        best: tuple[int, str] | None = None
        for net, iface in self.routes:
            if addr in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, iface)
        return best[1] if best else None

    def address_type(self, addr: IPAddress, *, local: bool | None = None) -> str:
        """The kernel's answer from the local routing table (``xt_addrtype``):
        exactly one of LOCAL, BROADCAST, MULTICAST, UNICAST."""
        if addr.version == 4 and int(addr) in (0, 0xFFFFFFFF):
            return "BROADCAST"
        if addr.is_multicast:
            return "MULTICAST"
        if self.is_local(addr) if local is None else local:
            return "LOCAL"
        # (An empty set first: hashing an address is most of the cost of asking.)
        return "BROADCAST" if self.broadcast and addr in self.broadcast else "UNICAST"

    def facts(self, addr: IPAddress) -> AddressFacts:
        """Everything a trace asks the node about an address, with one local-address
        scan: (address type, owner, is local, out interface)."""
        local = self.is_local(addr)
        return (
            self.address_type(addr, local=local),
            self.owner(addr) if local else None,  # owners' networks are all local
            local,
            self.out_interface(addr, local=local),
        )


_UNTRACKED = frozenset({"UNTRACKED"})
_NEW = frozenset({"NEW"})

#: A rule's identity for per-rule kernel state: (table, chain, rule number).
RuleKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class State:
    """Assumptions about kernel state before the packet arrives.

    The default is a new client with no history: no ``recent`` entries, conntrack
    state NEW, ctmark 0, and every ``statistic --mode nth`` counter at its
    ``--packet`` start. ``recent`` names the lists that hold a fresh entry for this
    packet's address (``--seconds``/``--hitcount`` are then taken as satisfied).
    """

    recent: frozenset[str] = frozenset()
    ctstate: frozenset[str] | None = None  # None: NEW (+ DNAT/SNAT once NAT happened)
    ctmark: int = 0
    nth: Mapping[RuleKey, int] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def with_affinity(cls, *lists: str) -> State:
        """What-if: the client already has an entry in these recent lists."""
        return cls(recent=frozenset(lists))

    def describe(self) -> tuple[str, ...]:
        """The assumptions in words, for a result's notes."""
        out = []
        if self.recent:
            out.append("assumed a fresh recent entry in: " + ", ".join(sorted(self.recent)))
        else:
            out.append("assumed a new client: no recent-list entries (no affinity yet)")
        if self.ctstate is None:
            out.append("assumed conntrack state NEW (first packet of the connection)")
        else:
            out.append("assumed conntrack state " + ",".join(sorted(self.ctstate)))
        out.append(f"assumed ctmark {self.ctmark:#x}")
        for (t, c, n), v in sorted(self.nth.items()):
            out.append(f"assumed nth counter of {t} {c} rule {n} at {v}")
        return tuple(out)


# ---------------------------------------------------------------- the packet in flight


@dataclass(frozen=True, slots=True)
class Flow:
    """The packet at one point of a trace, with the kernel state it has touched so far
    (NAT done, marks, recent lists, nth counters). One per branch of the trace."""

    src: IPAddress
    sport: int
    dst: IPAddress
    dport: int
    protocol: str
    mark: int = 0
    ctmark: int = 0
    recent: frozenset[str] = frozenset()
    nth: tuple[tuple[RuleKey, int], ...] = ()
    dnat: bool = False
    snat: bool = False
    untracked: bool = False
    ctstate: frozenset[str] | None = None

    @classmethod
    def start(cls, packet: Packet, state: State) -> Flow:
        return cls(
            packet.src,
            packet.sport,
            packet.dst,
            packet.dport,
            packet.protocol,
            mark=packet.mark,
            ctmark=state.ctmark,
            recent=state.recent,
            nth=tuple(sorted(state.nth.items())),
            ctstate=state.ctstate,
        )

    def states(self) -> frozenset[str]:
        """The ``--ctstate`` bits the kernel would set now (xt_conntrack)."""
        if self.untracked:
            return _UNTRACKED
        base = self.ctstate if self.ctstate is not None else _NEW
        if not (self.dnat or self.snat):
            return base
        extra = {"DNAT"} if self.dnat else set()
        if self.snat:
            extra.add("SNAT")
        return base | extra

    def counter(self, key: RuleKey, start: int) -> int:
        for k, v in self.nth:
            if k == key:
                return v
        return start

    def with_counter(self, key: RuleKey, value: int) -> Flow:
        rest = tuple(kv for kv in self.nth if kv[0] != key)
        return self._with(nth=(*rest, (key, value)))

    def _with(self, **changes: Any) -> Flow:
        """``dataclasses.replace`` without its per-call field introspection: 1.4-2 µs a
        copy instead of 4 µs. Copies were the top cost of tracing every service of a
        10,000-service dump (bench/run.py), so the hot paths use this."""
        get = changes.get
        return Flow(
            get("src", self.src),
            get("sport", self.sport),
            get("dst", self.dst),
            get("dport", self.dport),
            get("protocol", self.protocol),
            get("mark", self.mark),
            get("ctmark", self.ctmark),
            get("recent", self.recent),
            get("nth", self.nth),
            get("dnat", self.dnat),
            get("snat", self.snat),
            get("untracked", self.untracked),
            get("ctstate", self.ctstate),
        )

    def exact_fields(self) -> tuple[object, ...]:
        """Every field but ``dst``, ``dport`` and ``recent``, which a table sees only
        partly (``prepare.TableView``)."""
        return (
            self.src,
            self.sport,
            self.protocol,
            self.mark,
            self.ctmark,
            self.nth,
            self.dnat,
            self.snat,
            self.untracked,
            self.ctstate,
        )

    def moved_to(
        self, dst: IPAddress, dport: int, dnat: bool, recent: frozenset[str] | None = None
    ) -> Flow:
        """The flow after DNAT/REDIRECT (the commonest copy: one per endpoint)."""
        return Flow(
            self.src,
            self.sport,
            dst,
            dport,
            self.protocol,
            self.mark,
            self.ctmark,
            self.recent if recent is None else recent,
            self.nth,
            dnat,
            self.snat,
            self.untracked,
            self.ctstate,
        )


@dataclass(frozen=True, slots=True)
class Hook:
    """What the kernel knows at a hook: the in interface ("" when there is none) and
    the out interface ("" when none, None when it exists but kpsim cannot tell)."""

    table: str
    chain: str
    in_iface: str
    out_iface: str | None


# ---------------------------------------------------------------- how each match answers


@dataclass(frozen=True, slots=True)
class Unknown:
    """A match kpsim cannot decide; the engine stops or assumes, never guesses."""

    reason: str


#: True/False, a probability of matching (``statistic --mode random``), or Unknown.
Answer = bool | Fraction | Unknown

#: The types xt_addrtype can return from the local table kpsim models.
BASIC_ADDRTYPES = frozenset({"LOCAL", "UNICAST", "BROADCAST", "MULTICAST"})

#: TCP flags of the first packet of a connection: a bare SYN.
FIRST_TCP_FLAGS = frozenset({"SYN"})
ALL_TCP_FLAGS = frozenset({"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"})


def answer(
    m: Match, flow: Flow, node: NodeContext, key: RuleKey, hook: Hook
) -> tuple[Answer, Flow]:
    """Does ``m`` match ``flow``? Returns the answer and the flow after the match's own
    side effects (``recent --set``, nth counters)."""
    how = _ANSWERS.get(type(m))
    if how is None:
        how = next((fn for t, fn in _ANSWERS.items() if isinstance(m, t)), None)
        if how is None:
            return Unknown(f"{describe_match(m)} is not modelled"), flow
    return how(m, flow, node, key, hook)


def describe_match(m: Match) -> str:
    """Short iptables-like text of a match for reasons and assumptions."""
    if isinstance(m, SetMatch):
        return f"-m set --match-set {m.name} {','.join(m.flags)}"
    if isinstance(m, PhysdevMatch):
        return "-m physdev " + _options(m.options)
    if isinstance(m, NfacctMatch):
        return f"-m nfacct --nfacct-name {m.name}"
    if isinstance(m, OpaqueMatch):
        return m.text or f"-m {m.module} {_options(m.options)}".strip()
    return f"-m {type(m).__name__}"


def _options(options: tuple[Option, ...]) -> str:
    return " ".join(
        ("! " if o.negated else "") + "--" + o.name.lstrip("-") + "".join(f" {a}" for a in o.args)
        for o in options
    )


def _port_in(rng: PortRange, port: int) -> bool | Unknown:
    if rng.lo < 0:
        return Unknown(f"port name {rng.name!r} was not resolved to a number")
    return rng.contains(port)


def _port_match(m: PortMatch, flow: Flow) -> Answer:
    if m.protocol.lower() != flow.protocol:
        return False
    checks = ((m.dport, flow.dport, m.dport_negated), (m.sport, flow.sport, m.sport_negated))
    for rng, port, neg in checks:
        hit = True if rng is None else _port_in(rng, port)
        if isinstance(hit, Unknown):
            return hit
        if rng is not None and hit == neg:
            return False
    for opt in m.extra:
        ok = _tcp_option(opt, flow)
        if ok is not True:
            return ok
    return True


def _tcp_option(opt: Option, flow: Flow) -> bool | Unknown:
    """``--syn`` and ``--tcp-flags`` against the first packet's bare SYN."""
    name = opt.name.lstrip("-")
    if flow.protocol != "tcp" or name not in ("syn", "tcp-flags"):
        return Unknown(f"--{name} is not modelled")
    if name == "syn":
        mask, comp = frozenset({"SYN", "RST", "ACK", "FIN"}), frozenset({"SYN"})
    elif len(opt.args) == 2:
        mask, comp = _flag_set(opt.args[0]), _flag_set(opt.args[1])
    else:
        return Unknown("--tcp-flags needs a mask and a comparison")
    return ((FIRST_TCP_FLAGS & mask) == comp) != opt.negated


def _flag_set(text: str) -> frozenset[str]:
    names = frozenset(text.upper().split(","))
    if "ALL" in names:
        return ALL_TCP_FLAGS
    return names - {"NONE"}


def _multiport(m: MultiportMatch, flow: Flow) -> Answer:
    direction = m.direction.lstrip("-")
    ports = {
        "dports": (flow.dport,),
        "destination-ports": (flow.dport,),
        "sports": (flow.sport,),
        "source-ports": (flow.sport,),
    }.get(direction, (flow.sport, flow.dport))
    for rng in m.ports:
        for port in ports:
            hit = _port_in(rng, port)
            if isinstance(hit, Unknown):
                return hit
            if hit:
                return not m.negated
    return m.negated


@lru_cache(maxsize=4096)
def _random_answer(threshold: int, negated: bool) -> bool | Fraction:
    # xt_statistic: (random_u32 & 0x7FFFFFFF) < threshold, so exactly threshold/2^31.
    # Cached: building and reducing the Fraction cost ~2 µs a rule in the bench.
    p = Fraction(min(threshold, PROBABILITY_SCALE), PROBABILITY_SCALE)
    p = 1 - p if negated else p
    return p if 0 < p < 1 else p == 1


def _statistic(m: StatisticMatch, flow: Flow, key: RuleKey) -> tuple[Answer, Flow]:
    if m.mode is StatisticMode.RANDOM:
        if m.threshold is None:
            return Unknown("statistic --mode random without a probability"), flow
        return _random_answer(m.threshold, m.negated), flow
    if not m.every:
        return Unknown("statistic --mode nth without --every"), flow
    # The kernel keeps every-1; the counter wraps to 0 after it and the rule matches on 0.
    count = flow.counter(key, m.packet or 0)
    nxt = 0 if count == m.every - 1 else count + 1
    return (nxt == 0) != m.negated, flow.with_counter(key, nxt)


def _recent(m: RecentMatch, flow: Flow) -> tuple[Answer, Flow]:
    present = m.name in flow.recent
    if m.command is RecentCommand.SET:
        return not m.negated, flow._with(recent=flow.recent | {m.name})
    if m.command is RecentCommand.REMOVE:
        return present != m.negated, flow._with(recent=flow.recent - {m.name})
    return present != m.negated, flow


def _addrtype(m: AddrTypeMatch, flow: Flow, node: NodeContext, hook: Hook) -> Answer:
    limit = hook.in_iface if m.limit_iface_in else hook.out_iface if m.limit_iface_out else None
    sides = ((m.src_type, m.src_negated, flow.src), (m.dst_type, m.dst_negated, flow.dst))
    for types, neg, addr in sides:
        if not types:
            continue
        wanted = {t.upper() for t in types}
        if not wanted <= BASIC_ADDRTYPES:
            return Unknown(f"addrtype {','.join(sorted(wanted - BASIC_ADDRTYPES))} is not modelled")
        kind = node.address_type(addr)
        if kind == "LOCAL" and (m.limit_iface_in or m.limit_iface_out):
            # Limited to one interface, a local address on another one counts as UNICAST.
            owner = node.owner(addr)
            if owner is None or limit is None:
                return Unknown("addrtype --limit-iface-*: which interface holds the address?")
            kind = "LOCAL" if owner == limit else "UNICAST"
        if (kind in wanted) == neg:
            return False
    return True


def _conntrack(m: ConntrackMatch, flow: Flow) -> Answer:
    if m.extra:
        return Unknown("conntrack " + _options(m.extra) + " is not modelled")
    if not m.ctstate:
        return True
    return bool(_upper(m.ctstate) & flow.states()) != m.negated


@lru_cache(maxsize=1024)  # the same few --ctstate lists, asked once per rule evaluation
def _upper(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(n.upper() for n in names)


_Answerer = Callable[[Any, Flow, NodeContext, RuleKey, Hook], tuple[Answer, Flow]]

#: How each modelled match answers, by exact type: one dict lookup instead of a chain of
#: isinstance checks (the model's match classes have no subclasses).
_ANSWERS: Mapping[type, _Answerer] = MappingProxyType(
    {
        CommentMatch: lambda m, f, node, key, hook: (True, f),
        PortMatch: lambda m, f, node, key, hook: (_port_match(m, f), f),
        MultiportMatch: lambda m, f, node, key, hook: (_multiport(m, f), f),
        StatisticMatch: lambda m, f, node, key, hook: _statistic(m, f, key),
        RecentMatch: lambda m, f, node, key, hook: _recent(m, f),
        AddrTypeMatch: lambda m, f, node, key, hook: (_addrtype(m, f, node, hook), f),
        MarkMatch: lambda m, f, node, key, hook: (((f.mark & m.mask) == m.value) != m.negated, f),
        ConnmarkMatch: lambda m, f, node, key, hook: (
            ((f.ctmark & m.mask) == m.value) != m.negated,
            f,
        ),
        ConntrackMatch: lambda m, f, node, key, hook: (_conntrack(m, f), f),
    }
)
