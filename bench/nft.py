"""kube-proxy's nftables mode against its iptables mode: the same services, like with like.

    python bench/nft.py [--services 10000] [--endpoints 5] [--repeat 5] [--baseline SRC]

(``python bench/run.py`` runs it too, after its own figures.) The cluster is bench/run.py's
(``synth_large(services, endpoints, seed=1)``); its first node's rules are written twice,
as kube-proxy's iptables-restore input and as its ``nft -f`` transaction
(``synth.nft.render_kube_proxy_nft``). For each mode, three things, each in a fresh
interpreter:

    load    ``api.load`` (what every command does first), then every chain's rules read:
            the whole model, however the reader builds it (issue #14's "loading")
    trace   ``kpsim trace DUMP --port N -o json`` end to end, the same NodePort in both
    show    ``kpsim show DUMP -o json`` end to end

All of them (and ``--baseline SRC``'s, another kpsim's ``src`` folder, e.g. main's before
a change) run in turns ``--repeat`` times, the order rotated each round, so a slow spell of
the shared machine falls on all. Each figure is the best of the rounds (median beside it);
the ratio is nftables / iptables. Target (issue #14): load ≤ 1.0×; trace and show are
reported against the same 1.0×.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from kpsim.inputs import synth
from kpsim.inputs.synth.nft import render_kube_proxy_nft

TARGET = 1.0
MODES = ("iptables", "nftables")
MEASURES = ("load", "trace", "show")

#: One load in a fresh interpreter, then every chain's rules read (a reader that builds
#: chains on first use pays for them here); prints the seconds and the rules.
_LOAD = """
import json, sys, time
t0 = time.perf_counter()
from kpsim import api
t1 = time.perf_counter()
loaded = api.load([sys.argv[1]])
t2 = time.perf_counter()
rules = sum(len(c.rules) for rs in loaded.nodes[0].rulesets for t in rs.tables.values()
            for c in t.chains.values())
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "read": t3 - t2, "whole": t3 - t1,
                  "rules": rules}))
"""


def generate(folder: Path, services: int, endpoints: int) -> tuple[dict[str, Path], int]:
    """Both modes' rules of bench/run.py's cluster, first node, and its first NodePort."""
    wide = services * endpoints + 256 > 65_536
    cidr = "10.0.0.0/8" if wide else synth.SEED_VPC_CIDR
    cluster = synth.synth_large(services, endpoints, seed=1, pod_cidr=cidr)
    node = cluster.nodes[0]
    paths = {"iptables": folder / "large.iptables-save", "nftables": folder / "large.nft"}
    paths["iptables"].write_text(synth.render_restore(cluster, node))
    paths["nftables"].write_text(render_kube_proxy_nft(cluster, node))
    port = next(p.node_port for s in cluster.services for p in s.ports if p.node_port)
    return paths, port


def compile_package(src: Path) -> None:
    """Byte-compile the kpsim under ``src`` as ``pip install`` does: no run times the
    compiler."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(src / "kpsim")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def timed(argv: Sequence[str], env: dict[str, str], keep: bool) -> tuple[float, str]:
    """Wall time of one child and its standard output (``keep``; else thrown away, as
    ``bench/run.py`` does with show's)."""
    start = time.perf_counter()
    proc = subprocess.run(
        argv, stdout=subprocess.PIPE if keep else subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr!r}")
    return wall, proc.stdout.decode() if keep else ""


def commands(paths: dict[str, Path], port: int, trees: dict[str, Path]) -> dict[str, list[str]]:
    """(label, mode, measure) → argv; a label per kpsim tree ("" for this one)."""
    out = {}
    for label, _ in trees.items():
        for mode, path in paths.items():
            kpsim = [sys.executable, "-m", "kpsim"]
            out[f"{label}|{mode}|load"] = [sys.executable, "-c", _LOAD, str(path)]
            out[f"{label}|{mode}|trace"] = [*kpsim, "trace", str(path), "--port", str(port),
                                            "-o", "json"]  # fmt: skip
            out[f"{label}|{mode}|show"] = [*kpsim, "show", str(path), "-o", "json"]
    return out


def in_turns(
    argvs: dict[str, list[str]], trees: dict[str, Path], repeat: int
) -> dict[str, list[float]]:
    """Every command once per round, the order rotated each round; a load's figure is its
    own (load and every rule read, start-up excluded), the others' the process's."""
    times: dict[str, list[float]] = {name: [] for name in argvs}
    names = list(argvs)
    for round_ in range(repeat):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            label = name.split("|")[0]
            env = dict(os.environ, PYTHONPATH=str(trees[label]))
            load = name.endswith("|load")
            wall, out = timed(argvs[name], env, keep=load)
            times[name].append(json.loads(out)["whole"] if load else wall)
    return times


def bench(services: int, endpoints: int, repeat: int, baseline: Path | None = None) -> float:
    """Print every figure and its ratio; return the load's ratio (best times)."""
    import kpsim

    trees = {"": Path(kpsim.__file__).parents[1]}
    if baseline is not None:
        trees["before"] = baseline.resolve()
    for tree in trees.values():
        compile_package(tree)
    with tempfile.TemporaryDirectory(prefix="kpsim-bench-nft-") as tmp:
        paths, port = generate(Path(tmp), services, endpoints)
        print(f"\nnftables mode: {services} services × {endpoints} endpoints; "
              f"trace --port {port}; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f} at the start")  # fmt: skip
        for mode, path in paths.items():
            lines = path.read_text().count("\n")
            print(f"  {mode:9} {lines:9,} lines {path.stat().st_size / 1e6:6.1f} MB")
        times = in_turns(commands(paths, port, trees), trees, repeat)
    print(f"  load average {os.getloadavg()[0]:.1f} at the end; best of {repeat} (median)")
    ratios: dict[str, float] = {}
    print(f"  {'':18} {'iptables':>17} {'nftables':>17} {'nft/ipt':>8}")
    for label in trees:
        for measure in MEASURES:
            row = {m: times[f"{label}|{m}|{measure}"] for m in MODES}
            best = {m: min(t) for m, t in row.items()}
            ratio = best["nftables"] / best["iptables"]
            cells = "".join(f" {best[m]:7.3f}s ({statistics.median(row[m]):5.2f})" for m in MODES)
            name = f"{measure} ({label})" if label else measure
            verdict = "met" if ratio <= TARGET else "MISSED"
            print(f"  {name:18}{cells} {ratio:7.2f}×  ≤ {TARGET}×: {verdict}")
            if not label:
                ratios[measure] = ratio
    return ratios["load"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="src folder of another kpsim to time too")
    args = parser.parse_args(argv)
    bench(args.services, args.endpoints, args.repeat, args.baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
