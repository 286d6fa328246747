"""Differences by meaning: two captures (or two snapshots of a fleet, node by node), or
the nodes of one snapshot against each other (a node lagging behind).

    NodeState A, NodeState B ─ compare ─▶ [Change(endpoint-added, node, svc, …), …]
    [NodeState …]            ─ disagreements ─▶ [Change(endpoints-differ, lagging node, …)]

Matched on service (name, protocol), frontend (kind address:port/proto) and endpoint
(pod address): a re-ordered, re-numbered or re-hashed capture has no differences.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from kpsim.diff.state import NodeState, ServiceKey, ServiceState


@dataclass(frozen=True, slots=True)
class Change:
    """One difference. For ``--nodes``: ``before`` is what most nodes have, ``after``
    this node's; ``subject`` the frontend, endpoint or field concerned."""

    kind: str
    node: str
    service: str
    subject: str
    before: str | None = None
    after: str | None = None
    location: str | None = None
    before_exact: Fraction | None = None
    after_exact: Fraction | None = None


@dataclass(frozen=True, slots=True)
class DiffReport:
    mode: str  # "captures" | "nodes"
    left: str
    right: str
    changes: tuple[Change, ...]
    only_left: tuple[str, ...] = ()  # nodes only in A
    only_right: tuple[str, ...] = ()
    inputs: tuple[NodeState, ...] = ()  # every capture read, for its ``capture`` member


def pair_nodes(
    a: Sequence[NodeState], b: Sequence[NodeState]
) -> tuple[list[tuple[NodeState, NodeState]], list[str], list[str]]:
    """Nodes matched by name; a single node on each side is matched whatever its name."""
    if len(a) == 1 and len(b) == 1:
        return [(a[0], b[0])], [], []
    right = {n.node: n for n in b}
    pairs = [(n, right[n.node]) for n in a if n.node in right]
    left_names = {n.node for n in a}
    return (
        pairs,
        [n.node for n in a if n.node not in right],
        [n.node for n in b if n.node not in left_names],
    )


def _by_hash(side: NodeState, other: NodeState) -> dict[ServiceKey, ServiceState]:
    """``side``'s services, those known only by their chain (a cut capture lost the
    named frontends) keyed as ``other`` names the service of the same chain hash."""
    names = {s.hash: k for k, s in other.services.items()}
    out: dict[ServiceKey, ServiceState] = {}
    for key, s in side.services.items():
        unnamed = s.name.startswith("KUBE-SVC-") and s.hash in names
        out[names[s.hash] if unnamed else key] = s
    return out


def compare(a: NodeState, b: NodeState) -> list[Change]:
    node = b.node
    out: list[Change] = []
    left, right = _by_hash(a, b), _by_hash(b, a)
    for key in sorted(left.keys() | right.keys()):
        old, new = left.get(key), right.get(key)
        label = _label(key)
        if old is None and new is not None:
            kind = "service-not-captured" if a.partial else "service-added"
            out.append(Change(kind, node, label, label, None, _summary(new), new.location))
        elif new is None and old is not None:
            kind = "service-not-captured" if b.partial else "service-removed"
            out.append(Change(kind, node, label, label, _summary(old), None, old.location))
        elif old is not None and new is not None:
            if not (old.captured and new.captured):
                # a chain of the service is missing or cut on one side: its endpoints
                # cannot be compared, and saying "removed" would be a guess
                side = "before" if not old.captured else "after"
                out.append(Change("service-not-captured", node, label, label,
                                  side, None, new.location))  # fmt: skip
                continue
            out += _service(node, label, old, new)
    return out


