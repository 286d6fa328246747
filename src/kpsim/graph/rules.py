"""What one rule means in the drawing: its conditions as text, the leaf it ends in,
and its exact share of a ``statistic`` cascade.

    -p tcp -m tcp --dport 30080 -j KUBE-EXT-H   ─▶ conditions "-p tcp --dport 30080"
    -j DNAT --to-destination 10.0.0.5:80        ─▶ leaf (DNAT, "DNAT 10.0.0.5:80")
    KUBE-SVC-H rule i (statistic p_i)           ─▶ share p_i·Π(1 − p_j)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction

from kpsim.graph.model import NodeKind
from kpsim.kube import services as kube
from kpsim.model import (
    Address,
    AddrTypeMatch,
    CommentMatch,
    ConnmarkMatch,
    ConntrackMatch,
    Dnat,
    IPRangeMatch,
    Jump,
    MarkMatch,
    Masquerade,
    Match,
    MultiportMatch,
    NfacctMatch,
    OpaqueMatch,
    OwnerMatch,
    PhysdevMatch,
    PortMatch,
    PortRange,
    RecentMatch,
    Redirect,
    Reject,
    Rule,
    Ruleset,
    SetMatch,
    Snat,
    Standard,
    StatisticMatch,
    StatisticMode,
    Verdict,
)


def _addr(flag: str, a: Address | None) -> list[str]:
    if a is None:
        return []
    text = str(a.network) if a.network is not None else (a.unresolved or "?")
    return [f"{'! ' if a.negated else ''}{flag} {text}"]


def _ports(ranges: Iterable[PortRange]) -> str:
    return ",".join(str(r) for r in ranges)


def _match_text(m: Match) -> str | None:
    """A few words per match; comments are kept apart (GraphEdge.comment)."""
    neg = "! " if getattr(m, "negated", False) else ""
    if isinstance(m, CommentMatch):
        return None
    if isinstance(m, PortMatch):
        parts = []
        if m.dport is not None:
            parts.append(f"{'! ' if m.dport_negated else ''}--dport {m.dport}")
        if m.sport is not None:
            parts.append(f"{'! ' if m.sport_negated else ''}--sport {m.sport}")
        parts.extend(f"--{o.name} {' '.join(o.args)}".strip() for o in m.extra)
        return " ".join(parts) or None
    if isinstance(m, MultiportMatch):
        return f"{neg}--{m.direction} {_ports(m.ports)}"
    if isinstance(m, StatisticMatch):
        if m.mode is StatisticMode.RANDOM:
            return f"{neg}statistic {m.printed}"
        return f"{neg}statistic every {m.every}"
    if isinstance(m, RecentMatch):
        secs = f" {m.seconds}s" if m.seconds is not None else ""
        return f"{neg}recent {m.command.value} {m.name}{secs}"
    if isinstance(m, AddrTypeMatch):
        parts = []
        if m.src_type:
            parts.append(f"{'! ' if m.src_negated else ''}src {','.join(m.src_type)}")
        if m.dst_type:
            parts.append(f"{'! ' if m.dst_negated else ''}dst {','.join(m.dst_type)}")
        return "addrtype " + " ".join(parts)
    if isinstance(m, MarkMatch | ConnmarkMatch):
        word = "mark" if isinstance(m, MarkMatch) else "connmark"
        return f"{neg}{word} {m.value:#x}/{m.mask:#x}"
    if isinstance(m, ConntrackMatch):
        return f"{neg}ctstate {','.join(m.ctstate)}" if m.ctstate else m.module
    if isinstance(m, SetMatch):
        return f"{neg}set {m.name} {','.join(m.flags)}"
    if isinstance(m, PhysdevMatch):
        return "physdev " + " ".join(o.name for o in m.options)
    if isinstance(m, NfacctMatch):
        return f"nfacct {m.name}"
    if isinstance(m, IPRangeMatch):
        sides = [
            f"{'! ' if neg else ''}{side} {rng[0]}-{rng[1]}"
            for side, rng, neg in (("src", m.src, m.src_negated), ("dst", m.dst, m.dst_negated))
            if rng is not None
        ]
        return "iprange " + " ".join(sides)
    if isinstance(m, OwnerMatch):
        return "owner " + " ".join(("! " if o.negated else "") + o.name for o in m.options)
    if isinstance(m, OpaqueMatch):
        return m.text or f"-m {m.module}"
    return None


def conditions(rule: Rule) -> str:
    """The rule's conditions in iptables words, e.g. ``-p tcp --dport 30080``."""
    parts = [*_addr("-s", rule.source), *_addr("-d", rule.destination)]
    if rule.protocol is not None:
        parts.append(f"{'! ' if rule.protocol.negated else ''}-p {rule.protocol.name}")
    for flag, iface in (("-i", rule.in_interface), ("-o", rule.out_interface)):
        if iface is not None:
            parts.append(f"{'! ' if iface.negated else ''}{flag} {iface.name}")
    if rule.fragment is not None:
        parts.append("-f" if rule.fragment else "! -f")
    parts.extend(t for m in rule.matches if (t := _match_text(m)))
    return " ".join(parts)


