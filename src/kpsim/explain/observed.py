"""A user's own per-pod counts: read, checked, and matched to the rules' endpoints.

    observed.csv   pod_or_ip,count      (a `pod,count` header, blank lines, # comments allowed)
    observed.json  {"10.0.1.5": 340, "10.0.1.6:8080": 298, "web-7d9f-abcde": 310}

A key is an endpoint's ``IP:port``, its IP (when only one endpoint has it), or a pod's
name (``name`` or ``namespace/name``) where the capture's metadata names the pods. Every
key must name an endpoint and every count be a whole number ≥ 0: anything else stops
with ``file:line`` (exit 2), because a silently dropped row would change the verdict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kpsim.errors import ParseError, UsageError

#: An observed-counts file is a handful of lines; anything bigger is the wrong file.
MAX_BYTES = 1 << 20
_COUNT = re.compile(r"\d{1,18}")
#: The second column's name in a header line; any other word is a bad count, not skipped.
HEADERS = frozenset({"count", "counts", "requests", "connections", "hits", "n"})


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    count: int
    line: int
    col: int
    text: str


@dataclass(frozen=True, slots=True)
class Target:
    """An endpoint a key may name: ``ip:port``, and its pod when the capture says."""

    label: str  # ip:port
    pod: str | None = None  # namespace/name
    extra_names: tuple[str, ...] = ()


def read_rows(path: str) -> tuple[Row, ...]:
    """The file's ``(key, count)`` rows with their lines; JSON when it starts with ``{``."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_BYTES:
            raise UsageError(f"--observed {path}: over {MAX_BYTES} bytes; expected pod,count")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--observed {path}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"--observed {path}: cannot read: {exc.strerror or exc}") from None
    if text.lstrip().startswith("{"):
        return _json_rows(path, text)
    return _csv_rows(path, text)


def _csv_rows(path: str, text: str) -> tuple[Row, ...]:
    rows: list[Row] = []
    seen_data = False
    for i, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, comma, value = (part.strip() for part in line.partition(","))
        if not comma or not key:
            raise ParseError(path, i, 1, "expected pod_or_ip,count", raw)
        col = raw.index(",") + 2
        if not _COUNT.fullmatch(value):
            if not seen_data and value.lower() in HEADERS:
                seen_data = True  # a header line (pod,count)
                continue
            raise ParseError(path, i, col, f"count {value!r}: a whole number ≥ 0", raw)
        seen_data = True
        rows.append(Row(key, int(value), i, 1, raw))
    return tuple(rows)


def _json_rows(path: str, text: str) -> tuple[Row, ...]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if text.splitlines() else ""
        raise ParseError(path, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}", line) from None
    if not isinstance(data, dict):
        raise ParseError(path, 1, 1, 'expected an object {"pod_or_ip": count, ...}')
    lines = text.splitlines()
    rows = []
    for key, value in data.items():
        i, col = _locate(lines, json.dumps(key))
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ParseError(path, i, col, f"{key}: count {value!r} is not a whole number ≥ 0",
                             lines[i - 1] if lines else "")  # fmt: skip
        rows.append(Row(key, value, i, col, lines[i - 1] if lines else ""))
    return tuple(rows)


def _locate(lines: Sequence[str], quoted: str) -> tuple[int, int]:
    for i, line in enumerate(lines, 1):
        if (col := line.find(quoted)) >= 0:
            return i, col + 1
    return 1, 1


def assign(path: str, rows: Sequence[Row], targets: Sequence[Target]) -> tuple[int, ...]:
    """Counts per target, in ``targets`` order; a key that names no endpoint, or two
    rows for the same endpoint, is an error at its line."""
    names: dict[str, list[int]] = {}
    for j, t in enumerate(targets):
        ip = t.label.rpartition(":")[0]
        keys = {t.label, ip, *t.extra_names}
        if t.pod:
            keys |= {t.pod, t.pod.split("/")[-1]}
        for k in keys:
            names.setdefault(k, []).append(j)
    counts = [0] * len(targets)
    taken: dict[int, Row] = {}
    listed = ", ".join(t.label + (f" ({t.pod})" if t.pod else "") for t in targets) or "none"
    for row in rows:
        hits = sorted(set(names.get(row.key, [])))
        if not hits:
            raise ParseError(
                path, row.line, row.col,
                f"{row.key!r} is not an endpoint of this service (endpoints: {listed})",
                row.text,
            )  # fmt: skip
        if len(hits) > 1:
            message = f"{row.key!r} names {len(hits)} endpoints; use IP:port"
            raise ParseError(path, row.line, row.col, message, row.text)
        j = hits[0]
        if j in taken:
            message = f"{targets[j].label} counted twice (line {taken[j].line})"
            raise ParseError(path, row.line, row.col, message, row.text)
        taken[j] = row
        counts[j] = row.count
    return tuple(counts)


def pods_by_ip(metadata: Mapping[str, object]) -> dict[str, str]:
    """``ip → namespace/name`` from the capture's ``# kpsim:meta`` pods, when present."""
    out: dict[str, str] = {}
    pods = metadata.get("pods")
    if isinstance(pods, list):
        for pod in pods:
            if isinstance(pod, dict) and isinstance(pod.get("ip"), str):
                out[pod["ip"]] = f"{pod.get('namespace', '')}/{pod.get('name', '')}"
    return out
