"""Which rules start one service's part of the graph: ``--port`` or ``--service``.

    --port 30080             ─▶ entry-chain rules whose --dport covers 30080
    --service ns/name:port   ─▶ entry-chain rules that jump to its chains or carry its comment
                                (also ns/name, the bare name, or its chain hash)

The entry chains are where kube-proxy sends a service's traffic first (nat KUBE-SERVICES,
KUBE-NODEPORTS) or rejects it (the filter twins).
"""

from __future__ import annotations

from collections.abc import Callable

from kpsim.errors import UsageError
from kpsim.graph.model import ChainKey
from kpsim.kube import services as kube
from kpsim.kube.nft_services import CHAIN
from kpsim.model import Jump, MultiportMatch, PortMatch, PortRange, Rule, Ruleset
from kpsim.model.nft import SetLookup

#: Where kube-proxy sends a service's traffic first (nat), or rejects it (filter).
ENTRY_CHAINS: tuple[ChainKey, ...] = (
    ("nat", "KUBE-SERVICES"),
    ("nat", "KUBE-NODEPORTS"),
    ("filter", "KUBE-SERVICES"),
    ("filter", "KUBE-EXTERNAL-SERVICES"),
    ("filter", "KUBE-NODEPORTS"),
    # kube-proxy's nftables table: its map lookups (one rule per element), then the checks
    ("nat", "services"),
    ("filter", "service-endpoints-check"),
    ("filter", "nodeport-endpoints-check"),
)


def _dports(rule: Rule) -> list[PortRange]:
    out: list[PortRange] = []
    for m in rule.matches:
        if isinstance(m, PortMatch) and m.dport is not None and not m.dport_negated:
            out.append(m.dport)
        elif isinstance(m, MultiportMatch) and m.direction != "sports" and not m.negated:
            out.extend(m.ports)
        elif isinstance(m, SetLookup) and len(m.elements) == 1 and "th dport" in m.keys:
            part = m.elements[0][m.keys.index("th dport")]  # one map element's port
            out.append(PortRange(part.lo, part.hi))
    return out


def _hash_of(chain: str) -> str | None:
    nft = CHAIN.match(chain)
    if nft is not None:
        return nft.group(2)
    for prefix in kube.SERVICE_PREFIXES:
        if chain.startswith(prefix):
            return chain[len(prefix) :]
    return None


def _pick_services(ruleset: Ruleset, wanted: str) -> list[kube.Service]:
    """Exact name first, then without the port name, then the bare service name,
    then the chain hash (or a whole KUBE-SVC-… name)."""
    svcs = kube.services(ruleset)
    tiers: tuple[Callable[[kube.Service], bool], ...] = (
        lambda s: s.name == wanted,
        lambda s: s.name.split(":")[0] == wanted,
        lambda s: s.name.split(":")[0].split("/")[-1] == wanted,
        lambda s: wanted in (s.hash, *(p + s.hash for p in kube.SERVICE_PREFIXES)),
    )
    for matches in tiers:
        found = [s for s in svcs if matches(s)]
        if found:
            return found
    listed = ", ".join(dict.fromkeys(s.name for s in svcs)) or "none"
    raise UsageError(f"--service {wanted}: no such service in {ruleset.path} (services: {listed})")


def entry_rules(ruleset: Ruleset, selector: str | int) -> list[Rule]:
    """The KUBE-SERVICES / KUBE-NODEPORTS (… filter REJECT) rules that start the selection:
    a port matches ``--dport``; a service matches its chain hash or its comment."""
    chains = [ch for t, c in ENTRY_CHAINS if (ch := ruleset.chain(t, c)) is not None]
    entry = [r for ch in chains for r in ch.rules]
    if isinstance(selector, int):
        found = [r for r in entry if any(p.contains(selector) for p in _dports(r))]
        if not found:
            ports = sorted({p.lo for r in entry for p in _dports(r) if p.lo == p.hi})
            listed = ", ".join(str(p) for p in ports) or "none"
            raise UsageError(
                f"--port {selector}: no service rule for this port in {ruleset.path} "
                f"(ports here: {listed})"
            )
        return found
    chosen = _pick_services(ruleset, selector)
    hashes = {s.hash for s in chosen}
    wanted = {s.name for s in chosen}
    out = []
    for r in entry:
        h = _hash_of(r.target.chain) if isinstance(r.target, Jump) else None
        if h in hashes or (r.comment is not None and kube.clean_name(r.comment) in wanted):
            out.append(r)
    return out
