"""kube-proxy's base-chain jumps, added when the input is its restore payload (the rules
kube-proxy writes with ``iptables-restore``, without the built-in chains' jumps it
installs separately): without them nothing would enter KUBE-SERVICES.

    nat PREROUTING, OUTPUT ─▶ KUBE-SERVICES     nat POSTROUTING ─▶ KUBE-POSTROUTING
    filter INPUT, FORWARD, OUTPUT ─▶ KUBE-PROXY-FIREWALL, KUBE-SERVICES, …
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping

from kpsim.model import (
    BUILTIN_CHAINS,
    Chain,
    CommentMatch,
    ConntrackMatch,
    Jump,
    Rule,
    Ruleset,
    SourceLocation,
)

_NEW = ConntrackMatch(ctstate=("NEW",))

#: The jumps kube-proxy installs in built-in chains: (chain, only for ctstate NEW, comment).
KUBE_BASE_JUMPS: Mapping[tuple[str, str], tuple[tuple[str, bool, str], ...]] = {
    ("nat", "PREROUTING"): (("KUBE-SERVICES", False, "kubernetes service portals"),),
    ("nat", "OUTPUT"): (("KUBE-SERVICES", False, "kubernetes service portals"),),
    ("nat", "POSTROUTING"): (("KUBE-POSTROUTING", False, "kubernetes postrouting rules"),),
    ("filter", "INPUT"): (
        ("KUBE-PROXY-FIREWALL", True, "kubernetes load balancer firewall"),
        ("KUBE-NODEPORTS", False, "kubernetes health check service ports"),
        ("KUBE-EXTERNAL-SERVICES", True, "kubernetes externally-visible service portals"),
        ("KUBE-FIREWALL", False, ""),
    ),
    ("filter", "FORWARD"): (
        ("KUBE-PROXY-FIREWALL", True, "kubernetes load balancer firewall"),
        ("KUBE-FORWARD", False, "kubernetes forwarding rules"),
        ("KUBE-SERVICES", True, "kubernetes service portals"),
        ("KUBE-EXTERNAL-SERVICES", True, "kubernetes externally-visible service portals"),
    ),
    ("filter", "OUTPUT"): (
        ("KUBE-PROXY-FIREWALL", True, "kubernetes load balancer firewall"),
        ("KUBE-SERVICES", True, "kubernetes service portals"),
        ("KUBE-FIREWALL", False, ""),
    ),
}


def looks_like_restore_input(ruleset: Ruleset) -> bool:
    """kube-proxy's own restore payload: KUBE-* chains but no built-in nat chain."""
    nat = ruleset.table("nat")
    return (
        nat is not None
        and any(name.startswith("KUBE-") for name in nat.chains)
        and not any(name in nat.chains for name in BUILTIN_CHAINS["nat"])
    )


def _base_rule(table: str, chain: str, n: int, target: str, new: bool, comment: str) -> Rule:
    matches = ((_NEW,) if new else ()) + ((CommentMatch(comment),) if comment else ())
    text = f"-A {chain}" + (" -m conntrack --ctstate NEW" if new else "")
    text += (f' -m comment --comment "{comment}"' if comment else "") + f" -j {target}"
    origin = SourceLocation("<kube-proxy base chains>", 0, text)
    return Rule(table, chain, n, Jump(target), matches=matches, origin=origin)


class WithBase(Mapping[str, Chain]):
    """A table's chains with kube-proxy's base chains over them, read-only. Neither copies
    the table's mapping (``dict(chains)`` of a 10,000-service dump's 61,000 chains took
    10 ms of each trace, measured) nor touches a chain it is not asked for (a capture read
    on demand may make each chain object only when looked up). Iterates as that copy
    did: the table's chains in order, then the added ones."""

    __slots__ = ("_added", "_chains")

    def __init__(self, chains: Mapping[str, Chain], added: Mapping[str, Chain]) -> None:
        self._chains, self._added = chains, added  # no name in both

    def __getitem__(self, name: str) -> Chain:
        found = self._added.get(name)
        return self._chains[name] if found is None else found

    def get(self, name: str, default: Chain | None = None) -> Chain | None:  # type: ignore[override]
        found = self._added.get(name)
        return self._chains.get(name, default) if found is None else found

    def __contains__(self, name: object) -> bool:
        return name in self._added or name in self._chains

    def __iter__(self) -> Iterator[str]:
        return itertools.chain(self._chains, self._added)

    def __len__(self) -> int:
        return len(self._chains) + len(self._added)


def with_kube_proxy_base(ruleset: Ruleset) -> tuple[dict[str, Mapping[str, Chain]], str | None]:
    """The ruleset's chains, plus kube-proxy's base jumps when the input is its restore
    payload (only jumps to chains that exist). Returns the chains and a note, if added:
    a table that gains base chains as a ``WithBase``, any other as the ruleset holds it."""
    tables: dict[str, Mapping[str, Chain]] = {n: t.chains for n, t in ruleset.tables.items()}
    if not looks_like_restore_input(ruleset):
        return tables, None
    added: dict[str, dict[str, Chain]] = {}
    notes = []
    for (tname, cname), jumps in KUBE_BASE_JUMPS.items():
        chains = tables.get(tname)
        if chains is None or cname in chains:
            continue
        present = [j for j in jumps if j[0] in chains]
        rules = tuple(_base_rule(tname, cname, i, *j) for i, j in enumerate(present, 1))
        if rules:
            extra = added.setdefault(tname, {})
            extra[cname] = Chain(cname, rules)
            tables[tname] = WithBase(ruleset.tables[tname].chains, extra)
            notes.append(f"{tname} {cname} → " + ", ".join(j[0] for j in present))
    if not notes:
        return tables, None
    return tables, "kube-proxy restore input: added the base-chain jumps kube-proxy installs (" + (
        "; ".join(notes) + ")"
    )
