"""What a ``Tracer`` prepares once per ruleset (with kube-proxy's base-chain jumps when the
input is its restore payload, ``base_chains.py``): per-chain indexes so a 10,000-rule
KUBE-SERVICES costs a few dict lookups, not a scan, and what a table's rules can see.

    KUBE-SERVICES ─ index[(dst, proto, dport)] ─▶ the few rules that can match, in order
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from itertools import compress, count, repeat
from operator import eq, not_, or_

from kpsim.engine.flow import Flow
from kpsim.engine.packet import PROTOCOL_NUMBERS
from kpsim.model import (
    Chain,
    IPNetwork,
    Jump,
    MultiportMatch,
    PortMatch,
    PortRange,
    RecentMatch,
    Rule,
    RuleSketch,
    StatisticMatch,
)
from kpsim.model.nft import SetLookup
from kpsim.model.node import IPAddress

# ---------------------------------------------------------------- chain index


_IndexKey = tuple[IPAddress | None, str | None, int | None]
_AnyKey = tuple[IPAddress | str | None, str | None, int | None]

#: Matches whose evaluation changes state: a rule must not be skipped past one of these.
_STATEFUL = (StatisticMatch, RecentMatch)


def _index_key(rule: Rule) -> _IndexKey | None:
    """What a packet must have for the rule to possibly match: (dst ip, proto, dport),
    any part None when the rule does not pin it; None when nothing is pinned. Other
    fields and matches still get evaluated on the candidates the index returns."""
    dst = rule.destination
    host = None
    if dst is not None and not dst.negated and dst.network is not None:
        single = dst.network.prefixlen == dst.network.max_prefixlen
        host = dst.network.network_address if single else None
    proto = rule.protocol
    name = None
    if proto is not None and not proto.negated:
        name = PROTOCOL_NUMBERS.get(proto.name, proto.name).lower()
        name = None if name in ("all", "0") else name
    port = None
    for m in rule.matches if name else ():
        if isinstance(m, _STATEFUL):  # skipping it would lose its side effect
            break
        if isinstance(m, PortMatch) and m.protocol.lower() == name and m.dport is not None:
            rng = m.dport
            if not m.dport_negated and rng.lo == rng.hi and rng.lo >= 0:
                port = rng.lo
                break
    if host is None or port is None:
        host, name, port = _lookup_pins(rule, host, name, port)
    if host is None and port is None:
        return None
    return (host, name if port is not None else None, port)


_DPORT_KEYS = {"th dport": None, "tcp dport": "tcp", "udp dport": "udp", "sctp dport": "sctp"}


def _lookup_pins(
    rule: Rule, host: IPAddress | None, name: str | None, port: int | None
) -> _IndexKey:
    """What nftables' one-element lookups pin (a verdict map read as one rule per element:
    ``ip daddr . meta l4proto . th dport 172.20.0.10 . tcp . 53``): kube-proxy's
    ``services`` chain is 10,000 such rules, scanned one by one without this. Only a
    single value pins a part; a lookup after a stateful match is not looked at."""
    for m in rule.matches:
        if isinstance(m, _STATEFUL):
            break
        if not isinstance(m, SetLookup) or m.negated or m.dynamic or len(m.elements) != 1:
            continue
        for key, part in zip(m.keys, m.elements[0], strict=False):
            if part.lo != part.hi:
                continue
            if key in ("ip daddr", "ip6 daddr") and host is None:
                host = IPv6Address(part.lo) if key == "ip6 daddr" else IPv4Address(part.lo)
            elif key in ("meta l4proto", "ip protocol") and name is None:
                name = PROTOCOL_NUMBERS.get(str(part.lo), str(part.lo)).lower()
            elif key in _DPORT_KEYS and port is None:
                implied = _DPORT_KEYS[key]
                if implied is not None and name is None:
                    name = implied
                if name is not None and implied in (None, name):
                    port = part.lo
    if name in ("all", "0"):
        name = None
    return host, name, port if name is not None else None


@dataclass(frozen=True, slots=True)
class ChainIndex:
    """Rule positions by (dst, proto, dport); ``rest`` holds positions that need a scan."""

    by_key: Mapping[_AnyKey, tuple[int, ...]]
    rest: tuple[int, ...]

    @classmethod
    def build(cls, chain: Chain) -> ChainIndex:
        by_key: dict[_AnyKey, list[int]] = {}
        rest = []
        for pos, rule in enumerate(chain.rules):
            key = _index_key(rule)
            if key is None:
                rest.append(pos)
            else:
                by_key.setdefault(key, []).append(pos)
        return cls({k: tuple(v) for k, v in by_key.items()}, tuple(rest))

    def candidates(self, flow: Flow) -> Sequence[int]:
        """Positions of the rules that can match ``flow``, in chain order."""
        p, port = flow.protocol, flow.dport
        d = flow.dst
        get = self.by_key.get
        hits = (*get((d, p, port), ()), *get((None, p, port), ()), *get((d, None, None), ()))
        return sorted((*hits, *self.rest)) if hits else self.rest


def _sketch_key(sketch: RuleSketch, pos: int) -> tuple[str | None, str | None, int | None] | None:
    """``_index_key`` of a sketched rule, read off its fields (a host as written)."""
    dst, proto, dport = sketch.dsts[pos], sketch.protos[pos], sketch.dports[pos]
    host = None
    if dst and dst[0] != "!":
        ip, slash, length = dst.partition("/")
        host = ip if not slash or length == "32" else None
    name = PROTOCOL_NUMBERS.get(proto, proto).lower() if proto else None
    name = None if name in ("all", "0") else name
    # the rule's one port match, unless a recent match (stateful) comes first
    ported = name and dport and sketch.modules[pos] == name and not sketch.stateful[pos]
    port = int(dport) if ported else None
    if host is None and port is None:
        return None
    return (host, name if port is not None else None, port)


#: Flows a ``SketchIndex`` scans its hosts for before it indexes them (``_with_host``).
SKETCH_SCANS = 4


class SketchIndex:
    """``ChainIndex.build``'s candidates for a sketched chain, without a dict of every rule
    (nor the rules): a trace
    asks a 10,001-rule KUBE-SERVICES about one or two flows. The rules that pin the
    flow's host are found among the hosts in C (``compress``, 0.45 ms a flow); a Tracer
    asked about more flows indexes them once (each host's first and last position, two
    dicts built by ``zip``, 1.2 ms). Only the rules that pin no host (no ``-d``, ``!
    -d``, a network: one in kube-proxy's KUBE-SERVICES, every rule of KUBE-NODEPORTS)
    are read one by one. On the 10,000-service dump's KUBE-SERVICES: 17 ms for such a
    dict of every sketched rule, ~1 ms for this and one flow's candidates (measured)."""

    __slots__ = ("_first", "_free", "_hosts", "_last", "_rest", "_scans", "_sketch")

    def __init__(self, sketch: RuleSketch) -> None:
        self._sketch = sketch
        # "10.0.0.1" or "10.0.0.1/32" pins that host; "", "!…" and other networks none
        hosts = list(map(str.removesuffix, sketch.dsts, repeat("/32")))
        hostless: Iterable[int]
        text = "\n".join(hosts)
        if "!" in text or "/" in text:
            negated = map(str.startswith, hosts, repeat("!"))
            nets = map(str.__contains__, hosts, repeat("/"))
            hostless = compress(count(), map(or_, map(not_, hosts), map(or_, negated, nets)))
        else:  # kube-proxy's: hosts, and rules without -d (2.4 ms → 0.3 ms, measured)
            hostless = compress(count(), map(not_, hosts))
        free: dict[_AnyKey, list[int]] = {}
        rest: list[int] = []
        for pos in hostless:
            key = _sketch_key(sketch, pos)
            if key is None:
                rest.append(pos)
            elif key[0] is None:
                free.setdefault(key, []).append(pos)
            # else host "" ("-d /32", which no line a sketch reads has): no flow's
        self._hosts = hosts
        self._free: dict[_AnyKey, tuple[int, ...]] = {k: tuple(v) for k, v in free.items()}
        self._rest = tuple(rest)
        self._scans = 0
        self._first: dict[str, int] = {}
        self._last: dict[str, int] = {}

    def candidates(self, flow: Flow) -> Sequence[int]:
        """Positions of the rules that can match ``flow``, in chain order."""
        p, port = flow.protocol, flow.dport
        d = str(flow.dst)
        hits = [*self._free.get((None, p, port), ())]
        keys = ((d, p, port), (d, None, None))
        for pos in self._with_host(d):
            if _sketch_key(self._sketch, pos) in keys:
                hits.append(pos)
        return sorted((*hits, *self._rest)) if hits else self._rest

    def _with_host(self, d: str) -> Iterable[int]:
        """The positions of the rules whose ``-d`` is host ``d``, in order."""
        hosts = self._hosts
        if self._scans < SKETCH_SCANS:
            self._scans += 1
            return compress(count(), map(eq, hosts, repeat(d)))
        if not self._first:
            self._first = dict(zip(reversed(hosts), range(len(hosts) - 1, -1, -1), strict=True))
            self._last = dict(zip(hosts, range(len(hosts)), strict=True))
        lo = self._first.get(d)
        if lo is None:
            return ()
        hi = self._last[d] + 1
        return compress(range(lo, hi), map(eq, hosts[lo:hi], repeat(d)))


INDEX_MIN_RULES = 32  # shorter chains are scanned linearly


class ChainIndexes:
    """An index for every chain long enough to be worth one, built when a walk first
    enters the chain: a trace enters a few dozen of a big node's 60,000 chains, and a
    chain read on demand (``formats.iptables.lazy``) is only read when entered."""

    __slots__ = ("_built", "_min_rules", "_tables")

    def __init__(self, tables: Mapping[str, Mapping[str, Chain]]) -> None:
        self._tables = tables
        self._min_rules = INDEX_MIN_RULES  # as when prepared (a test lowers it)
        self._built: dict[tuple[str, str], ChainIndex | SketchIndex | None] = {}

    def get(self, key: tuple[str, str]) -> ChainIndex | SketchIndex | None:
        if key in self._built:
            return self._built[key]
        chain = self._tables.get(key[0], {}).get(key[1])
        found: ChainIndex | SketchIndex | None = None
        sketch = chain.sketch() if chain is not None else None
        if sketch is not None and len(sketch.jumps) >= self._min_rules:
            found = SketchIndex(sketch)  # its rules built only when walked
        elif chain is not None and len(chain.rules) >= self._min_rules:
            found = ChainIndex.build(chain)
        self._built[key] = found
        return found

    def __len__(self) -> int:
        """How many indexes were built so far."""
        return sum(1 for found in self._built.values() if found is not None)


def build_indexes(tables: Mapping[str, Mapping[str, Chain]]) -> ChainIndexes:
    """Indexes for ``tables``' chains, each built on first use."""
    return ChainIndexes(tables)


# ---------------------------------------------------------------- what a table sees


class TableView:
    """What a table's rules can tell apart about a packet's destination: ``-d`` host
    rules (and the index keys, a subset of them) see the address exactly, other ``-d``
    networks only as in or out; single ``--dport``/``--dports`` ports see the port
    exactly, port ranges only as in or out; ``-m recent`` sees only the lists it names.
    Two flows equal in every other field and in ``of`` take the same decisions in this
    table (DNAT and REDIRECT aside: they read the destination itself).

        KUBE-FORWARD, KUBE-POSTROUTING … ─▶ every pod endpoint 10.11.x.y:8080 looks alike
    """

    __slots__ = ("hosts", "lists", "nets", "ports", "ranges")

    def __init__(self, chains: Iterable[Chain]) -> None:
        hosts: set[IPAddress] = set()
        nets: dict[IPNetwork, None] = {}
        ports: set[int] = set()
        ranges: dict[tuple[int, int], None] = {}
        lists: set[str] = set()
        for chain in chains:
            for rule in chain.rules:
                lists.update(m.name for m in rule.matches if isinstance(m, RecentMatch))
                net = rule.destination.network if rule.destination is not None else None
                if net is not None and net.prefixlen == net.max_prefixlen:
                    hosts.add(net.network_address)
                elif net is not None:
                    nets[net] = None
                for rng in _dport_ranges(rule):
                    if rng.lo == rng.hi:
                        ports.add(rng.lo)
                    elif rng.lo >= 0:
                        ranges[(rng.lo, rng.hi)] = None
        self.hosts = frozenset(hosts)
        self.nets = tuple(nets)
        self.ports = frozenset(ports)
        self.ranges = tuple(ranges)
        self.lists = frozenset(lists)

    def of(self, flow: Flow) -> tuple[object, ...]:
        dst, dport = flow.dst, flow.dport
        return (
            dst if dst in self.hosts else None,
            tuple(dst in n for n in self.nets),
            dport if dport in self.ports else None,
            tuple(lo <= dport <= hi for lo, hi in self.ranges),
            flow.recent & self.lists,
        )


def reachable(chains: Mapping[str, Chain], start: str) -> list[Chain]:
    """``start`` and every chain its rules can jump or go to, transitively: what a walk
    of that built-in chain can see (nat POSTROUTING never sees the KUBE-SVC-* rules)."""
    seen = {start}
    todo = [start]
    found = []
    while todo:
        chain = chains.get(todo.pop())
        if chain is None:
            continue
        found.append(chain)
        for rule in chain.rules:
            t = rule.target
            if isinstance(t, Jump) and t.chain not in seen:
                seen.add(t.chain)
                todo.append(t.chain)
    return found


def _dport_ranges(rule: Rule) -> Iterator[PortRange]:
    """Every port range a rule's matches may compare with the destination port."""
    for m in rule.matches:
        if isinstance(m, PortMatch) and m.dport is not None:
            yield m.dport
        elif isinstance(m, MultiportMatch) and m.direction.lstrip("-") not in _SOURCE_ONLY:
            yield from m.ports


_SOURCE_ONLY = ("sports", "source-ports")
