"""kube-proxy's meaning of its nftables table (read by formats/nft/kube_proxy.py):
services, frontends and endpoints with the kernel's exact shares.

    services ─ @service-ips      10.0.0.1 . tcp . 80 ─▶ service-H-ns/name/tcp/port (cluster IP)
             ─ @service-nodeports     tcp . 30080    ─▶ external-H-…               (NodePort)
    service-H-… ─ numgen random mod N vmap ─▶ endpoint-E-…__ip/port ─ dnat to ip:port
    service-H-… ─ dnat ip addr . port to numgen random mod N map { 0 : ip . port, … }
    external-H-… ─▶ local-H-… (externalTrafficPolicy Local) or service-H-…
    service-endpoints-check ─ @no-endpoint-services ─▶ reject-chain / drop (no endpoints)

The names come from the chain names (``ns/name/proto/port``) and the no-endpoint maps'
element comments; the shares from NumgenMatch, exact over 2^32.
"""

from __future__ import annotations

import re
from dataclasses import replace

from kpsim.kube.frontends import Frontend, address
from kpsim.kube.service import Endpoint, Service
from kpsim.model import (
    Chain,
    CommentMatch,
    Dnat,
    Jump,
    RecentCommand,
    RecentMatch,
    Rule,
    Ruleset,
)
from kpsim.model.nft import NumgenMatch, SetLookup

#: ``service-H-ns/name/proto/port`` and its siblings: the kind, the hash, the rest.
CHAIN = re.compile(r"(service|external|local|firewall)-([A-Z2-7]{8})-(\S+)")
ENDPOINT = re.compile(r"endpoint-[A-Z2-7]{8}-(\S+)__(\S+)")
_CHECKS = ("service-endpoints-check", "nodeport-endpoints-check", "endpoints-check")


def is_nft_kube_proxy(ruleset: Ruleset) -> bool:
    nat = ruleset.table("nat")
    return nat is not None and "services" in nat.chains and "nat-prerouting" in nat.chains


def service_name(rest: str) -> str:
    """``ns/name/tcp/port`` → ``ns/name:port`` (``ns/name`` for an unnamed port), as the
    iptables proxier's comments name it."""
    parts = rest.split("/")
    if len(parts) < 4:
        return rest
    base = f"{parts[0]}/{parts[1]}"
    return f"{base}:{parts[3]}" if parts[3] else base


def chain_service(chain: str) -> str | None:
    """The service a kube-proxy nft chain belongs to, from its name."""
    m = CHAIN.match(chain)
    if m is not None:
        return service_name(m.group(3))
    e = ENDPOINT.match(chain)
    return service_name(e.group(1)) if e is not None else None


def nft_services(ruleset: Ruleset) -> tuple[Service, ...]:
    chains: dict[str, Chain] = {}
    for table in ruleset.tables.values():  # the one nft table, in the engine's hook slots
        for name, chain in table.chains.items():
            chains.setdefault(name, chain)
    groups: dict[str, dict[str, str]] = {}  # hash → kind → chain
    names: dict[str, str] = {}
    protos: dict[str, str] = {}
    for name in chains:
        m = CHAIN.match(name)
        if m is not None:
            groups.setdefault(m.group(2), {})[m.group(1)] = name
            names[m.group(2)] = service_name(m.group(3))
            protos[m.group(2)] = m.group(3).split("/")[2] if m.group(3).count("/") >= 3 else ""
    fronts: dict[str, list[Frontend]] = {h: [] for h in groups}
    services_chain = chains.get("services")
    for rule in services_chain.rules if services_chain else ():
        _frontend(rule, fronts)
    out = []
    for h, kinds in groups.items():
        svc_chain = chains.get(kinds.get("service", ""))
        local_chain = chains.get(kinds.get("local", ""))
        endpoints = _endpoints(svc_chain, chains)
        local = _endpoints(local_chain, chains)
        ext = chains.get(kinds.get("external", ""))
        policy_local = ext is not None and any(
            isinstance(r.target, Jump) and r.target.chain == kinds.get("local") for r in ext.rules
        )
        out.append(
            Service(
                names[h],
                h,
                protos.get(h) or None,
                tuple(fronts[h]),
                endpoints or local,
                local,
                _affinity(svc_chain or local_chain),
                policy_local,
            )
        )
    # @no-endpoint-* elements: a service with no endpoints at all, or frontends of a
    # known one that drop here (externalTrafficPolicy Local with no local endpoint)
    dropped = _no_endpoints(chains)
    for i, svc in enumerate(out):
        more = dropped.pop(svc.name, None)
        if more is None:
            continue
        # only frontends the service maps lack: an ETP Local frontend is in both @service-ips
        # (→ external-…) and @no-endpoint-services (→ drop); it is listed once, as external
        known = {(f.address, f.port, f.protocol) for f in svc.frontends}
        extra = tuple(f for f in more.frontends if (f.address, f.port, f.protocol) not in known)
        out[i] = replace(svc, frontends=svc.frontends + extra)
    out.extend(dropped.values())
    return tuple(sorted(out, key=lambda s: (s.name, s.protocol or "")))


