"""Counters after real traffic (root only): the seed lab's node loaded into throw-away
namespaces, N real connections to NodePort 30080, ``iptables-save -c`` taken from the
node namespace — ``kpsim counters`` must judge them consistent with the rules, and a
doctored copy (connections moved between endpoints) must be flagged.

Statistical: a correct kernel and a correct kpsim fail the 1% test about 1 run in 100,
so the test gets one rerun (about 1 in 10,000 then); the doctored copy moves enough
connections that it fails every run.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kpsim.explain.counters import count
from kpsim.formats import load_file, parse_text
from kpsim.verify import netns
from kpsim.verify.replay import open_replay

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.flaky(reruns=1),
    pytest.mark.skipif(
        not netns.available(), reason="needs root plus ip/iptables/iptables-save/iptables-restore"
    ),
]

NODE = (
    Path(__file__).resolve().parents[1]
    / "fixtures/iptables/eks-nodeport-workshop/ip-10-11-28-53/iptables-save.txt"
)
N = 900


@pytest.fixture(autouse=True)
def no_namespace_left_behind() -> Iterator[None]:
    mine = f"{netns.PREFIX}{os.getpid()}-"
    yield
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               timeout=10, check=True).stdout  # fmt: skip
    assert [ln for ln in out.splitlines() if ln.startswith(mine)] == []


def test_counters_after_real_traffic() -> None:
    with open_replay(load_file(NODE), timeout_s=120) as session:
        got = session.probe(30080, n=N, connect_timeout_s=1.0)
        text = netns.save(session.topology.node, counters=True)
    assert sum(got.reached.values()) == N
    rep = count([parse_text(text, "kernel:iptables-save -c")], "node", port=30080)
    (c,) = rep.cascades
    assert c.fit is not None and c.fit.n == N, c
    # the kernel's own counts, per endpoint, are what the connections saw
    assert sorted(e.picked or 0 for e in c.endpoints) == sorted(got.reached.values())
    assert c.fit.consistent is True, c.fit.verdict

    # doctored: a third of one endpoint's connections moved to another
    picks = [(e.picked or 0) for e in c.endpoints]
    moved = picks[0] // 3 + 60
    lines = text.splitlines(keepends=True)
    jump = re.compile(r"^\[(\d+):(\d+)\] (-A KUBE-SVC-6FADE4ADMXCZ7ACT .*-j (KUBE-SEP-\S+))")
    seps = [e.sep_chain for e in c.endpoints]
    for i, line in enumerate(lines):
        m = jump.match(line)
        if m and m.group(4) in (seps[0], seps[-1]):
            delta = -moved if m.group(4) == seps[0] else moved
            lines[i] = f"[{int(m.group(1)) + delta}:{m.group(2)}] {m.group(3)}\n"
    bad = count([parse_text("".join(lines), "doctored")], "node", port=30080)
    (d,) = bad.cascades
    assert [e.picked for e in d.endpoints] != [e.picked for e in c.endpoints]
    assert d.fit is not None and d.fit.n == N and d.fit.consistent is False, d.fit
