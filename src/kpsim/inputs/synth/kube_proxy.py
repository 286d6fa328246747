"""kube-proxy's whole filter + nat restore payload for one node (iptables mode, >= 1.29).

    filter: KUBE-SERVICES, KUBE-EXTERNAL-SERVICES, KUBE-FORWARD, KUBE-NODEPORTS,
            KUBE-PROXY-FIREWALL (+ KUBE-FIREWALL)
    nat:    KUBE-SERVICES ─▶ per-service chains (services.py) ─▶ … ─▶ KUBE-NODEPORTS (last)
            KUBE-POSTROUTING, KUBE-MARK-MASQ

Exactly what ``iptables-restore --noflush`` receives; node.py adds the rest of the node.
"""

from __future__ import annotations

from kpsim.inputs.synth.plan import _Ctx, _plan
from kpsim.inputs.synth.services import _write_captures, _write_service_chains
from kpsim.inputs.synth.spec import ClusterSpec, NodeSpec
from kpsim.inputs.synth.table import _FILTER_BUILTINS, _NAT_BUILTINS, _q, _Table

LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000
"""Above this many endpoints kube-proxy drops per-endpoint comments."""


def _masq_mark(bit: int) -> str:
    """Go's `%#08x` of 1<<bit: kube-proxy writes eight zero-padded hex digits."""
    return f"0x{1 << bit:08x}"


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
