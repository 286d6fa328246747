"""What kube-proxy's rules say a service port is, whichever mode wrote them: the one
``Service`` type that ``services.py`` (iptables mode) and ``nft_services.py`` (nftables mode)
both build, so everything above reads one shape."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from kpsim.kube.frontends import Frontend


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A KUBE-SEP chain's DNAT destination and its chance for a new client."""

    chain: str
    destination: str | None
    probability: Fraction


@dataclass(frozen=True, slots=True)
class Service:
    """One service port as kube-proxy laid it out on this node."""

    name: str
    hash: str
    protocol: str | None
    frontends: tuple[Frontend, ...]
    endpoints: tuple[Endpoint, ...]
    local_endpoints: tuple[Endpoint, ...] = ()
    affinity_seconds: int | None = None
    traffic_policy_local: bool = False
    no_endpoints: bool = False  # kube-proxy says so (a REJECT, no chains): not a gap
    named_by: str = "comment"  # comment | hash | chain
    captured: bool = True  # False: a chain of the service is missing or cut in the capture

    # tuple(<list comprehension>), not tuple(<generator>): ``show -o json`` reads both
    # for every service, 0.0095 s → 0.0088 s for 10,000 (measured)
    @property
    def cluster_ips(self) -> tuple[str, ...]:
        return tuple([f.address for f in self.frontends if f.kind == "cluster-ip" and f.address])

    @property
    def node_ports(self) -> tuple[int, ...]:
        return tuple([f.port for f in self.frontends if f.kind == "node-port" and f.port])
