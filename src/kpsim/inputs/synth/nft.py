"""kube-proxy's nftables-mode transaction (``nft -f`` input) for one node of a cluster, in
the layout of pkg/proxy/nftables/proxier.go (1.31 and later): one ``ip kube-proxy`` table,
verdict maps keyed by address . protocol . port, ``service-``/``external-``/``local-``/
``endpoint-`` chains named ``<kind>-<base32(sha256(base))[:8]>-<base>``.

    render_kube_proxy_nft(seed_workshop(), "ip-10-11-28-53") ─▶ "add table ip kube-proxy …"

Loaded for real by kpsim.inputs.nft_regen (``nft -f`` in a throw-away namespace) and
listed back with ``nft list ruleset``: that text is the shipped fixture.
"""

from __future__ import annotations

import base64
import hashlib

from kpsim.inputs.synth.plan import _Ep, _plan, _PortPlan
from kpsim.inputs.synth.spec import ClusterSpec, NodeSpec, ServicePortSpec, ServiceSpec

T = "ip kube-proxy"
_MASQ = "0x4000"


def nft_name(kind: str, base: str) -> str:
    """kube-proxy's hashAndTruncate: ``kind-`` + base32(sha256(base))[:8] + ``-`` + base."""
    digest = base64.b32encode(hashlib.sha256(base.encode()).digest()).decode()
    return f"{kind}-{digest[:8]}-{base}"


def _bases(svc: ServiceSpec, sp: ServicePortSpec) -> str:
    return f"{svc.namespace}/{svc.name}/{sp.protocol.lower()}/{sp.name}"


def _ep_chain(base: str, ep: _Ep) -> str:
    return nft_name("endpoint", f"{base}__{ep.ip}/{ep.port}")


