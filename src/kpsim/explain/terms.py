"""The Kubernetes documentation term each cause of uneven load is known by, and its page:
what a user would type into a search box, so ``kpsim why`` hands them the words."""

from __future__ import annotations

from collections.abc import Mapping

DOCS: Mapping[str, tuple[str, str]] = {
    "noise": ("chi-squared goodness-of-fit test (sampling noise)", ""),
    "affinity": (
        "Service session affinity",
        "https://kubernetes.io/docs/reference/networking/virtual-ips/#session-affinity",
    ),
    "etp-local": (
        "externalTrafficPolicy / internalTrafficPolicy",
        "https://kubernetes.io/docs/reference/networking/virtual-ips/#traffic-policies",
    ),
    "cross-node": (
        "Using Source IP (NodePort SNAT)",
        "https://kubernetes.io/docs/tutorials/services/source-ip/",
    ),
    "topology": (
        "Topology Aware Routing / traffic distribution",
        "https://kubernetes.io/docs/concepts/services-networking/topology-aware-routing/",
    ),
    "reuse": (
        "HTTP keep-alive / connection reuse (gRPC load balancing)",
        "https://kubernetes.io/blog/2018/11/07/grpc-load-balancing-on-kubernetes-without-tears/",
    ),
    "conntrack": (
        "conntrack (kube-proxy --conntrack-udp-timeout)",
        "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/",
    ),
}
