"""A trace question asked of every node of a fixture set, answered in kube-proxy terms.

    TraceRequest(port=30080) ─▶ for each node: NodeContext from the fixture's metadata,
        Packet(outside client → node address:30080) ─▶ Tracer ─▶ outcomes
        ─▶ each outcome named: service (chain hash → name), pod and its node (metadata)
    ─▶ Summary: endpoint × entry node shares, cross-node share, masquerade share

``curl NODE_IP:30080`` on each node of the seed lab is ``TraceRequest(port=30080)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import compress, count, repeat
from operator import eq

from kpsim.engine.packet import Packet, State
from kpsim.engine.trace import Disposition, Outcome, Tracer, TraceResult, UnknownMode
from kpsim.errors import TraceError
from kpsim.formats.iproute import has_routing, in_interface
from kpsim.kube import nft_services
from kpsim.kube import services as kube
from kpsim.kube.mode import ProxyMode, proxy_mode
from kpsim.kube.routing import node_addresses, node_context
from kpsim.model import Capture, Diagnostic, Jump, Rule, Ruleset

#: An outside client: TEST-NET-3 (RFC 5737), never a real host; for IPv6, the
#: documentation prefix (RFC 3849).
DEFAULT_CLIENT = "203.0.113.10"
DEFAULT_CLIENT6 = "2001:db8::10"
DEFAULT_CLIENT_PORT = 40000
#: The node's address when the capture does not say it (no metadata, no --node-ip):
#: TEST-NET-2 (RFC 5737). kube-proxy's NodePort rules match any local address
#: (``-m addrtype --dst-type LOCAL``), so the answer does not depend on which one.
STAND_IN_NODE_IP = "198.51.100.10"

_DELIVERED = frozenset({Disposition.DNAT, Disposition.ACCEPT, Disposition.LOCAL})
_DNAT_OR_UNSURE = frozenset({Disposition.DNAT, Disposition.UNKNOWN})


@dataclass(frozen=True, slots=True)
class NodeInput:
    """What the trace needs of one node: its rules and who it is."""

    name: str
    ruleset: Ruleset


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """``--port`` alone: NodePort traffic from an outside client to each node's own address."""

    port: int
    dest: str | None = None
    protocol: str = "tcp"
    source: str = DEFAULT_CLIENT
    source_port: int = DEFAULT_CLIENT_PORT
    node_ips: tuple[str, ...] = ()
    node: str | None = None
    affinity: tuple[str, ...] = ()  # endpoints (ip:port) or KUBE-SEP chains the client has
    unknown: UnknownMode = "stop"


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    namespace: str
    node: str


@dataclass(frozen=True, slots=True)
class NamedOutcome:
    """An engine outcome with kube-proxy names: which service, which pod, where."""

    outcome: Outcome
    service: str | None
    pod: Pod | None

    @property
    def destination(self) -> str:
        ip, port = self.outcome.destination
        return f"{ip}:{port}"


