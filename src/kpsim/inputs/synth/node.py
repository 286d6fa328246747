"""A whole node's mangle/filter/nat state: kube-proxy's payload plus what surrounds it.

    kube-proxy's payload (kube_proxy.py)
    + the base-chain jumps it installs outside the payload (PREROUTING ─▶ KUBE-SERVICES …)
    + kubelet's canary and hint chains
    + AWS VPC CNI: AWS-SNAT-CHAIN-0 (SNAT leaving the VPC), CONNMARK for NodePort returns

Loaded into an empty namespace, the text reproduces what the node would show.
"""

from __future__ import annotations

from collections.abc import Iterable

from kpsim.inputs.synth.kube_proxy import _kube_proxy_tables
from kpsim.inputs.synth.spec import ClusterSpec, NodeSpec
from kpsim.inputs.synth.table import _FILTER_BUILTINS, _MANGLE_BUILTINS, _NAT_BUILTINS, _q, _Table

CNI_CONNMARK = 0x80
"""AWS VPC CNI's default connmark for traffic that entered on the primary ENI."""


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
