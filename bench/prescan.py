"""``kpsim trace``/``show`` end to end, this tree against ``--baseline SRC``, in turns,
each run started when nothing else is runnable (the prescan needs a CPU to spare).

    python bench/prescan.py --baseline SRC [--dump FILE | --services 10000] [--repeat 10]

The prescan (``formats/iptables/prescan.py``) overlaps the lazy reader's one pass with
the interpreter's imports, on a second CPU; on a machine shared with other sessions that
CPU is often taken, and the prescan then does not start (its check) — the figures would
show the noise of the others, not the change. So before each run this waits (up to
``--wait`` seconds) until /proc/loadavg has counted no runnable task but its own for
0.15 s, and says which runs started busy. The two kpsims alternate, the order swapped each
round; each figure is the best (median beside it), with the peak RSS from ``wait4``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kpsim.inputs import synth

HERE = Path(__file__).resolve().parents[1] / "src"


def running() -> int:
    """Runnable tasks now, this one among them."""
    return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])


def wait_idle(limit: float) -> bool:
    end, quiet = time.monotonic() + limit, 0
    while time.monotonic() < end:
        quiet = quiet + 1 if running() <= 1 else 0
        if quiet >= 3:
            return True
        time.sleep(0.05)
    return False


def one(src: Path, args: list[str]) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of ``python -m kpsim ARGS`` with ``src`` first."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "kpsim", *args], stdout=subprocess.DEVNULL, env=env
    )
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"{src}: kpsim {' '.join(args)} failed ({status})")
    return time.perf_counter() - start, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="another kpsim's src")
    parser.add_argument("--dump", type=Path, help="an iptables-save file (else generated)")
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--port", type=int, default=30000, help="the NodePort traced")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for quiet")
    opts = parser.parse_args()
    for src in (HERE, opts.baseline):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src / "kpsim")], check=True)
    dump = opts.dump
    if dump is None:
        cluster = synth.synth_large(opts.services, 5, seed=1)
        dump = Path(tempfile.mkdtemp()) / "dump.txt"
        dump.write_text(synth.render_restore(cluster, cluster.nodes[0]))
    commands = {
        "trace": ["trace", str(dump), "--port", str(opts.port), "-o", "json"],
        "show": ["show", str(dump), "-o", "json"],
    }
    kpsims = {"before": opts.baseline, "after": HERE}
    times: dict[tuple[str, str], list[float]] = {}
    peaks: dict[tuple[str, str], int] = {}
    busy = 0
    for round_ in range(opts.repeat):
        for name, args in commands.items():
            order = list(kpsims) if round_ % 2 == 0 else list(reversed(kpsims))
            for which in order:
                busy += not wait_idle(opts.wait)
                seconds, peak = one(kpsims[which], args)
                times.setdefault((name, which), []).append(seconds)
                peaks[name, which] = max(peaks.get((name, which), 0), peak)
    for (name, which), found in sorted(times.items()):
        print(
            f"{name:5} {which:6} best {min(found):.3f} s (median "
            f"{statistics.median(found):.3f}), peak {peaks[name, which] / 1024:.0f} MB"
        )
    print(f"{busy} of {len(times) * opts.repeat} runs started with another task runnable")


if __name__ == "__main__":
    main()
