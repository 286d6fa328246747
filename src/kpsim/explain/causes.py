"""The causes of uneven load, each judged against the capture: explains / likely /
possible / ruled out (with the reason and the line behind it).

Each cause carries the Kubernetes documentation term people search for, and its page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from kpsim.explain.fit import Fit
from kpsim.explain.terms import DOCS
from kpsim.kube.services import Service
from kpsim.model import Jump, RecentCommand, RecentMatch, Rule, Ruleset
from kpsim.simulate.reuse import ReuseRun

Status = Literal["explains", "likely", "possible", "ruled-out"]
#: Strongest first: the ranking of causes.
STATUS_ORDER: tuple[Status, ...] = ("explains", "likely", "possible", "ruled-out")


@dataclass(frozen=True, slots=True)
class Cause:
    key: str
    title: str
    status: Status
    text: str
    evidence: tuple[str, ...] = ()  # path:line of the rules behind the judgement
    numbers: Mapping[str, object] = field(default_factory=dict)

    @property
    def doc_term(self) -> str:
        return DOCS[self.key][0]

    @property
    def doc_url(self) -> str:
        return DOCS[self.key][1]


@dataclass(frozen=True, slots=True)
class NodeService:
    """The service as one node's capture lays it out."""

    node: str
    ruleset: Ruleset
    service: Service


def _short(node: str) -> str:
    """ip-10-11-3-14.ap-northeast-2.compute.internal → ip-10-11-3-14 (IPs keep their dots)."""
    head = node.split(".")[0]
    return node if head.isdigit() else head


def where(rule: Rule | None) -> str:
    o = rule.origin if rule is not None else None
    return f"{o.path}:{o.line}" if o is not None else ""


def _chain_rules(ns: NodeService, *prefixes: str) -> list[Rule]:
    out: list[Rule] = []
    for p in prefixes:
        chain = ns.ruleset.chain("nat", p + ns.service.hash)
        out += chain.rules if chain else ()
    return out


def noise(fit: Fit | None, n: int, labels: Sequence[str], shares: Sequence[Fraction]) -> Cause:
    from kpsim.explain.fit import share_range

    ranges = ", ".join(
        f"{lab} {float(q):.1%} ± {(share_range(q, n)[1] - share_range(q, n)[0]) / 2:.1%}"
        for lab, q in zip(labels, shares, strict=True)
        if q > 0
    )
    head = f"at n = {n} each share lands, 95% of the time, within: {ranges}"
    if fit is None or fit.consistent is None:
        return Cause(
            "noise",
            "sampling noise",
            "possible",
            head + "; a split inside those ranges is chance, not the rules",
            numbers={"n": n},
        )
    if fit.consistent:
        return Cause(
            "noise",
            "sampling noise",
            "explains",
            f"{head}; what was observed fits: {fit.verdict}",
            numbers={"n": n, "p_value": fit.p_value},
        )
    p = f"{fit.p_value:.3g}" if fit.p_value is not None else "—"
    return Cause(
        "noise",
        "sampling noise",
        "ruled-out",
        f"{head}; chance alone does not explain what was observed (p = {p} < 1%, "
        f"n = {fit.n}: the verdict above)",
        numbers={"n": n, "p_value": fit.p_value},
    )


def affinity(ns: NodeService, unfit: bool) -> Cause:
    rules = _chain_rules(ns, "KUBE-SVC-", "KUBE-SVL-")
    checks = [
        (r, m)
        for r in rules
        for m in r.matches
        if isinstance(m, RecentMatch) and m.command is RecentCommand.RCHECK
    ]
    if not checks:
        chain = f"KUBE-SVC-{ns.service.hash}"
        return Cause(
            "affinity",
            "session affinity",
            "ruled-out",
            f"no `-m recent --rcheck` rule in {chain} on {ns.node}: sessionAffinity "
            "is None, every connection is drawn afresh",
        )
    rule, m = checks[-1]
    secs = m.seconds
    hours = f" ({secs / 3600:g} h)" if secs and secs >= 3600 else ""
    text = (
        f"sessionAffinity ClientIP: a client's connections all go to the pod its first one "
        f"drew, for {secs} s{hours} after its last connection (`-m recent --rcheck --seconds "
        f"{secs}`); load then follows clients, not connections — a few busy clients (or many "
        "behind one NAT or proxy address) make it as uneven as they are"
    )
    return Cause(
        "affinity",
        "session affinity",
        "likely" if unfit else "possible",
        text,
        (where(rule),),
        {"seconds": secs},
    )


