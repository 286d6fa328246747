"""Which of the node's addresses its NodePorts answer on.

kube-proxy's ``nodePortAddresses`` turns the one catch-all jump

    -A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS

into one jump per allowed address (``-d 10.11.3.14/32 -j KUBE-NODEPORTS``). A client
that curls the node on any other address reaches no NodePort at all — a classic "works on
one IP of the node, not the other". Only decidable when the node's addresses are known
(capture metadata or ``--node-ip``); otherwise say which addresses the rules allow.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from kpsim.kube.routing import node_addresses
from kpsim.lint.findings import Finding, Severity, where
from kpsim.model import Jump, Rule, Ruleset

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nodeport_jumps(rs: Ruleset) -> list[Rule]:
    nat = rs.table("nat")
    chain = nat.chain("KUBE-SERVICES") if nat is not None else None
    rules = chain.rules if chain is not None else ()
    return [r for r in rules if isinstance(r.target, Jump) and r.target.chain == "KUBE-NODEPORTS"]


def nodeport_addresses(node: str, rs: Ruleset, node_ips: Sequence[str]) -> list[Finding]:
    """A warning per node address no NodePort jump accepts; an info when the jumps are
    limited but the node's addresses are unknown."""
    jumps = _nodeport_jumps(rs)
    if not jumps or any(r.destination is None for r in jumps):
        return []  # no NodePorts, or the catch-all (every local address): nothing limited
    if any(r.destination is not None and r.destination.negated for r in jumps):
        return []  # `! -d` limits nothing a lint can name
    nets = [r.destination.network if r.destination is not None else None for r in jumps]
    allowed: list[Network] = [n for n in nets if n is not None]
    if len(allowed) < len(jumps):
        return []  # an address kpsim could not read: nothing to claim
    shown = ", ".join(str(n) for n in allowed)
    first = where(jumps[0])
    addrs = node_addresses(rs.metadata, node_ips)
    if not addrs:
        return [
            Finding(
                Severity.INFO, "nodeport-addresses", node, None,
                f"NodePorts answer only on {shown} (nodePortAddresses); give --node-ip to "
                "check the node's own addresses against them", first,
            )
        ]  # fmt: skip
    out = []
    for addr in addrs:
        ip = ipaddress.ip_address(addr)
        if any(ip.version == n.version and ip in n for n in allowed):
            continue
        out.append(
            Finding(
                Severity.WARNING, "nodeport-addresses", node, None,
                f"NodePorts do not answer on the node's address {addr}: the rules accept "
                f"only {shown} (nodePortAddresses), so `curl {addr}:<nodePort>` reaches "
                "no service", first,
            )
        )  # fmt: skip
    return out
