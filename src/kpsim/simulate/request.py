"""What to simulate: the request, the frontends it names, entry weights, client addresses.

SimRequest(port=30080)             ─▶ Target(service, 30080, dest=None)  (each node's IP)
SimRequest(dest=IP, port=P)        ─▶ Target(service or IP:P, P, IP)
SimRequest(service=NAME)           ─▶ its NodePort, else its cluster IP
SimRequest()                       ─▶ every NodePort service
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from kpsim.engine.trace import UnknownMode
from kpsim.errors import TraceError, UsageError
from kpsim.kube import services as kube
from kpsim.kube.scenario import NodeInput, check_mode
from kpsim.simulate.sampler import RECENT_CAPACITY

#: Client addresses: RFC 5737 documentation ranges first, then RFC 2544 benchmarking.
CLIENT_NETS = ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24", "198.18.0.0/15")


@dataclass(frozen=True, slots=True)
class SimRequest:
    """What to simulate. No port, dest or service: every NodePort service."""

    n: int
    port: int | None = None
    dest: str | None = None
    service: str | None = None
    protocol: str = "tcp"
    entry: tuple[tuple[str, Fraction], ...] = ()  # () = uniform over the nodes
    clients: int = 10
    rate: float = 100.0  # connections per second, for affinity expiry
    seed: int | None = None  # recorded in the report; the generator itself is injected
    node_ips: tuple[str, ...] = ()
    recent_capacity: int = RECENT_CAPACITY
    unknown: UnknownMode = "stop"


@dataclass(frozen=True, slots=True)
class Target:
    service: str
    port: int
    dest: str | None  # None: each entry node's own address (NodePort)
    affinity_seconds: int | None = None


def client_ip(i: int) -> str:
    """The i-th simulated client address (documentation ranges, then benchmarking)."""
    for cidr in CLIENT_NETS:
        hosts = ipaddress.ip_network(cidr).num_addresses - 2
        if i < hosts:
            return str(ipaddress.ip_network(cidr).network_address + 1 + i)
        i -= hosts
    raise UsageError("--clients: too many clients for the reserved address ranges")


def entry_weights(
    nodes: Sequence[str], entry: Sequence[tuple[str, Fraction]]
) -> tuple[Fraction, ...]:
    """Normalised weights per node; unnamed nodes get 0 when any weight is given."""
    if not entry:
        return tuple(Fraction(1, len(nodes)) for _ in nodes)
    raw = [Fraction(0)] * len(nodes)
    for name, w in entry:
        hits = [i for i, n in enumerate(nodes) if name in (n, n.split(".")[0])]
        if not hits:
            raise UsageError(f"--entry {name}: no such node (nodes: {', '.join(nodes)})")
        if w < 0:
            raise UsageError(f"--entry {name}={w}: weights must be ≥ 0")
        raw[hits[0]] = w
    total = sum(raw, Fraction(0))
    if total == 0:
        raise UsageError("--entry: the weights add up to 0")
    return tuple(w / total for w in raw)


def _all_services(inputs: Sequence[NodeInput]) -> list[kube.Service]:
    return [s for n in inputs for s in kube.services(n.ruleset)]


def targets(inputs: Sequence[NodeInput], req: SimRequest) -> list[Target]:
    """The frontends the request names, or every NodePort service."""
    check_mode(inputs)
    svcs = _all_services(inputs)
    node_ports = sorted({(p, s.name) for s in svcs for p in s.node_ports})
    if req.service is not None:
        want = req.service
        found = [
            s
            for s in svcs
            if want
            in (
                s.name,
                s.name.split(":")[0],
                s.name.split("/")[-1],
                s.name.split("/")[-1].split(":")[0],
            )
        ]
        if not found:
            names = ", ".join(sorted({s.name for s in svcs}))
            raise TraceError(f"--service {want}: no such service (services: {names})")
        s = found[0]
        if s.node_ports and req.dest is None:
            return [Target(s.name, s.node_ports[0], None, s.affinity_seconds)]
        front = next((f for f in s.frontends if f.address and f.port), None)
        if front is None or front.port is None:
            raise TraceError(f"--service {s.name}: no NodePort or cluster IP frontend")
        return [Target(s.name, front.port, front.address, s.affinity_seconds)]
    if req.port is None:
        return [Target(name, p, None, _affinity(svcs, name)) for p, name in node_ports]
    if req.dest is None:
        hits = [name for p, name in node_ports if p == req.port]
        if not hits and not all(n.ruleset.capture.complete for n in inputs):
            # the capture may hide it: trace it, and the answer says what is missing
            return [Target(f"NodePort {req.port}", req.port, None)]
        if not hits:
            listed = ", ".join(str(p) for p, _ in node_ports) or "none"
            raise TraceError(
                f"no NodePort {req.port} in these rules; NodePorts here: {listed} "
                "(use --dest IP --port P for a ClusterIP or another address)"
            )
        return [Target(hits[0], req.port, None, _affinity(svcs, hits[0]))]
    for s in svcs:
        if any(f.address == req.dest and f.port == req.port for f in s.frontends):
            return [Target(s.name, req.port, req.dest, s.affinity_seconds)]
    return [Target(f"{req.dest}:{req.port}", req.port, req.dest)]


def _affinity(svcs: Sequence[kube.Service], name: str) -> int | None:
    return next((s.affinity_seconds for s in svcs if s.name == name and s.affinity_seconds), None)
