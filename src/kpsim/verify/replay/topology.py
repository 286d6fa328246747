"""Three throw-away namespaces wired like an EKS node, none linked to the root namespace.

    client ns                 node ns (the rules under test)               pods ns
    c0: client addrs ─veth─ eth0: node addrs/prefix   eni0 (no address) ─veth─ p0: endpoint /32s
    default via node          default dev eth0                              default via node
                              endpoint /32 dev eni0 (as the VPC CNI routes pods)

A probe from a pod moves that pod into a fourth namespace behind ``eni1`` while it runs
(``detached_pod``). The node's side is named ``eth0`` / ``eni0`` because the rules test
them (AWS VPC CNI: ``-i eth0``, ``-i eni+``). ``eni0`` has no address, so MASQUERADE
picks the node's address, as on a real node. Every address is checked to lie in
198.18.0.0/15 before it is added.
"""

from __future__ import annotations

import ctypes
import ipaddress
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from kpsim.verify import netns

__all__ = ["Plan", "Topology", "build_topology", "detached_pod", "spawn"]

HERE = Path(__file__).resolve().parent
READY_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class Plan:
    """What to build: mapped addresses (node ones as ``ip/prefix``) and restore text."""

    node_addresses: tuple[str, ...]
    pod_addresses: tuple[str, ...]
    client_addresses: tuple[str, ...]
    rules: str
    loader: str = "iptables-restore"  # or "nft": ``rules`` is ``nft -f`` input
    notes: tuple[str, ...] = ()  # what of the capture was left out, and why
    beside: str = ""  # loader "nft": iptables-nft's tables as restore input, loaded after


@dataclass(frozen=True, slots=True)
class Topology:
    """The live namespaces; valid only inside ``build_topology``'s ``with``."""

    client: str
    node: str
    pods: str
    plan: Plan

    @property
    def node_ip(self) -> str:
        return str(ipaddress.ip_interface(self.plan.node_addresses[0]).ip)


def _checked(addresses: Sequence[str]) -> list[ipaddress.IPv4Interface]:
    """Refuse anything outside 198.18.0.0/15 (hosts and their prefixes both)."""
    out = []
    for a in addresses:
        iface = ipaddress.ip_interface(a)
        if not isinstance(iface, ipaddress.IPv4Interface) or not iface.network.subnet_of(
            netns.ALLOWED_NET
        ):
            raise netns.NetnsError(f"refusing address {a}: outside {netns.ALLOWED_NET}")
        out.append(iface)
    return out


def _batch(ns: str, lines: Sequence[str]) -> None:
    """Many ``ip`` commands in one process (hundreds of pod addresses stay fast)."""
    if lines:
        netns.run(ns, ["ip", "-batch", "-"], input="\n".join(lines) + "\n", timeout=30)


def _sysctl(ns: str, *settings: str) -> None:
    netns.run(ns, ["sysctl", "-q", "-w", *settings], timeout=10)


