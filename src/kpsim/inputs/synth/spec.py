"""What a synthetic cluster is made of: plain frozen specs, no iptables yet.

    ClusterSpec ─┬ nodes:    NodeSpec(name, instance_id, az, ip)
                 ├ services: ServiceSpec ─┬ ports:     ServicePortSpec(name, protocol, port, …)
                 │                        └ endpoints: EndpointSpec(ip, node, ready)
                 └ pods:     PodSpec(namespace, name, ip, node)

The properties on ServiceSpec are kube-proxy's traffic-policy questions
(UsesClusterEndpoints and friends); the rule writers only ask them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeSpec:
    """One worker node; `ip` is the primary ENI address."""

    name: str
    instance_id: str
    az: str
    ip: str
    subnet_prefix: int = 20
    primary_interface: str = "eth0"

    @property
    def short_name(self) -> str:
        """Host part of the node name (the fixture directory name)."""
        return self.name.split(".", 1)[0]

    @property
    def local_cidr(self) -> str:
        """Primary address with its subnet prefix, as `ip addr` shows it."""
        return f"{self.ip}/{self.subnet_prefix}"


@dataclass(frozen=True)
class PodSpec:
    """A pod on the pod network (VPC CNI: pod IPs come from the VPC)."""

    namespace: str
    name: str
    ip: str
    node: str


@dataclass(frozen=True)
class EndpointSpec:
    """One EndpointSlice address; `node` is None for off-node (e.g. control plane) IPs."""

    ip: str
    node: str | None
    ready: bool = True


@dataclass(frozen=True)
class ServicePortSpec:
    """One service port; `target_port` is the numeric port endpoints listen on."""

    name: str
    protocol: str
    port: int
    target_port: int
    node_port: int | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """A Service plus its ready/unready endpoints (one address list for all ports)."""

    namespace: str
    name: str
    cluster_ip: str
    ports: tuple[ServicePortSpec, ...]
    type: str = "ClusterIP"
    endpoints: tuple[EndpointSpec, ...] = ()
    session_affinity_seconds: int | None = None
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    health_check_node_port: int | None = None

    @property
    def externally_accessible(self) -> bool:
        """NodePort, LoadBalancer and external IPs all count as external."""
        return self.type in ("NodePort", "LoadBalancer") or bool(self.external_ips)

    @property
    def external_policy_local(self) -> bool:
        """ETP Local only matters when something external exists."""
        return self.externally_accessible and self.external_traffic_policy == "Local"

    @property
    def internal_policy_local(self) -> bool:
        """ITP Local switches ClusterIP traffic to node-local endpoints."""
        return self.internal_traffic_policy == "Local"

    @property
    def uses_cluster_endpoints(self) -> bool:
        """Whether a KUBE-SVC chain is needed (kube-proxy's UsesClusterEndpoints)."""
        return not self.internal_policy_local or (
            self.externally_accessible and not self.external_policy_local
        )

    @property
    def uses_local_endpoints(self) -> bool:
        """Whether a KUBE-SVL chain may be needed."""
        return self.internal_policy_local or self.external_policy_local


@dataclass(frozen=True)
class ClusterSpec:
    """Everything needed to render any node's rules.

    `cluster_cidr` None means kube-proxy's local-traffic detector is off, which is
    the EKS default (its kube-proxy config leaves clusterCIDR empty).
    """

    nodes: tuple[NodeSpec, ...]
    services: tuple[ServiceSpec, ...]
    pods: tuple[PodSpec, ...] = ()
    cluster_cidr: str | None = None
    vpc_cidr: str = "10.11.0.0/16"
    service_cidr: str = "172.20.0.0/16"
    masquerade_bit: int = 14
    masquerade_all: bool = False
    localhost_nodeports: bool = True
    conntrack_tcp_liberal: bool = False
    vpc_cni: bool = True
    kubelet_chains: bool = True
    cni_veth_prefix: str = "eni"
    cni_random_fully: bool = True

    def node(self, name: str) -> NodeSpec:
        """Look a node up by full or short name."""
        for n in self.nodes:
            if name in (n.name, n.short_name):
                return n
        raise KeyError(f"unknown node {name!r}")
