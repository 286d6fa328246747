"""``simulate --observed``: the user's per-pod counts against the simulated service's
exact shares (entry nodes mixed as the request says)."""

from __future__ import annotations

from dataclasses import dataclass

from kpsim.engine.trace import Disposition
from kpsim.errors import UsageError
from kpsim.explain.fit import Fit
from kpsim.explain.why import observed_fit
from kpsim.simulate.run import SimReport


@dataclass(frozen=True, slots=True)
class ObservedFit:
    service: str
    path: str
    pods: tuple[str | None, ...]
    fit: Fit


def simulated_fit(report: SimReport, path: str) -> ObservedFit:
    """Judge the file's counts against the one simulated service's endpoint shares."""
    if len(report.services) != 1:
        names = ", ".join(s.target.service for s in report.services)
        raise UsageError(f"--observed needs one service; add --port or --service ({names})")
    (s,) = report.services
    rows = [o for o in s.outcomes if o.verdict == Disposition.DNAT.value and o.expected > 0]
    labels = [o.destination for o in rows]
    pods = tuple(f"{o.pod.namespace}/{o.pod.name}" if o.pod else None for o in rows)
    if not rows:
        raise UsageError(f"--observed: {s.target.service} sends nothing to an endpoint")
    judged = observed_fit(path, labels, pods, [o.expected for o in rows])
    return ObservedFit(s.target.service, path, pods, judged)
