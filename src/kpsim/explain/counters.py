"""Rule counters against the rules: observed new connections per endpoint.

    iptables-save -c  [pkts:bytes] / iptables -L -v  pkts column
      ─▶ per KUBE-SVC/KUBE-SVL chain: the packet counter of each new-client jump
         (-m statistic … -j KUBE-SEP-E) = connections that rule picked
      ─▶ Fit against the cascade's exact shares (fit.py)

In the nat table only a connection's first packet walks the chains, so a nat rule's
packet counter counts connections. The jump rules are the cascade's own draws: a
session-affinity repeat (``-m recent --rcheck``) takes another rule and is not counted
there; the KUBE-SEP DNAT counter (every connection DNATed to the pod, repeats included)
is shown beside it. Two captures of one node: counters are matched by meaning (chain
and target, not line number) and subtracted, later − earlier.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from kpsim.errors import UsageError
from kpsim.explain.fit import Fit, fit
from kpsim.kube.chance import is_sep_jump, needs_no_history
from kpsim.kube.services import Service, services
from kpsim.model import Chain, Dnat, Rule, Ruleset

SCHEMA = "kpsim/counters/v1"
#: formats/iptables/listing.py's note for ``-L -v`` without ``-x``.
ROUNDED = "counters with K/M/G/T units"

#: ``iptables -L -v`` prints a number with a unit (1651K) from here up, exact below.
UNITS_FROM = 100_000

Key = tuple[str, str, str]  # (chain, target chain or "DNAT", kind)


@dataclass(frozen=True, slots=True)
class EndpointCount:
    """One endpoint of one cascade: its exact share, and what the counters say."""

    sep_chain: str
    destination: str | None
    share: Fraction
    picked: int | None  # the jump rule's packet counter (None: no counter)
    dnat: int | None  # the KUBE-SEP DNAT rule's packet counter (None: no counter/rule)
    location: str  # path:line of the jump rule


@dataclass(frozen=True, slots=True)
class CascadeCounts:
    """One service's KUBE-SVC (cluster-wide) or KUBE-SVL (node-local) chain."""

    service: str
    chain: str
    scope: str  # "cluster" | "local"
    node_ports: tuple[int, ...]
    cluster_ips: tuple[str, ...]
    affinity_seconds: int | None
    endpoints: tuple[EndpointCount, ...]
    fit: Fit | None  # None: the capture has no counters for these rules
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CountersReport:
    node: str
    paths: tuple[str, ...]  # one capture, or (earlier, later)
    has_counters: bool
    cascades: tuple[CascadeCounts, ...]
    notes: tuple[str, ...] = ()

    @property
    def difference(self) -> bool:
        return len(self.paths) == 2


def _where(rule: Rule) -> str:
    o = rule.origin
    return f"{o.path}:{o.line}" if o is not None else "?"


def _picks(chain: Chain) -> list[Rule]:
    """The new-client jumps of a KUBE-SVC/SVL chain (what ``endpoint_shares`` counts)."""
    return [r for r in chain.rules if is_sep_jump(r.target) and needs_no_history(r.matches)]


def _dnat_rule(rs: Ruleset, sep: str) -> Rule | None:
    chain = rs.chain("nat", sep)
    return next((r for r in chain.rules if isinstance(r.target, Dnat)), None) if chain else None


def _table(rs: Ruleset) -> dict[Key, tuple[int, str]]:
    """Every counter this analysis reads, keyed by meaning: packets and path:line."""
    out: dict[Key, tuple[int, str]] = {}
    nat = rs.table("nat")
    if nat is None:
        return out
    for name, chain in nat.chains.items():
        if name.startswith(("KUBE-SVC-", "KUBE-SVL-")):
            for r in _picks(chain):
                if r.counters is not None and is_sep_jump(r.target):
                    out[(name, r.target.chain, "pick")] = (r.counters.packets, _where(r))
        elif name.startswith("KUBE-SEP-"):
            d = _dnat_rule(rs, name)
            if d is not None and d.counters is not None:
                out[(name, "DNAT", "dnat")] = (d.counters.packets, _where(d))
    return out


def has_counters(rs: Ruleset) -> bool:
    return any(r.counters is not None for t in rs.tables.values() for c in t.chains.values()
               for r in c.rules)  # fmt: skip


def difference(earlier: Ruleset, later: Ruleset) -> tuple[dict[Key, int], list[str]]:
    """later − earlier for every counter, matched by meaning; a counter that went down
    means a reset or another node: refused."""
    a, b = _table(earlier), _table(later)
    out: dict[Key, int] = {}
    notes: list[str] = []
    for key, (after, where) in sorted(b.items()):
        if key not in a:
            out[key] = after
            notes.append(f"{key[0]} → {key[1]} is not in {earlier.path}: counted from 0 ({where})")
            continue
        before, where_a = a[key]
        if after < before:
            what = f"{key[0]} DNAT rule" if key[2] == "dnat" else f"{key[0]} → {key[1]} jump"
            raise UsageError(
                f"counter went down: {what} {before} ({where_a}) → {after} "
                f"({where}). Counters only grow on one node between resets, so this is a "
                "reset (iptables -Z, or kube-proxy rewrote the chain) or a capture of "
                "another node; take both captures from the same node, the earlier first"
            )
        out[key] = after - before
    return out, notes