def no_local_drop(ns: NodeService) -> Rule | None:
    """kube-proxy's filter rule that drops a Local-policy service's external traffic on a
    node without a local endpoint ("… has no local endpoints")."""
    table = ns.ruleset.table("filter")
    want = ns.service.name + " has no local endpoints"
    for chain in table.chains.values() if table else ():
        for r in chain.rules:
            if r.comment == want:
                return r
    return None


def is_local(ns: NodeService) -> bool:
    return ns.service.traffic_policy_local or no_local_drop(ns) is not None


def etp_local(nodes: Sequence[NodeService]) -> Cause:
    local = [ns for ns in nodes if is_local(ns)]
    if not local:
        return Cause(
            "etp-local",
            "externalTrafficPolicy Local",
            "ruled-out",
            "no KUBE-SVL/KUBE-XLB chain for this service on "
            f"{', '.join(ns.node for ns in nodes)}: traffic policy Cluster, every node "
            "spreads over every endpoint",
        )
    keep = [ns for ns in local if ns.service.local_endpoints]
    drop = [ns for ns in local if not ns.service.local_endpoints]
    parts = []
    if keep:
        parts.append(
            "keep the client IP and send only to their own pods: "
            + ", ".join(f"{_short(ns.node)} ({len(ns.service.local_endpoints)})" for ns in keep)
        )
    if drop:
        parts.append("have no local pod and DROP it: " + ", ".join(_short(ns.node) for ns in drop))
    text = (
        "traffic policy Local: external (NodePort/LoadBalancer) traffic stays on the node it "
        "entered; nodes " + "; nodes ".join(parts) + ". Pods then get what their node gets "
        "(a node with one pod sends that pod everything), so a load balancer that spreads "
        "evenly over nodes makes pod load uneven"
    )
    ev = tuple(where(no_local_drop(ns)) for ns in drop) + tuple(
        where(chain.rules[0])
        for ns in keep
        if (chain := ns.ruleset.chain("nat", "KUBE-SVL-" + ns.service.hash)) and chain.rules
    )
    return Cause(
        "etp-local",
        "externalTrafficPolicy Local",
        "likely",
        text,
        ev,
        {"keep": [ns.node for ns in keep], "drop": [ns.node for ns in drop]},
    )


def cross_node(
    nodes: Sequence[NodeService], pod_node: Mapping[str, str], shares: Mapping[str, Fraction]
) -> Cause:
    """NodePort traffic that enters a node without the chosen pod: forwarded, SNATed."""
    if not any(ns.service.node_ports for ns in nodes):
        return Cause(
            "cross-node",
            "cross-node hops",
            "ruled-out",
            "no NodePort frontend: no traffic enters a node to be forwarded to "
            "another (pod-to-ClusterIP traffic is routed, not masqueraded)",
        )
    if all(is_local(ns) for ns in nodes):
        return Cause(
            "cross-node",
            "cross-node hops",
            "ruled-out",
            "traffic policy Local on every loaded node: external NodePort traffic is "
            "served on the node it entered (or dropped there), never forwarded, and "
            "keeps the client IP",
        )
    masq = [
        r
        for ns in nodes
        for r in _chain_rules(ns, "KUBE-EXT-")
        if isinstance(r.target, Jump) and r.target.chain == "KUBE-MARK-MASQ"
    ]
    per_node: dict[str, float] = {}
    for ns in nodes:
        if not pod_node:
            break
        short = ns.node.split(".")[0]
        away = sum(
            (q for ip, q in shares.items() if pod_node.get(ip, "").split(".")[0] != short),
            Fraction(0),
        )
        per_node[ns.node] = float(away)
    known = (
        "; share of connections served on another node: "
        + ", ".join(f"{n.split('.')[0]} {v:.0%}" for n, v in per_node.items())
        if per_node
        else "; which endpoints run on which node is not in the capture's metadata"
    )
    text = (
        "a NodePort connection that enters a node without the pod it draws is forwarded to the "
        "pod's node and masqueraded (SNAT to the node's address): the pod sees node IPs, not "
        "clients, and per-client logs or limits look uneven; the split itself does not change"
        + known
    )
    return Cause(
        "cross-node",
        "cross-node hops",
        "possible",
        text,
        tuple(where(r) for r in masq[:3]),
        {"cross_node_share": per_node},
    )


