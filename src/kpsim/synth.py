"""Synthesise the iptables state of an EKS node running kube-proxy (iptables mode, >= 1.29).

The rule layout, chain names, comments and argument order follow kube-proxy's
``syncProxyRules`` restore payload, so the text can be loaded into a real kernel
and compared with what ``iptables-save`` prints back.  The AWS VPC CNI chains an
EKS node carries (SNAT for traffic leaving the VPC, CONNMARK for NodePort return
traffic) are added so the result looks like a real node, not a lab toy.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kpsim.kube import endpoint_hash, port_proto_hash

__all__ = [
    "SEED_AZS",
    "SEED_CAPTURE_TIME",
    "SEED_CLUSTER_NAME",
    "SEED_KUBE_PROXY_VERSION",
    "SEED_NODES",
    "SEED_REGION",
    "SEED_SERVICES",
    "SEED_SERVICE_CIDR",
    "SEED_VPC_CIDR",
    "ClusterSpec",
    "EndpointSpec",
    "NodeSpec",
    "PodSpec",
    "ServicePortSpec",
    "ServiceSpec",
    "chain_hash",
    "endpoint_chain_hash",
    "ext_chain",
    "fw_chain",
    "probability",
    "render_kube_proxy_restore",
    "render_restore",
    "seed_workshop",
    "sep_chain",
    "service_port_name",
    "svc_chain",
    "svl_chain",
    "synth_large",
]

# Thresholds and constants mirrored from kube-proxy.
LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000
"""Above this many endpoints kube-proxy drops per-endpoint comments."""

CNI_CONNMARK = 0x80
"""AWS VPC CNI's default connmark for traffic that entered on the primary ENI."""


# ---------------------------------------------------------------------------
# Spec dataclasses
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSpec:
    """One worker node; `ip` is the primary ENI address."""

    name: str
    instance_id: str
    az: str
    ip: str
    subnet_prefix: int = 20
    primary_interface: str = "eth0"

    @property
    def short_name(self) -> str:
        """Host part of the node name (the fixture directory name)."""
        return self.name.split(".", 1)[0]

    @property
    def local_cidr(self) -> str:
        """Primary address with its subnet prefix, as `ip addr` shows it."""
        return f"{self.ip}/{self.subnet_prefix}"


@dataclass(frozen=True)
class PodSpec:
    """A pod on the pod network (VPC CNI: pod IPs come from the VPC)."""

    namespace: str
    name: str
    ip: str
    node: str


@dataclass(frozen=True)
class EndpointSpec:
    """One EndpointSlice address; `node` is None for off-node (e.g. control plane) IPs."""

    ip: str
    node: str | None
    ready: bool = True


@dataclass(frozen=True)
class ServicePortSpec:
    """One service port; `target_port` is the numeric port endpoints listen on."""

    name: str
    protocol: str
    port: int
    target_port: int
    node_port: int | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """A Service plus its ready/unready endpoints (one address list for all ports)."""

    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[ServicePortSpec, ...]
    type: str = "ClusterIP"
    endpoints: tuple[EndpointSpec, ...] = ()
    session_affinity_seconds: int | None = None
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    health_check_node_port: int | None = None

    @property
    def externally_accessible(self) -> bool:
        """NodePort, LoadBalancer and external IPs all count as external."""
        return self.type in ("NodePort", "LoadBalancer") or bool(self.external_ips)

    @property
    def external_policy_local(self) -> bool:
        """ETP Local only matters when something external exists."""
        return self.externally_accessible and self.external_traffic_policy == "Local"

    @property
    def internal_policy_local(self) -> bool:
        """ITP Local switches ClusterIP traffic to node-local endpoints."""
        return self.internal_traffic_policy == "Local"

    @property
    def uses_cluster_endpoints(self) -> bool:
        """Whether a KUBE-SVC chain is needed (kube-proxy's UsesClusterEndpoints)."""
        return not self.internal_policy_local or (
            self.externally_accessible and not self.external_policy_local
        )

    @property
    def uses_local_endpoints(self) -> bool:
        """Whether a KUBE-SVL chain may be needed."""
        return self.internal_policy_local or self.external_policy_local


@dataclass(frozen=True)
class ClusterSpec:
    """Everything needed to render any node's rules.

    `cluster_cidr` None means kube-proxy's local-traffic detector is off, which is
    the EKS default (its kube-proxy config leaves clusterCIDR empty).
    """

    nodes: tuple[NodeSpec, ...]
    services: tuple[ServiceSpec, ...]
    pods: tuple[PodSpec, ...] = ()
    cluster_cidr: str | None = None
    vpc_cidr: str = "10.11.0.0/16"
    service_cidr: str = "172.20.0.0/16"
    masquerade_bit: int = 14
    masquerade_all: bool = False
    localhost_nodeports: bool = True
    conntrack_tcp_liberal: bool = False
    vpc_cni: bool = True
    kubelet_chains: bool = True
    cni_veth_prefix: str = "eni"
    cni_random_fully: bool = True

    def node(self, name: str) -> NodeSpec:
        """Look a node up by full or short name."""
        for n in self.nodes:
            if name in (n.name, n.short_name):
                return n
        raise KeyError(f"unknown node {name!r}")


