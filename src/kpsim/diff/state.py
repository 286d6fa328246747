"""What a node's capture says about each service, as keys a diff can match: frontends
as ``kind address:port/proto``, endpoints as pod address → exact share, policies,
affinity, and the service's masquerade rules — no text, no line numbers.

    Ruleset ─ node_state ─▶ NodeState(services={("ns/svc:port", "tcp"): ServiceState(…)})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from kpsim.kube.policy import Policy, policies
from kpsim.kube.services import Endpoint, Service, services
from kpsim.lint.rules import partial
from kpsim.model import Capture, Ruleset

ServiceKey = tuple[str, str]  # (name, protocol)


@dataclass(frozen=True, slots=True)
class ServiceState:
    name: str
    protocol: str
    hash: str  # kube-proxy's chain suffix: matches a service a cut capture shows unnamed
    frontends: frozenset[str]
    endpoints: Mapping[str, Fraction]  # pod address (or chain) → share for a new client
    local_endpoints: frozenset[str]
    external_local: bool  # externalTrafficPolicy Local (kube.policy, either mode)
    internal_local: bool  # internalTrafficPolicy Local
    affinity_seconds: int | None
    masquerade: frozenset[str]  # "cluster IP: ! -s 10.0.0.0/8 -d …", "external: every packet"
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
    svcs = services(ruleset)
    pols = policies(ruleset, svcs)  # either proxy mode: kube.policy reads the layout
    out: dict[ServiceKey, ServiceState] = {}
    for svc in svcs:
        key = (svc.name, svc.protocol or "")
        out[key] = _state(svc, pols[key])
    return NodeState(node, ruleset.path, out, ruleset.capture, partial(ruleset))


def _state(svc: Service, policy: Policy) -> ServiceState:
    rule = svc.frontends[0].rule if svc.frontends else None
    loc = str(rule.origin) if rule is not None and rule.origin is not None else None
    return ServiceState(
        name=svc.name,
        protocol=svc.protocol or "",
        hash=svc.hash,
        frontends=frozenset(_front(f.kind, f.address, f.port, f.protocol) for f in svc.frontends),
        endpoints=_shares(svc.endpoints),
        local_endpoints=frozenset(_key(e) for e in svc.local_endpoints),
        external_local=policy.external_local,
        internal_local=policy.internal_local,
        affinity_seconds=svc.affinity_seconds,
        masquerade=policy.masquerade,
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
