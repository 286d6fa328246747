"""``-m set --match-set NAME flags``: membership in the set the capture's ``ipset save``
shows, as ip_set's test decides it; a set not captured is UNKNOWN, naming the set.

    hash:ip,port + dst,dst ─▶ (flow.dst, flow.protocol:flow.dport) in the set's entries
"""

from __future__ import annotations

import ipaddress

from kpsim.engine.flow import Flow
from kpsim.model import SetMatch
from kpsim.model.node import IPAddress

_DIMENSIONS = frozenset({"ip", "net", "port"})


def set_answer(m: SetMatch, flow: Flow, what: str) -> bool | str:
    """True/False, or the reason kpsim cannot decide (``what`` names the match)."""
    s = m.content
    if s is None:
        return f"{what}: set {m.name} is not in the capture (add `ipset save` output)"
    counting = [o.name for o in m.extra if o.name != "--return-nomatch"]
    if counting:
        return f"{what}: {' '.join(counting)} reads the set's counters"
    kind, _, dims_text = s.kind.partition(":")
    dims = dims_text.split(",")
    if kind not in ("hash", "bitmap") or not set(dims) <= _DIMENSIONS:
        return f"{what}: set type {s.kind} is not modelled"
    if (s.family == "inet6") != (flow.src.version == 6) or len(m.flags) < len(dims):
        return m.negated  # ip_set_test: another family, or fewer flags than dimensions
    values = [_value(d, f, flow) for d, f in zip(dims, m.flags, strict=False)]
    if any(_member(e, dims, values) for e in s.nomatch):
        return f"{what}: the packet falls in a nomatch entry of set {m.name}"
    return any(_member(e, dims, values) for e in s.entries) != m.negated


_Value = tuple[str, int] | IPAddress


def _value(dim: str, flag: str, flow: Flow) -> _Value:
    source = flag == "src"
    if dim == "port":
        return (flow.protocol, flow.sport if source else flow.dport)
    return flow.src if source else flow.dst


def _member(entry: str, dims: list[str], values: list[_Value]) -> bool:
    parts = entry.split(",")
    if len(parts) < len(dims):
        return False
    for part, value in zip(parts, values, strict=False):
        if isinstance(value, tuple):
            proto, _, port = part.rpartition(":")
            if (proto and proto != value[0]) or not port.isdigit() or int(port) != value[1]:
                return False
            continue
        try:
            net = ipaddress.ip_network(part, strict=False)
        except ValueError:
            return False
        if value.version != net.version or value not in net:
            return False
    return True