# ---------------------------------------------------------------------------
# Chain naming (kube-proxy's hashes)
# ---------------------------------------------------------------------------


def service_port_name(namespace: str, name: str, port_name: str) -> str:
    """kube-proxy's ServicePortName string: `ns/name:port`, or `ns/name` if unnamed."""
    base = f"{namespace}/{name}"
    return f"{base}:{port_name}" if port_name else base


#: kube-proxy's chain-name hashes live with the rest of kube-proxy's meaning (kube.py);
#: the generator names its chains with the very same functions.
chain_hash = port_proto_hash
endpoint_chain_hash = endpoint_hash


def svc_chain(spn: str, protocol: str) -> str:
    """Cluster-policy chain name."""
    return "KUBE-SVC-" + chain_hash(spn, protocol)


def svl_chain(spn: str, protocol: str) -> str:
    """Local-policy chain name."""
    return "KUBE-SVL-" + chain_hash(spn, protocol)


def ext_chain(spn: str, protocol: str) -> str:
    """External-traffic chain name."""
    return "KUBE-EXT-" + chain_hash(spn, protocol)


def fw_chain(spn: str, protocol: str) -> str:
    """LoadBalancerSourceRanges firewall chain name."""
    return "KUBE-FW-" + chain_hash(spn, protocol)


def sep_chain(spn: str, protocol: str, endpoint: str) -> str:
    """Endpoint chain name."""
    return "KUBE-SEP-" + endpoint_chain_hash(spn, protocol, endpoint)


def probability(n: int) -> str:
    """kube-proxy's probability string for picking 1 of n remaining endpoints."""
    return f"{1.0 / n:0.10f}"


# ---------------------------------------------------------------------------
# Rendering helpers
# ---------------------------------------------------------------------------


def _q(text: str) -> str:
    """Quote a comment the way kube-proxy does when it may contain spaces."""
    return f'"{text}"'


@dataclass
class _Table:
    """Accumulates one table's chain declarations and rules in write order."""

    name: str
    builtins: tuple[str, ...]
    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    def chain(self, name: str) -> None:
        self.chains.append(name)

    def add(self, chain: str, *parts: str) -> None:
        self.rules.append(" ".join(("-A", chain, *parts)))

    def render(self, with_builtins: bool) -> list[str]:
        lines = [f"*{self.name}"]
        if with_builtins:
            lines += [f":{b} ACCEPT [0:0]" for b in self.builtins]
        lines += [f":{c} - [0:0]" for c in self.chains]
        lines += self.rules
        lines.append("COMMIT")
        return lines


_FILTER_BUILTINS = ("INPUT", "FORWARD", "OUTPUT")
_NAT_BUILTINS = ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
_MANGLE_BUILTINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")


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


def _masq_mark(bit: int) -> str:
    """Go's `%#08x` of 1<<bit: kube-proxy writes eight zero-padded hex digits."""
    return f"0x{1 << bit:08x}"


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


def _comment(ctx: _Ctx, text: str) -> list[str]:
    """Per-endpoint comments vanish in large-cluster mode."""
    return [] if ctx.large else ["-m", "comment", "--comment", text]


def _write_lb_rules(
    ctx: _Ctx, nat: _Table, svc: ServiceSpec, spn: str, chain: str, eps: Sequence[_Ep]
) -> None:
    """KUBE-SVC/SVL body: affinity checks first, then the probability ladder."""
    if svc.session_affinity_seconds is not None:
        for ep in eps:
            nat.add(
                chain,
                *_comment(ctx, _q(f"{spn} -> {ep.text}")),
                "-m", "recent", "--name", ep.chain,
                "--rcheck", "--seconds", str(svc.session_affinity_seconds), "--reap",
                "-j", ep.chain,
            )  # fmt: skip
    n = len(eps)
    for i, ep in enumerate(eps):
        stat = (
            ["-m", "statistic", "--mode", "random", "--probability", probability(n - i)]
            if i < n - 1
            else []
        )
        nat.add(chain, *_comment(ctx, _q(f"{spn} -> {ep.text}")), *stat, "-j", ep.chain)


def _write_sep(ctx: _Ctx, nat: _Table, svc: ServiceSpec, spn: str, proto: str, ep: _Ep) -> None:
    """One KUBE-SEP chain: hairpin masquerade, then DNAT (with affinity --set)."""
    nat.chain(ep.chain)
    head = _comment(ctx, spn)
    nat.add(ep.chain, *head, "-s", ep.ip, "-j", "KUBE-MARK-MASQ")
    affinity = (
        ["-m", "recent", "--name", ep.chain, "--set"]
        if svc.session_affinity_seconds is not None
        else []
    )
    nat.add(
        ep.chain, *head, *affinity,
        "-m", proto, "-p", proto, "-j", "DNAT", "--to-destination", ep.text,
    )  # fmt: skip


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