def _frontend(rule: Rule, fronts: dict[str, list[Frontend]]) -> None:
    """A ``services`` rule lowered from one map element: its key is the frontend."""
    target = rule.target
    lookups = [m for m in rule.matches if isinstance(m, SetLookup)]
    lookup = lookups[-1] if lookups else None  # the map element; @nodeport-ips before it
    if not isinstance(target, Jump) or lookup is None or len(lookup.elements) != 1:
        return
    m = CHAIN.match(target.chain)
    if m is None or m.group(2) not in fronts:
        return
    values = dict(zip(lookup.keys, lookup.elements[0], strict=True))
    proto = values.get("meta l4proto")
    port = values.get("th dport")
    dst = values.get("ip daddr") or values.get("ip6 daddr")
    if dst is None:
        kind, where = "node-port", None
    else:
        kind = "cluster-ip" if m.group(1) == "service" or m.group(1) == "local" else "external-ip"
        where = dst.text
    if rule.destination is not None and dst is None:
        where = address(rule.destination)
    fronts[m.group(2)].append(
        Frontend(
            kind,
            where,
            port.lo if port is not None and port.lo == port.hi else None,
            proto.text if proto is not None else None,
            rule,
        )
    )


def offers_node_port(ruleset: Ruleset, port: int) -> bool:
    """Does ``nft_services(ruleset)`` give a service NodePort ``port`` from the
    ``services`` chain's @service-nodeports elements? (``trace --port``'s quick yes: the
    ``services`` chain alone, none of the 60,000 others a big table holds.)"""
    nat = ruleset.table("nat")
    chain = nat.chain("services") if nat is not None else None
    for rule in chain.rules if chain is not None else ():
        target = rule.target
        lookups = [m for m in rule.matches if isinstance(m, SetLookup)]
        if not isinstance(target, Jump) or not lookups or len(lookups[-1].elements) != 1:
            continue
        if CHAIN.match(target.chain) is None or not any(
            target.chain in t.chains for t in ruleset.tables.values()
        ):
            continue  # not a service's chain (_frontend reads only those)
        values = dict(zip(lookups[-1].keys, lookups[-1].elements[0], strict=True))
        found = values.get("th dport")
        if "ip daddr" in values or "ip6 daddr" in values or found is None:
            continue
        if found.lo == found.hi == port:
            return True
    return False


def _affinity(chain: Chain | None) -> int | None:
    """The timeout of the affinity sets the service chain checks (``ip saddr @affinity-…``)."""
    for rule in chain.rules if chain is not None else ():
        for m in rule.matches:
            if isinstance(m, RecentMatch) and m.command is RecentCommand.RCHECK:
                return m.seconds
    return None


def _endpoints(chain: Chain | None, chains: dict[str, Chain]) -> tuple[Endpoint, ...]:
    if chain is None:
        return ()
    out = []
    for rule in chain.rules:
        pick = next((m for m in rule.matches if isinstance(m, NumgenMatch)), None)
        target = rule.target
        if pick is not None and isinstance(target, Jump):
            out.append(Endpoint(target.chain, _destination(chains.get(target.chain)), pick.share))
        elif pick is not None and isinstance(target, Dnat) and target.to:
            # ``dnat ip addr . port to numgen … map { 0 : A . P, … }``: no endpoint chains,
            # the service chain translates itself
            out.append(Endpoint(chain.name, str(target.to[0]), pick.share))
    return tuple(out)


def _destination(chain: Chain | None) -> str | None:
    for rule in chain.rules if chain is not None else ():
        t = rule.target
        if isinstance(t, Dnat) and t.to:
            return str(t.to[0])
    return None


def _no_endpoints(chains: dict[str, Chain]) -> dict[str, Service]:
    """Services kube-proxy lists in @no-endpoint-services / -nodeports: a reject or drop."""
    out: dict[str, list[Frontend]] = {}
    for check in _CHECKS:
        chain = chains.get(check)
        for rule in chain.rules if chain is not None else ():
            found = [m for m in rule.matches if isinstance(m, SetLookup)]
            lookup = found[-1] if found else None
            comment = next((m.text for m in rule.matches if isinstance(m, CommentMatch)), None)
            if lookup is None or len(lookup.elements) != 1:
                continue
            name = comment or _element_comment(lookup.text)
            if name is None:
                continue
            values = dict(zip(lookup.keys, lookup.elements[0], strict=True))
            dst = values.get("ip daddr")
            port = values.get("th dport")
            proto = values.get("meta l4proto")
            out.setdefault(name, []).append(
                Frontend(
                    "cluster-ip" if dst is not None else "node-port",
                    dst.text if dst is not None else None,
                    port.lo if port is not None else None,
                    proto.text if proto is not None else None,
                    rule,
                )
            )
    return {
        name: Service(name, "", fr[0].protocol, tuple(fr), (), no_endpoints=True)
        for name, fr in out.items()
    }


def _element_comment(text: str) -> str | None:
    m = re.search(r'comment "([^"]*)"', text)
    return m.group(1) if m else None


__all__ = ["Endpoint", "Service", "chain_service", "is_nft_kube_proxy", "nft_services"]


def nodeport_ips(ruleset: Ruleset) -> list[str]:
    """The single addresses of @nodeport-ips (nodePortAddresses): NodePorts answer on
    these only, unlike the iptables proxier's ``addrtype LOCAL``."""
    nat = ruleset.table("nat")
    chain = nat.chain("services") if nat is not None else None
    out: list[str] = []
    for rule in chain.rules if chain is not None else ():
        for m in rule.matches:
            if isinstance(m, SetLookup) and m.name == "@nodeport-ips":
                out.extend(e[0].text for e in m.elements if e[0].lo == e[0].hi)
        if out:
            break
    return out
