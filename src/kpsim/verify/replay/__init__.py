"""Replay a node's rules in the real kernel and count where connections land.

    replay(ruleset, meta, port=30080)
      ─▶ addresses mapped into 198.18.0.0/15 (prefix-preserving; mapping.py)
      ─▶ namespaces client │ node (the rules) │ pods (topology.py), no link to the host
      ─▶ responders on every endpoint port (responder.py), N connections (traffic.py)
      ─▶ KernelResult: per original endpoint "ip:port" the count, masquerade seen,
         refused / timed-out counts, per-rule packet counters, the address map

The kernel's answer to compare with ``Tracer.trace``: same question, real netfilter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kpsim.model import Ruleset
from kpsim.verify.netns import available
from kpsim.verify.replay.mapping import AddressMap, Block, MappingError, build_map, map_ruleset
from kpsim.verify.replay.result import Connection, KernelResult, RuleKey
from kpsim.verify.replay.session import ReplayError, ReplaySession, open_replay

__all__ = [
    "AddressMap",
    "Block",
    "Connection",
    "KernelResult",
    "MappingError",
    "ReplayError",
    "ReplaySession",
    "RuleKey",
    "available",
    "build_map",
    "map_ruleset",
    "open_replay",
    "replay",
]


def replay(
    ruleset: Ruleset,
    meta: Mapping[str, object] | None = None,
    *,
    port: int,
    dest: str | None = None,
    n: int = 200,
    clients: int = 1,
    protocol: str = "tcp",
    source: str | None = None,
    node_ips: Sequence[str] = (),
    from_node: bool = False,
    from_pod: str | None = None,
    connect_timeout_s: float = 1.0,
    timeout_s: float = 60.0,
    order: Sequence[int] | None = None,
) -> KernelResult:
    """One probe in fresh namespaces: ``n`` TCP connections to ``dest:port`` (original
    addresses; ``dest=None`` is the node's own address, i.e. NodePort traffic like
    ``kpsim trace --port P``) from ``clients`` client addresses starting at ``source``
    (default the trace's outside client) in turn — or connection i from client
    ``order[i]`` — or from the node itself, or from a pod."""
    if protocol.lower() != "tcp":
        raise ReplayError(f"protocol {protocol}: only tcp is replayed")
    with open_replay(
        ruleset, meta, clients=clients, source=source, node_ips=node_ips, timeout_s=timeout_s
    ) as session:
        return session.probe(
            port,
            dest=dest,
            n=n,
            from_node=from_node,
            from_pod=from_pod,
            connect_timeout_s=connect_timeout_s,
            order=order,
        )
