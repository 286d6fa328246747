"""Move a node's addresses into 198.18.0.0/15 so its rules can run in a real kernel.

    rules test -d 10.11.0.0/16      ─▶ 10.11.0.0/16   ↦ 198.18.0.0/16   (offsets kept: a /16)
    service/node /32 (172.20.0.10)  ─▶ singles block  ↦ 198.19.0.1 …    (one address each)
    outside client (203.0.113.10)   ─▶ client block   ↦ 198.19.128.1 …  (outside every CIDR)
    127.0.0.0/8                     ─▶ unchanged

Membership is what the rules test, so every CIDR a rule tests maps onto an aligned block
of the same size (prefix-preserving) and every address keeps its offset inside it; the
blocks never overlap, so an address outside a tested CIDR stays outside its image.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from kpsim.errors import KpsimError
from kpsim.model import (
    Address,
    Dnat,
    Family,
    IPRangeMatch,
    NatRange,
    Netmap,
    Option,
    Rule,
    Ruleset,
    Snat,
    Table,
)
from kpsim.model.nft import SetLookup
from kpsim.verify.replay.nftmap import lookup_parts, map_lookup, split_part

__all__ = [
    "SPACE",
    "AddressMap",
    "Block",
    "MappingError",
    "build_map",
    "literal",
    "map_ruleset",
]

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network

#: RFC 2544 benchmarking range: the only addresses the replay ever configures.
SPACE = Net("198.18.0.0/15")
LOOPBACK = Net("127.0.0.0/8")
ANY = Net("0.0.0.0/0")
CLIENT_BLOCK_PREFIX = 24  # up to 254 client addresses
_DOTTED = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")


class MappingError(KpsimError):
    """The node's addresses cannot be moved into 198.18.0.0/15 faithfully."""


@dataclass(frozen=True, slots=True)
class Block:
    """One original network and the block of 198.18.0.0/15 it maps onto."""

    original: Net
    mapped: Net
    kind: str  # "tested" (a rule or interface prefix), "singles", "client"


@dataclass(frozen=True, slots=True)
class AddressMap:
    """original ↔ mapped, both ways; ``singles`` holds the /32s outside tested CIDRs."""

    blocks: tuple[Block, ...]
    singles: Mapping[IPv4, IPv4]
    singles_block: Net
    client_block: Net

    def forward(self, addr: str | IPv4) -> IPv4:
        """The mapped address of an original one (loopback stays)."""
        a = IPv4(addr) if isinstance(addr, str) else addr
        if a in LOOPBACK:
            return a
        for b in self.blocks:
            if a in b.original:
                return b.mapped.network_address + (int(a) - int(b.original.network_address))
        hit = self.singles.get(a)
        if hit is None:
            raise MappingError(f"address {a} was not collected for the mapping")
        return hit

    def back(self, addr: str | IPv4) -> IPv4 | None:
        """The original address of a mapped one; None for one nothing maps to."""
        a = IPv4(addr) if isinstance(addr, str) else addr
        if a in LOOPBACK:
            return a
        for b in self.blocks:
            if a in b.mapped:
                return b.original.network_address + (int(a) - int(b.mapped.network_address))
        for orig, mapped in self.singles.items():
            if mapped == a:
                return orig
        return None

    def network(self, net: Net) -> Net:
        """The image of a tested CIDR (same prefix length)."""
        if net.prefixlen == 0 or net.subnet_of(LOOPBACK):
            return net
        return Net(f"{self.forward(net.network_address)}/{net.prefixlen}")

    def rows(self) -> tuple[tuple[str, str], ...]:
        """(original, mapped) pairs to show a user: blocks first, then single addresses."""
        out = [(str(b.original), str(b.mapped)) for b in self.blocks]
        out += [(str(o), str(m)) for o, m in sorted(self.singles.items())]
        return tuple(out)


# ---------------------------------------------------------------- collection


def _v4(text: str) -> IPv4 | None:
    try:
        return IPv4(text.split("/")[0])
    except ValueError:
        return None


def _rule_networks(rule: Rule) -> Iterable[Net]:
    for a in (rule.source, rule.destination):
        if a is None:
            continue
        if a.network is None:
            raise MappingError(
                f"{rule.table} {rule.chain} rule {rule.number} tests the unresolved name "
                f"{a.unresolved!r}: no address to map"
            )
        if not isinstance(a.network, Net):
            raise MappingError(f"{rule.table} {rule.chain} rule {rule.number}: not IPv4")
        yield a.network


def _nat_ranges(rule: Rule) -> tuple[NatRange, ...]:
    return rule.target.to if isinstance(rule.target, Dnat | Snat) else ()


def _options(rule: Rule) -> Iterable[Option]:
    for m in rule.matches:
        yield from getattr(m, "options", ())
        yield from getattr(m, "extra", ())
    yield from getattr(rule.target, "options", ())
    yield from getattr(rule.target, "extra", ())


