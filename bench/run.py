"""kpsim benchmarks: each figure as a ratio to the kernel's own tools, measured in the same run.

    python bench/run.py [--services 10000 50000] [--endpoints 5] [--repeat 5]

For each size, a kube-proxy dump is generated (10,000 services × 5 endpoints: 226k lines;
50,000: 1.1M lines) and four processes run in turns, ``--repeat`` times each, in one
throwaway network namespace (needs root and iptables; else the kernel tools are skipped):

    iptables-nft-restore --test FILE      iptables-legacy-restore --test FILE
    kpsim trace FILE --port N -o json     kpsim show FILE -o json

Each is timed end to end (process start included) with its peak RSS (``wait4``); the
ratio is to the best time of the faster kernel tool. Exact shares of all services (the
API: ``kube.services`` after ``api.load``), where ``show`` spends its time and (up to
10,000 services) a trace of every service one by one are timed in fresh interpreters.
Targets (issue #16): trace ≤ 0.25×, show ≤ 0.7×, all shares ≤ 1 s, RSS trace ≤ 150 MB,
show ≤ 250 MB, growing linearly with the dump. Then, for 10,000 services, bench/nft.py:
the same services' nftables-mode ruleset loaded against the iptables one (issue #14).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from kpsim.verify import netns

TOOLS = ("iptables-nft-restore", "iptables-legacy-restore")
TARGETS = {"trace": (0.25, 150), "show": (0.7, 250)}
SHARES_TARGET = 1.0
#: Every service traced one by one (in process, after the load) up to this many services.
TRACE_ALL_UP_TO = 10_000


#: Run in a fresh interpreter: the generator's model (~110 MB for 10,000 services) must not
#: be in this process when it forks the timed children, or each child's peak RSS would start
#: at this process's size (Linux keeps the pre-exec high-water mark in ``ru_maxrss``): the
#: figures before 2026-12-06 03:45 UTC were this process's size for every child smaller.
_GENERATE = """
import json, sys
from kpsim.inputs import synth
path, services, endpoints = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
wide = services * endpoints + 256 > 65_536
cidr = "10.0.0.0/8" if wide else synth.SEED_VPC_CIDR
cluster = synth.synth_large(services, endpoints, seed=1, pod_cidr=cidr)
text = synth.render_restore(cluster, cluster.nodes[0])
with open(path, "w") as out:
    out.write(text)
