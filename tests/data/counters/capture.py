"""Capture the counter fixtures in this folder for real (root; run from the repo root):

    PYTHONPATH=$PWD/src python tests/data/counters/capture.py

Loads the seed lab's node ip-10-11-28-53 into throw-away network namespaces
(kpsim.verify.replay: addresses mapped into 198.18.0.0/15, nothing linked to the host),
sends real TCP connections to NodePorts 30080 and 30081, and writes the node namespace's
``iptables-save -c`` verbatim: ``before.txt`` after the first batch, ``after.txt`` after
a second one (so ``kpsim counters before.txt after.txt`` judges the second batch alone),
and beside the latter ``after-nat-L.txt``: ``iptables -t nat -L -n -v -x --line-numbers``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kpsim.formats import load_file
from kpsim.verify import netns
from kpsim.verify.replay import open_replay

HERE = Path(__file__).resolve().parent
NODE = HERE.parents[2] / "fixtures/iptables/eks-nodeport-workshop/ip-10-11-28-53/iptables-save.txt"
#: (port, connections) per batch; bounded, and each batch a fresh set of source ports.
FIRST = ((30080, 300), (30081, 300))
SECOND = ((30080, 900), (30081, 600))


def main() -> int:
    if not netns.available():
        print("needs root plus ip and iptables", file=sys.stderr)
        return 1
    with open_replay(load_file(NODE), timeout_s=300) as session:
        for name, batch in (("before.txt", FIRST), ("after.txt", SECOND)):
            for port, n in batch:
                got = session.probe(port, n=n, connect_timeout_s=1.0)
                print(f"{name}: {port}: {dict(got.reached)} of {n}")
            text = netns.save(session.topology.node, counters=True)
            (HERE / name).write_text(text)
        listing = netns.list_table(session.topology.node, "nat", extra=["-x"])
        (HERE / "after-nat-L.txt").write_text(listing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