def _check_opaque(rule: Rule) -> None:
    """Addresses hidden in options kpsim does not model cannot be mapped, nor address
    ranges and networks a block-wise map would not keep whole (iprange, NETMAP): say so."""
    ranged = [m for m in rule.matches if isinstance(m, IPRangeMatch)]
    if ranged or isinstance(rule.target, Netmap):
        what = "-m iprange" if ranged else "NETMAP"
        raise MappingError(
            f"{rule.table} {rule.chain} rule {rule.number}: {what} holds an address range "
            "kpsim cannot map"
        )
    for opt in _options(rule):
        for arg in opt.args:
            if _DOTTED.search(arg):
                raise MappingError(
                    f"{rule.table} {rule.chain} rule {rule.number}: option {opt.name} {arg} "
                    "holds an address kpsim cannot map"
                )


def _check_live(rule: Rule) -> None:
    """A dynamic nft set looked up as data holds live elements kpsim reads as rules; the
    replay loads no live state (nft.write leaves it out): refuse rather than differ."""
    for m in rule.matches:
        if isinstance(m, SetLookup) and m.dynamic and m.elements:
            raise MappingError(
                f"{rule.table} {rule.chain} rule {rule.number}: dynamic set {m.name} holds "
                f"{len(m.elements)} live element(s) the replay would not load"
            )


def _meta_hosts(meta: Mapping[str, object]) -> tuple[list[IPv4], list[Net]]:
    """Hosts (private_ips, local_addresses, pods) and interface subnets from metadata."""
    hosts: list[IPv4] = []
    nets: list[Net] = []
    for key in ("private_ips", "local_addresses"):
        value = meta.get(key)
        for item in value if isinstance(value, list) else []:
            iface = ipaddress.ip_interface(str(item))
            if isinstance(iface, ipaddress.IPv4Interface):
                hosts.append(iface.ip)
                if iface.network.prefixlen < 32:
                    nets.append(iface.network)
    pods = meta.get("pods")
    for p in pods if isinstance(pods, list) else []:
        if isinstance(p, dict) and (a := _v4(str(p.get("ip", "")))) is not None:
            hosts.append(a)
    return hosts, nets


def _collect(ruleset: Ruleset, meta: Mapping[str, object]) -> tuple[set[Net], set[IPv4]]:
    """Every CIDR the rules (or the node's interfaces) test, and every single address."""
    if ruleset.family is not Family.IPV4:
        raise MappingError("only IPv4 rulesets can be replayed")
    nets: set[Net] = set()
    hosts: set[IPv4] = set()
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            for rule in chain.rules:
                _check_opaque(rule)
                for n in _rule_networks(rule):
                    (hosts.add(n.network_address) if n.prefixlen == 32 else nets.add(n))
                for r in _nat_ranges(rule):
                    hosts.update(a for a in (_v4(r.addr_lo or ""), _v4(r.addr_hi or "")) if a)
                _check_live(rule)
                for part in lookup_parts(rule):  # nftables: addresses in sets and maps
                    part_nets, part_hosts = split_part(part)
                    nets.update(part_nets)
                    hosts.update(part_hosts)
    meta_hosts, meta_nets = _meta_hosts(meta)
    hosts.update(meta_hosts)
    nets.update(meta_nets)
    nets = {n for n in nets if n.prefixlen > 0 and not n.subnet_of(LOOPBACK)}
    hosts = {h for h in hosts if h not in LOOPBACK}
    return nets, hosts


# ---------------------------------------------------------------- allocation


def _maximal(nets: Iterable[Net]) -> list[Net]:
    """Drop CIDRs inside another: the outer one's mapping carries them."""
    ordered = sorted(set(nets), key=lambda n: (n.prefixlen, int(n.network_address)))
    out: list[Net] = []
    for n in ordered:
        if not any(n.subnet_of(o) for o in out):
            out.append(n)
    return out


class _Buddy:
    """Aligned blocks of 198.18.0.0/15, handed out largest first so nothing fragments."""

    def __init__(self) -> None:
        self.free: list[Net] = [SPACE]

    def take(self, prefixlen: int) -> Net | None:
        fits = [f for f in self.free if f.prefixlen <= prefixlen]
        if not fits:
            return None
        best = max(fits, key=lambda f: (f.prefixlen, -int(f.network_address)))
        self.free.remove(best)
        while best.prefixlen < prefixlen:
            low, high = best.subnets(prefixlen_diff=1)
            self.free.append(high)
            best = low
        return best


def _size_prefix(count: int) -> int:
    """Smallest prefix (at most a /24) holding ``count`` addresses after a spare ``.0``."""
    return 32 - max(count.bit_length(), 32 - CLIENT_BLOCK_PREFIX)


