"""Findings about kube-proxy's services on one node (either proxy mode: what the rules
mean comes from ``kube.policy``): no endpoints, ETP/ITP Local black
holes, cascades that do not give equal shares or do not add up to 1, an endpoint twice.

Shares are the kernel's exact ones (``kube.chance``: thresholds over 2^31), so a
cascade kube-proxy wrote (0.33333333349, 0.5, then no statistic) is equal to within its
rounding, and a hand edit or a stale sync is not.
"""

from __future__ import annotations

from fractions import Fraction

from kpsim.kube.policy import Layout, LocalDrop, local_drops, no_endpoints_verdict
from kpsim.kube.services import Service
from kpsim.lint.findings import Finding, Severity, where
from kpsim.model import Rule, Ruleset

#: How far an endpoint's share may sit from 1/n and still be kube-proxy's own rounding:
#: today it prints probabilities to 11 decimals (shares within ~1e-9 of 1/n), older
#: releases to 5 (0.33332999982: 1/3 ± 4e-6, corpus dump 007); a hand edit or a cascade
#: left from another endpoint count moves a share by far more.
TOLERANCE = Fraction(1, 10**4)


def no_endpoints(
    node: str, svc: Service, ruleset: Ruleset, layout: Layout | None = None
) -> list[Finding]:
    """kube-proxy's own no-endpoints layout (iptables' filter REJECT, nftables'
    @no-endpoint-* elements), or a whole service chain with no endpoint (pointed at by the
    chain's own line)."""
    if not svc.no_endpoints:
        return []
    rule = svc.frontends[0].rule if svc.frontends else None
    fronts = ", ".join(_front(svc, i) for i in range(len(svc.frontends))) or "its frontends"
    verdict = no_endpoints_verdict(rule)
    if verdict is not None:
        msg = f"no endpoints: kube-proxy {verdict}s {fronts} (no ready pod backs this service)"
        return [Finding(Severity.WARNING, "no-endpoints", node, svc.name, msg, where(rule))]
    lay = layout or Layout(ruleset)
    chains = lay.chains(svc, "cluster") + lay.chains(svc, "local")
    chain = chains[0] if chains else None
    if lay.nft:
        name = chain.name if chain else f"service-{svc.hash}-…"
        msg = f"no endpoints: {name} picks no endpoint; {fronts} lead nowhere"
    else:
        name = chain.name if chain else f"KUBE-SVC-{svc.hash}"
        msg = f"no endpoints: {name} jumps to no endpoint; {fronts} lead nowhere"
    loc = where(chain.origin) if chain is not None and chain.origin else where(rule)
    return [Finding(Severity.WARNING, "no-endpoints", node, svc.name, msg, loc)]


def _front(svc: Service, i: int) -> str:
    f = svc.frontends[i]
    if f.address is None:
        return f"NodePort {f.port}" if f.port else "node ports"
    return f"{f.address}:{f.port}" if f.port else f.address


def black_hole(node: str, drop: LocalDrop, serving: list[str]) -> Finding:
    policy = "externalTrafficPolicy" if drop.external else "internalTrafficPolicy"
    others = (
        f"served on {', '.join(serving)}"
        if serving
        else "no other node given serves it locally either"
    )
    msg = f"{policy}: Local black hole: {drop.front} is DROPped on this node (no local endpoint)"
    msg += f"; {others}"
    return Finding(Severity.WARNING, "local-black-hole", node, drop.service, msg, where(drop.rule))


def cascades(
    node: str, svc: Service, ruleset: Ruleset, layout: Layout | None = None
) -> list[Finding]:
    """The service's endpoint choices (KUBE-SVC / KUBE-SVL cascades, service- / local-
    numgen maps): equal shares, summing to 1 (whole chains only)."""
    lay = layout or Layout(ruleset)
    out: list[Finding] = []
    cut = {c for _, c in ruleset.capture.limits}
    for chain in lay.chains(svc, "cluster") + lay.chains(svc, "local"):
        if chain.name not in cut:
            out += _cascade(node, svc.name, chain.name, lay.picks(chain), lay.nft)
    return out


def _cascade(
    node: str, service: str, name: str, shares: list[tuple[Rule, Fraction]], nft: bool
) -> list[Finding]:
    n = len(shares)
    if n == 0:
        return []
    first = where(shares[0][0])
    total = sum((s for _, s in shares), Fraction(0))
    out: list[Finding] = []
    if total != 1:
        rest = 1 - total
        why = (
            "its numgen map lacks a bucket" if nft else "the last endpoint's rule has a probability"
        )
        msg = (
            f"{name}: the endpoint cascade gives {_pct(total)} in all; {_pct(rest)} of "
            f"new connections fall through it ({why})"
        )
        out.append(Finding(Severity.WARNING, "cascade-falls-through", node, service, msg, first))
    intended = total / n
    worst = max(abs(s - intended) for _, s in shares)
    if worst > TOLERANCE:
        listed = " / ".join(_pct(s) for _, s in shares)
        msg = (
            f"{name}: {n} endpoints get {listed}, not {_pct(intended)} each "
            "(a hand edit or a stale sync: kube-proxy writes equal shares)"
        )
        out.append(Finding(Severity.WARNING, "uneven-cascade", node, service, msg, first))
    return out


def duplicates(
    node: str, svc: Service, ruleset: Ruleset, layout: Layout | None = None
) -> list[Finding]:
    """The same pod address (or endpoint chain) twice in one service's cascade: it gets
    two shares, so the service is uneven by construction."""
    lay = layout or Layout(ruleset)
    chains = lay.chains(svc, "cluster")
    rules = [r for r, _ in lay.picks(chains[0])] if chains else []
    name = chains[0].name if chains else f"KUBE-SVC-{svc.hash}"
    seen: dict[str, int] = {}
    out = []
    for i, e in enumerate(svc.endpoints):
        key = e.destination or e.chain
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            n = sum(1 for x in svc.endpoints if (x.destination or x.chain) == key)
            msg = f"endpoint {key} appears {n} times in {name}"
            rule = rules[i] if i < len(rules) else None
            out.append(
                Finding(Severity.WARNING, "duplicate-endpoint", node, svc.name, msg, where(rule))
            )
    return out


def _pct(x: Fraction) -> str:
    return f"{float(x) * 100:.4f}%"


__all__ = ["LocalDrop", "black_hole", "cascades", "duplicates", "local_drops", "no_endpoints"]