def _write_captures(
    flt: _Table, nat: _Table, svc: ServiceSpec, sp: ServicePortSpec, p: _PortPlan
) -> None:
    """KUBE-SERVICES / KUBE-NODEPORTS entry rules plus their filter-table twins."""
    proto, port = p.proto, str(sp.port)
    internal_chain = p.svl if svc.internal_policy_local else p.svc
    lb_chain = p.fw if _uses_fw(svc, p) else p.ext
    if p.has_internal:
        nat.add(
            "KUBE-SERVICES", "-m", "comment", "--comment", _q(f"{p.spn} cluster IP"),
            "-m", proto, "-p", proto, "-d", svc.cluster_ip, "--dport", port, "-j", internal_chain,
        )  # fmt: skip
    else:
        target, comment = _filter_target(p)
        flt.add(
            "KUBE-SERVICES", "-m", "comment", "--comment", comment,
            "-m", proto, "-p", proto, "-d", svc.cluster_ip, "--dport", port, "-j", target,
        )  # fmt: skip
    ext_target, ext_comment = _filter_target(p)
    for eip in svc.external_ips:
        if p.has_endpoints:
            nat.add(
                "KUBE-SERVICES", "-m", "comment", "--comment", _q(f"{p.spn} external IP"),
                "-m", proto, "-p", proto, "-d", eip, "--dport", port, "-j", p.ext,
            )  # fmt: skip
        if not p.has_external:
            flt.add(
                "KUBE-EXTERNAL-SERVICES", "-m", "comment", "--comment", ext_comment,
                "-m", proto, "-p", proto, "-d", eip, "--dport", port, "-j", ext_target,
            )  # fmt: skip
    for lbip in svc.load_balancer_ips:
        if p.has_endpoints:
            nat.add(
                "KUBE-SERVICES", "-m", "comment", "--comment", _q(f"{p.spn} loadbalancer IP"),
                "-m", proto, "-p", proto, "-d", lbip, "--dport", port, "-j", lb_chain,
            )  # fmt: skip
        if _uses_fw(svc, p):
            flt.add(
                "KUBE-PROXY-FIREWALL",
                "-m", "comment", "--comment", _q(f"{p.spn} traffic not accepted by {p.fw}"),
                "-m", proto, "-p", proto, "-d", lbip, "--dport", port, "-j", "DROP",
            )  # fmt: skip
    if not p.has_external:
        for lbip in svc.load_balancer_ips:
            flt.add(
                "KUBE-EXTERNAL-SERVICES", "-m", "comment", "--comment", ext_comment,
                "-m", proto, "-p", proto, "-d", lbip, "--dport", port, "-j", ext_target,
            )  # fmt: skip
    _write_nodeport_capture(flt, nat, sp, p, ext_target, ext_comment)
    if svc.health_check_node_port:
        flt.add(
            "KUBE-NODEPORTS",
            "-m", "comment", "--comment", _q(f"{p.spn} health check node port"),
            "-m", "tcp", "-p", "tcp", "--dport", str(svc.health_check_node_port), "-j", "ACCEPT",
        )  # fmt: skip


def _write_nodeport_capture(
    flt: _Table, nat: _Table, sp: ServicePortSpec, p: _PortPlan, target: str, comment: str
) -> None:
    """NodePort jump to KUBE-EXT, or the filter REJECT/DROP when unusable."""
    if not sp.node_port:
        return
    proto, nport = p.proto, str(sp.node_port)
    if p.has_endpoints:
        nat.add(
            "KUBE-NODEPORTS", "-m", "comment", "--comment", p.spn,
            "-m", proto, "-p", proto, "--dport", nport, "-j", p.ext,
        )  # fmt: skip
    if not p.has_external:
        flt.add(
            "KUBE-EXTERNAL-SERVICES", "-m", "comment", "--comment", comment,
            "-m", "addrtype", "--dst-type", "LOCAL",
            "-m", proto, "-p", proto, "--dport", nport, "-j", target,
        )  # fmt: skip


def _uses_fw(svc: ServiceSpec, p: _PortPlan) -> bool:
    return p.has_endpoints and bool(svc.load_balancer_ips) and bool(svc.load_balancer_source_ranges)


