"""kube-proxy's decisions for one service port, before any rule is written.

    ServiceSpec + ServicePortSpec + node ─▶ _PortPlan
        ready endpoints, sorted by "ip:port"; cluster / local / reachable sets;
        which of KUBE-SVC/SVL/EXT/FW exist; filter REJECT or DROP when none can serve

Mirrors proxy.CategorizeEndpoints (ready endpoints only), plus the per-render context.
"""

from __future__ import annotations

from dataclasses import dataclass

from kpsim.inputs.synth.names import chain_hash, sep_chain, service_port_name
from kpsim.inputs.synth.spec import ClusterSpec, NodeSpec, ServicePortSpec, ServiceSpec
from kpsim.inputs.synth.table import _q


@dataclass(frozen=True)
class _Ep:
    """An endpoint resolved for one service port."""

    ip: str
    port: int
    local: bool
    chain: str

    @property
    def text(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class _Ctx:
    """Per-render settings derived once from the cluster and node."""

    cluster: ClusterSpec
    node: NodeSpec
    mark: str
    large: bool


def _endpoints_for(svc: ServiceSpec, sp: ServicePortSpec, spn: str, node: NodeSpec) -> list[_Ep]:
    """Ready endpoints sorted like kube-proxy's EndpointsMap (by "ip:port" string)."""
    eps = [
        _Ep(
            ip=e.ip,
            port=sp.target_port,
            local=e.node == node.name,
            chain=sep_chain(spn, sp.protocol, f"{e.ip}:{sp.target_port}"),
        )
        for e in svc.endpoints
        if e.ready
    ]
    return sorted(eps, key=lambda e: e.text)


@dataclass(frozen=True)
class _PortPlan:
    """kube-proxy's per-service-port decisions (which chains, which filters)."""

    spn: str
    proto: str
    cluster_eps: tuple[_Ep, ...]
    local_eps: tuple[_Ep, ...]
    reachable: tuple[_Ep, ...]
    has_endpoints: bool
    has_internal: bool
    has_external: bool

    @property
    def svc(self) -> str:
        return "KUBE-SVC-" + chain_hash(self.spn, self.proto)

    @property
    def svl(self) -> str:
        return "KUBE-SVL-" + chain_hash(self.spn, self.proto)

    @property
    def ext(self) -> str:
        return "KUBE-EXT-" + chain_hash(self.spn, self.proto)

    @property
    def fw(self) -> str:
        return "KUBE-FW-" + chain_hash(self.spn, self.proto)


def _plan(svc: ServiceSpec, sp: ServicePortSpec, node: NodeSpec) -> _PortPlan:
    """Categorise endpoints the way proxy.CategorizeEndpoints does (ready-only)."""
    spn = service_port_name(svc.namespace, svc.name, sp.name)
    eps = _endpoints_for(svc, sp, spn, node)
    cluster = tuple(eps) if svc.uses_cluster_endpoints else ()
    local = tuple(e for e in eps if e.local) if svc.uses_local_endpoints else ()
    if not svc.uses_local_endpoints:
        reachable = cluster
    elif not svc.uses_cluster_endpoints:
        reachable = local
    else:
        reachable = tuple(e for e in eps if e in cluster or e in local)
    has_any = bool(eps)
    return _PortPlan(
        spn=spn,
        proto=sp.protocol.lower(),
        cluster_eps=cluster,
        local_eps=local,
        reachable=reachable,
        has_endpoints=has_any,
        has_internal=has_any and (not svc.internal_policy_local or bool(local)),
        has_external=has_any and (not svc.external_policy_local or bool(local)),
    )


def _filter_target(plan: _PortPlan) -> tuple[str, str]:
    """REJECT when nothing exists anywhere, DROP when only local endpoints are missing."""
    if not plan.has_endpoints:
        return "REJECT", _q(f"{plan.spn} has no endpoints")
    return "DROP", _q(f"{plan.spn} has no local endpoints")


def _uses_fw(svc: ServiceSpec, p: _PortPlan) -> bool:
    return p.has_endpoints and bool(svc.load_balancer_ips) and bool(svc.load_balancer_source_ranges)
