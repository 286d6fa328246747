"""The node a packet meets: its local addresses, interfaces, routes and broadcast
addresses, and what a trace asks about an address (``NodeContext.facts``).

    NodeContext.of(["10.0.1.5"], on={"eth0": ["10.0.1.5"]}, routes={"0.0.0.0/0": "eth0"})
        .facts(addr) ──▶ (LOCAL | UNICAST | BROADCAST | MULTICAST, owner, is local, out iface)

Part of the model: a capture can carry it (metadata), the engine asks it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kpsim.model.values import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Always local, whatever the node's addresses are.
LOOPBACK: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)

#: ``NodeContext.facts``: (address type, owner interface, is local, out interface).
AddressFacts = tuple[str, str | None, bool, str | None]


def ip(text: str | IPAddress) -> IPAddress:
    return ipaddress.ip_address(text) if isinstance(text, str) else text


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text, strict=False)


@dataclass(frozen=True, slots=True)
class Route:
    """One route of a table: where packets to ``dst`` leave (``iface`` None for a
    route that sends nothing out: blackhole, unreachable, prohibit)."""

    dst: IPNetwork
    iface: str | None
    kind: str = "unicast"


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One ``ip rule``: packets whose source, destination and mark fit look up ``table``
    (None: any; ``fwmark`` with ``fwmask``)."""

    priority: int
    table: str
    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    fwmark: int | None = None
    fwmask: int = 0xFFFFFFFF
    iif: str | None = None
    negated: bool = False

    def fits(self, src: IPAddress | None, dst: IPAddress, mark: int, iif: str) -> bool | None:
        """Does the packet select this rule? None when the rule asks what kpsim does
        not know (the source of a packet whose source is not chosen yet)."""
        hit: bool | None = True
        if self.src is not None:
            hit = None if src is None else src in self.src
        if hit and self.dst is not None:
            hit = dst in self.dst
        if hit and self.fwmark is not None:
            hit = (mark & self.fwmask) == self.fwmark
        if hit and self.iif is not None:
            hit = iif == self.iif
        return hit if hit is None else hit != self.negated


def _longest(routes: Iterable[Route], addr: IPAddress) -> Route | None:
    best: Route | None = None
    for r in routes:
        if addr in r.dst and (best is None or r.dst.prefixlen > best.dst.prefixlen):
            best = r
    return best


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
    #: Policy routing (``ip rule``): rules in priority order and the tables they name.
    #: Empty: every lookup is in ``routes`` (the main table).
    policy: tuple[PolicyRule, ...] = ()
    tables: tuple[tuple[str, tuple[Route, ...]], ...] = ()
    #: Routes kpsim did not read but inferred from the rules: (network, iface, why).
    inferred: tuple[tuple[IPNetwork, str, str], ...] = ()

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

    def route(
        self, dst: IPAddress, src: IPAddress | None = None, mark: int = 0, iif: str = ""
    ) -> str | None:
        """The interface the kernel sends a packet to ``dst`` out of after the policy
        rules (in priority order, the first table with a route wins; longest prefix
        within it), or None when unknown. Without policy rules: the main table."""
        if not self.policy:
            return self.out_interface(dst)
        if self.is_local(dst):
            return "lo"
        tables = dict(self.tables)
        for rule in self.policy:
            fits = rule.fits(src, dst, mark, iif)
            if fits is None:
                return None
            if not fits or rule.table == "local":
                continue
            found = _longest(tables.get(rule.table, ()), dst)
            if found is not None:
                return found.iface
        return None

    def inferred_route(self, dst: IPAddress) -> str | None:
        """Why the route to ``dst`` was inferred from the rules, when it was."""
        best: tuple[int, str] | None = None
        for net, _iface, why in self.inferred:
            if dst in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, why)
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
