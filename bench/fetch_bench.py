"""kpsim fetch at fleet size: 200 nodes against the moto endpoint.

    python bench/fetch_bench.py [--nodes 200] [--namespaces 3] [--real]

Nodes share a few network namespaces loaded with the seed lab's rules. By default each
namespace runs the real capture script once and later nodes replay its output (a light
runner, so the bench measures kpsim's SSM path, not 200 iptables-save runs); ``--real``
runs the script for every node. Prints send_command calls (expect ⌈n/50⌉) and seconds.
Needs root (namespaces) and moto[server].
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from kpsim.fetch import FetchRequest, Waits, fetch_ssm
from kpsim.verify import netns
from moto_ssm import FakeNode, MotoSsm, NetnsRunner, netns_node, seed_rules


class Replay:
    """Run the script once per (namespace, script) and replay the output."""

    def __init__(self, runner: NetnsRunner) -> None:
        self.runner = runner
        self.cache: dict[str, tuple[int, bytes, bytes]] = {}
        self.lock = threading.Lock()

    def __call__(self, script: str) -> tuple[int, bytes, bytes]:
        with self.lock:
            if script not in self.cache:
                self.cache[script] = self.runner(script)
            return self.cache[script]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--namespaces", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="run the script for every node")
    args = parser.parse_args()
    if not netns.available():
        print("skipped: needs root plus ip/iptables (network namespaces)")
        return 0
    waits = Waits(timeout=120, poll_interval=0.05, poll_max=0.5, invocation_grace=10)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as out:
        aws = stack.enter_context(MotoSsm())
        runners = []
        for i in range(args.namespaces):
            rules, host = seed_rules(i % 3)
            runners.append(stack.enter_context(netns_node(rules, host)))
        ids = aws.launch(args.nodes, {"eks:cluster-name": "bench"})
        for n, iid in enumerate(ids):
            base = runners[n % len(runners)]
            runner = NetnsRunner(base.ns, f"ip-198-18-{n // 250}-{n % 250}.ec2.internal")
            stack.callback(runner.close)
            aws.add(FakeNode(iid, runner if args.real else Replay(runner), hidden_polls=1))
        request = FetchRequest(cluster="bench", out=Path(out), waits=waits, concurrency=16)
        start = time.perf_counter()
        report = fetch_ssm(request, aws.clients())
        seconds = time.perf_counter() - start
        written = sum(1 for _ in Path(out, "bench").iterdir())
    expected = -(-args.nodes // 50)
    print(f"nodes            {args.nodes}")
    print(f"fetched          {len(report.results) - len(report.failed)} ({written} folders)")
    print(f"send_command     {report.send_command_calls} calls (expected ⌈{args.nodes}/50⌉ = "
          f"{expected})")  # fmt: skip
    print(f"get_invocation   {aws.calls['get_command_invocation']} calls")
    print(f"wall time        {seconds:.2f} s")
    ok = report.send_command_calls == expected and not report.failed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
