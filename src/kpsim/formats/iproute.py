"""The node's addresses, routes and policy rules, as ``ip -j`` printed them.

    # kpsim:meta {…, "ip": {"addr": [ip -j addr], "route": [ip -j route show table all],
                            "rule": [ip -j rule]}}
    ─▶ NodeContext(local addresses, owners, main-table routes, tables, policy rules)

A capture carries them in its metadata line (``fetch`` collects them); the trace then
decides the interface a packet leaves by as the kernel does: the policy rules in priority
order, the longest prefix of the first table that has a route.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from kpsim.model.node import IPAddress, NodeContext, PolicyRule, Route, ip
from kpsim.model.values import IPNetwork

#: The metadata key that holds the three ``ip -j`` outputs.
IP_KEY = "ip"
_V6_HINTS = ("dst", "gateway", "prefsrc", "via")
_NO_DEVICE = frozenset({"blackhole", "unreachable", "prohibit", "throw"})


def has_routing(meta: Mapping[str, object]) -> bool:
    """Does the capture carry the node's routes (``ip -j route``)?"""
    block = meta.get(IP_KEY)
    return isinstance(block, dict) and isinstance(block.get("route"), list)


def _net(text: str, length: object = None) -> IPNetwork | None:
    if text in ("default", "all"):
        return ipaddress.ip_network("0.0.0.0/0")
    try:
        if isinstance(length, int):
            return ipaddress.ip_network(f"{text}/{length}", strict=False)
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _addresses(addr: object) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Local addresses (as interfaces, ``10.0.1.5/20``), owners, broadcast addresses."""
    local: list[str] = []
    on: dict[str, list[str]] = {}
    bcast: list[str] = []
    for link in addr if isinstance(addr, list) else []:
        if not isinstance(link, dict):
            continue
        name = str(link.get("ifname", "?"))
        on.setdefault(name, [])
        for info in link.get("addr_info") or []:
            if not isinstance(info, dict) or info.get("family") != "inet":
                continue
            host = str(info.get("local", ""))
            if _net(host) is None:
                continue
            local.append(host)
            on[name].append(host)
            if isinstance(info.get("broadcast"), str):
                bcast.append(info["broadcast"])
    return local, on, bcast


def _routes(route: object) -> dict[str, list[Route]]:
    tables: dict[str, list[Route]] = {}
    for r in route if isinstance(route, list) else []:
        if not isinstance(r, dict) or any(":" in str(r.get(k, "")) for k in _V6_HINTS):
            continue  # IPv6 routes ("default" is both families' name): not asked by IPv4
        dst = _net(str(r.get("dst", "")))
        if dst is None or dst.version != 4:
            continue
        kind = str(r.get("type", "unicast"))
        dev = r.get("dev")
        iface = None if kind in _NO_DEVICE or not isinstance(dev, str) else dev
        if kind == "local":
            iface = "lo"
        tables.setdefault(str(r.get("table", "main")), []).append(Route(dst, iface, kind))
    return tables


def _mark(text: object) -> int | None:
    if isinstance(text, int):
        return text
    try:
        return int(str(text), 0)
    except ValueError:
        return None


def _rules(rule: object) -> list[PolicyRule]:
    out: list[PolicyRule] = []
    for r in rule if isinstance(rule, list) else []:
        if not isinstance(r, dict) or not isinstance(r.get("priority"), int):
            continue
        src = str(r.get("src", "all"))
        dst = r.get("dst")
        fwmark = _mark(r["fwmark"]) if "fwmark" in r else None
        fwmask = _mark(r.get("fwmask", "0xffffffff"))
        out.append(
            PolicyRule(
                r["priority"],
                str(r.get("table", "main")),
                None if src == "all" else _net(src, r.get("srclen")),
                None if not isinstance(dst, str) or dst == "all" else _net(dst, r.get("dstlen")),
                fwmark,
                0xFFFFFFFF if fwmask is None else fwmask,
                str(r["iif"]) if isinstance(r.get("iif"), str) else None,
                bool(r.get("not")),
            )
        )
    return sorted(out, key=lambda p: p.priority)


def ip_addresses(meta: Mapping[str, object]) -> set[str]:
    """The IPv4 addresses ``ip -j addr`` shows on the node's interfaces."""
    block = meta.get(IP_KEY)
    return set(_addresses(block.get("addr"))[0]) if isinstance(block, dict) else set()


def node_from_ip(
    meta: Mapping[str, object], extra: list[str], extra_on: Mapping[str, list[str]] | None = None
) -> NodeContext | None:
    """The node as its ``ip -j`` outputs describe it (``extra``: more local addresses,
    ``--node-ip``; ``extra_on``: interfaces assumed to hold some of them), or None when
    the capture does not carry its routes."""
    block = meta.get(IP_KEY)
    if not isinstance(block, dict) or not has_routing(meta):
        return None
    local, on, bcast = _addresses(block.get("addr"))
    for iface, addrs in (extra_on or {}).items():
        on.setdefault(iface, []).extend(addrs)
    tables = _routes(block.get("route"))
    rules = _rules(block.get("rule"))
    local_table = tables.get("local", [])
    local += [str(r.dst.network_address) for r in local_table if r.kind == "local"]
    bcast += [str(r.dst.network_address) for r in local_table if r.kind == "broadcast"]
    main = {str(r.dst): r.iface for r in tables.get("main", []) if r.iface is not None}
    ctx = NodeContext.of(
        [*local, *extra],
        interfaces=tuple(dict.fromkeys([*on, "lo"])),
        broadcast=bcast,
        routes=main,
        on={k: v for k, v in on.items() if v},
    )
    frozen = tuple((name, tuple(rs)) for name, rs in tables.items())
    return NodeContext(
        ctx.local, ctx.interfaces, ctx.broadcast, ctx.routes, ctx.owners, tuple(rules), frozen
    )


def in_interface(ctx: NodeContext, client: IPAddress | str) -> str | None:
    """The interface a packet from ``client`` comes in by: the one the node's reply to
    it would leave by (the route back to the client)."""
    return ctx.route(ip(client))