def _service(node: str, label: str, old: ServiceState, new: ServiceState) -> list[Change]:
    loc = new.location
    out = [Change("frontend-added", node, label, f, None, f, loc)
           for f in sorted(new.frontends - old.frontends)]  # fmt: skip
    out += [Change("frontend-removed", node, label, f, f, None, old.location)
            for f in sorted(old.frontends - new.frontends)]  # fmt: skip
    for ep in sorted(new.endpoints.keys() - old.endpoints.keys()):
        share = new.endpoints[ep]
        out.append(Change("endpoint-added", node, label, ep, None, _pct(share), loc, None, share))
    for ep in sorted(old.endpoints.keys() - new.endpoints.keys()):
        share = old.endpoints[ep]
        out.append(Change("endpoint-removed", node, label, ep, _pct(share), None, loc, share))
    for ep in sorted(new.local_endpoints - old.local_endpoints):
        out.append(Change("local-endpoint-added", node, label, ep, None, ep, loc))
    for ep in sorted(old.local_endpoints - new.local_endpoints):
        out.append(Change("local-endpoint-removed", node, label, ep, ep, None, loc))
    for ep in sorted(old.endpoints.keys() & new.endpoints.keys()):
        x, y = old.endpoints[ep], new.endpoints[ep]
        if x != y:
            out.append(Change("share-changed", node, label, ep, _pct(x), _pct(y), loc, x, y))
    fields: list[tuple[str, Callable[[ServiceState], str]]] = [
        ("policy-changed", _policy),
        ("affinity-changed", _affinity),
        ("masquerade-changed", _masq),
    ]
    for kind, show in fields:
        if show(old) != show(new):
            out.append(Change(kind, node, label, kind.removesuffix("-changed"), show(old),
                              show(new), loc))  # fmt: skip
    return out


def disagreements(nodes: Sequence[NodeState]) -> list[Change]:
    """Where a node's service differs from what the other nodes have: its endpoints,
    frontends, policy, affinity, masquerade rules, or the service itself."""
    out: list[Change] = []
    keys = sorted({k for n in nodes for k in n.services})
    aspects: list[tuple[str, Callable[[ServiceState | None], str]]] = [
        ("service-differs", lambda s: "present" if s else "absent"),
        ("endpoints-differ", lambda s: ", ".join(sorted(s.endpoints)) if s else "-"),
        ("frontends-differ", lambda s: ", ".join(sorted(s.frontends)) if s else "-"),
        ("policy-differs", lambda s: _policy(s) if s else "-"),
        ("affinity-differs", lambda s: _affinity(s) if s else "-"),
        ("masquerade-differs", lambda s: _masq(s) if s else "-"),
    ]
    names = Counter(n.node for n in nodes)
    label = {id(n): n.node if names[n.node] == 1 else f"{n.node} ({n.path})" for n in nodes}
    for key in keys:
        states = {label[id(n)]: n.services.get(key) for n in nodes}
        for kind, show in aspects:
            values = {node: show(s) for node, s in states.items()}
            counts = Counter(values.values())
            if len(counts) < 2:
                continue
            (common, k), *_ = counts.most_common()
            tied = sum(1 for c in counts.values() if c == k) > 1
            for node, value in sorted(values.items()):
                if value == common and not tied:
                    continue
                state = states[node]
                subject = "no majority" if tied else f"{k} of {len(nodes)} nodes"
                loc = state.location if state else None
                out.append(Change(kind, node, _label(key), subject,
                                  None if tied else common, value, loc))  # fmt: skip
            if kind == "service-differs":
                break  # a service missing on a node differs in everything else too
    return out


def _label(key: ServiceKey) -> str:
    return f"{key[0]} ({key[1]})" if key[1] else key[0]


def _summary(s: ServiceState) -> str:
    n = len(s.endpoints)
    return "no endpoints" if s.no_endpoints else f"{n} endpoint{'s' if n != 1 else ''}"


def _policy(s: ServiceState) -> str:
    ext = "Local" if s.external_local else "Cluster"
    internal = "Local" if s.internal_local else "Cluster"
    return f"externalTrafficPolicy {ext}, internalTrafficPolicy {internal}"


def _affinity(s: ServiceState) -> str:
    return f"ClientIP {s.affinity_seconds}s" if s.affinity_seconds is not None else "None"


def _masq(s: ServiceState) -> str:
    return "; ".join(sorted(s.masquerade)) or "none"


def _pct(x: Fraction) -> str:
    return f"{float(x) * 100:.4f}%"
