"""kube-proxy's names: ServicePortName strings, hashed chain names, probability strings.

    service_port_name("ns", "web", "http")  ─▶ "ns/web:http"
    svc_chain(spn, "TCP")                   ─▶ "KUBE-SVC-" + base32(sha256(spn + "tcp"))[:16]
    probability(3)                          ─▶ "0.3333333333"

The hashes themselves are kpsim.kube.names', so parsing and generating agree by construction.
"""

from __future__ import annotations

from kpsim.kube.names import endpoint_hash, port_proto_hash


def service_port_name(namespace: str, name: str, port_name: str) -> str:
    """kube-proxy's ServicePortName string: `ns/name:port`, or `ns/name` if unnamed."""
    base = f"{namespace}/{name}"
    return f"{base}:{port_name}" if port_name else base


#: kube-proxy's chain-name hashes live with the rest of kube-proxy's meaning (kpsim.kube);
#: the generator names its chains with the very same functions.
chain_hash = port_proto_hash
endpoint_chain_hash = endpoint_hash


def svc_chain(spn: str, protocol: str) -> str:
    """Cluster-policy chain name."""
    return "KUBE-SVC-" + chain_hash(spn, protocol)


def svl_chain(spn: str, protocol: str) -> str:
    """Local-policy chain name."""
    return "KUBE-SVL-" + chain_hash(spn, protocol)


def ext_chain(spn: str, protocol: str) -> str:
    """External-traffic chain name."""
    return "KUBE-EXT-" + chain_hash(spn, protocol)


def fw_chain(spn: str, protocol: str) -> str:
    """LoadBalancerSourceRanges firewall chain name."""
    return "KUBE-FW-" + chain_hash(spn, protocol)


def sep_chain(spn: str, protocol: str, endpoint: str) -> str:
    """Endpoint chain name."""
    return "KUBE-SEP-" + endpoint_chain_hash(spn, protocol, endpoint)


def probability(n: int) -> str:
    """kube-proxy's probability string for picking 1 of n remaining endpoints."""
    return f"{1.0 / n:0.10f}"
