"""Sampling machinery behind ``kpsim.simulate``.

request.py  SimRequest ─▶ Targets (frontends), entry weights, client addresses
plan.py     exact engine, once per (entry node, frontend) ─▶ NodePlan: the outcomes,
            the statistic cascade that picks among them, the affinity lists
sampler.py  NodePlan × n ─▶ counts, drawing u32s as xt_statistic does (numpy, batched);
            a per-connection loop only where kernel state (recent lists, nth) matters
summary.py  counts ─▶ ServiceSim: shares, intervals, χ², cross-node, verdict, remarks
"""

from __future__ import annotations