def _matches(svc: Service, port: int | None, name: str | None) -> bool:
    if port is not None:
        return any(f.port == port for f in svc.frontends)
    if name is not None:
        short = svc.name.split("/")[-1]
        return name in (svc.name, svc.name.split(":")[0], short, short.split(":")[0])
    return True


def count(
    rulesets: Sequence[Ruleset],
    node: str,
    *,
    port: int | None = None,
    service: str | None = None,
) -> CountersReport:
    """Counters of one capture (one ruleset) or the difference of two (earlier, later)."""
    if len(rulesets) not in (1, 2):
        raise ValueError("one capture, or two (earlier, later)")
    rs = rulesets[-1]
    paths = tuple(r.path for r in rulesets)
    with_counters = all(has_counters(r) for r in rulesets)
    notes: list[str] = []
    for r in rulesets:
        if not has_counters(r):
            notes.append(
                f"{r.path} has no counters (captured without iptables-save -c or "
                "iptables -L -v): nothing was observed — not zero connections"
            )
        if any(ROUNDED in n for n in r.notes):
            notes.append(f"{r.path}: counters rounded to K/M/G (list with -x for exact ones)")
    values: dict[Key, int] | None = None
    if with_counters:
        if len(rulesets) == 2:
            values, diff_notes = difference(rulesets[0], rs)
            notes += diff_notes
        else:
            values = {k: v for k, (v, _) in _table(rs).items()}
    svcs = [s for s in services(rs) if _matches(s, port, service)]
    if (port is not None or service is not None) and not svcs:
        want = f"--port {port}" if port is not None else f"--service {service}"
        raise UsageError(f"{want}: no such service in {rs.path}")
    all_notes = [r.notes for r in rulesets]
    cascades = [c for s in svcs for c in _cascades(rs, s, values, all_notes)]
    return CountersReport(node, paths, with_counters, tuple(cascades), tuple(notes))


def _cascades(
    rs: Ruleset,
    svc: Service,
    values: dict[Key, int] | None,
    rulesets_notes: Sequence[Sequence[str]] = (),
) -> Iterable[CascadeCounts]:
    for scope, prefix, eps in (
        ("cluster", "KUBE-SVC-", svc.endpoints),
        ("local", "KUBE-SVL-", svc.local_endpoints),
    ):
        chain = rs.chain("nat", prefix + svc.hash)
        if chain is None or not eps:
            continue
        jumps = {r.target.chain: r for r in _picks(chain) if is_sep_jump(r.target)}
        rows = []
        for ep in eps:
            rule = jumps.get(ep.chain)
            picked = values.get((chain.name, ep.chain, "pick")) if values is not None else None
            dnat = values.get((ep.chain, "DNAT", "dnat")) if values is not None else None
            where = _where(rule) if rule is not None else "?"
            rows.append(
                EndpointCount(ep.chain, ep.destination, ep.probability, picked, dnat, where)
            )
        notes: list[str] = []
        if scope == "local":
            notes.append(
                "externalTrafficPolicy/internalTrafficPolicy Local: this chain takes "
                "NodePort/external traffic on this node only"
            )
        if svc.affinity_seconds:
            notes.append(
                f"session affinity (ClientIP, {svc.affinity_seconds} s): repeat connections "
                "of a client skip these draws; the DNAT column counts them too"
            )
        if (
            not svc.affinity_seconds
            and not svc.local_endpoints
            and any(r.picked != r.dnat for r in rows if None not in (r.picked, r.dnat))
        ):
            notes.append(
                "the jump and DNAT counters disagree although every connection to these "
                f"pods passes both ({'/'.join(str(r.picked) for r in rows)} vs "
                f"{'/'.join(str(r.dnat) for r in rows)}): counters edited, or reset between rules"
            )
        judged = None
        rounded = any(ROUNDED in n for r in rulesets_notes for n in r)
        if rounded and any((r.picked or 0) >= UNITS_FROM for r in rows):
            notes.append(
                f"counters from {UNITS_FROM} up may be rounded (-L -v prints K/M/G "
                "without -x): not judged"
            )
            values_ok = False
        else:
            values_ok = True
        if values is not None and values_ok and all(r.picked is not None for r in rows):
            labels = [r.destination or r.sep_chain for r in rows]
            judged = fit(labels, [r.share for r in rows], [r.picked or 0 for r in rows])
        elif values is not None:
            notes.append("some jump rules have no counter: not judged")
        yield CascadeCounts(
            svc.name, chain.name, scope, svc.node_ports, svc.cluster_ips,
            svc.affinity_seconds, tuple(rows), judged, tuple(notes),
        )  # fmt: skip
