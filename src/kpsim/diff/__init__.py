"""Differences by meaning between captures (``kpsim diff``): services, frontends and
endpoints added or removed, shares, policies and masquerade changed."""

from __future__ import annotations

from kpsim.diff.compare import Change, DiffReport, compare, disagreements, pair_nodes
from kpsim.diff.state import NodeState, ServiceState, node_state

__all__ = [
    "Change",
    "DiffReport",
    "NodeState",
    "ServiceState",
    "compare",
    "disagreements",
    "node_state",
    "pair_nodes",
]
