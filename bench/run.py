"""kpsim benchmarks: ratios against baselines measured in the same run.

    python bench/run.py [--services 10000] [--endpoints 5] [--repeat 3]

Parse (issue: load a node's rules): ``kpsim show`` on a generated kube-proxy dump vs
``iptables-restore --test`` on the same file in a throwaway network namespace (needs
root; skipped with a note otherwise), vs a bare Python read + line split; peak RSS.
Targets: show ≤ 1.0× iptables-restore --test (aim ≤ 0.33×), peak RSS ≤ 800 MB.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kpsim import netns, synth


def best_of(repeat: int, func: Callable[[], object]) -> float:
    """Best wall time of ``repeat`` runs: the least disturbed by the machine."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def child_peak_rss_mb(argv: list[str]) -> tuple[float, float]:
    """Wall time and peak RSS (MB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(after, before) / 1024


def generate(path: Path, services: int, endpoints: int) -> int:
    cluster = synth.synth_large(services, endpoints, seed=1)
    text = synth.render_restore(cluster, cluster.nodes[0])
    path.write_text(text)
    return text.count("\n")


def bench_parse(path: Path, repeat: int) -> None:
    kpsim_argv = [sys.executable, "-m", "kpsim", "show", str(path), "-o", "json"]
    show_s = best_of(
        repeat, lambda: subprocess.run(kpsim_argv, check=True, stdout=subprocess.DEVNULL)
    )
    _, rss = child_peak_rss_mb(kpsim_argv)
    split_s = best_of(repeat, lambda: path.read_text().splitlines())
    print(f"kpsim show (process)          {show_s:8.3f} s   peak RSS {rss:7.1f} MB (target ≤ 800)")
    print(
        f"python read + splitlines      {split_s:8.3f} s   show / split = {show_s / split_s:6.1f}×"
    )
    if not netns.available():
        print("iptables-restore --test    skipped: needs root, iptables and ip netns")
        return
    text = path.read_text()
    with netns.Namespace() as ns:
        restore_s = best_of(repeat, lambda: netns.restore_test(ns.name, text))
    ratio = show_s / restore_s
    verdict = "meets ≤ 1.0×" if ratio <= 1.0 else "MISSES ≤ 1.0×"
    print(
        f"iptables-restore --test    {restore_s:8.3f} s   show/restore = {ratio:5.2f}× "
        f"({verdict}; aim ≤ 0.33×)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kpsim-bench-") as tmp:
        path = Path(tmp) / "large.iptables-save"
        lines = generate(path, args.services, args.endpoints)
        print(f"dump: {args.services} services × {args.endpoints} endpoints = {lines} lines")
        bench_parse(path, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