port = next(p.node_port for s in cluster.services for p in s.ports if p.node_port)
print(json.dumps([text.count("\\n"), port, cluster.nodes[0].ip]))
"""


def generate(path: Path, services: int, endpoints: int) -> tuple[int, int, str]:
    """The dump and its first NodePort; a wider pod range past the seed VPC's 65k."""
    out = subprocess.run(
        [sys.executable, "-c", _GENERATE, str(path), str(services), str(endpoints)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines, port, ip = json.loads(out)
    return int(lines), int(port), str(ip)


def compile_package(src: Path | None = None) -> None:
    """Byte-compile kpsim (or the one under ``src``) as ``pip install`` does, so no run times
    the compiler."""
    import kpsim

    where = src / "kpsim" if src is not None else Path(kpsim.__file__).parent
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(where)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def timed_child(argv: Sequence[str]) -> tuple[float, float]:
    """Wall time and peak RSS (MB) of one child process, from its own ``wait4``."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {err.strip()}")
    return wall, usage.ru_maxrss / 1024


#: What any trace that gives the whole reader's answers pays before it walks a rule, in
#: one process: the interpreter, the trace's imports, reading the file and the one pass
#: that vouches for every line (``formats.iptables.lazy_scan``: a damaged line anywhere
#: must be reported). ``kpsim trace`` itself makes that pass in a second process while it
#: imports (``formats.iptables.prescan``), so on two CPUs it can end below these rows.
#: Then the trace's whole load (``api.load(lazy=True)``: that pass, the chains' index, the
#: check that no jump leaves the capture), so the walk's own share is trace minus it.
_FLOOR = """
import sys
import kpsim.cli.main, kpsim.kube.scenario, kpsim.render.json
if len(sys.argv) > 2:  # the trace's whole load (the index, chains, the jump check)
    from kpsim import api
    api.load([sys.argv[1]], lazy=True)
elif len(sys.argv) > 1:
    from collections import deque
    from kpsim.formats.iptables.lazy_scan import pick, scanner_of
    text = open(sys.argv[1]).read()
    deque(scanner_of(pick(text)).finditer(text, text.index("\\n")), maxlen=0)
"""


def commands(
    path: Path, port: int, ns: str | None, baseline: Path | None = None
) -> dict[str, list[str]]:
    """``baseline``: the ``src`` folder of another kpsim (e.g. main's), timed in the same
    turns as ``trace (base)`` and ``show (base)``, so a change is measured in one run."""
    trees = {"": None} if baseline is None else {"": Path(__import__("kpsim").__file__).parents[1],
                                                 " (base)": baseline}  # fmt: skip
    out: dict[str, list[str]] = {}
    for label, tree in trees.items():
        env = [] if tree is None else ["env", f"PYTHONPATH={tree}"]
        kpsim = [*env, sys.executable, "-m", "kpsim"]
        out["trace" + label] = [*kpsim, "trace", str(path), "--port", str(port), "-o", "json"]
        out["show" + label] = [*kpsim, "show", str(path), "-o", "json"]
    # the interpreter alone (its ``site`` and whatever ``.pth`` files the machine has)
    out["floor: interpreter"] = [sys.executable, "-c", "pass"]
    out["floor: start, imports"] = [sys.executable, "-c", _FLOOR]
    out["floor: + read, vouch"] = [sys.executable, "-c", _FLOOR, str(path)]
    out["stage: + lazy load"] = [sys.executable, "-c", _FLOOR, str(path), "load"]
    if ns is not None:
        # every command runs under ``ip netns exec``, so each carries the same overhead
        out = {name: ["ip", "netns", "exec", ns, *argv] for name, argv in out.items()}
        for tool in TOOLS:
            out[tool] = ["ip", "netns", "exec", ns, tool, "--test", str(path)]
    return out


def in_turns(argvs: dict[str, list[str]], repeat: int) -> dict[str, list[tuple[float, float]]]:
    """Every command once per round, the order rotated each round, so a slow spell of the
    shared machine falls on all of them."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in argvs}
    names = list(argvs)
    for round_ in range(repeat):
        turn = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in turn:
            runs[name].append(timed_child(argvs[name]))
    return runs


#: Run in a fresh interpreter: exact shares of every service, show's phases, lint and a
#: self-diff after the same load.
_SHARES = """
import gc, json, os, sys, time
from kpsim import api
from kpsim.kube import services as kube
from kpsim.render.json import write_show_json
t0 = time.perf_counter()
loaded = api.load([sys.argv[1]])
t1 = time.perf_counter()
found = kube.services(loaded.nodes[0].primary)
t2 = time.perf_counter()
assert sum(len(s.endpoints) for s in found) > 0
report = api.show(loaded)
t3 = time.perf_counter()
with open(os.devnull, "w") as out:
    write_show_json(report, out)
t4 = time.perf_counter()
times = {"load": t1 - t0, "shares": t2 - t1, "show": t3 - t2, "json": t4 - t3}
t5 = time.perf_counter()
assert api.lint(loaded).captures  # every check over the 10k/50k services (#19)
t6 = time.perf_counter()
assert api.diff(loaded, loaded).changes == ()  # a capture against itself: by meaning
times["lint"], times["diff"] = t6 - t5, time.perf_counter() - t6
if len(sys.argv) > 2:  # every service's first frontend traced, after the load
    from kpsim.engine.packet import Packet
    from kpsim.engine.trace import Tracer
    from kpsim.model.node import NodeContext
    ip = sys.argv[2]
    tracer = Tracer(loaded.nodes[0].primary, NodeContext.of([ip], on={"eth0": [ip]}))
    packets = [Packet.of("203.0.113.10", f.address, f.port) for s in found
               for f in s.frontends[:1] if f.address and f.port]
    t5 = time.perf_counter()
    for p in packets:
        tracer.trace(p)
    times["trace all"] = time.perf_counter() - t5
print(json.dumps(times))
"""


def in_process(path: Path, repeat: int, node_ip: str | None) -> dict[str, float]:
    best: dict[str, float] = {}
    extra = [node_ip] if node_ip else []
    for _ in range(max(1, repeat // 2)):
        out = subprocess.run(
            [sys.executable, "-c", _SHARES, str(path), *extra],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for name, value in json.loads(out).items():
            best[name] = min(best.get(name, value), value)
    return best


def version(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        return "not installed"
    return subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip()


def bench(
    services: int, endpoints: int, repeat: int, judged: bool, baseline: Path | None = None
) -> dict[str, float]:
    """One dump; ``judged``: the issue's targets apply (they are set for 10,000 services;
    larger dumps show how the cost grows)."""
    with tempfile.TemporaryDirectory(prefix="kpsim-bench-") as tmp:
        path = Path(tmp) / "large.iptables-save"
        lines, port, node_ip = generate(path, services, endpoints)
        size = path.stat().st_size / 1e6
        print(f"\ndump: {services} services × {endpoints} endpoints = {lines:,} lines "
              f"({size:.1f} MB); trace --port {port}")  # fmt: skip
        kernel = netns.available() and all(shutil.which(t) for t in TOOLS)
        if kernel:
            with netns.Namespace() as ns:
                runs = in_turns(commands(path, port, ns.name, baseline), repeat)
        else:
            print("  kernel tools skipped: needs root, ip netns and both iptables-*-restore")
            runs = in_turns(commands(path, port, None, baseline), repeat)
        spent = in_process(path, repeat, node_ip if services <= TRACE_ALL_UP_TO else None)
    best = {name: min(w for w, _ in r) for name, r in runs.items()}
    rss = {name: max(m for _, m in r) for name, r in runs.items()}
    base_name = min((t for t in TOOLS if t in best), key=lambda t: best[t], default=None)
    base = best[base_name] if base_name else None
    print(f"  {'':28} {'best':>8} {'median':>8} {'ratio':>7} {'peak RSS':>9}   target")
    for name, r in runs.items():
        median = statistics.median(w for w, _ in r)
        ratio = f"{best[name] / base:6.2f}×" if base else "     -"
        target = ""
        if name in TARGETS and judged:
            most, mb = TARGETS[name]
            ok = (base is None or best[name] / base <= most) and rss[name] <= mb
            target = f"≤ {most}×, ≤ {mb} MB: {'met' if ok else 'MISSED'}"
        label = f"kpsim {name}" if name.split(" (")[0] in TARGETS else name
        times = f"{best[name]:7.3f}s {median:7.3f}s {ratio}"
        print(f"  {label:28} {times} {rss[name]:7.0f} MB   {target}")
    if base_name:
        print(f"  (ratios to {base_name}, the faster kernel tool here)")
    verdict = "met" if spent["shares"] <= SHARES_TARGET else "MISSED"
    verdict = f" (≤ {SHARES_TARGET} s: {verdict})" if judged else ""
    print(f"  exact shares, all services  {spent['shares']:7.3f}s after a load of "
          f"{spent['load']:.3f}s{verdict}")  # fmt: skip
    print("  in process (best): " + "  ".join(f"{k} {v:.3f}s" for k, v in spent.items()))
    phases = {f"in-process {k}": v for k, v in spent.items()}
    return {"lines": lines, **best, **{f"rss {k}": v for k, v in rss.items()}, **phases}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="src folder of another kpsim to time too")
    args = parser.parse_args()
    compile_package()
    if args.baseline:
        compile_package(args.baseline)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}; " + "; ".join(version(t) for t in TOOLS))  # fmt: skip
    results = [
        bench(n, args.endpoints, args.repeat, n == 10_000, args.baseline) for n in args.services
    ]
    if 10_000 in args.services:  # issue #14: the same services in nftables mode (bench/nft.py)
        import nft  # bench/ is the script's folder, first on sys.path

        nft.bench(10_000, args.endpoints, args.repeat)
    if len(results) > 1:
        first, last = results[0], results[-1]
        grow = last["lines"] / first["lines"]
        print(f"\ngrowth {args.services[0]} → {args.services[-1]} services: lines ×{grow:.2f}")
        keys = ("trace", "show", *TOOLS, "rss trace", "rss show", "in-process load")
        for key in (*keys, "in-process shares", "in-process show"):
            if key in first and key in last and first[key]:
                print(f"  {key:28} ×{last[key] / first[key]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
