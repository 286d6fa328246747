"""Fuzz kpsim's readers and ``show``: generated and mutated captures, none may crash or hang.

    python bench/fuzz.py [-n 100000] [--seed 1] [--workers 2] [--timeout 5] [--no-big]
    python bench/fuzz.py --seed 1 --only 4711 --dump /tmp/input.txt   # one input, again

Each input is made from its seed and its number alone (``make_input``), so a run is the
same inputs whatever the workers, and any one of them can be made again. Most are real
dumps mutated along their grammar (the shipped fixtures, fixtures/damaged, the shared
corpus of published dumps, kube-proxy's own test dumps): a window of their lines, then
1-4 of cut, delete, duplicate, swap, splice, numbers swapped for huge, negative, hex or
Unicode ones, words swapped, control characters, NULs, CRLF, CR, a BOM, very long lines,
random bytes, nested braces, prompts and fences, a metadata line of the wrong shape. The
rest are generated: iptables-save, ``-S``, ``-L`` in its flavours, nft text and metadata
lines, built from each grammar's words with bad values mixed in.

Every input goes through ``kpsim.formats.parse_captures`` (lenient and strict), then the
lenient result through ``kpsim.api.show`` and the text and JSON renderers, and the node's
metadata through kube.scenario (addresses, context, pods). Only ``ParseError`` and
``UsageError`` may come out; anything else is a crash, grouped by site (type, file:line).
Each input runs under a timeout in a worker process (``signal.setitimer`` there; the
parent kills a worker that stops answering): past it, a hang. Also checked: diagnostics
keep a bounded slice of their line, messages and notes are bounded, the output encodes
as UTF-8, and (on a sample) the fast path of iptables-save gives the general path's model.

Then a few big inputs, each in a fresh process so its peak RSS is its own: a 50 MB single
line (also through ``python -m kpsim show``), a million junk lines, 100,000 blanks, deep
nft braces, a 10 MB quoted string. The figures print at the end; docs/hardening.md keeps
those of the last full run.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import json
import multiprocessing as mp
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from kpsim import api  # noqa: E402
from kpsim.errors import KpsimError, ParseError, UsageError  # noqa: E402
from kpsim.formats import parse_captures  # noqa: E402
from kpsim.formats.common import MESSAGE, NOTE_LENGTH, NOTES  # noqa: E402
from kpsim.inputs.fixtures import FixtureSet, NodeSource  # noqa: E402
from kpsim.model import Format, Ruleset  # noqa: E402
from kpsim.model.rules import EXCERPT  # noqa: E402

# ---------------------------------------------------------------- seeds

_CORPUS = (REPO.parent / "shared/corpus/real-dumps", Path("/work/shared/corpus/real-dumps"))


def seed_texts() -> list[tuple[str, str]]:
    """(name, text) of every real dump the mutations start from, in a fixed order."""
    paths = sorted((REPO / "fixtures/iptables").glob("*/*/*.txt"))
    paths += sorted(p for p in (REPO / "fixtures/damaged").iterdir() if p.name != "README.md")
    paths += sorted((REPO / "tests/data/kube-proxy").glob("*.txt"))
    corpus = next((c for c in _CORPUS if c.is_dir()), None)
    if corpus is not None:
        paths += sorted(p for p in corpus.iterdir() if p.name[:3].isdigit())
    return [(str(p.relative_to(p.parents[1])), p.read_text(errors="replace")) for p in paths]


# ---------------------------------------------------------------- values, good and bad

#: Numbers a field may hold, and the ones that broke readers: past 4,300 digits (int()
#: refuses), Unicode digits that str.isdigit() takes, signs, hex, floats, blanks.
NUMBERS = (
    "0", "1", "7", "80", "443", "30080", "65535", "65536", "99999", "4294967295",
    "4294967296", "18446744073709551615", "18446744073709551616", "9" * 30, "9" * 4301,
    "1" * 5000, "0" * 5000 + "1", "²", "٣", "١٢٣", "１２３", "߀", "৪", "-1", "+1", "0x10",
    "0xFFFFFFFFF", "0x", "08", "0b101", "1_000", "1e400", "nan", "inf", "0.5", "1.5", "",
    "00080", " 1", "1K", "99999999999999999999K", "3M", "0.33332999982", "0." + "3" * 5000,
)  # fmt: skip
WORDS = (
    "-A", "-I", "-N", "-P", "-X", "-F", "-j", "-g", "-m", "-p", "-s", "-d", "-i", "-o", "!",
    "-c", "--comment", "--dport", "--sport", "--to-destination", "--probability", "--every",
    "--packet", "--seconds", "--hitcount", "--mark", "--set-xmark", "--log-level", "-f",
    "tcp", "udp", "all", "ACCEPT", "DROP", "RETURN", "DNAT", "SNAT", "MASQUERADE", "MARK",
    "LOG", "REJECT", "CT", "KUBE-SERVICES", "KUBE-SEP-X", "Chain", "policy", "references",
    "target", "prot", "opt", "source", "destination", "/*", "*/", "dpt:", "to:", "table",
    "chain", "{", "}", "\"", "\\", "'", "#", "$", "[0:0]", "[1:2]", "*nat", "COMMIT", ":X",
    "0.0.0.0/0", "10.0.0.1", "::1", "fe80::1%eth0", "anywhere", "←", "...", "```", "—",
    "meta", "l4proto", "daddr", "counter", "packets", "bytes", "jump", "elements", "=",
)  # fmt: skip
CONTROLS = ("\0", "\x1b[2J", "\r", "\t", "\x0b", "\x0c", "\x7f", "\u2028", "\ufeff", "\x85")
ADDRESSES = ("10.0.0.1", "10.0.0.0/8", "1.2.3.4/33", "256.1.1.1", "fe80::1", "::", "x", "")


def number(rng: random.Random) -> str:
    return rng.choice(NUMBERS) if rng.random() < 0.6 else str(rng.randrange(0, 70000))


def word(rng: random.Random, pool: list[str]) -> str:
    return rng.choice(WORDS) if rng.random() < 0.5 or not pool else rng.choice(pool)


# ---------------------------------------------------------------- generated documents


def _rule_words(rng: random.Random) -> list[str]:
    """The words after ``-A CHAIN``: core options, matches and a target, some wrong."""
    n = number
    parts: list[list[str]] = []
    for _ in range(rng.randint(0, 4)):
        parts.append(
            rng.choice(
                [
                    ["-s", rng.choice(ADDRESSES)],
                    ["!", "-d", rng.choice(ADDRESSES)],
                    ["-p", rng.choice(["tcp", "udp", "6", n(rng), "²"])],
                    ["-m", "tcp", "--dport", n(rng)],
                    ["-p", "tcp", "--dport", f"{n(rng)}:{n(rng)}"],
                    ["-m", "comment", "--comment", '"ns/svc:p"'],
                    ["-m", "comment", "--comment", '"' + "c" * rng.choice([1, 300, 70000]) + '"'],
                    ["-m", "statistic", "--mode", "random", "--probability", n(rng)],
                    ["-m", "statistic", "--mode", "nth", "--every", n(rng), "--packet", n(rng)],
                    ["-m", "recent", "--rcheck", "--seconds", n(rng), "--reap", "--name", "X"],
                    ["-m", "recent", "--update", "--hitcount", n(rng), "--name", "X"],
                    ["-m", "mark", "--mark", f"{n(rng)}/{n(rng)}"],
                    ["-m", "multiport", "--dports", ",".join(n(rng) for _ in range(3))],
                    ["-m", "addrtype", "--dst-type", rng.choice(["LOCAL", "x"])],
                    ["-m", "conntrack", "--ctstate", "NEW,ESTABLISHED"],
                    ["-c", n(rng), n(rng)],
                    ["-m", rng.choice(["foo", "set", "physdev"]), "--" + n(rng)],
                ]
            )
        )
    target = rng.choice(
        [
            ["-j", "KUBE-SEP-ABC"],
            ["-j", "DNAT", "--to-destination", f"10.1.2.3:{n(rng)}"],
            ["-j", "SNAT", "--to-source", f"{rng.choice(ADDRESSES)}-10.0.0.9:{n(rng)}-{n(rng)}"],
            ["-j", "MASQUERADE", "--to-ports", f"{n(rng)}-{n(rng)}"],
            ["-j", "MARK", "--set-xmark", f"{n(rng)}/{n(rng)}"],
            ["-j", "CONNMARK", "--save-mark", "--nfmask", n(rng)],
            ["-j", "LOG", "--log-level", n(rng), "--log-prefix", '"p "'],
            ["-j", "REJECT", "--reject-with", "tcp-reset"],
            ["-j", "CT", "--notrack"],
            ["-g", "KUBE-X"],
            [],
        ]
    )
    words = [w for part in parts for w in part] + target
    if rng.random() < 0.1:
        words.insert(rng.randint(0, len(words)), word(rng, []))
    return words


def gen_save(rng: random.Random) -> str:
    out = []
    for table in rng.sample(["nat", "filter", "mangle", "raw", "x" * rng.randint(1, 40)], 2):
        out.append(f"*{table}")
        chains = ["PREROUTING", "KUBE-SERVICES", "KUBE-SEP-ABC", "DNAT"][: rng.randint(1, 4)]
        for chain in chains:
            out.append(f":{chain} {rng.choice(['ACCEPT', '-', 'DROP', 'X'])} [{number(rng)}:0]")
        for _ in range(rng.randint(0, 12)):
            prefix = f"[{number(rng)}:{number(rng)}] " if rng.random() < 0.2 else ""
            command = rng.choice(["-A", "-A", "-A", "-I", "-N", "-X", "-F"])
            extra = [number(rng)] if command == "-I" and rng.random() < 0.5 else []
            words = [command, rng.choice(chains), *extra, *_rule_words(rng)]
            out.append(prefix + " ".join(words))
        if rng.random() < 0.9:
            out.append("COMMIT")
    return "\n".join(out) + ("\n" if rng.random() < 0.9 else "")


def gen_rules(rng: random.Random) -> str:
    """``iptables -S`` (or ``-t nat -S``): -P, -N, -A lines."""
    out = [f"# iptables -t {rng.choice(['nat', 'filter'])} -S"] if rng.random() < 0.5 else []
    out.append(f"-P PREROUTING ACCEPT -c {number(rng)} {number(rng)}")
    out.append("-N KUBE-SERVICES")
    out += [" ".join(["-A", "KUBE-SERVICES", *_rule_words(rng)]) for _ in range(8)]
    return "\n".join(out) + "\n"


_LIST_TAILS = (
    "/* kube-system/kube-dns:dns */ udp dpt:{n}",
    "tcp dpt:{n} to:10.0.0.1:{n}",
    "statistic mode random probability {n}",
    "statistic mode nth every {n} packet {n}",
    "recent: CHECK seconds: {n} reap hit_count: {n} name: X side: source mask: 255.255.255.255",
    "MARK or 0x{n}",
    "mark match 0x{n}/0x{n}",
    "tcp flags:0x{n}/0x{n}",
    "masq ports: {n}-{n}",
    "redir ports {n}",
    'LOG flags {n} level {n} prefix "x"',
    "multiport dports {n},{n}",
    "to:{n}.1.1.1-2.2.2.2:{n}-{n}",
    "CONNMARK save nfmask 0x{n} ctmask ~0x{n}",
    "/* " * 20,
    "ADDRTYPE match dst-type LOCAL",
    "",
)


def gen_list(rng: random.Random) -> str:
    """``iptables -L`` with any of -n, -v, -x, --line-numbers."""
    num, verbose = rng.random() < 0.5, rng.random() < 0.5
    out = [f"$ iptables -t nat -L{'n' if rng.random() < 0.5 else ''}{'v' if verbose else ''}"]
    for chain in ("PREROUTING", "KUBE-SVC-X")[: rng.randint(1, 2)]:
        counts = f" {number(rng)} packets, {number(rng)} bytes" if verbose else ""
        out.append(f"Chain {chain} (policy {rng.choice(['ACCEPT', 'X'])}{counts})")
        cols = ["num"] * num + ["pkts", "bytes"] * verbose + ["target", "prot", "opt"]
        cols += ["in", "out"] * verbose + ["source", "destination"]
        out.append("  ".join(cols))
        for i in range(rng.randint(0, 8)):
            row = [str(i + 1) if rng.random() < 0.9 else number(rng)] * num
            row += [number(rng), number(rng)] * verbose
            row += [rng.choice(["ACCEPT", "DNAT", "KUBE-SEP-X", "MARK", "LOG", "MASQUERADE"])]
            row += [rng.choice(["all", "tcp", "6", number(rng)]), rng.choice(["--", "-f", "x"])]
            row += ["*", "*"] * verbose + [rng.choice(["0.0.0.0/0", "anywhere", "x"])] * 2
            tail = rng.choice(_LIST_TAILS).format(n=number(rng))
            out.append("  ".join([*row, tail]) + (" ← 1" if rng.random() < 0.1 else ""))
        if rng.random() < 0.2:
            out.append(f"Total number of rules: {number(rng)}")
    return "\n".join(out) + "\n"


def gen_nft(rng: random.Random) -> str:
    out = [f"table {rng.choice(['ip', 'ip6', 'inet'])} nat {{"]
    if rng.random() < 0.3:
        out += ["  set s {", "    elements = { " + "{ " * rng.randint(0, 50) + "10.0.0.1 }", "  }"]
    out += ["  chain KUBE-SERVICES {", "    type nat hook prerouting priority -100; policy accept;"]
    for _ in range(rng.randint(0, 8)):
        out.append(
            f"    meta l4proto tcp ip daddr {rng.choice(ADDRESSES)} tcp dport {number(rng)} "
            f"counter packets {number(rng)} bytes {number(rng)} "
            + rng.choice(["jump KUBE-SVC-X", "accept", f"dnat to 10.0.0.1:{number(rng)}", "{"])
        )
    out += ["  }"] * rng.randint(0, 2)
    return "\n".join(out) + "\n"


def meta_line(rng: random.Random) -> str:
    """A ``# kpsim:meta`` line, its fields of the right type or not."""
    values: list[Any] = [
        "10.0.1.5/20", ["10.0.1.5/20", "127.0.0.1/8"], ["x", 5, None, "1.2.3.4/99"], "n1",
        {"eth0": ["10.0.1.5/24"]}, {"eth0": "x"}, [{"ip": "10.1.1.1", "name": "p"}],
        [{"ip": 5}, "pod", {"name": []}], 5, None, True, 1.5, [], {}, "\ud800",
    ]  # fmt: skip
    keys = ("node", "local_addresses", "private_ips", "interfaces", "pods", "schema", "x")
    meta = {k: rng.choice(values) for k in rng.sample(keys, rng.randint(1, len(keys)))}
    text = json.dumps(meta)
    special = rng.random()
    if special < 0.1:
        text = text[:-1] + ', "big": ' + "9" * 5000 + "}"
    elif special < 0.15:
        text = text[:-1] + ', "nan": NaN}'
    elif special < 0.2:
        text = "[" * rng.choice([10, 3000]) + "]" * rng.randint(0, 3000)
    elif special < 0.25:
        text = text[: rng.randint(0, len(text))]
    return "# kpsim:meta " + text


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "gen-save": gen_save,
    "gen-rules": gen_rules,
    "gen-list": gen_list,
    "gen-nft": gen_nft,
    "gen-meta": lambda rng: meta_line(rng) + "\n" + gen_save(rng),
}


