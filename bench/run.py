"""kpsim benchmarks: ratios against baselines measured in the same run.

    python bench/run.py [--services 10000] [--endpoints 5] [--repeat 5]

Parse (issue: load a node's rules): ``kpsim show`` on a generated kube-proxy dump vs
``iptables-restore --test`` on the same file in a throwaway network namespace (needs
root; skipped with a note otherwise), vs a bare Python read + line split; peak RSS.
Targets: show ≤ 1.0× iptables-restore --test (aim ≤ 0.33×), peak RSS ≤ 800 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kpsim.inputs import synth
from kpsim.verify import netns


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


def generate(path: Path, services: int, endpoints: int) -> tuple[int, str]:
    cluster = synth.synth_large(services, endpoints, seed=1)
    text = synth.render_restore(cluster, cluster.nodes[0])
    path.write_text(text)
    return text.count("\n"), cluster.nodes[0].ip


#: Run in a fresh interpreter: where one ``kpsim show -o json`` spends its time.
_PHASES = """
import json, os, sys, time
t0 = time.perf_counter()
from kpsim import api
from kpsim.render.json import write_show_json
t1 = time.perf_counter()
loaded = api.load([sys.argv[1]])
t2 = time.perf_counter()
report = api.show(loaded)
t3 = time.perf_counter()
with open(os.devnull, "w") as out:
    write_show_json(report, out)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "show": t3 - t2, "json": t4 - t3}))
"""


def compile_package() -> None:
    """Byte-compile kpsim as ``pip install`` does, so no run times the compiler
    (PYTHONDONTWRITEBYTECODE=1 would otherwise make every run compile every module)."""
    import kpsim

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(kpsim.__file__).parent)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def phases(path: Path, repeat: int) -> dict[str, float]:
    """Best time of each phase over ``repeat`` fresh processes."""
    best: dict[str, float] = {}
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", _PHASES, str(path)], check=True, capture_output=True, text=True
        ).stdout
        for name, value in json.loads(out).items():
            best[name] = min(best.get(name, value), value)
    return best


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def bench_parse(path: Path, repeat: int) -> None:
    """``kpsim show`` and ``iptables-restore --test`` run in turns, ``repeat`` times each,
    so a slow spell of the machine (restore alone varied 1.3-1.8 s between runs) falls
    on both; the verdict compares the best of each, the medians are printed too."""
    compile_package()
    kpsim_argv = [sys.executable, "-m", "kpsim", "show", str(path), "-o", "json"]

    def show() -> None:
        subprocess.run(kpsim_argv, check=True, stdout=subprocess.DEVNULL)

    _, rss = child_peak_rss_mb(kpsim_argv)
    split_s = best_of(repeat, lambda: path.read_text().splitlines())
    shows: list[float] = []
    restores: list[float] = []
    if netns.available():
        text = path.read_text()
        with netns.Namespace() as ns:
            for _ in range(repeat):
                shows.append(timed(show))
                restores.append(timed(lambda: netns.restore_test(ns.name, text)))
    else:
        shows = [timed(show) for _ in range(repeat)]
    show_s = min(shows)
    print(
        f"kpsim show (process)          {show_s:8.3f} s   median {statistics.median(shows):.3f} s"
        f"   peak RSS {rss:7.1f} MB (target ≤ 800)"
    )
    spent = phases(path, repeat)
    print(
        "  of which (best of each)     "
        + "  ".join(f"{name} {value:.3f} s" for name, value in spent.items())
    )
    print(
        f"python read + splitlines      {split_s:8.3f} s   show / split = {show_s / split_s:6.1f}×"
    )
    if not restores:
        print("iptables-restore --test    skipped: needs root, iptables and ip netns")
        return
    restore_s = min(restores)
    ratio = show_s / restore_s
    verdict = "meets ≤ 1.0×" if ratio <= 1.0 else "MISSES ≤ 1.0×"
    middle = statistics.median(restores)
    print(f"iptables-restore --test    {restore_s:8.3f} s   median {middle:.3f} s")
    print(
        f"  show/restore, best of each      {ratio:5.2f}× ({verdict}; aim ≤ 0.33×); "
        f"medians {statistics.median(shows) / middle:5.2f}×"
    )
    print(
        f"  load (parse) alone                      load/restore = "
        f"{spent['load'] / restore_s:5.2f}×"
    )


def bench_trace(path: Path, node_ip: str, repeat: int) -> None:
    """Trace speed on the same dump: one NodePort after load (≤ 50 ms, aim 10 ms), and the
    exact distribution of every service (≤ 5 s, aim 2 s), against the load time."""
    from kpsim import api
    from kpsim.engine.packet import Packet
    from kpsim.engine.trace import Tracer
    from kpsim.kube import services as kube
    from kpsim.model.node import NodeContext

    start = time.perf_counter()
    ruleset = api.load([str(path)]).nodes[0].primary  # as the CLI loads: GC paused
    load_s = time.perf_counter() - start
    services = kube.services(ruleset)
    port = next(p for s in services for p in s.node_ports)
    ctx = NodeContext.of([node_ip], on={"eth0": [node_ip]}, routes={"0.0.0.0/0": "eth0"})
    start = time.perf_counter()
    tracer = Tracer(ruleset, ctx)
    prep_s = time.perf_counter() - start
    one = best_of(repeat * 5, lambda: tracer.trace(Packet.of("203.0.113.10", node_ip, port)))
    packets = [
        Packet.of("203.0.113.10", f.address, f.port, protocol=f.protocol or "tcp")
        for s in services
        for f in s.frontends[:1]
        if f.address and f.port
    ]
    every = best_of(1, lambda: [tracer.trace(p) for p in packets])
    print(f"load (parse) for trace     {load_s:8.3f} s   tracer preparation {prep_s * 1000:.0f} ms")
    print(
        f"trace one NodePort         {one * 1000:8.2f} ms  ({one / 0.050:.3f}× the 50 ms budget; "
        f"aim 10 ms)"
    )
    print(
        f"trace all {len(packets):5d} services   {every:8.3f} s   "
        f"({every / 5:.3f}× the 5 s budget; "
        f"aim 2 s; {every / load_s:.2f}× the load)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kpsim-bench-") as tmp:
        path = Path(tmp) / "large.iptables-save"
        lines, node_ip = generate(path, args.services, args.endpoints)
        print(f"dump: {args.services} services × {args.endpoints} endpoints = {lines} lines")
        bench_parse(path, args.repeat)
        bench_trace(path, node_ip, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