@dataclass(frozen=True, slots=True)
class NodeTrace:
    """One node's answer, with what its capture could not show (``capture``) and the
    lines kpsim could not read (``diagnostics``)."""

    node: str
    address: str
    context_notes: tuple[str, ...]
    result: TraceResult
    outcomes: tuple[NamedOutcome, ...]
    capture: Capture = field(default_factory=Capture)
    diagnostics: tuple[Diagnostic, ...] = ()
    remarks: tuple[str, ...] = ()  # one-line explanations of the answer (kube-proxy terms)


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One destination across entry nodes (share per entry node, mean over nodes)."""

    destination: str
    verdict: str
    pod: Pod | None
    service: str | None
    by_node: Mapping[str, Fraction]
    overall: Fraction
    masquerade: bool | None  # None: unknown, or not a delivery (DROP, REJECT, UNKNOWN)


@dataclass(frozen=True, slots=True)
class Summary:
    rows: tuple[SummaryRow, ...]
    cross_node: Fraction | None  # share served by a pod on another node than the entry
    masquerade: Fraction  # share whose client IP is replaced (SNAT/MASQUERADE)
    masquerade_unknown: Fraction = Fraction(0)  # delivered, but POSTROUTING not captured


@dataclass(frozen=True, slots=True)
class TraceReport:
    request: TraceRequest
    nodes: tuple[NodeTrace, ...]
    summary: Summary
    notes: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------- naming


def pods_of(meta: Mapping[str, object]) -> dict[str, Pod]:
    pods = meta.get("pods")
    out: dict[str, Pod] = {}
    if isinstance(pods, list):
        for p in pods:
            if isinstance(p, dict) and "ip" in p:
                out[str(p["ip"])] = Pod(
                    str(p.get("name", "?")), str(p.get("namespace", "?")), str(p.get("node", "?"))
                )
    return out


def _service_of(outcome: Outcome, names: Mapping[str, str]) -> str | None:
    for step in reversed(outcome.path):
        if (nft := nft_services.chain_service(step.chain)) is not None:
            return nft
        for prefix in (*kube.SERVICE_PREFIXES, "KUBE-SEP-"):
            if step.chain.startswith(prefix) and prefix != "KUBE-SEP-":
                return names.get(step.chain[len(prefix) :], step.chain)
        if step.rule is not None and step.chain.startswith("KUBE-SEP-") and step.rule.comment:
            return kube.clean_name(step.rule.comment)
    return None


def _name(outcomes: Sequence[Outcome], rs: Ruleset, pods: Mapping[str, Pod]) -> list[NamedOutcome]:
    """The services met on the outcomes' paths, named as ``kpsim show`` names them (only
    those: a node may have 10,000)."""
    met = {
        step.chain[len(prefix) :]
        for o in outcomes
        for step in o.path
        for prefix in kube.SERVICE_PREFIXES
        if step.chain.startswith(prefix)
    }
    names = kube.service_names(rs, met)
    return [NamedOutcome(o, _service_of(o, names), pods.get(o.destination[0])) for o in outcomes]


# ---------------------------------------------------------------- the question


def _affinity_lists(rs: Ruleset, wanted: Sequence[str]) -> list[str]:
    """Map ``ip:port`` or chain names to the recent-list names kube-proxy uses (the SEP chain)."""
    out: list[str] = []
    for item in wanted:
        if item.startswith("KUBE-SEP-"):
            out.append(item)
            continue
        chains = [e.chain for s in kube.services(rs) for e in s.endpoints if e.destination == item]
        # nftables mode: endpoint-H-… keeps its clients in the set affinity-H-…
        chains = ["affinity-" + c[9:] if c.startswith("endpoint-") else c for c in chains]
        if not chains:
            raise TraceError(f"--assume affinity={item}: no endpoint {item} in {rs.path}")
        out.extend(chains)
    return out


def check_mode(inputs: Sequence[NodeInput]) -> None:
    """Refuse to trace rules that do not choose the endpoint (kube-proxy in IPVS, userspace
    or nftables mode): say in one line what does, with the capture line that shows it."""
    refused = []
    for node in inputs:
        found = proxy_mode(node.ruleset)
        if found.chooses_endpoints or found.mode is ProxyMode.NONE:
            continue
        where = f" ({found.evidence[0]})" if found.evidence else ""
        refused.append(f"{node.name}: {found.message}{where}")
    if refused:
        raise TraceError("; ".join(refused))


def check_port(request: TraceRequest, inputs: Sequence[NodeInput]) -> None:
    """``--port`` alone must be a NodePort some node has; else list the ones that exist.
    A capture with gaps may hide it: then it is traced, and the answer says what is missing."""
    if request.dest is not None:
        return
    if any(kube.offers_node_port(n.ruleset, request.port) for n in inputs):
        return  # the quick yes; the answer below reads every service of every node
    ports = sorted({p for n in inputs for s in kube.services(n.ruleset) for p in s.node_ports})
    if request.port not in ports and all(n.ruleset.capture.complete for n in inputs):
        listed = ", ".join(str(p) for p in ports) or "none"
        raise TraceError(
            f"no NodePort {request.port} in these rules; NodePorts here: {listed} "
            "(use --dest IP --port P for a ClusterIP or another address)"
        )


def stand_in(ruleset: Ruleset, extra: Sequence[str]) -> tuple[tuple[str, ...], str | None]:
    """``extra`` node addresses, or a stand-in when neither the capture's metadata nor the
    user gives one: the address kube-proxy's NodePort jump names (``-d IP -j
    KUBE-NODEPORTS``, nodePortAddresses), else ``STAND_IN_NODE_IP``; with the note saying so."""
    if extra or node_addresses(ruleset.metadata, ()):
        return tuple(extra), None
    named = _nodeport_addresses(ruleset)
    if named:
        return (named[0],), (
            f"no node address known: traced to {named[0]}, the address the capture's "
            "KUBE-NODEPORTS jump names"
        )
    return (STAND_IN_NODE_IP,), (
        f"no node address known: traced to a stand-in local address {STAND_IN_NODE_IP} "
        "(kube-proxy's NodePort rules match any local address, so the answer is the same)"
    )


def _nodeport_addresses(ruleset: Ruleset) -> list[str]:
    if nft_services.is_nft_kube_proxy(ruleset):
        return nft_services.nodeport_ips(ruleset)
    nat = ruleset.table("nat")
    chain = nat.chain("KUBE-SERVICES") if nat is not None else None
    sketch = chain.sketch() if chain is not None else None
    rules: Iterable[Rule] = chain.rules if chain is not None and sketch is None else ()
    if sketch is not None:  # read on demand: only its jumps to KUBE-NODEPORTS are built,
        # picked in C (a Python loop over KUBE-SERVICES' 10,001 jumps took ~1 ms, measured)
        found = map(eq, sketch.jumps, repeat("KUBE-NODEPORTS"))
        rules = map(sketch.rule, compress(count(), found))
    out = []
    for rule in rules:
        dst, target = rule.destination, rule.target
        # the jump first: ``num_addresses`` (ipaddress's cached properties) took 0.038 s
        # over the 10,000 ClusterIP rules of a 10,000-service dump, now 0.001 s (measured)
        if not (isinstance(target, Jump) and target.chain == "KUBE-NODEPORTS"):
            continue
        net = dst.network if dst is not None and not dst.negated else None
        # A loopback jump (nodePortAddresses 127.0.0.0/8, kube-proxy's localhost
        # NodePorts) is no address an outside client can reach the node on.
        one = net is not None and net.num_addresses == 1 and not net.network_address.is_loopback
        if one and net is not None:
            out.append(str(net.network_address))
    return out


def trace_node(node: NodeInput, request: TraceRequest) -> NodeTrace:
    meta = node.ruleset.metadata
    extra, stand_in_note = stand_in(node.ruleset, request.node_ips)
    ctx, notes = node_context(meta, extra, node.ruleset)
    if stand_in_note is not None:
        notes.insert(0, stand_in_note)
    addrs = node_addresses(meta, extra)
    dest = request.dest or addrs[0]
    source = request.source
    if source == DEFAULT_CLIENT and ":" in dest:
        source = DEFAULT_CLIENT6
    came_in = in_interface(ctx, source) if has_routing(meta) else None
    if came_in is None and has_routing(meta):
        notes.append(f"no captured route back to {source}: assumed it came in on eth0")
    packet = Packet.of(
        source,
        dest,
        request.port,
        sport=request.source_port,
        protocol=request.protocol,
        in_interface=came_in or "eth0",
    )
    state = State.with_affinity(*_affinity_lists(node.ruleset, request.affinity))
    result = Tracer(node.ruleset, ctx, unknown=request.unknown).trace(packet, state)
    named = _name(result.outcomes, node.ruleset, pods_of(meta))
    remarks = _explain(node.ruleset, request, result)
    rs = node.ruleset
    return NodeTrace(
        node.name, dest, tuple(notes), result, tuple(named), rs.capture, rs.diagnostics, remarks
    )


def _explain(ruleset: Ruleset, request: TraceRequest, result: TraceResult) -> tuple[str, ...]:
    """One line where the answer would puzzle a kube-proxy user: a NodePort the capture
    lists but nothing in it jumps to."""
    if request.dest is not None or any(o.verdict in _DNAT_OR_UNSURE for o in result.outcomes):
        return ()
    if ruleset.capture.limit("nat", "KUBE-SERVICES") is not None:
        return ()  # the jump may be among the rules the capture does not show
    nat = ruleset.table("nat")
    if nat is None or "KUBE-NODEPORTS" not in nat.chains:
        return ()
    # (imported here: its regexes cost ~4 ms of every trace's start-up, measured)
    from kpsim.formats.iptables.lazy_text import table_text

    text = table_text(nat)  # read on demand: its lines' jumps, not every rule built
    if text is not None:
        jumps = "KUBE-NODEPORTS" in text.jumps()  # ``model.references``' counts
    else:
        jumps = any(
            isinstance(r.target, Jump) and r.target.chain == "KUBE-NODEPORTS"
            for c in nat.chains.values()
            for r in c.rules
        )
    if jumps:
        return ()
    return (
        f"NodePort {request.port} is in KUBE-NODEPORTS, but no rule in this capture jumps to "
        "KUBE-NODEPORTS (kube-proxy writes it as KUBE-SERVICES' last rule), so it is not "
        "DNATed here",
    )


def summarize(traces: Sequence[NodeTrace]) -> Summary:
    """Entry nodes weigh equally, like curling each node's IP in turn."""
    rows: dict[tuple[str, str, bool | None], dict[str, Fraction]] = {}
    info: dict[tuple[str, str, bool | None], NamedOutcome] = {}
    cross = Fraction(0)
    masq = Fraction(0)
    unknown = Fraction(0)
    known_pods = True
    weight = Fraction(1, len(traces)) if traces else Fraction(0)
    for t in traces:
        for o in t.outcomes:
            key = (o.destination, o.outcome.verdict.value, o.outcome.masquerade)
            rows.setdefault(key, {})[t.node] = (
                rows.get(key, {}).get(t.node, Fraction(0)) + o.outcome.probability
            )
            info.setdefault(key, o)
            if o.outcome.masquerade or o.outcome.snat_to:
                masq += weight * o.outcome.probability
            elif o.outcome.masquerade is None and o.outcome.verdict in _DELIVERED:
                unknown += weight * o.outcome.probability
            if o.outcome.verdict is Disposition.DNAT:
                if o.pod is None:
                    known_pods = False
                elif not same_node(o.pod.node, t.node):
                    cross += weight * o.outcome.probability
    out = []
    for key, by_node in rows.items():
        o = info[key]
        overall = sum((weight * v for v in by_node.values()), Fraction(0))
        out.append(
            SummaryRow(key[0], key[1], o.pod, o.service, by_node, overall, o.outcome.masquerade)
        )
    out.sort(key=lambda r: (-r.overall, r.destination))
    return Summary(tuple(out), cross if known_pods else None, masq, unknown)


def trace_nodes(inputs: Sequence[NodeInput], request: TraceRequest) -> TraceReport:
    """The whole question: every node (or ``request.node`` only), then the summary."""
    chosen = [n for n in inputs if request.node is None or _node_matches(n.name, request.node)]
    if not chosen:
        names = ", ".join(n.name for n in inputs)
        raise TraceError(f"--node {request.node}: no such node (nodes: {names})")
    check_mode(chosen)
    check_port(request, chosen)
    traces = tuple(trace_node(n, request) for n in chosen)
    return TraceReport(request, traces, summarize(traces))


def _node_matches(name: str, wanted: str) -> bool:
    return name == wanted or name.split(".")[0] == wanted


def same_node(a: str, b: str) -> bool:
    """``ip-10-11-3-14`` and ``ip-10-11-3-14.ap-northeast-2.compute.internal`` are one node:
    metadata may carry either form, a folder name the short one."""
    return a == b or a.split(".")[0] == b.split(".")[0]
