"""Where packets leave the node: from the capture's routes when it carries them
(``ip -j route``/``rule``, formats/iproute.py), else from what the rules themselves say.

    capture has ip -j route ─▶ NodeContext with the node's tables and policy rules
    else: rules that tie a network to an interface ─▶ inferred routes, each with its why
          -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE  ─▶ 172.17.0.0/16 docker0
          -A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 …       ─▶ 172.17.0.2/32 docker0
          -A FORWARD -s 10.244.0.0/16 -i cni0 …                       ─▶ 10.244.0.0/16 cni0
          everything else                                             ─▶ eth0 (stated)

An outcome whose destination was routed by an inferred route carries the why
(``NodeContext.inferred``, written on the outcome by the trace).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from itertools import filterfalse

from kpsim.formats.iproute import has_routing, ip_addresses, node_from_ip
from kpsim.kube.names import other_chains
from kpsim.model import Family, Ruleset
from kpsim.model.node import NodeContext
from kpsim.model.values import IPNetwork

#: Interfaces that say nothing about where a network lives: the uplink and loopback,
#: and wildcards (``veth+``, ``eni+``: many interfaces, no one route).
_UPLINK = frozenset({"eth0", "lo", "ens5"})
#: Chains that tie no network to an interface, passed over by name so that a demand-driven
#: trace builds none of them (formats/iptables/lazy.py: a chain's rules are read when first
#: used): kube-proxy's per-service chains (no -i/-o; ``names.other_chains`` sets them
#: aside), and the same in its nftables table (service-H-…, endpoint-H-…: formats/nft/
#: kp_lazy.py reads them on demand too; their interface matches, if any, are negated).
_NFT_PER_SERVICE = re.compile(r"(?:service|external|local|endpoint|firewall)-[A-Z2-7]{8}-")


def _not_per_service(chains: Collection[str]) -> Iterator[str]:
    """The names of chains that are not per-service ones, in order, picked in C: a Python
    loop over a 10,000-service dump's 61,000 names took 23 ms of a trace (measured), and
    looking their chains up would make each one of a capture read on demand."""
    return filterfalse(_NFT_PER_SERVICE.match, other_chains(chains))


def _ties(ruleset: Ruleset) -> list[tuple[IPNetwork, str, str]]:
    """(network, interface, why) for each rule that puts a network behind an interface."""
    found: list[tuple[IPNetwork, str, str]] = []
    version = 6 if ruleset.family is Family.IPV6 else 4
    for table in ruleset.tables.values():
        chains = table.chains
        for name in _not_per_service(chains):
            chain = chains[name]
            if chain.sketch() is not None:  # a sketch's rules have no -i/-o (RuleSketch)
                continue
            for rule in chain.rules:
                src, dst = rule.source, rule.destination
                i, o = rule.in_interface, rule.out_interface
                pairs = []
                if src is not None and not src.negated and i is not None and not i.negated:
                    pairs.append((src.network, i.name))  # -s NET -i IF: NET is behind IF
                if src is not None and not src.negated and o is not None and o.negated:
                    pairs.append((src.network, o.name))  # -s NET ! -o IF (docker's masquerade)
                if dst is not None and not dst.negated and o is not None and not o.negated:
                    pairs.append((dst.network, o.name))  # -d NET -o IF: NET is behind IF
                for net, iface in pairs:
                    if net is None or net.prefixlen == 0 or iface.endswith("+"):
                        continue
                    if iface in _UPLINK or net.version != version:
                        continue
                    line = rule.origin.line if rule.origin and rule.origin.line else "?"
                    why = (f"no routes captured: assumed {net} leaves by {iface}, as the rule "
                           f"at line {line} ({table.name} {chain.name}) implies")  # fmt: skip
                    found.append((net, iface, why))
    return list({(n, i): (n, i, w) for n, i, w in reversed(found)}.values())[::-1]


def routed_context(
    meta: Mapping[str, object],
    addrs: Sequence[str],
    on: Mapping[str, Sequence[str]],
    ruleset: Ruleset | None,
) -> tuple[NodeContext, list[str]]:
    """The node's context and what was assumed about its routes."""
    shown = ip_addresses(meta)
    missing = [a for a in addrs if a not in shown]  # named by the metadata or --node-ip only
    ctx = node_from_ip(meta, list(addrs), {"eth0": missing} if missing else None)
    if ctx is not None:
        notes = ["routes and policy rules from the capture (ip -j route, ip -j rule)"]
        if missing:
            notes.append(f"assumed {', '.join(missing)} (not in the captured ip addr) is on eth0")
        return ctx, notes
    ties = _ties(ruleset) if ruleset is not None else []
    routes = {"0.0.0.0/0": "eth0"} | {str(n): i for n, i, _ in ties}
    ifaces = tuple(dict.fromkeys([*on, *(i for _, i, _ in ties), "lo"]))
    base = NodeContext.of(addrs, interfaces=ifaces, on=on, routes=routes)
    notes = ["assumed every non-local destination leaves by eth0"]
    if ties:
        nets = ", ".join(f"{n} by {i}" for n, i, _ in ties)
        notes = [f"no routes captured: assumed {nets} (from the rules), the rest by eth0"]
    ctx = NodeContext(
        base.local, base.interfaces, base.broadcast, base.routes, base.owners,
        inferred=tuple(ties),
    )  # fmt: skip
    return ctx, notes


# ---------------------------------------------------------------- the node's view


def _host(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)


def node_addresses(meta: Mapping[str, object], extra: Sequence[str]) -> list[str]:
    """The node's own addresses (hosts, not subnets): metadata first, then ``--node-ip``."""
    found: list[str] = []
    for key in ("private_ips", "local_addresses"):
        value = meta.get(key)
        if isinstance(value, list):
            found.extend(_host(str(v)) for v in value)
    found.extend(_host(v) for v in extra)
    return list(dict.fromkeys(a for a in found if not ipaddress.ip_address(a).is_loopback))


def node_context(
    meta: Mapping[str, object], extra: Sequence[str], ruleset: Ruleset | None = None
) -> tuple[NodeContext, list[str]]:
    """Build the engine's view of the node, saying what was assumed (routes: the
    capture's ``ip -j`` outputs, else what ``ruleset``'s rules imply, else eth0)."""
    addrs = node_addresses(meta, extra)
    notes: list[str] = []
    ifaces = meta.get("interfaces")
    if isinstance(ifaces, dict):
        on = {str(k): [_host(str(a)) for a in v] for k, v in ifaces.items() if isinstance(v, list)}
    else:
        on = {"eth0": addrs}
        if addrs and not has_routing(meta):
            notes.append(f"assumed the node's addresses are on eth0 ({', '.join(addrs)})")
    ctx, route_notes = routed_context(meta, addrs, on, ruleset)
    return ctx, notes + route_notes