def _leaf(rule: Rule) -> tuple[NodeKind, str, str | None] | None:
    """(kind, label, destination) of a rule that ends the walk, or None."""
    t = rule.target
    if isinstance(t, Dnat):
        dest = ",".join(str(r) for r in t.to)
        return NodeKind.DNAT, f"DNAT {dest}".strip(), dest or None
    if isinstance(t, Snat):
        dest = ",".join(str(r) for r in t.to)
        flag = " --random-fully" if t.random_fully else ""
        return NodeKind.SNAT, f"SNAT {dest}{flag}", dest or None
    if isinstance(t, Masquerade):
        ports = f" --to-ports {t.to_ports}" if t.to_ports else ""
        flag = " --random-fully" if t.random_fully else ""
        return NodeKind.MASQUERADE, f"MASQUERADE{ports}{flag}", None
    if isinstance(t, Redirect):
        to = str(t.to_ports) if t.to_ports else None
        return NodeKind.REDIRECT, f"REDIRECT {to or ''}".strip(), to
    if isinstance(t, Reject):
        return NodeKind.REJECT, f"REJECT {t.with_ or ''}".strip(), None
    if isinstance(t, Standard) and t.verdict in (Verdict.ACCEPT, Verdict.DROP):
        kind = NodeKind.ACCEPT if t.verdict is Verdict.ACCEPT else NodeKind.DROP
        return kind, t.verdict.value, None
    return None


# ---------------------------------------------------------------- probabilities


def _terminating(ruleset: Ruleset, table: str) -> set[str]:
    """Chains from which a packet can end (a leaf reachable). A jump to any other chain
    (KUBE-MARK-MASQ: only MARK) always returns, so it takes no share of a cascade."""
    t = ruleset.table(table)
    if t is None:
        return set()
    ends = {n for n, c in t.chains.items() if any(_leaf(r) for r in c.rules)}
    changed = True
    while changed:  # fixpoint over jumps; chain graphs are shallow
        changed = False
        for name, chain in t.chains.items():
            if name not in ends and any(
                isinstance(r.target, Jump) and r.target.chain in ends for r in chain.rules
            ):
                ends.add(name)
                changed = True
    return ends


def cascade_shares(rules: Sequence[Rule], decisive: set[str]) -> dict[int, Fraction]:
    """Rule number → share of the chain's entrants taking it, from the first
    ``statistic`` rule on: p_i·Π(1 − p_j) (kube.cascade); a rule without statistic
    takes all that is left. Affinity (``recent``) rules and jumps that return are
    skipped, as kube.endpoint_shares does; nth rules count at their long-run share."""
    first = next(
        (i for i, r in enumerate(rules) if any(isinstance(m, StatisticMatch) for m in r.matches)),
        len(rules),
    )

    def counted(rule: Rule) -> bool:
        if any(isinstance(m, RecentMatch) for m in rule.matches):
            return False
        t = rule.target
        return _leaf(rule) is not None or (isinstance(t, Jump) and t.chain in decisive)

    return {r.number: p for r, p in kube.cascade(rules[first:], counted, nth=True)}
