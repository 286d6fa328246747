"""What a node's capture says about each service, as keys a diff can match: frontends
as ``kind address:port/proto``, endpoints as pod address → exact share, policies,
affinity, and the service's masquerade rules — no text, no line numbers.

    Ruleset ─ node_state ─▶ NodeState(services={("ns/svc:port", "tcp"): ServiceState(…)})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from kpsim.formats.iptables.write import render_rule
from kpsim.kube.services import Endpoint, Service, services
from kpsim.lint.rules import partial
from kpsim.lint.services import local_drops
from kpsim.model import Capture, CommentMatch, Jump, Rule, Ruleset

ServiceKey = tuple[str, str]  # (name, protocol)
#: A service's own chains whose KUBE-MARK-MASQ rules say which clients are masqueraded,
#: by the traffic they see (KUBE-SVL replaces KUBE-SVC under internalTrafficPolicy Local).
_OWN = {
    "KUBE-SVC-": "cluster IP",
    "KUBE-SVL-": "cluster IP",
    "KUBE-EXT-": "external",
    "KUBE-XLB-": "external",
    "KUBE-FW-": "load balancer",
}


@dataclass(frozen=True, slots=True)
class ServiceState:
    name: str
    protocol: str
    hash: str  # kube-proxy's chain suffix: matches a service a cut capture shows unnamed
    frontends: frozenset[str]
    endpoints: Mapping[str, Fraction]  # pod address (or chain) → share for a new client
    local_endpoints: frozenset[str]
    external_local: bool  # externalTrafficPolicy Local: KUBE-EXT → KUBE-SVL, KUBE-XLB, a drop
    internal_local: bool  # internalTrafficPolicy Local: cluster IP → KUBE-SVL, or a drop
    affinity_seconds: int | None
    masquerade: frozenset[str]  # "cluster IP: ! -s 10.0.0.0/8 …", "external: every packet"
    no_endpoints: bool
    captured: bool
    location: str | None  # the first frontend's file:line, to point at


@dataclass(frozen=True, slots=True)
class NodeState:
    node: str
    path: str
    services: Mapping[ServiceKey, ServiceState]
    capture: Capture = field(default_factory=Capture)
    partial: bool = False  # cut, elided or not all tables: a service may be out of sight


def node_state(node: str, ruleset: Ruleset) -> NodeState:
    drops = local_drops(ruleset)
    out: dict[ServiceKey, ServiceState] = {}
    for svc in services(ruleset):
        key = (svc.name, svc.protocol or "")
        dropped = {d.external for d in drops if d.service == svc.name}
        out[key] = _state(svc, ruleset, dropped)
    return NodeState(node, ruleset.path, out, ruleset.capture, partial(ruleset))


def _local(svc: Service, ruleset: Ruleset, dropped: set[bool]) -> tuple[bool, bool]:
    """(external, internal) traffic policy Local, from where the chains lead: kube-proxy
    lays a Local policy out as a jump to KUBE-SVL (KUBE-XLB before 1.24), or as a DROP
    when the node has no local endpoint."""
    svl = "KUBE-SVL-" + svc.hash
    ext = ruleset.chain("nat", "KUBE-EXT-" + svc.hash)
    external = (
        True in dropped
        or ruleset.chain("nat", "KUBE-XLB-" + svc.hash) is not None
        or (ext is not None and any(_jumps(r, svl) for r in ext.rules))
    )
    internal = False in dropped or any(
        f.kind == "cluster-ip" and _jumps(f.rule, svl) for f in svc.frontends
    )
    return external, internal


def _jumps(rule: Rule, chain: str) -> bool:
    return isinstance(rule.target, Jump) and rule.target.chain == chain


def _state(svc: Service, ruleset: Ruleset, dropped: set[bool]) -> ServiceState:
    external, internal = _local(svc, ruleset, dropped)
    rule = svc.frontends[0].rule if svc.frontends else None
    loc = str(rule.origin) if rule is not None and rule.origin is not None else None
    return ServiceState(
        name=svc.name,
        protocol=svc.protocol or "",
        hash=svc.hash,
        frontends=frozenset(_front(f.kind, f.address, f.port, f.protocol) for f in svc.frontends),
        endpoints=_shares(svc.endpoints),
        local_endpoints=frozenset(_key(e) for e in svc.local_endpoints),
        external_local=external,
        internal_local=internal,
        affinity_seconds=svc.affinity_seconds,
        masquerade=_masquerade(svc, ruleset),
        no_endpoints=svc.no_endpoints,
        captured=svc.captured,
        location=loc,
    )


def _front(kind: str, addr: str | None, port: int | None, proto: str | None) -> str:
    where = f"{addr or '*'}:{port}" if port else addr or "*"
    return f"{kind} {where}/{proto or 'any'}"


def _key(e: Endpoint) -> str:
    return e.destination or e.chain


def _shares(endpoints: tuple[Endpoint, ...]) -> dict[str, Fraction]:
    """Shares per pod address; one address twice (a duplicate) gets the sum of both."""
    out: dict[str, Fraction] = {}
    for e in endpoints:
        out[_key(e)] = out.get(_key(e), Fraction(0)) + e.probability
    return out


def _masquerade(svc: Service, ruleset: Ruleset) -> frozenset[str]:
    out: set[str] = set()
    for prefix, traffic in _OWN.items():
        chain = ruleset.chain("nat", prefix + svc.hash)
        for rule in chain.rules if chain else ():
            t = rule.target
            if isinstance(t, Jump) and t.chain == "KUBE-MARK-MASQ":
                out.add(f"{traffic}: {_conditions(rule)}")
    return frozenset(out)


def _conditions(rule: Rule) -> str:
    """The rule's conditions in iptables-save words, without its comment and chain."""
    bare = Rule(
        rule.table, "X", 0, None, rule.source, rule.destination, rule.protocol,
        rule.in_interface, rule.out_interface, rule.fragment,
        tuple(m for m in rule.matches if not isinstance(m, CommentMatch)),
    )  # fmt: skip
    return render_rule(bare).removeprefix("-A X").strip() or "every packet"
