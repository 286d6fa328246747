"""The chains, ipsets and tables each kube-proxy mode writes (``kube.mode`` reads the
proxy mode off them; the sources are named there): a mode's per-service chains, the
chains only it writes, and its entry points.

    iptables   KUBE-SVC-/KUBE-SEP-/… per service, KUBE-NODEPORTS, KUBE-EXTERNAL-SERVICES
    IPVS       KUBE-NODE-PORT, KUBE-LOAD-BALANCER, ipsets KUBE-CLUSTER-IP, …
    userspace  KUBE-PORTALS-*, KUBE-NODEPORT-*
    nftables   table kube-proxy: nat-prerouting, services, service-H-ns/name/proto/port
"""

from __future__ import annotations

import re

from kpsim.kube.names import PER_SERVICE_PREFIXES

IPTABLES_PREFIXES = PER_SERVICE_PREFIXES
# KUBE-EXTERNAL-SERVICES (filter) and KUBE-PROXY-CANARY come from the iptables proxier only
IPTABLES_CHAINS = frozenset({"KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-CANARY"})
IPVS_CHAINS = frozenset(
    {
        "KUBE-NODE-PORT",
        "KUBE-LOAD-BALANCER",
        "KUBE-IPVS-FILTER",
        "KUBE-IPVS-OUT-FILTER",
        "KUBE-SOURCE-RANGES-FIREWALL",
        "KUBE-FIRE-WALL",  # the first IPVS proxier's (2017)
    }
)
IPVS_NAT_CHAINS = frozenset({"KUBE-FIREWALL"})  # old IPVS proxier; kubelet's is in filter
IPVS_ENTRY = frozenset({"KUBE-NODE-PORT", "KUBE-LOAD-BALANCER", "KUBE-FIREWALL"})
_IPVS_SETS_V4 = (
    "KUBE-LOOP-BACK",
    "KUBE-CLUSTER-IP",
    "KUBE-EXTERNAL-IP",
    "KUBE-EXTERNAL-IP-LOCAL",
    "KUBE-LOAD-BALANCER",
    "KUBE-LOAD-BALANCER-FW",
    "KUBE-LOAD-BALANCER-LOCAL",
    "KUBE-LOAD-BALANCER-SOURCE-IP",
    "KUBE-LOAD-BALANCER-SOURCE-CIDR",
    "KUBE-NODE-PORT-TCP",
    "KUBE-NODE-PORT-LOCAL-TCP",
    "KUBE-NODE-PORT-UDP",
    "KUBE-NODE-PORT-LOCAL-UDP",
    "KUBE-NODE-PORT-SCTP-HASH",
    "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
    "KUBE-HEALTH-CHECK-NODE-PORT",
    "KUBE-IPVS-IPS",
)
# IPv6 sets are renamed KUBE-6-…, cut to ipset's 31 characters (ipvs/ipset.go NewIPSet).
# Only these names: kube-router's policy sets (KUBE-SRC-…, KUBE-DST-…) are not IPVS mode.
IPVS_SETS = frozenset(_IPVS_SETS_V4) | frozenset(("KUBE-6-" + n[5:])[:31] for n in _IPVS_SETS_V4)
USERSPACE_CHAINS = frozenset(
    {
        "KUBE-PORTALS-CONTAINER",
        "KUBE-PORTALS-HOST",
        "KUBE-NODEPORT-CONTAINER",
        "KUBE-NODEPORT-HOST",
        "KUBE-NODEPORT-NON-LOCAL",
    }
)
NFT_TABLE = "kube-proxy"
# per-service chains: prefix, 8 base32 characters of sha256, then ns/name/proto/port
NFT_SERVICE_CHAIN = re.compile(r"(?:service|external|local|endpoint|firewall)-[A-Z2-7]{8}-\S*/")
NFT_BASE = frozenset({"nat-prerouting", "services"})
KUBELET_CHAINS = frozenset(
    {"KUBE-MARK-MASQ", "KUBE-MARK-DROP", "KUBE-POSTROUTING", "KUBE-FIREWALL", "KUBE-KUBELET-CANARY"}
)
