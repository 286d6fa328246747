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
#: A service's own chains whose KUBE-MARK-MASQ rules say which clients are masqueraded.
_OWN = ("KUBE-SVC-", "KUBE-EXT-", "KUBE-FW-", "KUBE-XLB-")


@dataclass(frozen=True, slots=True)
class ServiceState:
    name: str
    protocol: str
    hash: str  # kube-proxy's chain suffix: matches a service a cut capture shows unnamed
    frontends: frozenset[str]
    endpoints: Mapping[str, Fraction]  # pod address (or chain) → share for a new client
    local_endpoints: frozenset[str]
    policy_local: bool  # a KUBE-SVL / KUBE-XLB chain, or a "has no local endpoints" drop
    affinity_seconds: int | None
    masquerade: frozenset[str]  # "KUBE-SVC: ! -s 10.0.0.0/8" …
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
    dropped = {d.service for d in local_drops(ruleset)}
    out: dict[ServiceKey, ServiceState] = {}
    for svc in services(ruleset):
        key = (svc.name, svc.protocol or "")
        out[key] = _state(svc, ruleset, svc.name in dropped)
    return NodeState(node, ruleset.path, out, ruleset.capture, partial(ruleset))


def _state(svc: Service, ruleset: Ruleset, dropped: bool) -> ServiceState:
    rule = svc.frontends[0].rule if svc.frontends else None
    loc = str(rule.origin) if rule is not None and rule.origin is not None else None
    return ServiceState(
        name=svc.name,
        protocol=svc.protocol or "",
        hash=svc.hash,
        frontends=frozenset(_front(f.kind, f.address, f.port, f.protocol) for f in svc.frontends),
        endpoints=_shares(svc.endpoints),
        local_endpoints=frozenset(_key(e) for e in svc.local_endpoints),
        policy_local=svc.traffic_policy_local or dropped,
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
    for prefix in _OWN:
        chain = ruleset.chain("nat", prefix + svc.hash)
        for rule in chain.rules if chain else ():
            t = rule.target
            if isinstance(t, Jump) and t.chain == "KUBE-MARK-MASQ":
                out.add(f"{prefix.rstrip('-')}: {_conditions(rule)}")
    return frozenset(out)


def _conditions(rule: Rule) -> str:
    """The rule's conditions in iptables-save words, without its comment and chain."""
    bare = Rule(
        rule.table, "X", 0, None, rule.source, rule.destination, rule.protocol,
        rule.in_interface, rule.out_interface, rule.fragment,
        tuple(m for m in rule.matches if not isinstance(m, CommentMatch)),
    )  # fmt: skip
    return render_rule(bare).removeprefix("-A X").strip() or "every packet"
