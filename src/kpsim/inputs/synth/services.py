"""One service port's rules, as kube-proxy writes them.

    KUBE-SERVICES / KUBE-NODEPORTS ─▶ KUBE-EXT-H ─▶ KUBE-FW-H (LB source ranges)
        ─▶ KUBE-SVC-H / KUBE-SVL-H ─┬ p   ─▶ KUBE-SEP-A ─▶ DNAT a:port
                                    └ 1-p ─▶ KUBE-SEP-B ─▶ DNAT b:port

When nothing can serve, the filter table REJECTs ("has no endpoints") or DROPs
("has no local endpoints") instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from kpsim.inputs.synth.names import probability
from kpsim.inputs.synth.plan import _Ctx, _Ep, _filter_target, _PortPlan, _uses_fw
from kpsim.inputs.synth.spec import ServicePortSpec, ServiceSpec
from kpsim.inputs.synth.table import _q, _Table


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