def _wire(t: Topology) -> None:
    plan = t.plan
    node_ifs = _checked(plan.node_addresses)
    pods = _checked([f"{a}/32" for a in plan.pod_addresses])
    clients = _checked([f"{a}/32" for a in plan.client_addresses])
    node_ip = str(node_ifs[0].ip)
    netns.veth(t.node, t.client, "eth0", "c0")
    netns.veth(t.node, t.pods, "eni0", "p0")
    for ns in (t.client, t.node, t.pods):
        _sysctl(ns, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
        netns.link_up(ns, "lo")
    # As a kube-proxy node: forwarding on, localhost NodePorts routable (kube-proxy sets
    # route_localnet), and no ICMP rate limit, so every REJECT is answered, not just 6.
    _sysctl(
        t.node,
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.route_localnet=1",
        "net.ipv4.icmp_ratelimit=0",
        "net.ipv4.icmp_msgs_per_sec=100000",
    )
    node_local = {i.ip for i in node_ifs}
    pods = [i for i in pods if i.ip not in node_local]  # host-network pods live on the node
    _batch(t.node, [f"address add {i} dev eth0" for i in node_ifs])
    _batch(t.pods, [f"address add {i} dev p0" for i in pods])
    _batch(t.client, [f"address add {i} dev c0" for i in clients])
    netns.link_up(t.node, "eth0")
    netns.link_up(t.node, "eni0")
    netns.link_up(t.client, "c0")
    netns.link_up(t.pods, "p0")
    for ns in (t.client, t.pods):
        _sysctl(ns, "net.ipv4.icmp_ratelimit=0")
    _sysctl(t.node, "net.ipv4.conf.eth0.rp_filter=0", "net.ipv4.conf.eni0.rp_filter=0")
    gateway = [f"route add {node_ip}/32 dev {{dev}} scope link", f"route add default via {node_ip}"]
    _batch(t.client, [g.format(dev="c0") for g in gateway])
    _batch(t.pods, [g.format(dev="p0") for g in gateway])
    _batch(t.node, ["route add default dev eth0"])
    _batch(t.node, [f"route add {i.ip}/32 dev eni0 scope link" for i in pods])
    if plan.loader == "nft":
        proc = netns.run(t.node, ["nft", "-f", "-"], input=plan.rules, check=False)
        if proc.returncode != 0:
            raise netns.NetnsError(f"nft -f failed in {t.node}:\n{proc.stderr.strip()}")
        # iptables-nft's own tables after kube-proxy's: of two base chains at one hook and
        # priority the kernel runs the one registered LAST first (nf_hook_entries_grow puts
        # a new hook before equal priorities; checked with marks in a namespace), and kpsim
        # walks iptables-nft's first.
        if plan.beside:
            proc = netns.run(t.node, ["iptables-nft-restore"], input=plan.beside, check=False)
            if proc.returncode != 0:
                raise netns.NetnsError(
                    f"iptables-nft-restore failed in {t.node}:\n{proc.stderr.strip()}"
                )
    else:
        netns.load_rules(t.node, plan.rules)


@contextmanager
def build_topology(plan: Plan) -> Iterator[Topology]:
    """Create, wire and load; every namespace is deleted on every exit path."""
    if not plan.node_addresses:
        raise netns.NetnsError("the node needs at least one address")
    with ExitStack() as stack:
        names = [stack.enter_context(netns.Namespace()).name for _ in range(3)]
        topo = Topology(names[0], names[1], names[2], plan)
        _wire(topo)
        yield topo


@contextmanager
def spawn(
    ns: str, script: str, args: Sequence[str], *, lifetime: float
) -> Iterator[subprocess.Popen[str]]:
    """Start one of this package's scripts inside ``ns``; wait for its ``READY`` line;
    kill it on the way out, whatever happened."""
    if not ns.startswith(netns.PREFIX):
        raise netns.NetnsError(f"refusing non-kpsim namespace {ns!r}")
    argv = ["ip", "netns", "exec", ns, sys.executable, str(HERE / script), *args]
    argv += ["--lifetime", str(lifetime)]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
    )
    try:
        _wait_ready(proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        with suppress(subprocess.TimeoutExpired):  # SIGKILL cannot be refused
            proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL the child if we die first (``ip netns exec`` keeps it: exec)."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    """Bounded wait for the script's first line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = proc.stdout.readline()
                if line.strip() == "READY":
                    return
                if not line:
                    break
            if proc.poll() is not None:
                break
    finally:
        sel.close()
    err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
    raise netns.NetnsError(f"responder did not start: {err.strip() or 'no READY line'}")


@contextmanager
def detached_pod(t: Topology, address: str, ports: Sequence[int], lifetime: float) -> Iterator[str]:
    """Move one pod address into a namespace of its own (behind ``eni1``) for a while.

    A pod talking to a service whose endpoint shares the pods namespace would get the
    reply straight from that namespace, never un-DNATed by the node; on a real node every
    pod has its own namespace, so the source pod gets one here too. Yields its name."""
    (iface,) = _checked([f"{address}/32"])
    node_ip = t.node_ip
    netns.run(t.pods, ["ip", "address", "del", str(iface), "dev", "p0"], timeout=10)
    try:
        with netns.Namespace() as own:
            netns.veth(t.node, own.name, "eni1", "p0")
            _sysctl(own.name, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.icmp_ratelimit=0")
            netns.link_up(own.name, "lo")
            _batch(own.name, [f"address add {iface} dev p0", "link set p0 up"])
            _batch(t.node, ["link set eni1 up", f"route replace {iface.ip}/32 dev eni1"])
            _sysctl(t.node, "net.ipv4.conf.eni1.rp_filter=0")
            _batch(
                own.name,
                [f"route add {node_ip}/32 dev p0 scope link", f"route add default via {node_ip}"],
            )
            args = [a for p in sorted(ports) for a in ("--port", str(p))]
            with spawn(own.name, "responder.py", args, lifetime=lifetime):
                yield own.name
    finally:
        # Deleting the namespace removed eni1 and its route; put the pod back behind eni0.
        _batch(t.pods, [f"address add {iface} dev p0"])
        _batch(t.node, [f"route replace {iface.ip}/32 dev eni0 scope link"])