def _write_service_chains(
    ctx: _Ctx, nat: _Table, svc: ServiceSpec, sp: ServicePortSpec, p: _PortPlan
) -> None:
    """Per-service NAT chains: masquerade guard, EXT, FW, SVC, SVL, SEPs."""
    proto = p.proto
    internal_chain = p.svl if svc.internal_policy_local else p.svc
    if p.has_internal:
        args = [
            "-m", "comment", "--comment", _q(f"{p.spn} cluster IP"),
            "-m", proto, "-p", proto, "-d", svc.cluster_ip, "--dport", str(sp.port),
        ]  # fmt: skip
        if ctx.cluster.masquerade_all:
            nat.add(internal_chain, *args, "-j", "KUBE-MARK-MASQ")
        elif ctx.cluster.cluster_cidr:
            nat.add(
                internal_chain, *args, "!", "-s", ctx.cluster.cluster_cidr, "-j", "KUBE-MARK-MASQ"
            )
    if p.has_endpoints and svc.externally_accessible:
        _write_ext_chain(ctx, nat, svc, p)
    if _uses_fw(svc, p):
        _write_fw_chain(ctx, nat, svc, p)
    if p.cluster_eps and svc.uses_cluster_endpoints:
        nat.chain(p.svc)
        _write_lb_rules(ctx, nat, svc, p.spn, p.svc, p.cluster_eps)
    if p.local_eps and svc.uses_local_endpoints:
        nat.chain(p.svl)
        _write_lb_rules(ctx, nat, svc, p.spn, p.svl, p.local_eps)
    for ep in p.reachable:
        _write_sep(ctx, nat, svc, p.spn, proto, ep)


def _write_ext_chain(ctx: _Ctx, nat: _Table, svc: ServiceSpec, p: _PortPlan) -> None:
    """KUBE-EXT: masquerade (Cluster) or the local short-circuit rules (Local)."""
    nat.chain(p.ext)
    if not svc.external_policy_local:
        nat.add(
            p.ext,
            "-m", "comment", "--comment",
            _q(f"masquerade traffic for {p.spn} external destinations"),
            "-j", "KUBE-MARK-MASQ",
        )  # fmt: skip
    else:
        if ctx.cluster.cluster_cidr:
            nat.add(
                p.ext,
                "-m", "comment", "--comment", _q(f"pod traffic for {p.spn} external destinations"),
                "-s", ctx.cluster.cluster_cidr, "-j", p.svc,
            )  # fmt: skip
        nat.add(
            p.ext,
            "-m", "comment", "--comment",
            _q(f"masquerade LOCAL traffic for {p.spn} external destinations"),
            "-m", "addrtype", "--src-type", "LOCAL", "-j", "KUBE-MARK-MASQ",
        )  # fmt: skip
        nat.add(
            p.ext,
            "-m", "comment", "--comment",
            _q(f"route LOCAL traffic for {p.spn} external destinations"),
            "-m", "addrtype", "--src-type", "LOCAL", "-j", p.svc,
        )  # fmt: skip
    if p.has_external:
        nat.add(p.ext, "-j", p.svl if svc.external_policy_local else p.svc)


def _write_fw_chain(ctx: _Ctx, nat: _Table, svc: ServiceSpec, p: _PortPlan) -> None:
    """KUBE-FW: accept listed source ranges, fall through otherwise."""
    nat.chain(p.fw)
    head = ["-m", "comment", "--comment", _q(f"{p.spn} loadbalancer IP")]
    node_ip = ipaddress.ip_address(ctx.node.ip)
    allow_from_node = False
    for cidr in svc.load_balancer_source_ranges:
        net = ipaddress.ip_network(cidr, strict=False)
        nat.add(p.fw, *head, "-s", str(net), "-j", p.ext)
        allow_from_node = allow_from_node or node_ip in net
    if allow_from_node:
        for lbip in svc.load_balancer_ips:
            nat.add(p.fw, *head, "-s", lbip, "-j", p.ext)
    nat.add(
        p.fw, "-m", "comment", "--comment",
        _q(f"other traffic to {p.spn} will be dropped by KUBE-PROXY-FIREWALL"),
    )  # fmt: skip


def _total_endpoints(cluster: ClusterSpec) -> int:
    """kube-proxy's large-cluster test counts endpoints of every service port."""
    return sum(len(s.endpoints) * len(s.ports) for s in cluster.services)


