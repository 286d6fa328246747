"""One generated case (inputs/synth/differential.py) against the kernel: build it in
namespaces (verify/lab.py), send real connections to each NodePort, trace the same
packet with the node's captured routes, and say for each connection whether the kernel
did something the trace gives a probability > 0.

    Case ─ build_lab ─▶ kernel: (destination, egress, source seen) or refused / timeout
         ─ trace_node(ip -j from the lab) ─▶ the same keys, each with its probability
           (nth rules: the kernel's counters stepped connection by connection, as
           simulate does, since a trace answers for the first connection only)
    ─▶ ProbeResult per NodePort: packets, agreeing packets, UNKNOWN, set equality, class
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from fractions import Fraction
from types import MappingProxyType

from kpsim.engine.trace import Disposition, Outcome
from kpsim.formats import parse_text
from kpsim.inputs.synth.differential import BRIDGE_GW, CLIENT, NODE, Case, Probe
from kpsim.kube.scenario import NodeInput, TraceRequest, trace_node
from kpsim.verify.lab import Lab, LabPlan, build_lab

FAR_GW = "198.19.255.1"
Key = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    seed: int
    port: int
    layout: str
    tags: tuple[str, ...]
    packets: int
    agree: int
    unknown: int  # connections whose trace was (partly) UNKNOWN
    set_equal: bool  # every predicted key seen, every seen key predicted (not for sticky)
    kernel: dict[str, int]
    predicted: dict[str, str]

    @property
    def klass(self) -> str:
        """The class a disagreement is counted under: the first feature it uses from
        the list of issue #13, else its layout."""
        for tag in ("nth", "limit-log", "iprange", "multiport", "forward-drop", "etp-local"):
            if tag in self.tags:
                return tag
        return self.layout


def _source_address(egress: str | None) -> str:
    """The address MASQUERADE picks: the first one of the interface it leaves by."""
    if egress == "eth1":
        return FAR_GW
    if egress in ("docker0", "cni0"):
        return BRIDGE_GW.split("/")[0]
    return NODE


def expected(o: Outcome) -> Key:
    """What the kernel shows for an outcome (the client side of it)."""
    v = o.verdict
    if v in (Disposition.DNAT, Disposition.ACCEPT):
        masq = o.masquerade or o.snat_to is not None
        seen = (o.snat_to or _source_address(o.egress)) if masq else CLIENT
        return ("ok", o.destination[0], str(o.egress), seen)
    if v is Disposition.DROP:
        return ("timeout",)
    if v in (Disposition.REJECT, Disposition.LOCAL):  # nothing listens on the node
        return ("refused",)
    return ("UNKNOWN",)


def _kernel_keys(lab: Lab, port: int, n: int, sport: int) -> Counter[Key]:
    land = lab.probe(port, n, sport_base=sport, timeout=0.4)
    out: Counter[Key] = Counter()
    for (dst, _p, egress), count in land.reached.items():
        sources = [s for d, s in land.sources if d == dst]
        # one seen source per destination in these labs (MASQUERADE is deterministic)
        out[("ok", dst, egress, sources[0] if sources else "?")] += count
    for status, count in land.failed.items():
        out[(status,)] += count
    return out


def _predicted(case: Case, probe: Probe, ip: dict[str, object]) -> dict[Key, Fraction]:
    rs = parse_text(case.rules, f"differential-{case.seed}.txt")
    rs = replace(rs, metadata=MappingProxyType({"ip": ip}))
    t = trace_node(NodeInput("lab", rs), TraceRequest(port=probe.port, source=CLIENT,
                                                       node_ips=(NODE,)))  # fmt: skip
    out: dict[Key, Fraction] = {}
    for o in t.result.outcomes:
        if o.probability > 0:
            k = expected(o)
            out[k] = out.get(k, Fraction(0)) + o.probability
    return out


def _predicted_nth(case: Case, probe: Probe, ip: dict[str, object], n: int) -> dict[Key, Fraction]:
    """What ``n`` connections in a row get when nth counters decide: simulate's plan
    (the exact engine once) and its sampler's counter stepping, connection by connection."""
    from kpsim.engine.packet import Packet
    from kpsim.engine.trace import Tracer
    from kpsim.kube.routing import node_context
    from kpsim.simulate.plan import compile_plan
    from kpsim.simulate.sampler import in_a_row

    rs = parse_text(case.rules, f"differential-{case.seed}.txt")
    rs = replace(rs, metadata=MappingProxyType({"ip": ip}))
    ctx, _ = node_context(rs.metadata, (NODE,), rs)
    plan = compile_plan(Tracer(rs, ctx), "lab", Packet.of(CLIENT, NODE, probe.port))
    seen = Counter(expected(plan.outcomes[i]) for i in in_a_row(plan.cascade, n))
    return {k: Fraction(c, n) for k, c in seen.items()}


def run_case(case: Case, n: int) -> list[ProbeResult]:
    """Every probe of ``case``, ``n`` connections each."""
    plan = LabPlan(NODE, CLIENT, case.rules, bridge=case.bridge,
                   bridge_cidr=BRIDGE_GW if case.bridge_pods else None,
                   bridge_pods=case.bridge_pods, eni_pods=case.eni_pods, far=case.far,
                   ip_rules=case.ip_rules)  # fmt: skip
    results = []
    with build_lab(plan) as lab:
        ip = lab.ip_json()
        for i, probe in enumerate(case.probes):
            seen = _kernel_keys(lab, probe.port, n, 20000 + 1000 * i)
            nth = "nth" in probe.tags and not probe.sticky
            pred = _predicted_nth(case, probe, ip, n) if nth else _predicted(case, probe, ip)
            agree = sum(c for k, c in seen.items() if k in pred)
            unknown = n if ("UNKNOWN",) in pred else 0
            likely = {k for k, p in pred.items() if (1 - p) ** n < 1e-3}  # surely seen
            set_equal = set(seen) <= set(pred) and (probe.sticky or likely <= set(seen))
            results.append(
                ProbeResult(
                    case.seed,
                    probe.port,
                    probe.layout,
                    probe.tags,
                    sum(seen.values()),
                    agree,
                    unknown,
                    set_equal,
                    {"|".join(k): c for k, c in seen.items()},
                    {"|".join(k): str(p) for k, p in pred.items()},
                )
            )
    return results
