"""``KEY [!=] VALUE`` with one selector and a literal value, as the iptables model's own
types where nft and iptables mean the same thing:

    ip saddr != 10.0.0.0/8 ─▶ ! -s 10.0.0.0/8       meta l4proto tcp ─▶ -p tcp
    tcp dport 80           ─▶ -p tcp --dport 80     ct state new     ─▶ --ctstate NEW
    fib daddr type local   ─▶ addrtype --dst-type LOCAL
    meta mark & 0x4000 == 0 ─▶ -m mark --mark 0/0x4000

Any other key (``th dport 80``) is a one-element set lookup (the caller builds it).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache

from kpsim.formats.iptables.lazynet import LazyIPv4Network
from kpsim.formats.nft.kp_text import NftSet
from kpsim.formats.nft.kp_values import ipv4, key_part
from kpsim.model import (
    Address,
    AddrTypeMatch,
    ConntrackMatch,
    Interface,
    MarkMatch,
    Match,
    PortMatch,
    PortRange,
    Protocol,
    Target,
)


@dataclass(slots=True)
class Lowered:
    """A rule's core fields, matches, actions (in order) and, for a map, its branches."""

    source: Address | None = None
    destination: Address | None = None
    protocol: Protocol | None = None
    in_interface: Interface | None = None
    out_interface: Interface | None = None
    matches: list[Match] = field(default_factory=list)
    actions: list[Target] = field(default_factory=list)
    branches: list[tuple[Match, Target]] | None = None


_ADDRESS_KEYS = ("ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr")


@lru_cache(maxsize=1 << 16)
def address(value: str, negated: bool) -> Address | None:
    """Cached: ipaddress parses an address in ~4 µs; kube-proxy names each endpoint's
    address in several rules (0.5 s of the 10k-service ruleset's load without it)."""
    n = ipv4(value)
    if n is not None:  # an IPv4Network built on first use (lazynet.py): 50k endpoints
        return Address(LazyIPv4Network(n), negated)
    try:
        return Address(ipaddress.ip_network(value, strict=False), negated)
    except ValueError:
        return None


def lower_literal(
    out: Lowered, key: str, values: list[str], negated: bool, mask: int | None
) -> NftSet | str | None:
    """Add the match to ``out`` and return None; or return the
    one-element set to look the value up in; or a str saying what is wrong."""
    value = values[0]
    single = len(values) == 1
    if key in _ADDRESS_KEYS and single:
        addr = address(value, negated)
        if addr is None:
            return f"address {value!r} not understood"
        if key.endswith("saddr") and out.source is None:
            out.source = addr
        elif key.endswith("daddr") and out.destination is None:
            out.destination = addr
        else:
            return NftSet(value, 0, False, (key,), elements=[(0, 0, value)])
        return None
    matches = out.matches
    if key in ("meta l4proto", "ip protocol") and single:
        out.protocol = Protocol(value.lower(), negated)
    elif key.split()[0] in ("tcp", "udp", "sctp") and single:
        part = key_part(value, "port")
        if part is None:
            return f"port {value!r} not understood"
        proto, field = key.split()
        out.protocol = out.protocol or Protocol(proto)
        rng = PortRange(part.lo, part.hi)
        if field == "dport":
            matches.append(PortMatch(proto, dport=rng, dport_negated=negated))
        else:
            matches.append(PortMatch(proto, sport=rng, sport_negated=negated))
    elif key == "ct state":
        matches.append(ConntrackMatch(tuple(v.upper() for v in values), negated))
    elif key == "ct status" and {v.lower() for v in values} <= {"dnat", "snat"}:
        # the conntrack's IPS_DST_NAT / IPS_SRC_NAT bits: what xt_conntrack tests for
        # --ctstate DNAT / SNAT (other status bits stay an unknown lookup)
        matches.append(ConntrackMatch(tuple(v.upper() for v in values), negated))
    elif key in ("fib daddr type", "fib saddr type"):
        types = tuple(v.upper() for v in values)
        if key == "fib daddr type":
            matches.append(AddrTypeMatch(dst_type=types, dst_negated=negated))
        else:
            matches.append(AddrTypeMatch(src_type=types, src_negated=negated))
    elif key == "meta mark" and single:
        m = 0xFFFFFFFF if mask is None else mask
        try:
            matches.append(MarkMatch(int(value, 0) & m, m, negated))
        except ValueError:
            return f"mark {value!r} not understood"
    elif key in ("meta iifname", "meta oifname") and single:
        name = value[1:-1] if value.startswith('"') else value
        iface = Interface(name.replace("*", "+"), negated)
        setattr(out, "in_interface" if key == "meta iifname" else "out_interface", iface)
    else:
        return NftSet(",".join(values), 0, False, (key,), elements=[(0, 0, v) for v in values])
    return None
