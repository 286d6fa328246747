"""``kpsim why``: what explains uneven load on one service, ranked.

nodes' captures ─▶ the service on each node ─▶ exact shares (primary node)
observed counts (--observed file, else the capture's counters) ─▶ Fit
─▶ causes (noise, affinity, traffic policy, cross-node, topology, reuse, conntrack),
   each explains / likely / possible / ruled out, with its reason
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from kpsim.errors import UsageError
from kpsim.explain import causes as c
from kpsim.explain.counters import count
from kpsim.explain.fit import Fit, fit
from kpsim.explain.observed import Target, assign, pods_by_ip, read_rows
from kpsim.kube.services import services
from kpsim.model import Ruleset
from kpsim.simulate.reuse import Rng, idle_chance, simulate_reuse

SCHEMA = "kpsim/why/v1"


@dataclass(frozen=True, slots=True)
class WhyReport:
    service: str
    node: str
    labels: tuple[str, ...]  # endpoints (ip:port), the primary node's KUBE-SVC order
    pods: tuple[str | None, ...]
    shares: tuple[Fraction, ...]
    n: int
    source: str  # observed counts in FILE | rule counters in PATH | nothing observed
    fit: Fit | None
    causes: tuple[c.Cause, ...]
    notes: tuple[str, ...] = ()


def targets(rs: Ruleset, labels: Sequence[str]) -> tuple[Target, ...]:
    pods = pods_by_ip(rs.metadata)
    return tuple(Target(lab, pods.get(lab.rpartition(":")[0])) for lab in labels)


def observed_fit(
    path: str, labels: Sequence[str], pods: Sequence[str | None], shares: Sequence[Fraction],
    unit: str = "requests",
) -> Fit:  # fmt: skip
    """A user's file of counts against exact shares (errors at the file's line)."""
    rows = read_rows(path)
    tgts = tuple(Target(lab, pod) for lab, pod in zip(labels, pods, strict=True))
    counts = assign(path, rows, tgts)
    return fit(labels, shares, counts, unit=unit)


def _pick(nodes: Sequence[tuple[str, Ruleset]], port: int | None, name: str | None,
          ) -> list[c.NodeService]:  # fmt: skip
    from kpsim.explain.counters import _matches

    found = []
    for node, rs in nodes:
        hits = [s for s in services(rs) if _matches(s, port, name)]
        if hits:
            found.append(c.NodeService(node, rs, hits[0]))
    if not found:
        want = f"--port {port}" if port is not None else f"--service {name}"
        raise UsageError(f"{want}: no such service on {', '.join(n for n, _ in nodes)}")
    return found


def why(
    nodes: Sequence[tuple[str, Ruleset]],
    rng: Rng,
    *,
    port: int | None = None,
    service: str | None = None,
    observed: str | None = None,
    n: int = 1_000,
    connections: int = 4,
    requests: int = 1_000,
) -> WhyReport:
    """Every cause of uneven load on the service, judged against the captures."""
    if port is None and service is None:
        raise UsageError("why needs --port N or --service NS/NAME")
    if n < 1 or connections < 1 or requests < 1:
        raise UsageError("-n, --connections and --requests must be ≥ 1")
    found = _pick(nodes, port, service)
    main = next((ns for ns in found if ns.service.endpoints), found[0])
    svc, rs = main.service, main.ruleset
    labels = tuple(e.destination or e.chain for e in svc.endpoints)
    shares = tuple(e.probability for e in svc.endpoints)
    tg = targets(rs, labels)
    pods = tuple(t.pod for t in tg)
    notes: list[str] = []
    judged: Fit | None = None
    source = "nothing observed: the ranges are for -n"
    if observed is not None:  # read even when nothing is split: a bad row is still an error
        judged = observed_fit(observed, labels, pods, shares)
        source = f"observed counts in {observed}"
    if len(svc.endpoints) < 2:
        return _nothing_to_split(main, found, (labels, pods, shares), judged, source, n)
    if observed is None:
        rep = count([rs], main.node, service=svc.name)
        cluster = next((x for x in rep.cascades if x.scope == "cluster" and x.fit), None)
        if cluster is not None and cluster.fit is not None and cluster.fit.n > 0:
            judged = cluster.fit
            source = f"rule counters in {rs.path}"
    if judged is not None and judged.n > 0:
        n = judged.n
    unfit = judged is not None and judged.consistent is False
    counted = source.startswith("rule counters")
    if counted and unfit:
        notes.append(
            "the rule counters do not fit the rules' own draws: the kernel draws exactly these "
            "shares, so the counters were edited or reset part-way, or the chain was rewritten "
            "with other probabilities or endpoints since they started counting (a kube-proxy "
            "resync); compare two captures taken apart (kpsim counters A B)"
        )
    run = simulate_reuse(shares, connections, requests, rng)
    idle = idle_chance(shares, connections)
    pod_node = _pod_nodes(rs)
    found_causes = [
        c.noise(judged, n, labels, shares),
        c.affinity(main, unfit),
        c.reuse(run, idle, labels, unfit and not counted, svc.protocol, counted),
        c.etp_local(found),
        c.topology(found, counted),
        c.cross_node(found, pod_node, {lab.rpartition(":")[0]: q
                                       for lab, q in zip(labels, shares, strict=True)}),
        c.conntrack(svc.protocol, unfit),
    ]  # fmt: skip
    return WhyReport(svc.name, main.node, labels, pods, shares, n, source, judged,
                     c.rank(found_causes), tuple(notes))  # fmt: skip


def _nothing_to_split(
    main: c.NodeService,
    found: Sequence[c.NodeService],
    endpoints: tuple[tuple[str, ...], tuple[str | None, ...], tuple[Fraction, ...]],
    judged: Fit | None,
    source: str,
    n: int,
) -> WhyReport:
    """No endpoint, or one: the rules split nothing on this node, so no cause of an uneven
    split applies; only nodes listing different endpoints can (topology, a lagging node)."""
    svc = main.service
    if not svc.captured:
        what = "its chains are not (wholly) in the capture: kpsim cannot tell its endpoints"
    elif not svc.endpoints:
        what = "no endpoints: kube-proxy rejects its connections, nothing is split"
    else:
        what = f"one endpoint ({endpoints[0][0]}): every connection goes there, nothing is split"
    labels, pods, shares = endpoints
    note = f"{svc.name} on {main.node}: {what}"
    n = judged.n if judged is not None else n
    return WhyReport(svc.name, main.node, labels, pods, shares, n, source, judged,
                     (c.topology(found),), (note,))  # fmt: skip


def _pod_nodes(rs: Ruleset) -> dict[str, str]:
    pods = rs.metadata.get("pods")
    out: dict[str, str] = {}
    if isinstance(pods, list):
        for p in pods:
            if isinstance(p, dict) and isinstance(p.get("ip"), str) and p.get("node"):
                out[p["ip"]] = str(p["node"])
    return out
