"""Ready-made clusters: the nodeport-workshop seed lab and large deterministic ones.

    seed_workshop()                                      ─▶ 3 EKS nodes, 7 services
    seed_scaled()                                        ─▶ the same, node-test-01 at 5 pods
    synth_large(n_services, endpoints_per_service, seed) ─▶ 3 nodes, n services

The seed lab is what the committed fixtures are generated from (``python -m kpsim.inputs.regen``).
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import replace

from kpsim.inputs.synth.spec import (
    ClusterSpec,
    EndpointSpec,
    NodeSpec,
    PodSpec,
    ServicePortSpec,
    ServiceSpec,
)

SEED_CLUSTER_NAME = "eksworkshop"
SEED_REGION = "ap-northeast-2"
SEED_VPC_CIDR = "10.11.0.0/16"
SEED_SERVICE_CIDR = "172.20.0.0/16"
SEED_CAPTURE_TIME = "2026-11-26T00:00:00Z"
SEED_KUBE_PROXY_VERSION = "v1.29.0-eksbuild.1"
SEED_AZS = ("ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c")

_DOMAIN = f"{SEED_REGION}.compute.internal"
N1 = f"ip-10-11-28-53.{_DOMAIN}"
N2 = f"ip-10-11-40-87.{_DOMAIN}"
N3 = f"ip-10-11-3-14.{_DOMAIN}"

SEED_NODES: tuple[NodeSpec, ...] = (
    NodeSpec(N1, "i-0a3f5c27e91b04d68", "ap-northeast-2b", "10.11.28.53"),
    NodeSpec(N2, "i-07c1e94b2d6a83f15", "ap-northeast-2c", "10.11.40.87"),
    NodeSpec(N3, "i-0e58b0d3a4f719c26", "ap-northeast-2a", "10.11.3.14"),
)

# (namespace, pod name, pod ip, node) for every pod-network pod in the lab.
_SEED_PODS: tuple[tuple[str, str, str, str], ...] = (
    ("node-test-01", "node-test-01-869b8d5f87-fpww5", "10.11.16.79", N1),
    ("node-test-01", "node-test-01-869b8d5f87-pp7p9", "10.11.41.25", N2),
    ("node-test-01", "node-test-01-869b8d5f87-x6mf9", "10.11.11.70", N3),
    ("nodeport-test", "ecsdemo-frontend-cc96ff7df-ftnt8", "10.11.36.234", N2),
    ("nodeport-test", "ecsdemo-frontend-cc96ff7df-m2xkq", "10.11.22.178", N1),
    ("nodeport-test", "ecsdemo-frontend-cc96ff7df-zr8vd", "10.11.5.97", N3),
    ("nodeport-test", "ecsdemo-nodejs-6f9d7c8b54-4hw2n", "10.11.19.230", N1),
    ("nodeport-test", "ecsdemo-nodejs-6f9d7c8b54-tq6jx", "10.11.9.41", N3),
    ("nodeport-test", "ecsdemo-crystal-5d8b6f7c9d-8kzpl", "10.11.25.102", N1),
    ("nodeport-test", "ecsdemo-crystal-5d8b6f7c9d-wv4rt", "10.11.44.17", N2),
    ("kube-system", "coredns-5b8cc885bc-7q2tl", "10.11.24.143", N1),
    ("kube-system", "coredns-5b8cc885bc-lx9mf", "10.11.35.12", N2),
)

SEED_CONTROL_PLANE_IPS = ("10.11.7.201", "10.11.45.118")

# name -> (namespace, type, cluster IP, "port[/proto]:nodePort->target" summary, notes)
SEED_SERVICES: dict[str, dict[str, str]] = {
    "default/kubernetes": {"cluster_ip": "172.20.0.1", "ports": "https 443/TCP->443",
                           "endpoints": "control-plane ENIs 10.11.7.201, 10.11.45.118"},
    "kube-system/kube-dns": {"cluster_ip": "172.20.0.10",
                             "ports": "dns 53/UDP, dns-tcp 53/TCP, metrics 9153/TCP",
                             "endpoints": "2 coredns pods"},
    "node-test-01/node-test-01-svc": {"cluster_ip": "172.20.177.168", "type": "NodePort",
                                      "ports": "8080:30080/TCP->80",
                                      "endpoints": "3, one per node"},
    "nodeport-test/ecsdemo-frontend": {"cluster_ip": "172.20.210.120", "type": "NodePort",
                                       "ports": "80:30081/TCP->3000",
                                       "endpoints": "3, one per node"},
    "nodeport-test/ecsdemo-nodejs": {"cluster_ip": "172.20.91.45", "ports": "80/TCP->3000",
                                     "affinity": "ClientIP 10800s", "endpoints": "2"},
    "nodeport-test/ecsdemo-crystal": {"cluster_ip": "172.20.140.33", "type": "NodePort",
                                      "ports": "80:30082/TCP->3000", "etp": "Local",
                                      "endpoints": "2, none on ip-10-11-3-14"},
    "node-test-01/node-test-02-svc": {"cluster_ip": "172.20.66.201", "type": "NodePort",
                                      "ports": "8080:30083/TCP->80", "endpoints": "none"},
}  # fmt: skip


def _pod_eps(app_prefix: str) -> tuple[EndpointSpec, ...]:
    return tuple(
        EndpointSpec(ip, node) for _, name, ip, node in _SEED_PODS if name.startswith(app_prefix)
    )


def seed_workshop() -> ClusterSpec:
    """The nodeport-workshop lab: 3 EKS nodes, NodePort services, VPC CNI."""
    tcp = "TCP"
    services = (
        ServiceSpec("default", "kubernetes", "172.20.0.1",
                    (ServicePortSpec("https", tcp, 443, 443),),
                    endpoints=tuple(EndpointSpec(ip, None) for ip in SEED_CONTROL_PLANE_IPS)),
        ServiceSpec("kube-system", "kube-dns", "172.20.0.10",
                    (ServicePortSpec("dns", "UDP", 53, 53), ServicePortSpec("dns-tcp", tcp, 53, 53),
                     ServicePortSpec("metrics", tcp, 9153, 9153)),
                    endpoints=_pod_eps("coredns-")),
        ServiceSpec("node-test-01", "node-test-01-svc", "172.20.177.168",
                    (ServicePortSpec("", tcp, 8080, 80, 30080),), type="NodePort",
                    endpoints=_pod_eps("node-test-01-")),
        ServiceSpec("nodeport-test", "ecsdemo-frontend", "172.20.210.120",
                    (ServicePortSpec("", tcp, 80, 3000, 30081),), type="NodePort",
                    endpoints=_pod_eps("ecsdemo-frontend-")),
        ServiceSpec("nodeport-test", "ecsdemo-nodejs", "172.20.91.45",
                    (ServicePortSpec("", tcp, 80, 3000),), session_affinity_seconds=10800,
                    endpoints=_pod_eps("ecsdemo-nodejs-")),
        ServiceSpec("nodeport-test", "ecsdemo-crystal", "172.20.140.33",
                    (ServicePortSpec("", tcp, 80, 3000, 30082),), type="NodePort",
                    external_traffic_policy="Local", endpoints=_pod_eps("ecsdemo-crystal-")),
        ServiceSpec("node-test-01", "node-test-02-svc", "172.20.66.201",
                    (ServicePortSpec("", tcp, 8080, 80, 30083),), type="NodePort"),
    )  # fmt: skip
    pods = tuple(PodSpec(ns, name, ip, node) for ns, name, ip, node in _SEED_PODS)
    return ClusterSpec(
        nodes=SEED_NODES,
        services=services,
        pods=pods,
        cluster_cidr=None,
        vpc_cidr=SEED_VPC_CIDR,
        service_cidr=SEED_SERVICE_CIDR,
    )


def synth_large(
    n_services: int, endpoints_per_service: int, seed: int, *, pod_cidr: str = SEED_VPC_CIDR
) -> ClusterSpec:
    """A deterministic big cluster (3 nodes) for benchmarks; render any node of it.
    ``pod_cidr``: a wider one (10.0.0.0/8) holds the pods of 50,000 services."""
    rng = random.Random(seed)
    nodes = SEED_NODES
    svc_net = ipaddress.ip_network(SEED_SERVICE_CIDR)
    pod_net = ipaddress.ip_network(pod_cidr)
    if n_services + 2 > svc_net.num_addresses or n_services * endpoints_per_service + 256 > (
        pod_net.num_addresses
    ):
        raise ValueError("cluster too large for the seed service/VPC CIDRs")
    svc_ips = rng.sample(range(2, svc_net.num_addresses - 1), n_services)
    pod_base = int(pod_net.network_address) + 256
    services: list[ServiceSpec] = []
    pods: list[PodSpec] = []
    node_port = 30000
    for i in range(n_services):
        ns, name = f"bench-{i % 50:02d}", f"svc-{i:05d}"
        eps: list[EndpointSpec] = []
        for j in range(endpoints_per_service):
            ip = str(ipaddress.ip_address(pod_base + i * endpoints_per_service + j))
            node = nodes[rng.randrange(len(nodes))].name
            eps.append(EndpointSpec(ip, node))
            pods.append(PodSpec(ns, f"{name}-{j}", ip, node))
        is_np = i % 10 == 0 and node_port < 32767
        port = ServicePortSpec("http", "TCP", 80, 8080, node_port if is_np else None)
        node_port += 1 if is_np else 0
        services.append(
            ServiceSpec(
                ns,
                name,
                str(svc_net[svc_ips[i]]),
                (port,),
                type="NodePort" if is_np else "ClusterIP",
                endpoints=tuple(eps),
                session_affinity_seconds=10800 if i % 50 == 7 else None,
                external_traffic_policy="Local" if is_np and i % 30 == 0 else "Cluster",
            )
        )
    return ClusterSpec(nodes=nodes, services=tuple(services), pods=tuple(pods))


#: The pods a scale-up of node-test-01 from 3 to 5 replicas adds (``seed_scaled``).
SCALED_PODS: tuple[tuple[str, str, str, str], ...] = (
    ("node-test-01", "node-test-01-869b8d5f87-b7cq2", "10.11.30.61", N1),
    ("node-test-01", "node-test-01-869b8d5f87-k4r8z", "10.11.47.203", N2),
)


def seed_scaled() -> ClusterSpec:
    """The seed lab after ``kubectl scale --replicas=5`` of node-test-01: the snapshots
    ``kpsim diff`` is tested on (tests/data/snapshots)."""
    base = seed_workshop()
    added = tuple(PodSpec(*p) for p in SCALED_PODS)
    extra = tuple(EndpointSpec(p.ip, p.node) for p in added)
    services = tuple(
        replace(s, endpoints=s.endpoints + extra) if s.name == "node-test-01-svc" else s
        for s in base.services
    )
    return replace(base, services=services, pods=base.pods + added)
