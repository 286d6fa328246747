"""``kpsim simulate``: many connections drawn as the kernel draws them.

run.py      simulate(): the stage the api calls

request.py  SimRequest ─▶ Targets (frontends), entry weights, client addresses
plan.py     exact engine, once per (entry node, frontend) ─▶ NodePlan: the outcomes,
            the statistic cascade that picks among them, the affinity lists
sampler.py  NodePlan × n ─▶ counts, drawing u32s as xt_statistic does (numpy, batched);
            a per-connection loop only where kernel state (recent lists, nth) matters
summary.py  counts ─▶ ServiceSim: shares, intervals, χ², cross-node, verdict, remarks
stats.py    intervals, χ², exact multinomial chances (scipy)
"""

from __future__ import annotations