def topology(nodes: Sequence[NodeService], connections_counted: bool = False) -> Cause:
    if connections_counted:
        return Cause(
            "topology",
            "topology-aware routing",
            "ruled-out",
            "the rule counters count this chain's own draws: which endpoints the "
            "chain lists (a zone's subset or all) is already in the exact shares",
        )
    sets = {ns.node: sorted(e.destination or e.chain for e in ns.service.endpoints) for ns in nodes}
    distinct = {tuple(v) for v in sets.values()}
    if len(nodes) < 2:
        return Cause(
            "topology",
            "topology-aware routing",
            "possible",
            "one node loaded: with topology hints or trafficDistribution PreferClose "
            "kube-proxy lists only same-zone endpoints per node; load more nodes to "
            "compare",
        )
    if len(distinct) == 1:
        return Cause(
            "topology",
            "topology-aware routing",
            "ruled-out",
            f"every loaded node ({len(nodes)}) lists the same "
            f"{len(next(iter(distinct)))} endpoints: no per-zone subsets",
        )
    text = (
        "nodes list different endpoints for this service: "
        + "; ".join(f"{n.split('.')[0]}: {', '.join(v) or 'none'}" for n, v in sets.items())
        + " (topology hints / trafficDistribution, or a node lagging behind)"
    )
    return Cause("topology", "topology-aware routing", "likely", text)


def reuse(
    run: ReuseRun,
    idle: Fraction,
    labels: Sequence[str],
    unfit: bool,
    protocol: str | None,
    connections_counted: bool = False,
) -> Cause:
    total = run.connections * run.requests
    shares = ", ".join(
        f"{lab} {c / total:.0%}" for lab, c in zip(labels, run.request_counts, strict=True)
    )
    why = (
        "kube-proxy picks a pod per conntrack flow, not per datagram: a UDP client that keeps "
        "one socket (a resolver, a metrics agent) sends every datagram to the pod its first "
        "one drew, for as long as traffic keeps the conntrack entry alive. "
        if protocol == "udp"
        else "kube-proxy picks a pod per connection, not per request: HTTP keep-alive, "
        "HTTP/2, gRPC and connection pools send every request down the connection they "
        "opened. "
    )
    flows, units = ("flows", "datagrams") if protocol == "udp" else ("connections", "requests")
    text = (
        why + f"Example, {run.connections} {flows} × {run.requests:,} {units}: one draw gave "
        f"{shares}; some pod gets no {units[:-1]} at all with chance {_chance(idle)} "
        f"(exact; {run.trials_with_idle_pod} of {run.trials} simulated runs), and the busiest "
        f"pod takes {run.mean_max_share:.0%} of {units} on average"
    )
    if connections_counted:
        return Cause(
            "reuse",
            "connection reuse",
            "ruled-out",
            "these counts are connections (rule counters), and kube-proxy draws once "
            "per connection: reuse makes *request* counts uneven, not these. " + text,
        )
    if protocol == "udp":
        status: Status = "possible"
    else:
        status = "likely" if unfit else "possible"
    return Cause(
        "reuse",
        "connection reuse",
        status,
        text,
        numbers={
            "connections": run.connections,
            "requests": run.requests,
            "request_counts": list(run.request_counts),
            "idle_chance": str(idle),
            "idle_trials": run.trials_with_idle_pod,
            "trials": run.trials,
            "mean_max_share": round(run.mean_max_share, 6),
        },
    )


def _chance(f: Fraction) -> str:
    """5/9 as "5/9 (55.6%)"; kube-proxy's near-thirds as "55.6% (≈ 5/9)"."""
    if f.denominator <= 1000:
        return f"{f} ({float(f):.1%})"
    near = f.limit_denominator(1000)
    if abs(near - f) < Fraction(1, 10**6):
        return f"{float(f):.1%} (≈ {near})"
    return f"{float(f):.1%}"


def conntrack(protocol: str | None, unfit: bool) -> Cause:
    if protocol != "udp":
        return Cause(
            "conntrack",
            "stale conntrack entries",
            "ruled-out",
            f"{(protocol or 'tcp').upper()} service: a connection to a removed pod "
            "breaks and the client reconnects through the rules; stale entries "
            "pinning traffic to a dead pod are a UDP problem",
        )
    return Cause(
        "conntrack",
        "stale conntrack entries",
        "likely" if unfit else "possible",
        "UDP: a conntrack entry keeps a client's flow on the pod it first drew for as "
        "long as packets keep coming (the entry's timeout restarts with each), even "
        "after the pod is gone unless kube-proxy clears it — a steady sender stays "
        "on one pod (or on a dead one)",
    )


def rank(causes: Sequence[Cause]) -> tuple[Cause, ...]:
    order = {s: i for i, s in enumerate(STATUS_ORDER)}
    return tuple(sorted(causes, key=lambda c: order[c.status]))  # stable: given order breaks ties