def _kube_proxy_tables(cluster: ClusterSpec, node: NodeSpec) -> tuple[_Table, _Table]:
    """Build kube-proxy's filter and nat restore payload for `node`."""
    ctx = _Ctx(
        cluster=cluster,
        node=node,
        mark=_masq_mark(cluster.masquerade_bit),
        large=_total_endpoints(cluster) > LARGE_CLUSTER_ENDPOINTS_THRESHOLD,
    )
    flt = _Table("filter", _FILTER_BUILTINS)
    nat = _Table("nat", _NAT_BUILTINS)
    for c in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS",
              "KUBE-PROXY-FIREWALL"):  # fmt: skip
        flt.chain(c)
    for c in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"):
        nat.chain(c)
    mark = ctx.mark
    nat.add("KUBE-POSTROUTING", "-m", "mark", "!", "--mark", f"{mark}/{mark}", "-j", "RETURN")
    nat.add("KUBE-POSTROUTING", "-j", "MARK", "--xor-mark", mark)
    nat.add(
        "KUBE-POSTROUTING", "-m", "comment", "--comment",
        _q("kubernetes service traffic requiring SNAT"), "-j", "MASQUERADE", "--random-fully",
    )  # fmt: skip
    nat.add("KUBE-MARK-MASQ", "-j", "MARK", "--or-mark", mark)
    if cluster.localhost_nodeports:
        flt.chain("KUBE-FIREWALL")
        flt.add(
            "KUBE-FIREWALL",
            "-m", "comment", "--comment", _q("block incoming localnet connections"),
            "-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8",
            "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP",
        )  # fmt: skip
    for svc in cluster.services:
        for sp in svc.ports:
            plan = _plan(svc, sp, node)
            _write_captures(flt, nat, svc, sp, plan)
            _write_service_chains(ctx, nat, svc, sp, plan)
    last = ["-m", "addrtype", "--dst-type", "LOCAL"]
    if not cluster.localhost_nodeports:
        last += ["!", "-d", "127.0.0.0/8"]
    nat.add(
        "KUBE-SERVICES", "-m", "comment", "--comment",
        _q("kubernetes service nodeports; NOTE: this must be the last rule in this chain"),
        *last, "-j", "KUBE-NODEPORTS",
    )  # fmt: skip
    _write_forward(cluster, flt, mark)
    return flt, nat


