"""What the targets that rewrite the flow do to a branch.

    DNAT / REDIRECT ─▶ new destination (and port), end of the nat hook
    SNAT / MASQUERADE ─▶ source to be rewritten, end of the nat hook
    CONNMARK ─▶ ctmark / mark updated, evaluation goes on

Jumps, verdicts and the rest of the targets are the walker's (walk.Walker._apply).
"""

from __future__ import annotations

import ipaddress

from kpsim.engine.branch import Branch, Disposition, End
from kpsim.engine.flow import Flow, Hook
from kpsim.engine.match import _where
from kpsim.model import (
    ConnmarkMode,
    ConnmarkTarget,
    Dnat,
    Masquerade,
    Netmap,
    OpaqueTarget,
    Redirect,
    Rule,
    Snat,
)
from kpsim.model.node import IPAddress, NodeContext, ip


def _nat(node: NodeContext, hook: Hook, rule: Rule, b: Branch) -> tuple[Branch, End | None]:
    """DNAT/REDIRECT rewrite the destination, SNAT/MASQUERADE record the source;
    each ends the nat hook and the packet goes on to the next table."""
    t, f, where = rule.target, b.flow, _where(hook.table, rule)
    if isinstance(t, Dnat) and t.to:
        return _dnat(where, t, b)
    if isinstance(t, Snat):
        to = str(t.to[0]) if t.to else None
        b = b.snat(to, f._with(snat=True))
        return b, (b, None, None)
    if isinstance(t, Masquerade):
        b = b.nat(f._with(snat=True), masquerade=True)
        return b, (b, None, None)
    if isinstance(t, Redirect):
        b = _redirect(node, hook, where, t, b)
        return b, (b, None, None)
    if isinstance(t, Netmap):
        return _netmap(hook, t, b)
    name = t.name if isinstance(t, OpaqueTarget) else type(t).__name__
    return b, (b, Disposition.UNKNOWN, f"{where}: target {name} is not modelled")


def _dnat(where: str, t: Dnat, b: Branch) -> tuple[Branch, End | None]:
    """Rewrite the destination to the first range's first address and port."""
    f, r = b.flow, t.to[0]
    if (
        len(t.to) > 1
        or (r.addr_hi or r.addr_lo) != r.addr_lo
        or (r.port_hi not in (None, r.port_lo))
    ):
        b = b.assume(f"{where}: DNAT to a range {r}; kpsim took the first address/port")
    try:
        dst = ip(r.addr_lo) if r.addr_lo else f.dst
    except ValueError:
        return b, (b, Disposition.UNKNOWN, f"{where}: DNAT address {r} not understood")
    port = f.dport if r.port_lo is None else r.port_lo
    moved = f.dnat or (dst, port) != (f.dst, f.dport)
    b = b.with_flow(f.moved_to(dst, port, moved))
    return b, (b, None, None)


def _netmap(hook: Hook, t: Netmap, b: Branch) -> tuple[Branch, End | None]:
    """xt_NETMAP: the network bits of the destination (PREROUTING, OUTPUT) or the source
    (POSTROUTING, INPUT) replaced by ``--to``'s, the host bits kept; ports unchanged."""
    net, f = ipaddress.ip_network(t.to), b.flow
    if hook.chain in ("PREROUTING", "OUTPUT"):
        dst = _mapped(net, f.dst)
        b = b.with_flow(f.moved_to(dst, f.dport, f.dnat or dst != f.dst))
        return b, (b, None, None)
    src = _mapped(net, f.src)
    b = b.snat(str(src), f._with(snat=f.snat or src != f.src))
    return b, (b, None, None)


def _mapped(net: ipaddress.IPv4Network | ipaddress.IPv6Network, addr: IPAddress) -> IPAddress:
    mask = int(net.netmask)
    return ipaddress.ip_address((int(addr) & ~mask) | (int(net.network_address) & mask))


def _redirect(node: NodeContext, hook: Hook, where: str, t: Redirect, b: Branch) -> Branch:
    """REDIRECT goes to the in interface's primary address (loopback when local)."""
    f = b.flow
    held = [
        n.network_address
        for n, iface in node.owners
        if iface == hook.in_iface and n.version == f.dst.version and n.prefixlen == n.max_prefixlen
    ]
    if hook.chain == "OUTPUT":
        dst = ip("127.0.0.1" if f.dst.version == 4 else "::1")
    elif held:  # nf_nat_redirect: the first address of the device the packet came in by
        dst = held[0]
    elif node.is_local(f.dst):
        dst = f.dst
    else:
        own = [
            n.network_address
            for n in node.local
            if n.version == f.dst.version and not n.network_address.is_loopback
        ]
        dst = own[0] if own else f.dst
        b = b.assume(f"{where}: REDIRECT address taken as {dst} (first node address)")
    port = t.to_ports.lo if t.to_ports is not None and t.to_ports.lo >= 0 else f.dport
    return b.nat(f.moved_to(dst, port, True), redirected=True)


def _connmark(t: ConnmarkTarget, f: Flow) -> Flow:
    """xt_CONNMARK: set-xmark on ctmark, save mark → ctmark, restore ctmark → mark."""
    if t.mode is ConnmarkMode.SET:
        return f._with(ctmark=((f.ctmark & ~t.mask) ^ t.value) & 0xFFFFFFFF)
    if t.mode is ConnmarkMode.SAVE:
        return f._with(ctmark=((f.ctmark & ~t.ctmask) ^ (f.mark & t.nfmask)) & 0xFFFFFFFF)
    return f._with(mark=((f.mark & ~t.nfmask) ^ (f.ctmark & t.ctmask)) & 0xFFFFFFFF)
