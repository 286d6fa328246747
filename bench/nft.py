"""kube-proxy's nftables mode against its iptables mode: the same services, both loaded.

    python bench/nft.py [--services 10000] [--endpoints 5] [--repeat 5]

(``python bench/run.py`` runs it too, after its own figures.) The cluster is bench/run.py's
(``synth_large(services, endpoints, seed=1)``); its first node's rules are written twice,
as kube-proxy's iptables-restore input and as its ``nft -f`` transaction
(``synth.nft.render_kube_proxy_nft``). Each is loaded (``api.load``, what every command
does first) in a fresh interpreter, the two in turns ``--repeat`` times, so a slow spell
of the shared machine falls on both. Target (issue #14): nftables ≤ 1.0× iptables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from kpsim.inputs import synth
from kpsim.inputs.synth.nft import render_kube_proxy_nft

TARGET = 1.0

#: One load in a fresh interpreter; prints its seconds and the rules it holds.
_LOAD = """
import json, sys, time
from kpsim import api
t0 = time.perf_counter()
loaded = api.load([sys.argv[1]])
spent = time.perf_counter() - t0
rules = sum(len(c.rules) for t in loaded.nodes[0].primary.tables.values()
            for c in t.chains.values())
print(json.dumps({"load": spent, "rules": rules}))
"""


def generate(folder: Path, services: int, endpoints: int) -> dict[str, Path]:
    """Both modes' rules of bench/run.py's cluster, first node."""
    wide = services * endpoints + 256 > 65_536
    cidr = "10.0.0.0/8" if wide else synth.SEED_VPC_CIDR
    cluster = synth.synth_large(services, endpoints, seed=1, pod_cidr=cidr)
    node = cluster.nodes[0]
    paths = {"iptables": folder / "large.iptables-save", "nftables": folder / "large.nft"}
    paths["iptables"].write_text(synth.render_restore(cluster, node))
    paths["nftables"].write_text(render_kube_proxy_nft(cluster, node))
    return paths


def load_once(path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _LOAD, str(path)], check=True, capture_output=True, text=True
    ).stdout
    found: dict[str, float] = json.loads(out)
    return found


def bench(services: int, endpoints: int, repeat: int) -> float:
    """Print both load times and their ratio; return the ratio of the best times."""
    with tempfile.TemporaryDirectory(prefix="kpsim-bench-nft-") as tmp:
        paths = generate(Path(tmp), services, endpoints)
        print(f"\nnftables mode: {services} services × {endpoints} endpoints")
        for mode, path in paths.items():
            lines = path.read_text().count("\n")
            print(f"  {mode:9} {lines:9,} lines {path.stat().st_size / 1e6:6.1f} MB")
        times: dict[str, list[float]] = {mode: [] for mode in paths}
        rules: dict[str, float] = {}
        names = list(paths)
        for round_ in range(repeat):
            for mode in names[round_ % 2 :] + names[: round_ % 2]:
                got = load_once(paths[mode])
                times[mode].append(got["load"])
                rules[mode] = got["rules"]
    best = {mode: min(t) for mode, t in times.items()}
    print(f"  {'load (api.load)':18} {'best':>8} {'median':>8} {'rules':>9}")
    for mode, spent in times.items():
        print(f"  {mode:18} {best[mode]:7.3f}s {statistics.median(spent):7.3f}s "
              f"{rules[mode]:9,.0f}")  # fmt: skip
    ratio = best["nftables"] / best["iptables"]
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"  ratio nftables / iptables: {ratio:.2f}× (≤ {TARGET}×: {verdict})")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    bench(args.services, args.endpoints, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