def _fixed(cluster: ClusterSpec) -> list[str]:
    """The chains every sync writes, and their hooks."""
    out = [
        f'add table {T} {{ comment "rules for kube-proxy" ; }}',
        f"add chain {T} mark-for-masquerade",
        f"add rule {T} mark-for-masquerade mark set mark or {_MASQ}",
        f"add chain {T} masquerading",
        f"add rule {T} masquerading mark and {_MASQ} == 0 return",
        f"add rule {T} masquerading mark set mark xor {_MASQ}",
        f"add rule {T} masquerading masquerade fully-random",
    ]
    for name in ("services", "service-endpoints-check", "nodeport-endpoints-check",
                 "firewall-check", "cluster-ips-check"):  # fmt: skip
        out.append(f"add chain {T} {name}")
    out += [
        f'add chain {T} reject-chain {{ comment "helper for @no-endpoint-services / '
        '@no-endpoint-nodeports" ; }',
        f"add rule {T} reject-chain reject",
    ]
    hooks = (
        ("filter-prerouting-pre-dnat", "filter", "prerouting", -110, ("firewall-check",)),
        ("filter-output-pre-dnat", "filter", "output", -110, ("firewall-check",)),
        ("filter-forward", "filter", "forward", 0,
         ("service-endpoints-check", "cluster-ips-check")),
        ("filter-input", "filter", "input", 0,
         ("nodeport-endpoints-check", "service-endpoints-check")),
        ("filter-output", "filter", "output", 0,
         ("service-endpoints-check", "cluster-ips-check")),
    )  # fmt: skip
    for name, kind, hook, prio, jumps in hooks:
        out.append(f"add chain {T} {name} {{ type {kind} hook {hook} priority {prio} ; }}")
        out += [f"add rule {T} {name} ct state new jump {j}" for j in jumps]
    for name, hook, prio, jump in (
        ("nat-prerouting", "prerouting", -100, "services"),
        ("nat-output", "output", -100, "services"),
        ("nat-postrouting", "postrouting", 100, "masquerading"),
    ):
        out.append(f"add chain {T} {name} {{ type nat hook {hook} priority {prio} ; }}")
        out.append(f"add rule {T} {name} jump {jump}")
    out += [
        f'add set {T} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}',
        f'add set {T} nodeport-ips {{ type ipv4_addr ; comment "IPs that accept NodePort '
        'traffic" ; }',
    ]
    four = "ipv4_addr . inet_proto . inet_service : verdict"
    two = "inet_proto . inet_service : verdict"
    for name, key, comment in (
        ("service-ips", four, "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
        ("service-nodeports", two, "NodePort traffic"),
        ("no-endpoint-services", four, "vmap to drop or reject packets to services with no "
         "endpoints"),
        ("no-endpoint-nodeports", two, "vmap to drop or reject packets to service nodeports "
         "with no endpoints"),
        ("firewall-ips", four, "destinations that are subject to LoadBalancerSourceRanges"),
    ):  # fmt: skip
        out.append(f'add map {T} {name} {{ type {key} ; comment "{comment}" ; }}')
    out += [
        f"add rule {T} services ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule {T} services ip daddr @nodeport-ips meta l4proto . th dport "
        "vmap @service-nodeports",
        f"add rule {T} service-endpoints-check ip daddr . meta l4proto . th dport "
        "vmap @no-endpoint-services",
        f"add rule {T} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . "
        "th dport vmap @no-endpoint-nodeports",
        f"add rule {T} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
        f'add rule {T} cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic '
        'to invalid ports of ClusterIPs"',
        f"add rule {T} cluster-ips-check ip daddr {cluster.service_cidr} drop comment "
        '"Drop traffic to unallocated ClusterIPs"',
    ]
    return out


def _pick(chain: str, eps: tuple[_Ep, ...], base: str) -> str:
    targets = ", ".join(f"{i} : goto {_ep_chain(base, e)}" for i, e in enumerate(eps))
    return f"add rule {T} {chain} numgen random mod {len(eps)} vmap {{ {targets} }}"


def _service_port(
    cluster: ClusterSpec, node: NodeSpec, svc: ServiceSpec, sp: ServicePortSpec
) -> list[str]:
    plan: _PortPlan = _plan(svc, sp, node)
    base = _bases(svc, sp)
    proto = plan.proto
    svc_chain, ext, local = (nft_name(k, base) for k in ("service", "external", "local"))
    key = f"{svc.cluster_ip} . {proto} . {sp.port}"
    name = f"{svc.namespace}/{svc.name}"
    out: list[str] = [f"# {plan.spn}", f"add element {T} cluster-ips {{ {svc.cluster_ip} }}"]
    if not plan.has_endpoints:
        out.append(f'add element {T} no-endpoint-services {{ {key} comment "{name}" : '
                   "goto reject-chain }")  # fmt: skip
        if sp.node_port:
            out.append(f'add element {T} no-endpoint-nodeports {{ {proto} . {sp.node_port} '
                       f'comment "{name}" : goto reject-chain }}')  # fmt: skip
        return out
    affinity = svc.session_affinity_seconds
    for ep in plan.reachable:
        chain = _ep_chain(base, ep)
        out += [
            f"add chain {T} {chain}",
            f"add rule {T} {chain} ip saddr {ep.ip} jump mark-for-masquerade",
        ]
        if affinity:
            aff = nft_name("affinity", f"{base}__{ep.ip}/{ep.port}")
            out.append(f"add set {T} {aff} {{ type ipv4_addr ; flags dynamic,timeout ; "
                       f"timeout {affinity}s ; }}")  # fmt: skip
            out.append(f"add rule {T} {chain} update @{aff} {{ ip saddr }}")
        out.append(f"add rule {T} {chain} meta l4proto {proto} dnat to {ep.ip}:{ep.port}")
    if plan.cluster_eps:
        out.append(f"add chain {T} {svc_chain}")
        if affinity:
            for ep in plan.cluster_eps:
                aff = nft_name("affinity", f"{base}__{ep.ip}/{ep.port}")
                out.append(f"add rule {T} {svc_chain} ip saddr @{aff} goto {_ep_chain(base, ep)}")
        out.append(_pick(svc_chain, plan.cluster_eps, base))
        out.append(f"add element {T} service-ips {{ {key} : goto {svc_chain} }}")
    if sp.node_port:
        # as kube-proxy's proxier (TestOverallNFTablesRules' svc2): with endpoints, the
        # NodePort always leads to the external chain; under externalTrafficPolicy Local it
        # short-circuits node-local clients, and only a node with a local endpoint goes on
        # to the local chain — on the others outside clients fall through to the drop
        if svc.external_policy_local:
            if plan.local_eps:
                out += [f"add chain {T} {local}", _pick(local, plan.local_eps, base)]
            out += [
                f"add chain {T} {ext}",
                f"add rule {T} {ext} fib saddr type local jump mark-for-masquerade "
                'comment "masquerade local traffic"',
                f"add rule {T} {ext} fib saddr type local goto {svc_chain} "
                'comment "short-circuit local traffic"',
            ]
            if plan.local_eps:
                out.append(f"add rule {T} {ext} goto {local}")
        else:
            out += [f"add chain {T} {ext}", f"add rule {T} {ext} jump mark-for-masquerade",
                    f"add rule {T} {ext} goto {svc_chain}"]  # fmt: skip
        out.append(f"add element {T} service-nodeports {{ {proto} . {sp.node_port} : goto {ext} }}")
        if not plan.has_external:
            out.append(f'add element {T} no-endpoint-nodeports {{ {proto} . {sp.node_port} '
                       f'comment "{name}" : drop }}')  # fmt: skip
    return out


def render_kube_proxy_nft(cluster: ClusterSpec, node: NodeSpec | str) -> str:
    """The ``nft -f`` transaction kube-proxy's nftables proxier writes for ``node``."""
    n = node if isinstance(node, NodeSpec) else cluster.node(node)
    lines = _fixed(cluster)
    lines.append(f"add element {T} nodeport-ips {{ {n.ip} }}")
    for svc in cluster.services:
        for sp in svc.ports:
            lines += _service_port(cluster, n, svc, sp)
    return "\n".join(lines) + "\n"