def _write_forward(cluster: ClusterSpec, flt: _Table, mark: str) -> None:
    """KUBE-FORWARD: INVALID drop (unless be_liberal), marked and tracked accepts."""
    if not cluster.conntrack_tcp_liberal:
        flt.add("KUBE-FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
    flt.add(
        "KUBE-FORWARD", "-m", "comment", "--comment", _q("kubernetes forwarding rules"),
        "-m", "mark", "--mark", f"{mark}/{mark}", "-j", "ACCEPT",
    )  # fmt: skip
    flt.add(
        "KUBE-FORWARD", "-m", "comment", "--comment", _q("kubernetes forwarding conntrack rule"),
        "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT",
    )  # fmt: skip


def render_kube_proxy_restore(cluster: ClusterSpec, node: NodeSpec | str) -> str:
    """Exactly the `iptables-restore --noflush` payload kube-proxy writes for `node`."""
    n = node if isinstance(node, NodeSpec) else cluster.node(node)
    flt, nat = _kube_proxy_tables(cluster, n)
    lines = flt.render(with_builtins=False) + nat.render(with_builtins=False)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Whole-node rendering: base-chain hooks, kubelet, AWS VPC CNI
# ---------------------------------------------------------------------------

# (table, source chain, extra args, comment, target) in kube-proxy's install order.
_JUMPS: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    ("filter", "INPUT", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes externally-visible service portals", "KUBE-EXTERNAL-SERVICES"),
    ("filter", "FORWARD", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes externally-visible service portals", "KUBE-EXTERNAL-SERVICES"),
    ("filter", "INPUT", (), "kubernetes health check service ports", "KUBE-NODEPORTS"),
    ("filter", "FORWARD", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes service portals", "KUBE-SERVICES"),
    ("filter", "OUTPUT", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes service portals", "KUBE-SERVICES"),
    ("filter", "FORWARD", (), "kubernetes forwarding rules", "KUBE-FORWARD"),
    ("filter", "INPUT", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes load balancer firewall", "KUBE-PROXY-FIREWALL"),
    ("filter", "OUTPUT", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes load balancer firewall", "KUBE-PROXY-FIREWALL"),
    ("filter", "FORWARD", ("-m", "conntrack", "--ctstate", "NEW"),
     "kubernetes load balancer firewall", "KUBE-PROXY-FIREWALL"),
    ("nat", "OUTPUT", (), "kubernetes service portals", "KUBE-SERVICES"),
    ("nat", "PREROUTING", (), "kubernetes service portals", "KUBE-SERVICES"),
    ("nat", "POSTROUTING", (), "kubernetes postrouting rules", "KUBE-POSTROUTING"),
)  # fmt: skip


def _base_jumps(table: str) -> list[str]:
    """Base-chain rules as they end up: kube-proxy *prepends* each, kubelet's came first."""
    by_chain: dict[str, list[str]] = {}
    if table == "filter":
        for chain in ("INPUT", "OUTPUT"):
            by_chain.setdefault(chain, []).append(f"-A {chain} -j KUBE-FIREWALL")
    for tbl, chain, extra, comment, target in _JUMPS:
        if tbl != table:
            continue
        rule = " ".join(
            ("-A", chain, *extra, "-m", "comment", "--comment", _q(comment), "-j", target)
        )
        by_chain.setdefault(chain, []).insert(0, rule)
    order = _FILTER_BUILTINS if table == "filter" else _NAT_BUILTINS
    return [r for c in order for r in by_chain.get(c, [])]


def _cni_nat(cluster: ClusterSpec, node: NodeSpec) -> tuple[list[str], list[str], list[str]]:
    """AWS VPC CNI nat chains, base-chain hooks and chain rules (appended after kube-proxy)."""
    mark = f"{CNI_CONNMARK:#x}"
    veth = cluster.cni_veth_prefix + "+"
    hooks = [
        f'-A PREROUTING -i {veth} -m comment --comment "AWS, outbound connections" '
        "-j AWS-CONNMARK-CHAIN-0",
        '-A PREROUTING -m comment --comment "AWS, CONNMARK" -j CONNMARK '
        f"--restore-mark --mask {mark}",
        '-A POSTROUTING -m comment --comment "AWS SNAT CHAIN" -j AWS-SNAT-CHAIN-0',
    ]
    snat_opts = " --random-fully" if cluster.cni_random_fully else ""
    rules = [
        f"-A AWS-CONNMARK-CHAIN-0 -d {cluster.vpc_cidr} -m comment --comment "
        '"AWS CONNMARK CHAIN, VPC CIDR" -j RETURN',
        '-A AWS-CONNMARK-CHAIN-0 -m comment --comment "AWS, CONNMARK" -j CONNMARK '
        f"--set-xmark {mark}/{mark}",
        f"-A AWS-SNAT-CHAIN-0 -d {cluster.vpc_cidr} "
        '-m comment --comment "AWS SNAT CHAIN" -j RETURN',
        '-A AWS-SNAT-CHAIN-0 ! -o vlan+ -m comment --comment "AWS, SNAT" -m addrtype ! '
        f"--dst-type LOCAL -j SNAT --to-source {node.ip}{snat_opts}",
    ]
    return ["AWS-CONNMARK-CHAIN-0", "AWS-SNAT-CHAIN-0"], hooks, rules


def _cni_mangle(cluster: ClusterSpec, node: NodeSpec) -> list[str]:
    """AWS VPC CNI mangle PREROUTING connmark rules (NodePort support enabled)."""
    mark = f"{CNI_CONNMARK:#x}"
    c = '-m comment --comment "AWS, primary ENI"'
    return [
        f"-A PREROUTING {c} -i {node.primary_interface} -m addrtype --dst-type LOCAL "
        f"--limit-iface-in -j CONNMARK --set-mark {mark}/{mark}",
        f"-A PREROUTING {c} -i {cluster.cni_veth_prefix}+ -j CONNMARK --restore-mark --mask {mark}",
        f"-A PREROUTING {c} -i vlan+ -j CONNMARK --restore-mark --mask {mark}",
    ]


def _canaries(cluster: ClusterSpec) -> list[str]:
    """Canary chains kube-proxy (and kubelet) keep in mangle/nat/filter."""
    return (["KUBE-KUBELET-CANARY"] if cluster.kubelet_chains else []) + ["KUBE-PROXY-CANARY"]


def render_restore(cluster: ClusterSpec, node: NodeSpec | str) -> str:
    """The node's full mangle/filter/nat state as iptables-restore input.

    kube-proxy's own payload plus what it installs outside the payload (base-chain
    jumps), kubelet's canary/hint chains and the AWS VPC CNI rules, so loading it
    into an empty namespace reproduces what the node would show.
    """
    n = node if isinstance(node, NodeSpec) else cluster.node(node)
    flt, nat = _kube_proxy_tables(cluster, n)
    canaries = _canaries(cluster)
    out: list[str] = []
    if cluster.kubelet_chains or cluster.vpc_cni:
        mangle = _Table("mangle", _MANGLE_BUILTINS)
        if cluster.kubelet_chains:
            mangle.chain("KUBE-IPTABLES-HINT")
        for c in canaries:
            mangle.chain(c)
        if cluster.vpc_cni:
            mangle.rules.extend(_cni_mangle(cluster, n))
        out += mangle.render(with_builtins=True)
    flt.chains[:0] = canaries
    if "KUBE-FIREWALL" not in flt.chains:  # kube-proxy/kubelet EnsureChain it anyway
        flt.chains.append("KUBE-FIREWALL")
    flt.rules[:0] = _base_jumps("filter")
    out += flt.render(with_builtins=True)
    nat.chains[:0] = canaries
    jumps = _base_jumps("nat")
    if cluster.vpc_cni:
        chains, hooks, rules = _cni_nat(cluster, n)
        nat.chains[:0] = chains
        jumps = _merge_hooks(jumps, hooks)
        nat.rules[:0] = rules
    nat.rules[:0] = jumps
    out += nat.render(with_builtins=True)
    return "\n".join(out) + "\n"


def _merge_hooks(first: Iterable[str], later: Iterable[str]) -> list[str]:
    """Append CNI hooks after kube-proxy's per base chain, keeping base-chain order."""
    rules = list(first) + list(later)

    def chain_of(rule: str) -> int:
        return _NAT_BUILTINS.index(rule.split()[1])

    return sorted(rules, key=chain_of)  # stable: per-chain order preserved


# ---------------------------------------------------------------------------
# Seed lab (nodeport-workshop) and large synthetic clusters
# ---------------------------------------------------------------------------

SEED_CLUSTER_NAME = "eksworkshop"
SEED_REGION = "ap-northeast-2"
SEED_VPC_CIDR = "10.11.0.0/16"
SEED_SERVICE_CIDR = "172.20.0.0/16"
SEED_CAPTURE_TIME = "2026-11-26T00:00:00Z"
SEED_KUBE_PROXY_VERSION = "v1.29.0-eksbuild.1"
SEED_AZS = ("ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c")

_DOMAIN = f"{SEED_REGION}.compute.internal"
N1 = f"ip-10-11-28-53.{_DOMAIN}"
N2 = f"ip-10-11-40-87.{_DOMAIN}"
N3 = f"ip-10-11-3-14.{_DOMAIN}"

SEED_NODES: tuple[NodeSpec, ...] = (
    NodeSpec(N1, "i-0a3f5c27e91b04d68", "ap-northeast-2b", "10.11.28.53"),
    NodeSpec(N2, "i-07c1e94b2d6a83f15", "ap-northeast-2c", "10.11.40.87"),
    NodeSpec(N3, "i-0e58b0d3a4f719c26", "ap-northeast-2a", "10.11.3.14"),
)

# (namespace, pod name, pod ip, node) for every pod-network pod in the lab.
_SEED_PODS: tuple[tuple[str, str, str, str], ...] = (
    ("node-test-01", "node-test-01-869b8d5f87-fpww5", "10.11.16.79", N1),
    ("node-test-01", "node-test-01-869b8d5f87-pp7p9", "10.11.41.25", N2),
    ("node-test-01", "node-test-01-869b8d5f87-x6mf9", "10.11.11.70", N3),
    ("nodeport-test", "ecsdemo-frontend-cc96ff7df-ftnt8", "10.11.36.234", N2),
    ("nodeport-test", "ecsdemo-frontend-cc96ff7df-m2xkq", "10.11.22.178", N1),
    ("nodeport-test", "ecsdemo-frontend-cc96ff7df-zr8vd", "10.11.5.97", N3),
    ("nodeport-test", "ecsdemo-nodejs-6f9d7c8b54-4hw2n", "10.11.19.230", N1),
    ("nodeport-test", "ecsdemo-nodejs-6f9d7c8b54-tq6jx", "10.11.9.41", N3),
    ("nodeport-test", "ecsdemo-crystal-5d8b6f7c9d-8kzpl", "10.11.25.102", N1),
    ("nodeport-test", "ecsdemo-crystal-5d8b6f7c9d-wv4rt", "10.11.44.17", N2),
    ("kube-system", "coredns-5b8cc885bc-7q2tl", "10.11.24.143", N1),
    ("kube-system", "coredns-5b8cc885bc-lx9mf", "10.11.35.12", N2),
)

SEED_CONTROL_PLANE_IPS = ("10.11.7.201", "10.11.45.118")

# name -> (namespace, type, cluster IP, "port[/proto]:nodePort->target" summary, notes)
SEED_SERVICES: dict[str, dict[str, str]] = {
    "default/kubernetes": {"cluster_ip": "172.20.0.1", "ports": "https 443/TCP->443",
                           "endpoints": "control-plane ENIs 10.11.7.201, 10.11.45.118"},
    "kube-system/kube-dns": {"cluster_ip": "172.20.0.10",
                             "ports": "dns 53/UDP, dns-tcp 53/TCP, metrics 9153/TCP",
                             "endpoints": "2 coredns pods"},
    "node-test-01/node-test-01-svc": {"cluster_ip": "172.20.177.168", "type": "NodePort",
                                      "ports": "8080:30080/TCP->80",
                                      "endpoints": "3, one per node"},
    "nodeport-test/ecsdemo-frontend": {"cluster_ip": "172.20.210.120", "type": "NodePort",
                                       "ports": "80:30081/TCP->3000",
                                       "endpoints": "3, one per node"},
    "nodeport-test/ecsdemo-nodejs": {"cluster_ip": "172.20.91.45", "ports": "80/TCP->3000",
                                     "affinity": "ClientIP 10800s", "endpoints": "2"},
    "nodeport-test/ecsdemo-crystal": {"cluster_ip": "172.20.140.33", "type": "NodePort",
                                      "ports": "80:30082/TCP->3000", "etp": "Local",
                                      "endpoints": "2, none on ip-10-11-3-14"},
    "node-test-01/node-test-02-svc": {"cluster_ip": "172.20.66.201", "type": "NodePort",
                                      "ports": "8080:30083/TCP->80", "endpoints": "none"},
}  # fmt: skip


def _pod_eps(app_prefix: str) -> tuple[EndpointSpec, ...]:
    return tuple(
        EndpointSpec(ip, node) for _, name, ip, node in _SEED_PODS if name.startswith(app_prefix)
    )


def seed_workshop() -> ClusterSpec:
    """The nodeport-workshop lab: 3 EKS nodes, NodePort services, VPC CNI."""
    tcp = "TCP"
    services = (
        ServiceSpec("default", "kubernetes", "172.20.0.1",
                    (ServicePortSpec("https", tcp, 443, 443),),
                    endpoints=tuple(EndpointSpec(ip, None) for ip in SEED_CONTROL_PLANE_IPS)),
        ServiceSpec("kube-system", "kube-dns", "172.20.0.10",
                    (ServicePortSpec("dns", "UDP", 53, 53), ServicePortSpec("dns-tcp", tcp, 53, 53),
                     ServicePortSpec("metrics", tcp, 9153, 9153)),
                    endpoints=_pod_eps("coredns-")),
        ServiceSpec("node-test-01", "node-test-01-svc", "172.20.177.168",
                    (ServicePortSpec("", tcp, 8080, 80, 30080),), type="NodePort",
                    endpoints=_pod_eps("node-test-01-")),
        ServiceSpec("nodeport-test", "ecsdemo-frontend", "172.20.210.120",
                    (ServicePortSpec("", tcp, 80, 3000, 30081),), type="NodePort",
                    endpoints=_pod_eps("ecsdemo-frontend-")),
        ServiceSpec("nodeport-test", "ecsdemo-nodejs", "172.20.91.45",
                    (ServicePortSpec("", tcp, 80, 3000),), session_affinity_seconds=10800,
                    endpoints=_pod_eps("ecsdemo-nodejs-")),
        ServiceSpec("nodeport-test", "ecsdemo-crystal", "172.20.140.33",
                    (ServicePortSpec("", tcp, 80, 3000, 30082),), type="NodePort",
                    external_traffic_policy="Local", endpoints=_pod_eps("ecsdemo-crystal-")),
        ServiceSpec("node-test-01", "node-test-02-svc", "172.20.66.201",
                    (ServicePortSpec("", tcp, 8080, 80, 30083),), type="NodePort"),
    )  # fmt: skip
    pods = tuple(PodSpec(ns, name, ip, node) for ns, name, ip, node in _SEED_PODS)
    return ClusterSpec(
        nodes=SEED_NODES,
        services=services,
        pods=pods,
        cluster_cidr=None,
        vpc_cidr=SEED_VPC_CIDR,
        service_cidr=SEED_SERVICE_CIDR,
    )


def synth_large(n_services: int, endpoints_per_service: int, seed: int) -> ClusterSpec:
    """A deterministic big cluster (3 nodes) for benchmarks; render any node of it."""
    rng = random.Random(seed)
    nodes = SEED_NODES
    svc_net = ipaddress.ip_network(SEED_SERVICE_CIDR)
    pod_net = ipaddress.ip_network(SEED_VPC_CIDR)
    if n_services + 2 > svc_net.num_addresses or n_services * endpoints_per_service + 256 > (
        pod_net.num_addresses
    ):
        raise ValueError("cluster too large for the seed service/VPC CIDRs")
    svc_ips = rng.sample(range(2, svc_net.num_addresses - 1), n_services)
    pod_base = int(pod_net.network_address) + 256
    services: list[ServiceSpec] = []
    pods: list[PodSpec] = []
    node_port = 30000
    for i in range(n_services):
        ns, name = f"bench-{i % 50:02d}", f"svc-{i:05d}"
        eps: list[EndpointSpec] = []
        for j in range(endpoints_per_service):
            ip = str(ipaddress.ip_address(pod_base + i * endpoints_per_service + j))
            node = nodes[rng.randrange(len(nodes))].name
            eps.append(EndpointSpec(ip, node))
            pods.append(PodSpec(ns, f"{name}-{j}", ip, node))
        is_np = i % 10 == 0 and node_port < 32767
        port = ServicePortSpec("http", "TCP", 80, 8080, node_port if is_np else None)
        node_port += 1 if is_np else 0
        services.append(
            ServiceSpec(
                ns,
                name,
                str(svc_net[svc_ips[i]]),
                (port,),
                type="NodePort" if is_np else "ClusterIP",
                endpoints=tuple(eps),
                session_affinity_seconds=10800 if i % 50 == 7 else None,
                external_traffic_policy="Local" if is_np and i % 30 == 0 else "Cluster",
            )
        )
    return ClusterSpec(nodes=nodes, services=tuple(services), pods=tuple(pods))
