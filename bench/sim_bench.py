"""Simulation speed: kpsim's compiled sampler against a plain per-connection Python loop
doing the same thing, both measured in this run.

    python bench/sim_bench.py [-n 20000000] [--loop-n 300000] [--repeat 3]

Scenario: the seed lab's NodePort 30080 (3 endpoints, one per node), entry node uniform
over the 3 nodes. Both sides draw a u32 for every statistic rule a connection reaches and
take it when ``(u32 & 0x7FFFFFFF) < threshold``; the loop does it one connection at a time.
Target: ≥ 1 M connections/s (aim 5 M/s). Also reports the per-connection affinity path
(the ClusterIP service with sessionAffinity) for scale.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kpsim import api
from kpsim.engine.packet import Packet
from kpsim.engine.trace import Tracer
from kpsim.kube.scenario import NodeInput, node_addresses, node_context
from kpsim.simulate.plan import NodePlan, compile_plan
from kpsim.simulate.run import SimRequest, simulate

LAB = Path(__file__).resolve().parents[1] / "fixtures" / "iptables" / "eks-nodeport-workshop"


def best_of(repeat: int, func: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def plans(inputs: list[NodeInput], port: int) -> list[NodePlan]:
    out = []
    for nd in inputs:
        ctx, _ = node_context(nd.ruleset.metadata, ())
        addr = node_addresses(nd.ruleset.metadata, ())[0]
        tracer = Tracer(nd.ruleset, ctx)
        out.append(compile_plan(tracer, nd.name, Packet.of("203.0.113.1", addr, port)))
    return out


def python_loop(node_plans: list[NodePlan], n: int, seed: int) -> list[list[int]]:
    """The baseline: one connection at a time, the kernel's comparison per rule reached."""
    rng = random.Random(seed)
    cascades = [
        ([(d.threshold, d.outcome) for d in p.cascade.draws], p.cascade.fallthrough)
        for p in node_plans
    ]
    counts = [[0] * len(p.outcomes) for p in node_plans]
    k = len(node_plans)
    for _ in range(n):
        e = rng.randrange(k)
        draws, outcome = cascades[e]
        for threshold, target in draws:
            if (rng.getrandbits(32) & 0x7FFFFFFF) < threshold:
                outcome = target
                break
        counts[e][outcome] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=20_000_000, help="connections for kpsim")
    ap.add_argument("--loop-n", type=int, default=300_000, help="connections for the loop")
    ap.add_argument("--affinity-n", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    loaded = api.load([str(LAB)], all_files=False)
    inputs = [NodeInput(n.name, n.primary) for n in loaded.nodes]
    req = SimRequest(args.n, port=30080, seed=1)
    t_sim = best_of(args.repeat, lambda: simulate(inputs, req, np.random.default_rng(1)))
    t_loop = best_of(args.repeat, lambda: python_loop(plans(inputs, 30080), args.loop_n, 1))
    aff = SimRequest(args.affinity_n, dest="172.20.91.45", port=80, clients=50, seed=1)
    t_aff = best_of(1, lambda: simulate(inputs, aff, np.random.default_rng(1)))

    rate_sim, rate_loop = args.n / t_sim, args.loop_n / t_loop
    print(
        f"kpsim simulate, NodePort 30080, 3 nodes:  {args.n:>11,} conns in {t_sim:6.3f} s "
        f"= {rate_sim / 1e6:8.1f} M conns/s (incl. compiling the plans)"
    )
    print(
        f"plain Python per-connection loop:         {args.loop_n:>11,} conns in {t_loop:6.3f} s "
        f"= {rate_loop / 1e6:8.2f} M conns/s"
    )
    print(
        f"ratio kpsim / loop: {rate_sim / rate_loop:,.0f}×   "
        f"target ≥ 1 M/s: {'met' if rate_sim >= 1e6 else 'MISSED'}"
    )
    print(
        f"with session affinity (per-connection state loop): {args.affinity_n:,} conns in "
        f"{t_aff:.3f} s = {args.affinity_n / t_aff / 1e6:.2f} M conns/s"
    )


if __name__ == "__main__":
    main()