def build_map(
    ruleset: Ruleset,
    meta: Mapping[str, object] | None = None,
    *,
    hosts: Iterable[str] = (),
    clients: Iterable[str] = (),
) -> AddressMap:
    """Collect the ruleset's and metadata's addresses (plus ``hosts``) and map them;
    ``clients`` outside every tested CIDR go to a block of their own. Raises
    ``MappingError`` naming a CIDR that cannot be placed."""
    nets, found = _collect(ruleset, ruleset.metadata if meta is None else meta)
    found |= {a for a in map(IPv4, hosts) if a not in LOOPBACK}
    tops = _maximal(nets)
    outside = sorted(h for h in found if not any(h in n for n in tops))
    taken = set(outside)
    wanted = {a for a in map(IPv4, clients) if a not in LOOPBACK and a not in taken}
    clients_out = sorted(c for c in wanted if not any(c in n for n in tops))
    if len(clients_out) >= (1 << (32 - CLIENT_BLOCK_PREFIX)) - 1:
        raise MappingError(f"too many client addresses ({len(clients_out)}) for one /24")
    # Largest first: with power-of-two aligned blocks that order never fragments the space.
    wants: list[tuple[int, str, Net | None]] = [(n.prefixlen, str(n), n) for n in tops]
    wants += [(_size_prefix(len(outside)), "single addresses", None)]
    wants += [(CLIENT_BLOCK_PREFIX, "the client block", None)]
    buddy = _Buddy()
    placed: dict[str, Net] = {}
    for prefixlen, label, net in sorted(wants, key=lambda w: (w[0], w[1])):
        got = buddy.take(prefixlen)
        if got is None:
            size = 1 << (32 - prefixlen)
            why = "the rules test it, so it needs a block that size" if net else "no room left"
            raise MappingError(
                f"cannot map {label} ({size} addresses) into {SPACE} "
                f"({SPACE.num_addresses} addresses): {why}; already placed: "
                + (", ".join(placed) or "nothing")
            )
        placed[label] = got
    blocks = tuple(Block(n, placed[str(n)], "tested") for n in tops)
    singles_net = placed["single addresses"]
    client_net = placed["the client block"]
    singles = {h: singles_net.network_address + i + 1 for i, h in enumerate(outside)}
    singles.update({c: client_net.network_address + i + 1 for i, c in enumerate(clients_out)})
    return AddressMap(blocks, MappingProxyType(singles), singles_net, client_net)


# ---------------------------------------------------------------- applying


def _map_address(a: Address | None, amap: AddressMap) -> Address | None:
    if a is None or a.network is None or not isinstance(a.network, Net):
        return a
    return replace(a, network=amap.network(a.network))


def _map_range(r: NatRange, amap: AddressMap) -> NatRange:
    lo = _v4(r.addr_lo or "")
    hi = _v4(r.addr_hi or "")
    if lo is None:
        return r
    mlo = amap.forward(lo)
    mhi = amap.forward(hi) if hi is not None else None
    if hi is not None and mhi is not None and int(mhi) - int(mlo) != int(hi) - int(lo):
        raise MappingError(f"NAT range {r} does not map onto a range of the same size")
    return replace(r, addr_lo=str(mlo), addr_hi=str(mhi) if mhi is not None else None)


def literal(amap: AddressMap, text: str) -> str:
    """An nft address literal moved: an address, a CIDR (onto its block), or a range
    whose ends lie in one tested block (so every address between keeps its offset)."""
    if "-" in text:
        lo, _, hi = text.partition("-")
        a, b = IPv4(lo.strip()), IPv4(hi.strip())
        if not any(a in blk.original and b in blk.original for blk in amap.blocks):
            raise MappingError(f"address range {text} spans addresses kpsim maps apart")
        return f"{amap.forward(a)}-{amap.forward(b)}"
    net = ipaddress.ip_network(text, strict=False)
    if not isinstance(net, Net):
        raise MappingError(f"{text}: not IPv4")
    if net.prefixlen == 32 and "/" not in text:
        return str(amap.forward(net.network_address))
    return str(amap.network(net))


def _map_rule(rule: Rule, amap: AddressMap) -> Rule:
    target = rule.target
    if isinstance(target, Dnat | Snat):
        target = replace(target, to=tuple(_map_range(r, amap) for r in target.to))
    matches = rule.matches
    if any(isinstance(m, SetLookup) for m in matches):

        def move(text: str) -> str:
            return literal(amap, text)

        matches = tuple(map_lookup(m, move) if isinstance(m, SetLookup) else m for m in matches)
    return replace(
        rule,
        source=_map_address(rule.source, amap),
        destination=_map_address(rule.destination, amap),
        target=target,
        matches=matches,
        counters=None,
    )


def map_ruleset(ruleset: Ruleset, amap: AddressMap) -> Ruleset:
    """The same rules, chains and numbering, with every address moved by ``amap``."""
    tables: dict[str, Table] = {}
    for name, table in ruleset.tables.items():
        chains = {
            cname: replace(chain, rules=tuple(_map_rule(r, amap) for r in chain.rules))
            for cname, chain in table.chains.items()
        }
        tables[name] = replace(table, chains=MappingProxyType(chains))
    return replace(ruleset, tables=MappingProxyType(tables))
