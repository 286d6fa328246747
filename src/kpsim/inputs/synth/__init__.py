"""Synthesise the iptables state of an EKS node running kube-proxy (iptables mode, >= 1.29).

The rule layout, chain names, comments and argument order follow kube-proxy's
``syncProxyRules`` restore payload, so the text can be loaded into a real kernel
and compared with what ``iptables-save`` prints back.  The AWS VPC CNI chains an
EKS node carries (SNAT for traffic leaving the VPC, CONNMARK for NodePort return
traffic) are added so the result looks like a real node, not a lab toy.

    seed_workshop() / synth_large(…) ─▶ ClusterSpec ─┬ render_kube_proxy_restore(cluster, node)
                                                     └ render_restore(cluster, node)

One job per module: spec.py (the cluster specs), names.py (kube-proxy's chain names),
table.py (restore text of one table), plan.py (per-service-port decisions), services.py
(one service port's rules), kube_proxy.py (kube-proxy's payload), node.py (the whole
node: base-chain jumps, kubelet, VPC CNI), seed.py (the seed lab and large clusters).
"""

from __future__ import annotations

from kpsim.inputs.synth.kube_proxy import (
    LARGE_CLUSTER_ENDPOINTS_THRESHOLD as LARGE_CLUSTER_ENDPOINTS_THRESHOLD,
)
from kpsim.inputs.synth.kube_proxy import (
    render_kube_proxy_restore,
)
from kpsim.inputs.synth.names import (
    chain_hash,
    endpoint_chain_hash,
    ext_chain,
    fw_chain,
    probability,
    sep_chain,
    service_port_name,
    svc_chain,
    svl_chain,
)
from kpsim.inputs.synth.node import CNI_CONNMARK as CNI_CONNMARK
from kpsim.inputs.synth.node import render_restore
from kpsim.inputs.synth.seed import (
    N1 as N1,
)
from kpsim.inputs.synth.seed import (
    N2 as N2,
)
from kpsim.inputs.synth.seed import (
    N3 as N3,
)
from kpsim.inputs.synth.seed import (
    SEED_AZS,
    SEED_CAPTURE_TIME,
    SEED_CLUSTER_NAME,
    SEED_KUBE_PROXY_VERSION,
    SEED_NODES,
    SEED_REGION,
    SEED_SERVICE_CIDR,
    SEED_SERVICES,
    SEED_VPC_CIDR,
    seed_scaled,
    seed_workshop,
    synth_large,
)
from kpsim.inputs.synth.seed import (
    SEED_CONTROL_PLANE_IPS as SEED_CONTROL_PLANE_IPS,
)
from kpsim.inputs.synth.spec import (
    ClusterSpec,
    EndpointSpec,
    NodeSpec,
    PodSpec,
    ServicePortSpec,
    ServiceSpec,
)

__all__ = [
    "SEED_AZS",
    "SEED_CAPTURE_TIME",
    "SEED_CLUSTER_NAME",
    "SEED_KUBE_PROXY_VERSION",
    "SEED_NODES",
    "SEED_REGION",
    "SEED_SERVICES",
    "SEED_SERVICE_CIDR",
    "SEED_VPC_CIDR",
    "ClusterSpec",
    "EndpointSpec",
    "NodeSpec",
    "PodSpec",
    "ServicePortSpec",
    "ServiceSpec",
    "chain_hash",
    "endpoint_chain_hash",
    "ext_chain",
    "fw_chain",
    "probability",
    "render_kube_proxy_restore",
    "render_restore",
    "seed_scaled",
    "seed_workshop",
    "sep_chain",
    "service_port_name",
    "svc_chain",
    "svl_chain",
    "synth_large",
]
