"""The ``ip -j addr`` / ``ip -j route show table all`` / ``ip -j rule`` of an EKS node
running the AWS VPC CNI, in the shape ``ip`` prints them.

    eth0  node address (primary ENI), default route via the subnet's router
    eni…  one host-side veth per local pod, a /32 ``scope link`` route to the pod
    rules 512  from all to <pod> lookup main   (one per local pod)
          1024 from all fwmark 0x80/0x80 lookup main   (NodePort return traffic)

The CNI names a pod's host veth ``eni`` + the first 11 hex digits of
sha1("<namespace>.<name>"); the rule priorities are the CNI's (toContainerRulePriority
512, the connmark rule 1024, fromContainerRulePriority 1536 for pods on secondary ENIs,
which the seed lab's pods are not: all their addresses come from the primary ENI).
"""

from __future__ import annotations

import hashlib
import ipaddress

from kpsim.inputs.synth.node import CNI_CONNMARK
from kpsim.inputs.synth.spec import ClusterSpec, NodeSpec, PodSpec

TO_CONTAINER_PRIORITY = 512
CONNMARK_PRIORITY = 1024


def host_veth(pod: PodSpec, prefix: str = "eni") -> str:
    """The host side of a pod's veth, as the VPC CNI names it."""
    digest = hashlib.sha1(f"{pod.namespace}.{pod.name}".encode(), usedforsecurity=False)
    return prefix + digest.hexdigest()[:11]


def _link(index: int, name: str, kind: str, addr: list[dict[str, object]]) -> dict[str, object]:
    flags = ["LOOPBACK", "UP", "LOWER_UP"] if kind == "loopback" else [
        "BROADCAST", "MULTICAST", "UP", "LOWER_UP"]  # fmt: skip
    return {"ifindex": index, "ifname": name, "flags": flags, "mtu": 65536 if kind ==
            "loopback" else 9001, "operstate": "UNKNOWN" if kind == "loopback" else "UP",
            "link_type": kind, "addr_info": addr}  # fmt: skip


def node_ip_json(cluster: ClusterSpec, node: NodeSpec) -> dict[str, object]:
    """``{"addr": …, "route": …, "rule": …}`` for ``node`` (its local pods' veths)."""
    iface = node.primary_interface
    subnet = ipaddress.ip_interface(node.local_cidr).network
    router = str(subnet.network_address + 1)
    local = sorted(
        (p for p in cluster.pods if p.node == node.name), key=lambda p: ipaddress.ip_address(p.ip)
    )
    links = [
        _link(1, "lo", "loopback", [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8,
                                     "scope": "host", "label": "lo"}]),
        _link(2, iface, "ether", [{"family": "inet", "local": node.ip,
                                   "prefixlen": node.subnet_prefix,
                                   "broadcast": str(subnet.broadcast_address),
                                   "scope": "global", "dynamic": True, "label": iface}]),
    ]  # fmt: skip
    links += [_link(3 + i, host_veth(p, cluster.cni_veth_prefix), "ether", [])
              for i, p in enumerate(local)]  # fmt: skip
    routes: list[dict[str, object]] = [
        {"dst": "default", "gateway": router, "dev": iface, "protocol": "dhcp",
         "prefsrc": node.ip, "metric": 1024, "flags": []},
        {"dst": str(subnet), "dev": iface, "protocol": "kernel", "scope": "link",
         "prefsrc": node.ip, "flags": []},
    ]  # fmt: skip
    routes += [{"dst": p.ip, "dev": host_veth(p, cluster.cni_veth_prefix), "scope": "link",
                "flags": []} for p in local]  # fmt: skip
    routes += [
        {"type": "local", "dst": node.ip, "dev": iface, "table": "local",
         "protocol": "kernel", "scope": "host", "prefsrc": node.ip, "flags": []},
        {"type": "broadcast", "dst": str(subnet.broadcast_address), "dev": iface,
         "table": "local", "protocol": "kernel", "scope": "link", "prefsrc": node.ip,
         "flags": []},
        {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local",
         "protocol": "kernel", "scope": "host", "prefsrc": "127.0.0.1", "flags": []},
    ]  # fmt: skip
    mark = f"{CNI_CONNMARK:#x}"
    rules: list[dict[str, object]] = [{"priority": 0, "src": "all", "table": "local"}]
    rules += [{"priority": TO_CONTAINER_PRIORITY, "src": "all", "dst": p.ip, "table": "main"}
              for p in local]  # fmt: skip
    rules.append({"priority": CONNMARK_PRIORITY, "src": "all", "fwmark": mark, "fwmask": mark,
                  "table": "main"})  # fmt: skip
    rules += [{"priority": 32766, "src": "all", "table": "main"},
              {"priority": 32767, "src": "all", "table": "default"}]  # fmt: skip
    return {"addr": links, "route": routes, "rule": rules}
