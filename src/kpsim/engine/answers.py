"""How each match answers for a flow: True/False, an exact probability of matching
(``statistic --mode random``), or ``Unknown`` with the reason kpsim cannot decide.

    answer(match, flow, node, key, hook) ──▶ (True | False | Fraction | Unknown, flow after
                                              the match's side effects: recent --set, nth)

Used by the walk (kpsim.engine.match) for every rule's matches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from kpsim.engine.flow import Flow, Hook
from kpsim.engine.nft_answers import numgen, set_lookup
from kpsim.engine.packet import RuleKey
from kpsim.engine.sets import set_answer
from kpsim.model import (
    PROBABILITY_SCALE,
    AddrTypeMatch,
    CommentMatch,
    ConnmarkMatch,
    ConntrackMatch,
    IPRangeMatch,
    MarkMatch,
    Match,
    MultiportMatch,
    NfacctMatch,
    OpaqueMatch,
    Option,
    OwnerMatch,
    PhysdevMatch,
    PortMatch,
    PortRange,
    RecentCommand,
    RecentMatch,
    SetMatch,
    StatisticMatch,
    StatisticMode,
)
from kpsim.model.nft import NumgenMatch, SetLookup
from kpsim.model.node import NodeContext, ip


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
    if isinstance(m, OwnerMatch):
        return "-m owner " + _options(m.options)
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
    # xt_statistic keeps every-1 and starts the counter at every-1-packet; each packet
    # reaching the rule steps it (wrapping after every-1) and the rule matches on 0: the
    # i-th packet (from 0) matches iff i mod every == packet.
    count = flow.counter(key, nth_start(m.every, m.packet or 0))
    nxt = 0 if count >= m.every - 1 else count + 1
    return (nxt == 0) != m.negated, flow.with_counter(key, nxt)


def nth_start(every: int, packet: int) -> int:
    """The kernel counter of an nth rule no packet has reached yet."""
    return max(every - 1 - packet, 0)


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


#: Interface names of devices that are never bridges (so a packet in by one of them has
#: no bridge-port information); any other in interface may be a bridge (docker0, cni0).
_NOT_BRIDGE = ("eth", "ens", "enp", "eno", "eni", "cali", "lo", "tunl", "flannel", "vxlan")


def _physdev(m: PhysdevMatch, flow: Flow, node: NodeContext, hook: Hook) -> Answer:
    """xt_physdev: a packet that did not come through a bridge port matches iff every
    option given is negated. Locally generated packets and packets in by a device that is
    not a bridge are such packets; one in by a bridge needs the port: UNKNOWN."""
    inside = hook.in_iface
    if hook.chain == "POSTROUTING" and not node.is_local(flow.src):
        # The hook does not carry the in interface of a forwarded packet.
        return Unknown(f"{describe_match(m)} in POSTROUTING: the packet's in device is not known")
    if inside and not inside.startswith(_NOT_BRIDGE):
        return Unknown(f"{describe_match(m)}: {inside} may be a bridge; its port is unknown")
    return all(o.negated for o in m.options)


def _owner(m: OwnerMatch, flow: Flow, node: NodeContext, hook: Hook) -> Answer:
    """xt_owner: a packet without a local socket (forwarded) matches iff every option
    given is negated; a local one needs the sending process: UNKNOWN."""
    if hook.chain not in ("OUTPUT", "POSTROUTING"):
        return Unknown(f"{describe_match(m)} in {hook.chain} (the kernel allows it only in OUTPUT)")
    if hook.chain == "POSTROUTING" and not node.is_local(flow.src):
        return all(o.negated for o in m.options if o.name != "--suppl-groups")
    return Unknown(f"{describe_match(m)}: which process sent a locally generated packet")


def _set(m: SetMatch, flow: Flow) -> Answer:
    found = set_answer(m, flow, describe_match(m))
    return Unknown(found) if isinstance(found, str) else found


def _iprange(m: IPRangeMatch, flow: Flow) -> Answer:
    sides = ((m.src, m.src_negated, flow.src), (m.dst, m.dst_negated, flow.dst))
    for rng, neg, addr in sides:
        if rng is None:
            continue
        lo, hi = ip(rng[0]), ip(rng[1])
        inside = lo.version == addr.version and lo <= addr <= hi  # type: ignore[operator]
        if inside == neg:
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
        NfacctMatch: lambda m, f, node, key, hook: (True, f),  # counts only
        PhysdevMatch: lambda m, f, node, key, hook: (_physdev(m, f, node, hook), f),
        OwnerMatch: lambda m, f, node, key, hook: (_owner(m, f, node, hook), f),
        IPRangeMatch: lambda m, f, node, key, hook: (_iprange(m, f), f),
        SetMatch: lambda m, f, node, key, hook: (_set(m, f), f),
        SetLookup: lambda m, f, node, key, hook: (_nft(set_lookup(m, f)), f),
        NumgenMatch: lambda m, f, node, key, hook: (numgen(m), f),
    }
)


def _nft(found: bool | str) -> Answer:
    """nft_answers says why it cannot decide with a str: here that is an Unknown."""
    return Unknown(found) if isinstance(found, str) else found
