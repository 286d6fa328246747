"""One node's rules live in a kernel, probed as many times as asked.

    Ruleset + metadata ─ build_map ─▶ map_ruleset ─ render_save ─▶ restore text
                                   (kube-proxy's nft table: render_nft ─▶ nft -f text)
        ─▶ build_topology (client │ node │ pods) ─▶ responders (pods, node)
        ─▶ probe(port): traffic.py in the client ns ─▶ JSON lines ─▶ mapped back
        ─▶ KernelResult (+ rule counters from iptables-save -c, after − before)

Everything the session starts (namespaces, responder processes) is released when its
``with`` ends, on every exit path; the namespaces also carry netns's atexit/signal cleanup.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from kpsim.errors import KpsimError
from kpsim.formats import parse_text
from kpsim.formats.iptables.write import render_save
from kpsim.formats.nft.write import NftWriteError, render_nft
from kpsim.kube.nft_services import is_nft_kube_proxy
from kpsim.kube.routing import node_addresses
from kpsim.kube.scenario import DEFAULT_CLIENT
from kpsim.model import Dnat, NatRange, Ruleset
from kpsim.verify import netns
from kpsim.verify.replay.beside import beside_restore
from kpsim.verify.replay.mapping import AddressMap, MappingError, build_map, literal, map_ruleset
from kpsim.verify.replay.result import Connection, KernelResult, RuleKey
from kpsim.verify.replay.topology import HERE, Plan, Topology, build_topology, detached_pod, spawn

__all__ = ["ReplayError", "ReplaySession", "open_replay"]

SPORT_FIRST = 10_000
SPORT_LAST = 32_000  # below the default ephemeral range, so the kernel never competes
MAX_CLIENTS = 250  # they map into one /24 (mapping.CLIENT_BLOCK_PREFIX), 254 addresses


class ReplayError(KpsimError):
    """The replay cannot run (no root, no tools, no node address, unsupported input)."""


@dataclass(frozen=True, slots=True)
class _Node:
    """The node as the capture describes it: addresses with prefixes, primary first."""

    interfaces: tuple[ipaddress.IPv4Interface, ...]

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(str(i.ip) for i in self.interfaces)


def _node_of(meta: Mapping[str, object], node_ips: Sequence[str]) -> _Node:
    """Node addresses from metadata (``private_ips`` first), with ``local_addresses``'
    prefix lengths when they say one."""
    hosts = node_addresses(meta, node_ips)
    if not hosts:
        raise ReplayError("the node's address is unknown (no metadata): pass node_ips")
    prefixes: dict[str, int] = {}
    local = meta.get("local_addresses")
    for item in local if isinstance(local, list) else []:
        iface = ipaddress.ip_interface(str(item))
        prefixes.setdefault(str(iface.ip), iface.network.prefixlen)
    out = []
    for h in hosts:
        iface = ipaddress.ip_interface(f"{h}/{prefixes.get(h, 32)}")
        if not isinstance(iface, ipaddress.IPv4Interface):
            raise ReplayError(f"node address {h} is not IPv4")
        out.append(iface)
    return _Node(tuple(out))


def _dnat_ranges(ruleset: Ruleset) -> list[NatRange]:
    """Every DNAT ``--to-destination``, so each endpoint exists and listens."""
    return [
        r
        for table in ruleset.tables.values()
        for chain in table.chains.values()
        for rule in chain.rules
        if isinstance(rule.target, Dnat)
        for r in rule.target.to
    ]


def _pod_hosts(meta: Mapping[str, object]) -> set[str]:
    pods = meta.get("pods")
    return (
        {str(p["ip"]) for p in pods if isinstance(p, dict) and "ip" in p}
        if isinstance(pods, list)
        else set()
    )


def _counters(ns: str, nft: bool) -> dict[RuleKey, int]:
    """Packets per rule as the kernel counts them now (kube-proxy's nft rules keep none)."""
    if nft:
        return {}
    text = netns.save(ns, counters=True)
    try:
        rs = parse_text(text, f"{ns}:iptables-save -c")
    except KpsimError:  # counters are a bonus: never lose the connections over them
        return {}
    return {
        (r.table, r.chain, r.number): r.counters.packets
        for t in rs.tables.values()
        for c in t.chains.values()
        for r in c.rules
        if r.counters is not None
    }


class ReplaySession:
    """A live replay. Use through ``open_replay``; ``probe`` may be called repeatedly
    (recent-list state, i.e. session affinity, carries over between probes)."""

    def __init__(
        self,
        topo: Topology,
        amap: AddressMap,
        node: _Node,
        sources: tuple[str, ...],
        stack: ExitStack,
        deadline: float,
    ) -> None:
        self.topology = topo
        self.address_map = amap
        self.sources = sources  # original client addresses
        self._node = node
        self._stack = stack
        self._deadline = deadline
        self._served: dict[str, set[int]] = {topo.pods: set(), topo.node: set(), topo.client: set()}
        self._next_sport = SPORT_FIRST
        self.nft = topo.plan.loader == "nft"

    # -------------------------------------------------------------- serving

    def serve(self, ns: str, ports: set[int]) -> None:
        """Make sure a responder answers on ``ports`` in ``ns`` (pods or node)."""
        missing = sorted(ports - self._served[ns])
        if not missing:
            return
        args = [a for p in missing for a in ("--port", str(p))]
        self._stack.enter_context(spawn(ns, "responder.py", args, lifetime=self._left() + 5))
        self._served[ns].update(missing)

    def _left(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ReplayError("the replay's time budget is spent")
        return left

    # -------------------------------------------------------------- probing

    def probe(
        self,
        port: int,
        *,
        dest: str | None = None,
        n: int = 200,
        clients: int | None = None,
        from_node: bool = False,
        from_pod: str | None = None,
        connect_timeout_s: float = 1.0,
        order: Sequence[int] | None = None,
    ) -> KernelResult:
        """``n`` connections to ``dest:port`` (original addresses; default the node's
        primary address, i.e. NodePort traffic), from the first ``clients`` sources in
        turn (or connection i from source ``order[i]``), from the node itself, or from
        the pod address ``from_pod`` (behind eni0)."""
        amap = self.address_map
        target = dest or self._node.hosts[0]
        mapped_dest = str(amap.forward(target))
        self.serve(self.topology.pods, {port})
        self.serve(self.topology.node, {port})
        self.serve(self.topology.client, {port})  # traffic the node sends on, unchanged
        srcs = self.sources[: clients or len(self.sources)]
        if from_node:
            srcs = (self._node.hosts[0],)
        elif from_pod is not None:
            if str(amap.forward(from_pod)) not in self.topology.plan.pod_addresses:
                raise ReplayError(f"from_pod {from_pod} is not an endpoint or pod address")
            srcs = (from_pod,)
        if order is not None and (
            len(order) != n
            or from_node
            or from_pod is not None
            or any(not 0 <= k < len(srcs) for k in order)
        ):
            raise ReplayError(f"order: {n} indices into the {len(srcs)} client sources")
        avoid = sorted(set().union(*self._served.values()))
        if self._next_sport + n + len(avoid) > SPORT_LAST:
            limit = SPORT_LAST - SPORT_FIRST
            raise ReplayError(f"source ports exhausted: at most {limit} connections a session")
        before = _counters(self.topology.node, self.nft)
        budget = min(self._left(), 5.0 + n * max(connect_timeout_s, 0.05) * 1.5)
        argv = [
            sys.executable, str(HERE / "traffic.py"), "--dest", mapped_dest, "--port", str(port),
            "-n", str(n), "--sport-base", str(self._next_sport),
            "--timeout", str(connect_timeout_s), "--budget", str(budget),
        ]  # fmt: skip
        argv += [a for p in avoid for a in ("--avoid", str(p))]
        if order is not None:
            argv += ["--order", ",".join(map(str, order))]
        if not from_node:
            for s in srcs:
                argv += ["--source", str(amap.forward(s))]
        self._next_sport += n + len(avoid)
        with ExitStack() as probe_stack:
            ns = self.topology.node if from_node else self.topology.client
            if from_pod is not None:
                ports = self._served[self.topology.pods]
                mapped_pod = str(amap.forward(from_pod))
                ns = probe_stack.enter_context(
                    detached_pod(self.topology, mapped_pod, sorted(ports), budget + 5)
                )
            proc = netns.run(ns, argv, timeout=budget + 15)
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        conns = tuple(self._connection(r, srcs, order) for r in rows)
        after = _counters(self.topology.node, self.nft)
        delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
        return KernelResult(
            port, target, srcs, from_node, conns, amap, delta, self._notes(), from_pod,
            counted=not self.nft,
        )  # fmt: skip

    def _back(self, text: str | None) -> tuple[str | None, str | None]:
        """Mapped ``ip:port`` → (original ``ip:port``, mapped ip)."""
        if not text:
            return None, None
        host, _, port = text.rpartition(":")
        orig = self.address_map.back(host)
        return (f"{orig}:{port}" if orig is not None else f"mapped:{host}:{port}"), host

    def _connection(
        self, row: Mapping[str, object], srcs: Sequence[str], order: Sequence[int] | None
    ) -> Connection:
        """One JSON row in original addresses. Masquerade: the endpoint saw another source
        (address, or port: kube-proxy's --random-fully) than the one the client sent from."""
        i = int(str(row.get("i", 0)))
        dest, _ = self._back(str(row["local"]) if "local" in row else None)
        peer, _ = self._back(str(row["peer"]) if "peer" in row else None)
        bound, _ = self._back(str(row["bound"]) if "bound" in row else None)
        turn = order[i] if order is not None and i < len(order) else i
        source = bound.rpartition(":")[0] if bound else srcs[turn % len(srcs)]
        return Connection(
            source=source,
            sport=int(bound.rpartition(":")[2]) if bound else int(str(row.get("sport", 0))),
            status=str(row.get("status", "error")),
            destination=dest,
            peer=peer,
            masquerade=peer is not None and bound is not None and peer != bound,
            detail=str(row.get("detail", "")),
        )

    def _notes(self) -> tuple[str, ...]:
        notes: tuple[str, ...] = (
            "every endpoint (pod) address lives in one pods namespace behind eni0 (a probe's "
            "source pod gets its own, behind eni1); the node's default route leaves by eth0",
        )
        if self.nft:
            notes += (
                *self.topology.plan.notes,
                "kube-proxy's nftables table replayed with nft -f; its rules keep no "
                "counters, so no per-rule counts are compared",
            )
        return notes


def _plan(
    ruleset: Ruleset, meta: Mapping[str, object], node: _Node, sources: Sequence[str]
) -> tuple[Plan, AddressMap]:
    targets = {r.addr_lo for r in _dnat_ranges(ruleset) if r.addr_lo}
    pod_hosts = {h for h in targets | _pod_hosts(meta) if not _loopback(h)} - set(node.hosts)
    amap = build_map(ruleset, meta, hosts=[*node.hosts, *pod_hosts], clients=sources)
    node_ifs = tuple(f"{amap.forward(str(i.ip))}/{i.network.prefixlen}" for i in node.interfaces)
    pods = tuple(sorted({str(amap.forward(h)) for h in pod_hosts}))
    clients = tuple(str(amap.forward(s)) for s in sources)
    if is_nft_kube_proxy(ruleset):
        text = _capture_text(ruleset)
        beside, beside_notes = beside_restore(text, ruleset.path, amap)
        nft, notes = _nft_text(text, ruleset.path, amap)
        plan = Plan(node_ifs, pods, clients, nft, "nft", notes + beside_notes, beside)
        return plan, amap
    return Plan(node_ifs, pods, clients, render_save(map_ruleset(ruleset, amap))), amap


def _capture_text(ruleset: Ruleset) -> str:
    """kube-proxy's table is written back from the capture file (the model has no nft form
    to write from: one vmap rule is one kernel draw, several model rules)."""
    try:
        return Path(ruleset.path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(
            f"kube-proxy's nftables table is written back from its capture file, and "
            f"{ruleset.path} cannot be read again ({exc.strerror}): give verify the file, "
            "not a stream"
        ) from exc


def _nft_text(text: str, path: str, amap: AddressMap) -> tuple[str, tuple[str, ...]]:
    """kube-proxy's table as ``nft -f`` input with the addresses ``amap`` moves."""
    try:
        return render_nft(text, path, lambda t: literal(amap, t), beside_replayed=True)
    except NftWriteError as exc:
        raise MappingError(str(exc)) from exc


def _loopback(addr: str) -> bool:
    return ipaddress.ip_address(addr).is_loopback


@contextmanager
def open_replay(
    ruleset: Ruleset,
    meta: Mapping[str, object] | None = None,
    *,
    clients: int = 1,
    source: str | None = None,
    node_ips: Sequence[str] = (),
    timeout_s: float = 60.0,
) -> Iterator[ReplaySession]:
    """Build the namespaces for ``ruleset`` and yield a session to probe them.

    ``source`` is the first (original) client address, default the trace's outside client
    203.0.113.10; ``clients`` addresses follow it. Needs root, ``ip`` and iptables."""
    if not netns.available():
        raise ReplayError("replay needs root plus ip, iptables, iptables-save, iptables-restore")
    if not 1 <= clients <= MAX_CLIENTS:
        raise ReplayError(f"clients must be between 1 and {MAX_CLIENTS}")
    meta = ruleset.metadata if meta is None else meta
    node = _node_of(meta, node_ips)
    first = ipaddress.IPv4Address(source or DEFAULT_CLIENT)
    sources = tuple(str(first + i) for i in range(clients))
    plan, amap = _plan(ruleset, meta, node, sources)
    deadline = time.monotonic() + timeout_s
    with ExitStack() as stack:
        topo = stack.enter_context(build_topology(plan))
        session = ReplaySession(topo, amap, node, sources, stack, deadline)
        on_node = set(node.hosts) | {"127.0.0.1"}
        ports = [(r.addr_lo in on_node, r.port_lo) for r in _dnat_ranges(ruleset)]
        session.serve(topo.pods, {p for local, p in ports if p is not None and not local})
        session.serve(topo.node, {p for local, p in ports if p is not None and local})
        yield session
