"""A node with more than one way out, in throw-away namespaces: where the kernel sends a
DNATed connection (which interface), whether it arrives, and with which source.

    client ns  c0 ─veth─ eth0   node ns (the rules under test)
                         docker0 (bridge) ─ vb0 ─veth─ b0  bridge pods ns (one /24)
                         eniXXXX ─veth─ p0  one ns per "eni" pod (/32 route, VPC CNI-style)
                         eth1 ─veth─ f0     far ns: hosts beyond the node (default route)

Replay (verify/replay) puts every endpoint behind one interface; this lab gives each
endpoint the interface a real node would (a Docker bridge, a CNI veth, the uplink), so
``-o``/``! -o`` rules and masquerade are decided as on the node. Every address is in
198.18.0.0/15; nothing is linked to the root namespace; everything is deleted on exit.
The answering responder tells where a connection landed; its location is its egress.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from kpsim.verify import netns
from kpsim.verify.replay.topology import HERE, spawn

MAX_PODS = 16
LIFETIME_S = 120.0


@dataclass(frozen=True, slots=True)
class LabPlan:
    """What to build. ``bridge_cidr`` is the bridge's own address (``198.18.64.1/24``);
    ``eni_pods`` maps a pod address to its host veth name; ``far`` are hosts reached by
    the node's default route (out ``eth1``); ``ip_rules`` are ``ip rule add`` argument
    strings for the node (policy routing, as the VPC CNI installs)."""

    node_ip: str
    client_ip: str
    rules: str
    bridge: str = "docker0"
    bridge_cidr: str | None = None
    bridge_pods: tuple[str, ...] = ()
    eni_pods: tuple[tuple[str, str], ...] = ()
    far: tuple[str, ...] = ()  # in 198.19.255.0/24 (the node is .1 on eth1)
    ip_rules: tuple[str, ...] = ()
    ports: tuple[int, ...] = (80,)


@dataclass(frozen=True, slots=True)
class Landing:
    """What the kernel did with the connections of one probe."""

    reached: Counter[tuple[str, int, str]] = field(default_factory=Counter)  # dst, port, egress
    sources: Counter[tuple[str, str]] = field(default_factory=Counter)  # dst, seen source
    failed: Counter[str] = field(default_factory=Counter)  # status → count

    @property
    def total(self) -> int:
        return sum(self.reached.values()) + sum(self.failed.values())


def _checked(*addresses: str) -> None:
    for a in addresses:
        net = ipaddress.ip_interface(a).network
        if not net.subnet_of(netns.ALLOWED_NET):  # type: ignore[arg-type]
            raise netns.NetnsError(f"refusing address {a}: outside {netns.ALLOWED_NET}")


def _ip(ns: str, *lines: str) -> None:
    netns.run(ns, ["ip", "-batch", "-"], input="\n".join(lines) + "\n", timeout=30)


def _sysctl(ns: str, *settings: str) -> None:
    netns.run(ns, ["sysctl", "-q", "-w", *settings], timeout=10)


def _quiet(ns: str) -> None:
    _sysctl(ns, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.icmp_ratelimit=0")  # fmt: skip
    _ip(ns, "link set lo up")


class Lab:
    """The live namespaces of a ``LabPlan`` (valid inside ``build_lab``'s ``with``)."""

    def __init__(self, plan: LabPlan, stack: ExitStack) -> None:
        if len(plan.bridge_pods) + len(plan.eni_pods) + len(plan.far) > MAX_PODS:
            raise netns.NetnsError(f"at most {MAX_PODS} endpoints in a lab")
        self.plan = plan
        self.stack = stack
        self.where: dict[str, str] = {}  # endpoint address → the node's interface to it
        self.node = self._ns()
        self.client = self._ns()
        self._wire()

    def _ns(self) -> str:
        ns = self.stack.enter_context(netns.Namespace()).name
        _quiet(ns)
        return ns

    def _pod_ns(self, iface: str, addrs: Sequence[str], gateway: str, prefix: int) -> None:
        """A namespace behind the node's ``iface`` holding ``addrs``, with responders."""
        ns = self._ns()
        netns.veth(self.node, ns, iface, "p0")
        _ip(ns, *(f"address add {a}/{prefix} dev p0" for a in addrs), "link set p0 up")
        if prefix == 32:
            _ip(ns, f"route add {gateway}/32 dev p0 scope link")
        _ip(ns, f"route add default via {gateway}")
        for a in addrs:
            self.where[a] = iface
        args = [x for p in sorted(self.plan.ports) for x in ("--port", str(p))]
        self.stack.enter_context(spawn(ns, "responder.py", args, lifetime=LIFETIME_S))

    def _wire(self) -> None:
        p = self.plan
        _checked(p.node_ip, p.client_ip, *p.bridge_pods, *(a for a, _ in p.eni_pods), *p.far)
        _sysctl(self.node, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.route_localnet=1",
                "net.ipv4.icmp_msgs_per_sec=100000")  # fmt: skip
        netns.veth(self.node, self.client, "eth0", "c0")
        _ip(self.node, f"address add {p.node_ip}/24 dev eth0", "link set eth0 up")
        _ip(self.client, f"address add {p.client_ip}/32 dev c0", "link set c0 up",
            f"route add {p.node_ip}/32 dev c0 scope link",
            f"route add default via {p.node_ip}")  # fmt: skip
        _ip(self.node, f"route add {p.client_ip}/32 dev eth0 scope link")
        if p.bridge_cidr is not None:
            _checked(p.bridge_cidr)
            gw = str(ipaddress.ip_interface(p.bridge_cidr).ip)
            br = p.bridge
            _ip(self.node, f"link add {br} type bridge", f"address add {p.bridge_cidr} dev {br}",
                f"link set {br} up")  # fmt: skip
            prefix = ipaddress.ip_interface(p.bridge_cidr).network.prefixlen
            self._pod_ns("vb0", p.bridge_pods, gw, prefix)
            _ip(self.node, f"link set vb0 master {p.bridge}", "link set vb0 up")
            for a in p.bridge_pods:
                self.where[a] = p.bridge
        for addr, iface in p.eni_pods:
            self._pod_ns(iface, [addr], p.node_ip, 32)
            _ip(self.node, f"link set {iface} up", f"route add {addr}/32 dev {iface} scope link")
        if p.far:
            self._pod_ns("eth1", p.far, "198.19.255.1", 24)
            _ip(self.node, "address add 198.19.255.1/24 dev eth1", "link set eth1 up",
                "route add default dev eth1")  # fmt: skip
        if p.ip_rules:
            _ip(self.node, *(f"rule add {r}" for r in p.ip_rules))
        _sysctl(self.node, *(f"net.ipv4.conf.{i}.rp_filter=0" for i in self._ifaces()))
        netns.load_rules(self.node, p.rules)

    def _ifaces(self) -> list[str]:
        return ["eth0", *dict.fromkeys(self.where.values())]

    def ip_json(self) -> dict[str, object]:
        """The node's ``ip -j addr / route show table all / rule``, as fetch collects them."""
        out: dict[str, object] = {}
        for key, argv in (("addr", ["addr", "show"]), ("route", ["route", "show", "table", "all"]),
                          ("rule", ["rule", "show"])):  # fmt: skip
            out[key] = json.loads(netns.run(self.node, ["ip", "-j", *argv], timeout=10).stdout)
        return out

    def probe(self, port: int, n: int, *, sport_base: int = 20000, timeout: float = 1.0) -> Landing:
        """``n`` new connections from the client to the node's ``port``, one at a time."""
        argv = ["ip", "netns", "exec", self.client, sys.executable, str(HERE / "traffic.py"),
                "--dest", self.plan.node_ip, "--port", str(port), "-n", str(n),
                "--source", self.plan.client_ip, "--sport-base", str(sport_base),
                "--timeout", str(timeout),
                "--budget", str(max(10.0, n * timeout * 1.5))]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=n * timeout * 2 + 30)
        landing = Landing()
        for line in proc.stdout.splitlines():
            row = json.loads(line)
            if row.get("status") != "ok":
                landing.failed[str(row.get("status"))] += 1
                continue
            dst, dport = str(row["local"]).rsplit(":", 1)
            seen = str(row["peer"]).rsplit(":", 1)[0]
            landing.reached[(dst, int(dport), self.where.get(dst, "?"))] += 1
            landing.sources[(dst, seen)] += 1
        return landing


@contextmanager
def build_lab(plan: LabPlan) -> Iterator[Lab]:
    """Create, wire and load; every namespace (and responder) goes on every exit path."""
    with ExitStack() as stack:
        yield Lab(plan, stack)