# ---------------------------------------------------------------- mutations

_DIGITS = re.compile(r"[0-9]+")
Lines = list[str]


def _pick(rng: random.Random, lines: Lines) -> int:
    return rng.randrange(len(lines)) if lines else 0


def _set(lines: Lines, at: int, text: str) -> None:
    if lines:
        lines[at] = text
    else:
        lines.append(text)


def m_cut(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    text = "\n".join(lines)
    return text[: rng.randint(0, len(text))].split("\n")


def m_delete(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    at = _pick(rng, lines)
    return lines[:at] + lines[at + rng.randint(1, 5) :]


def m_duplicate(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    at = _pick(rng, lines)
    return lines[:at] + lines[at : at + 1] * rng.choice([2, 3, 50]) + lines[at:]


def m_swap(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    if len(lines) > 1:
        a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[a], lines[b] = lines[b], lines[a]
    return lines


def m_number(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    for _ in range(rng.randint(1, 4)):
        at = _pick(rng, lines)
        found = list(_DIGITS.finditer(lines[at])) if lines else []
        if found:
            m = rng.choice(found)
            lines[at] = lines[at][: m.start()] + rng.choice(NUMBERS) + lines[at][m.end() :]
    return lines


def m_word(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    at = _pick(rng, lines)
    words = lines[at].split(" ") if lines else [""]
    i = rng.randrange(len(words))
    if rng.random() < 0.5:
        words[i] = word(rng, ctx["pool"])
    else:
        words.insert(i, word(rng, ctx["pool"]))
    _set(lines, at, " ".join(words))
    return lines


def m_control(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    at = _pick(rng, lines)
    line = lines[at] if lines else ""
    i = rng.randint(0, len(line))
    _set(lines, at, line[:i] + rng.choice(CONTROLS) * rng.choice([1, 1, 3, 1000]) + line[i:])
    return lines


def m_line_ends(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    choice = rng.random()
    if choice < 0.4:
        return [line + "\r" for line in lines]  # CRLF
    if choice < 0.6:
        return ["\r".join(lines)]  # CR only: one line
    if choice < 0.8:
        return ["\ufeff" + (lines[0] if lines else ""), *lines[1:]]  # a BOM
    return [line + "\r" if rng.random() < 0.5 else line for line in lines]


def m_long(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    """A very long line: a word repeated, blanks, a quoted string, digits."""
    at = _pick(rng, lines)
    line = lines[at] if lines else ""
    size = rng.choice([1000, 10_000, 70_000, 70_000, 300_000])
    if rng.random() < 0.02:
        size = 2_000_000
    unit = (rng.choice(line.split() or ["x"]))[:100]  # a word of the line, repeated
    pieces: list[Callable[[], str]] = [
        lambda: (" " + unit) * (size // (len(unit) + 1) + 1),
        lambda: " " * size,
        lambda: ' "' + "q" * size + '"',
        lambda: ' "' + '\\"' * (size // 2),
        lambda: "9" * size,
        lambda: " /* " * (size // 4),
        lambda: " {" * (size // 2),
        lambda: " ←" * (size // 2),
        lambda: " a@b:#" * (size // 6),
    ]
    piece = rng.choice(pieces)()  # only the one chosen is built
    i = rng.randint(0, len(line))
    _set(lines, at, line[:i] + piece[:size] + line[i:])
    return lines


def m_bytes(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    """Random bytes, decoded as ``read_text`` decodes a file (U+FFFD for bad UTF-8)."""
    at = _pick(rng, lines)
    line = lines[at] if lines else ""
    junk = rng.randbytes(rng.choice([1, 8, 64, 4096])).decode("utf-8", "replace")
    i = rng.randint(0, len(line))
    _set(lines, at, line[:i] + junk + line[i:])
    return lines


def m_splice(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    other = rng.choice(ctx["seeds"])[1].split("\n")
    start = rng.randrange(len(other))
    at = rng.randint(0, len(lines))
    return lines[:at] + other[start : start + rng.randint(1, 20)] + lines[at:]


def m_meta(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    meta = meta_line(rng)
    if lines and lines[0].startswith("# kpsim:meta") and rng.random() < 0.7:
        return [meta, *lines[1:]]
    return [meta, *lines]


def m_noise(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    """What people paste around a dump: prompts, fences, indentation, elisions."""
    at = rng.randint(0, len(lines))
    noise = rng.choice(
        ["root@node:~# iptables -t nat -L -n", "$ sudo iptables-save", "```", "...", "---",
         "# ip6tables-save", "# Generated by ip6tables-save v1.8", "    ", "/ # iptables -S"]
    )  # fmt: skip
    if rng.random() < 0.3:
        return ["    " + line for line in lines]
    return [*lines[:at], noise, *lines[at:]]


def m_nest(rng: random.Random, lines: Lines, ctx: dict[str, Any]) -> Lines:
    at = rng.randint(0, len(lines))
    depth = rng.choice([3, 100, 10_000])
    if rng.random() < 0.5:
        return [*lines[:at], "x {" * depth, *lines[at:]]
    return [*lines[:at], *(["set s {"] * depth), *lines[at:]]


MUTATIONS: tuple[Callable[[random.Random, Lines, dict[str, Any]], Lines], ...] = (
    m_cut, m_delete, m_duplicate, m_swap, m_number, m_number, m_number, m_word, m_word,
    m_control, m_line_ends, m_long, m_bytes, m_splice, m_meta, m_noise, m_nest,
)  # fmt: skip


def mutate(rng: random.Random, text: str, seeds: list[tuple[str, str]], pool: list[str]) -> str:
    """1-4 grammar-aware mutations of ``text``."""
    lines = text.split("\n")
    ctx = {"seeds": seeds, "pool": pool}
    for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
        lines = rng.choice(MUTATIONS)(rng, lines, ctx)
    return "\n".join(lines)


def word_pool(seeds: list[tuple[str, str]]) -> list[str]:
    return sorted({w for _, text in seeds for w in text.split() if len(w) < 80})


def make_input(
    seed: int, index: int, seeds: list[tuple[str, str]], pool: list[str]
) -> tuple[str, str]:
    """Input ``index`` of run ``seed``: (label, text); the same on every machine."""
    rng = random.Random(f"kpsim-fuzz:{seed}:{index}")
    if rng.random() < 0.3:
        name = rng.choice(sorted(GENERATORS))
        text = GENERATORS[name](rng)
        return name, mutate(rng, text, seeds, pool) if rng.random() < 0.5 else text
    name, text = rng.choice(seeds)
    if rng.random() < 0.7:  # a window of the dump: smaller inputs, more of them per second
        lines = text.split("\n")
        start = rng.randrange(len(lines))
        text = "\n".join(lines[start : start + rng.choice([5, 20, 60, 200])])
    return name, mutate(rng, text, seeds, pool)


# ---------------------------------------------------------------- one input


@dataclasses.dataclass
class Problem:
    kind: str  # crash, hang, invariant
    site: str
    detail: str


class _Hang(BaseException):
    """Raised by the timer: a BaseException, so no ``except Exception`` in kpsim eats it."""


def _site(exc: BaseException) -> str:
    """``Type at kpsim/path.py:line (function)``: the deepest frame in kpsim's source."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/src/kpsim/" in f.filename] or frames[-1:]
    if not ours:
        return type(exc).__name__
    f = ours[-1]
    return f"{type(exc).__name__} at {f.filename.split('/src/')[-1]}:{f.lineno} ({f.name})"


def _diagnostic_problems(rulesets: tuple[Ruleset, ...]) -> list[Problem]:
    out = []
    for rs in rulesets:
        for d in rs.diagnostics:
            if d.line < 1 or d.col < 1 or len(d.text) > EXCERPT + 2 or len(d.message) > MESSAGE:
                out.append(Problem("invariant", "unbounded diagnostic", repr(d)[:300]))
                break
        if len(rs.notes) > NOTES + 1 or any(len(n) > NOTE_LENGTH for n in rs.notes):
            out.append(Problem("invariant", "unbounded notes", repr(rs.notes)[:300]))
    return out


def _show(rulesets: tuple[Ruleset, ...]) -> None:
    """What ``kpsim show`` does with them: summaries, text and JSON, as UTF-8 bytes."""
    from kpsim.render.json import write_show_json
    from kpsim.render.text import show_text

    source = NodeSource("fuzz", Path("fuzz.txt"), (Path("fuzz.txt"),))
    loaded = api.Loaded(FixtureSet("fuzz", "fuzz", (source,)), (api.LoadedNode(source, rulesets),))
    report = api.show(loaded)
    gc.unfreeze()  # api.show freezes what it built; a worker runs thousands of inputs
    show_text(report).encode("utf-8")
    show_text(report, color=True, chains=True).encode("utf-8")
    buf = io.StringIO()
    write_show_json(report, buf)
    json.loads(buf.getvalue())
    buf.getvalue().encode("utf-8")


def _scenario(rulesets: tuple[Ruleset, ...]) -> None:
    """The node's metadata as trace and simulate read it (kube.scenario)."""
    from kpsim.kube.scenario import node_addresses, node_context, pods_of, stand_in

    for rs in rulesets:
        node_addresses(rs.metadata, ())
        node_context(rs.metadata, ())
        pods_of(rs.metadata)
        stand_in(rs, ())


def _same_fast(text: str) -> list[Problem]:
    """iptables-save's shortcut (``iptables.fast``) gives the general path's model."""
    from kpsim.formats.iptables.save import parse_save

    try:
        fast = parse_save(text, "p")
        general = parse_save(text, "p", fast=False)
    except KpsimError:
        return []
    if fast != general or fast.diagnostics != general.diagnostics:
        return [Problem("invariant", "fast path differs from the general path", "")]
    return []


def check(text: str, *, sample_fast: bool = False) -> list[Problem]:
    """Every problem one input shows (nothing for a good run)."""
    problems: list[Problem] = []
    lenient: tuple[Ruleset, ...] | None = None
    for strict in (False, True):
        stage = f"parse strict={strict}"
        try:
            rulesets = parse_captures(text, "fuzz.txt", strict=strict)
        except (ParseError, UsageError) as exc:
            if isinstance(exc, ParseError) and (exc.line < 1 or exc.col < 1):
                problems.append(Problem("invariant", "ParseError without a place", str(exc)))
            if len(str(exc)) > MESSAGE + 2 * EXCERPT + 500:
                problems.append(Problem("invariant", "unbounded ParseError", str(exc)[:300]))
            continue
        except KpsimError as exc:
            problems.append(Problem("crash", f"undocumented {type(exc).__name__}", str(exc)))
            continue
        except Exception as exc:
            problems.append(Problem("crash", _site(exc), f"{stage}: {exc!s:.200}"))
            continue
        problems += _diagnostic_problems(rulesets)
        if not strict:
            lenient = rulesets
    if lenient is not None:
        for stage, run in (("show", _show), ("scenario", _scenario)):
            try:
                run(lenient)
            except (ParseError, UsageError):
                pass
            except Exception as exc:
                problems.append(Problem("crash", _site(exc), f"{stage}: {exc!s:.200}"))
        if sample_fast and lenient[0].format in (Format.SAVE, Format.RULES):
            problems += _same_fast(text)
    return problems


def run_input(text: str, timeout: float, *, sample_fast: bool, measure: bool) -> dict[str, Any]:
    """``check`` under a timer; with ``measure``, also the peak memory ``parse_captures``
    allocates for it (traced apart: tracing slows everything it watches)."""
    result: dict[str, Any] = {"size": len(text), "problems": [], "peak": None}
    signal.setitimer(signal.ITIMER_REAL, timeout)
    start = time.perf_counter()
    try:
        result["problems"] = [dataclasses.astuple(p) for p in check(text, sample_fast=sample_fast)]
        result["seconds"] = time.perf_counter() - start
        if measure:
            signal.setitimer(signal.ITIMER_REAL, 4 * timeout)
            result["peak"] = traced_peak(text)
    except _Hang as exc:
        result["problems"] = [("hang", _site(exc).replace("_Hang", "timeout"), "")]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        result.setdefault("seconds", time.perf_counter() - start)
    return result


def traced_peak(text: str) -> int:
    """Peak bytes allocated while ``text`` is parsed (its model included)."""
    tracemalloc.start()
    try:
        parse_captures(text, "fuzz.txt")
    except Exception:  # ``check`` has reported it already
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _alarm(signum: int, frame: object) -> None:
    raise _Hang


# ---------------------------------------------------------------- workers


def _worker(conn: Connection, seed: int, timeout: float) -> None:
    signal.signal(signal.SIGALRM, _alarm)
    seeds = seed_texts()
    pool = word_pool(seeds)
    while True:
        job = conn.recv()
        if job is None:
            conn.send(("rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
            return
        for index in job:
            label, text = make_input(seed, index, seeds, pool)
            out = run_input(text, timeout, sample_fast=index % 4 == 0, measure=index % 25 == 0)
            out.update(index=index, label=label)
            conn.send(("done", out))


@dataclasses.dataclass
class Totals:
    inputs: int = 0
    chars: int = 0
    largest: int = 0
    slowest: tuple[float, int, int] = (0.0, -1, 0)
    problems: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    examples: dict[tuple[str, str], tuple[int, str, str]] = dataclasses.field(default_factory=dict)
    labels: Counter[str] = dataclasses.field(default_factory=Counter)
    peaks: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (size, peak)
    worker_rss: list[int] = dataclasses.field(default_factory=list)

    def add(self, out: dict[str, Any]) -> None:
        self.inputs += 1
        self.chars += out["size"]
        self.largest = max(self.largest, out["size"])
        self.labels[out["label"].split("/")[0]] += 1
        if out["seconds"] > self.slowest[0]:
            self.slowest = (out["seconds"], out["index"], out["size"])
        if out["peak"] is not None:
            self.peaks.append((out["size"], out["peak"]))
        for kind, site, detail in out["problems"]:
            self.problems[(kind, site)] += 1
            self.examples.setdefault((kind, site), (out["index"], out["label"], detail))


def run_stream(count: int, seed: int, workers: int, timeout: float, totals: Totals) -> None:
    """Inputs 0..count-1 over ``workers`` processes, in batches. A worker that spends
    twice the timeout of CPU time on one input without answering (a hang in C code the
    timer cannot stop; CPU, not wall time, so a busy machine is no hang), or two minutes
    of wall time, is killed: its input counts as a hang, the rest of its batch goes to a
    new worker."""
    ctx = mp.get_context("fork")
    batch = 50
    todo: list[list[int]] = [list(range(i, min(i + batch, count))) for i in range(0, count, batch)]
    todo.reverse()
    live: dict[Connection, tuple[Any, list[int], float, float]] = {}
    done_count = 0
    last_print = time.monotonic()

    def start() -> None:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, seed, timeout), daemon=True)
        proc.start()
        child.close()
        job = todo.pop()
        parent.send(job)
        live[parent] = (proc, list(job), time.monotonic(), _cpu_seconds(proc.pid))

    while todo and len(live) < workers:
        start()
    while live:
        ready = wait(list(live), timeout=1.0)
        now = time.monotonic()
        for conn in ready:
            proc, job, _, _ = live[conn]
            try:
                kind, out = conn.recv()
            except EOFError:  # died: its current input crashed the interpreter
                live.pop(conn)
                if job:
                    totals.add(_lost(job[0], "crash", "worker died", proc.exitcode))
                    done_count += 1
                if job[1:]:
                    todo.append(job[1:])
                if todo:
                    start()
                continue
            if kind == "rss":
                totals.worker_rss.append(out)
                live.pop(conn)
                proc.join()
                continue
            totals.add(out)
            done_count += 1
            job.pop(0)
            live[conn] = (proc, job, now, _cpu_seconds(proc.pid))
            if not job:
                if todo:
                    nxt = todo.pop()
                    conn.send(nxt)
                    live[conn] = (proc, list(nxt), now, _cpu_seconds(proc.pid))
                else:
                    conn.send(None)
        for conn, (proc, job, since, cpu) in list(live.items()):
            spent = _cpu_seconds(proc.pid) - cpu
            if job and (spent > 2 * timeout + 5 or now - since > 120):
                proc.kill()
                proc.join()
                live.pop(conn)
                totals.add(_lost(job[0], "hang", "worker killed", None))
                done_count += 1
                if job[1:]:
                    todo.append(job[1:])
                if todo:
                    start()
        if now - last_print > 30:
            last_print = now
            print(f"  … {done_count}/{count} inputs", flush=True)


def _cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of process ``pid`` so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lost(index: int, kind: str, what: str, code: int | None) -> dict[str, Any]:
    return {"index": index, "label": "?", "size": 0, "seconds": 0.0, "peak": None,
            "problems": [(kind, what, f"exit code {code}")]}  # fmt: skip


# ---------------------------------------------------------------- big inputs


def big_cases() -> dict[str, Callable[[], str]]:
    """The inputs issue #17 names, each made when its process runs."""
    mb = 1 << 20
    return {
        "50 MB single line": lambda: "-A KUBE-SERVICES -m comment --comment x" + " y" * (25 * mb),
        "50 MB single line of junk": lambda: "x" * (50 * mb),
        "1 M junk lines in a save": lambda: "*nat\n" + "junk line here\n" * 1_000_000 + "COMMIT\n",
        "1 M bad rule lines": lambda: "*nat\n" + "-A X -m\n" * 1_000_000 + "COMMIT\n",
        "1 M junk lines in a listing": lambda: "Chain X (policy ACCEPT)\n" + "junk\n" * 1_000_000,
        "100,000 blanks": lambda: "*nat\n-A X -j ACCEPT" + " " * 100_000 + "\n" + " " * 100_000
        + "x\nCOMMIT\n",
        "deep nft braces": lambda: "table ip nat {\n chain X {\n  "
        + "{" * 1_000_000 + "\n" + "}\n" * 100_000 + " }\n}\n",
        "10 MB quoted string": lambda: '*nat\n-A X -m comment --comment "' + "q" * (10 * mb)
        + '" -j ACCEPT\nCOMMIT\n',
        "226k-line kube-proxy dump": _synthetic_dump,
    }  # fmt: skip


def _synthetic_dump() -> str:
    from kpsim.inputs import synth

    cluster = synth.synth_large(10_000, 5, seed=1)
    return synth.render_restore(cluster, cluster.nodes[0])


def big_case(name: str) -> dict[str, Any]:
    """Run one big case in this (fresh) process: each stage's time, and peak RSS."""
    from kpsim.render.json import write_show_json
    from kpsim.render.text import show_text

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    text = big_cases()[name]()
    out: dict[str, Any] = {"name": name, "size": len(text.encode()), "base_rss": base}
    problems: list[Problem] = []
    lenient: tuple[Ruleset, ...] | None = None

    def stage(what: str, run: Callable[[], object]) -> object:
        start = time.perf_counter()
        try:
            return run()
        except (ParseError, UsageError):
            return None
        except Exception as exc:
            problems.append(Problem("crash", _site(exc), f"{what}: {exc!s:.200}"))
            return None
        finally:
            out[what] = time.perf_counter() - start

    lenient = stage("parse", lambda: parse_captures(text, "big.txt"))  # type: ignore[assignment]
    stage("strict", lambda: parse_captures(text, "big.txt", strict=True))
    if lenient is not None:
        rulesets = lenient
        source = NodeSource("big", Path("big.txt"), (Path("big.txt"),))
        loaded = api.Loaded(
            FixtureSet("big", "big", (source,)), (api.LoadedNode(source, rulesets),)
        )
        report = stage("show", lambda: api.show(loaded))
        out["text_chars"] = len(stage("text", lambda: show_text(report)) or "")  # type: ignore[arg-type]
        stage("json", lambda: write_show_json(report, io.StringIO()))  # type: ignore[arg-type]
        out["diagnostics"] = sum(len(rs.diagnostics) for rs in rulesets)
    out["problems"] = [dataclasses.astuple(p) for p in problems]
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def run_big(timeout: float) -> list[dict[str, Any]]:
    results = []
    for name in big_cases():
        start = time.perf_counter()
        argv = [sys.executable, __file__, "--big-case", name]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            out = (
                json.loads(done.stdout.strip().splitlines()[-1])
                if done.returncode == 0
                else {"name": name, "problems": [("crash", "big case process", done.stderr[-300:])]}
            )
        except subprocess.TimeoutExpired:
            out = {"name": name, "problems": [("hang", f"over {timeout:.0f} s", "")]}
        out["wall"] = time.perf_counter() - start
        results.append(out)
        print(f"  big: {name}: {out['wall']:.1f} s", flush=True)
    results.append(_cli_show(timeout))
    return results


def _cli_show(timeout: float) -> dict[str, Any]:
    """``kpsim show`` on a 50 MB file of one line, as a user runs it."""
    name = "kpsim show (CLI) on the 50 MB single line"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "huge-one-line.txt"
        path.write_text(big_cases()["50 MB single line"]())
        argv = [sys.executable, "-m", "kpsim", "show", str(path)]
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        start = time.perf_counter()
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout, env=env)
            code, chars = done.returncode, len(done.stdout)
            problems = (
                [] if code == 0 else [("crash", f"exit code {code}", done.stderr[-300:].decode())]
            )
        except subprocess.TimeoutExpired:
            code, chars, problems = -1, 0, [("hang", f"over {timeout:.0f} s", "")]
        wall = time.perf_counter() - start
        size = path.stat().st_size
    return {"name": name, "wall": wall, "size": size, "output_chars": chars, "problems": problems}


# ---------------------------------------------------------------- report


#: The stages a big input's figures name.
STAGES = ("parse", "strict", "show", "text", "json")


def _mb(n: float) -> str:
    return f"{n / (1 << 20):.1f} MB"


def report(totals: Totals, big: list[dict[str, Any]], args: argparse.Namespace, wall: float) -> int:
    crashes = sum(n for (kind, _), n in totals.problems.items() if kind == "crash")
    hangs = sum(n for (kind, _), n in totals.problems.items() if kind == "hang")
    broken = sum(n for (kind, _), n in totals.problems.items() if kind == "invariant")
    for case in big:
        for kind, *_ in case.get("problems", []):
            crashes += kind == "crash"
            hangs += kind == "hang"
            broken += kind == "invariant"
    print()
    print(f"kpsim fuzz: seed {args.seed}, {totals.inputs} inputs, {args.workers} workers, "
          f"timeout {args.timeout:g} s per input")  # fmt: skip
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(totals.labels.items()))
    print(f"  inputs by origin: {kinds}")
    print(f"  crashes: {crashes}   hangs: {hangs}   invariant violations: {broken}")
    for (kind, site), n in sorted(totals.problems.items(), key=lambda kv: -kv[1]):
        index, label, detail = totals.examples[(kind, site)]
        print(f"    {kind}: {site} ×{n} (first: input {index}, {label}) {detail[:160]}")
    for case in big:
        for kind, site, detail in case.get("problems", []):
            print(f"    {kind}: {site} in big input '{case['name']}' {detail[:160]}")
    per = wall / max(totals.inputs, 1) * 1000
    seconds, index, size = totals.slowest
    print(f"  time: {wall:.0f} s ({per:.1f} ms an input over {args.workers} workers); slowest "
          f"input {seconds:.2f} s (#{index}, {size:,} characters)")  # fmt: skip
    print(f"  input size: {totals.chars / max(totals.inputs, 1) / 1024:.1f} KiB on average, "
          f"largest {totals.largest:,} characters")  # fmt: skip
    if totals.peaks:
        big_ones = [(s, p) for s, p in totals.peaks if s >= 64 * 1024]
        worst = max(totals.peaks, key=lambda sp: sp[1])
        ratio = max((p / s for s, p in big_ones), default=0.0)
        print(f"  parse peak memory ({len(totals.peaks)} sampled inputs, traced): largest "
              f"{_mb(worst[1])} for {worst[0]:,} characters; inputs ≥ 64 KiB: at most "
              f"{ratio:.0f}× their size")  # fmt: skip
    if totals.worker_rss:
        print(f"  worker peak RSS: {_mb(max(totals.worker_rss))}")
    for case in big:
        if "parse" in case:
            size, peak, base = case["size"], case["peak_rss"], case["base_rss"]
            times = "  ".join(f"{k} {case[k]:.1f} s" for k in STAGES if k in case)
            print(
                f"  big: {case['name']} ({_mb(size)}): {times}; peak RSS {_mb(peak)}, "
                f"{(peak - base) / max(size, 1):.0f}× the input over the interpreter's {_mb(base)}"
            )
        else:
            print(f"  big: {case['name']}: {case['wall']:.1f} s wall")
    return 0 if crashes == hangs == broken == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="inputs (default 100,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per input")
    parser.add_argument("--no-big", action="store_true", help="skip the big inputs")
    parser.add_argument("--only", type=int, help="run input ONLY alone, in this process")
    parser.add_argument("--dump", type=Path, help="with --only: write the input here")
    parser.add_argument("--big-case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.big_case:
        print(json.dumps(big_case(args.big_case)))
        return 0
    if args.only is not None:
        seeds = seed_texts()
        label, text = make_input(args.seed, args.only, seeds, word_pool(seeds))
        if args.dump:
            args.dump.write_text(text)
        signal.signal(signal.SIGALRM, _alarm)
        out = run_input(text, args.timeout, sample_fast=True, measure=False)
        print(f"input {args.only} ({label}, {len(text):,} characters): "
              f"{out['seconds']:.2f} s, problems: {out['problems'] or 'none'}")  # fmt: skip
        return 1 if out["problems"] else 0
    totals = Totals()
    start = time.perf_counter()
    print(f"kpsim fuzz: {args.n:,} inputs, seed {args.seed}", flush=True)
    run_stream(args.n, args.seed, args.workers, args.timeout, totals)
    wall = time.perf_counter() - start
    big = [] if args.no_big else run_big(timeout=120)
    return report(totals, big, args, wall)


if __name__ == "__main__":
    raise SystemExit(main())
