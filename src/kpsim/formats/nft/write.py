"""kube-proxy's nftables table written back as ``nft -f`` input, every address literal
passed through a caller's map (verify moves a capture into 198.18.0.0/15 to replay it).

    capture (listing or ``add rule …`` commands) ─ NftText ─▶ drafts (the reader's own)
      ─▶ table ip kube-proxy { set … { type …; flags …; elements = { … } }
                               chain … { type nat hook … priority N; policy accept;
                                         <statement, addresses mapped> } }

The drafts are what the model was built from, so the written table reads back to the
model of the capture with its addresses moved. An address literal is a whole token
(``10.0.0.1``, ``10.0.0.0/8``, ``10.0.0.1-10.0.0.9``, ``10.0.0.1:80`` after ``dnat to``);
names (``goto endpoint-…__10.0.0.1/80``, ``@set``) and quoted comments are kept as they
are; any other token with an address in it cannot be moved exactly and is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kpsim.errors import KpsimError
from kpsim.formats.common import Sink
from kpsim.formats.nft.kp_commands import NftReader
from kpsim.formats.nft.kp_text import TOKEN, NftSet, NftTable

__all__ = ["KUBE_PROXY", "NftWriteError", "dynamic_set_sizes", "map_statement", "render_nft"]

KUBE_PROXY = ("ip", "kube-proxy")
_Q = r"\d{1,3}(?:\.\d{1,3}){3}"
_DOTTED = re.compile(_Q)
#: address, prefix or range; then an optional ``:port`` / ``:lo-hi`` (``dnat to``)
_LITERAL = re.compile(rf"({_Q}(?:/\d{{1,2}}|-{_Q})?)(:\d+(?:-\d+)?)?")
#: the word before a chain's name in a statement (a set's name starts with ``@``)
_NAME_AFTER = frozenset({"goto", "jump"})

#: Maps one address literal (address, ``a/len`` or ``a-b``) to its replacement.
Mapper = Callable[[str], str]


class NftWriteError(KpsimError):
    """The capture holds something that cannot be written back with its addresses moved."""


def map_statement(text: str, mapper: Mapper) -> str:
    """``text`` with every address literal token replaced by ``mapper``'s answer."""
    out: list[str] = []
    words: list[str] = []
    end = 0
    for m in TOKEN.finditer(text):
        tok = m.group(0)
        new = tok
        named = bool(words) and words[-1] in _NAME_AFTER
        if not tok.startswith(('"', "@")) and not named and _DOTTED.search(tok):
            lit = _LITERAL.fullmatch(tok)
            if lit is None:
                what = f"{tok!r} in {text.strip()!r}"
                raise NftWriteError(f"{what} holds an address kpsim cannot map exactly")
            new = mapper(lit.group(1)) + (lit.group(2) or "")
        out.append(text[end : m.start()] + new)
        end = m.end()
        words.append(tok)
    return "".join(out) + text[end:]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _set(s: NftSet, mapper: Mapper) -> list[str]:
    head = "typeof" if any(" " in k for k in s.keys) else "type"
    kind = f"{head} {' . '.join(s.keys)}" + (f" : {s.value}" if s.value else "")
    lines = [f"\t{'map' if s.is_map else 'set'} {s.name} {{", f"\t\t{kind}"]
    if s.flags:
        lines.append(f"\t\tflags {','.join(sorted(s.flags))}")
    if s.size is not None:
        lines.append(f"\t\tsize {s.size}")
    if s.timeout is not None:
        lines.append(f"\t\ttimeout {s.timeout}s")
    if s.comment:
        lines.append(f"\t\tcomment {_quote(s.comment)}")
    if s.elements and not s.dynamic:  # a dynamic set's elements are live state: left out
        items = ",\n\t\t\t".join(map_statement(e, mapper) for _, _, e in s.elements)
        lines.append(f"\t\telements = {{ {items} }}")
    return [*lines, "\t}"]


def _table(table: NftTable, mapper: Mapper) -> str:
    lines = [f"table {table.family} {table.name} {{"]
    for s in table.sets.values():
        lines += _set(s, mapper)
    for c in table.chains.values():
        lines.append(f"\tchain {c.name} {{")
        if c.hook is not None:
            if c.kind is None or c.priority is None:
                raise NftWriteError(f"base chain {c.name}: its type or priority was not read")
            policy = f" policy {c.policy};" if c.policy else ""
            lines.append(f"\t\ttype {c.kind} hook {c.hook} priority {c.priority};{policy}")
        if c.comment:
            lines.append(f"\t\tcomment {_quote(c.comment)}")
        lines += [f"\t\t{map_statement(stmt, mapper)}" for _, _, stmt in c.rules]
        lines.append("\t}")
    return "\n".join([*lines, "}", ""])


def _read(text: str, path: str) -> NftReader:
    reader = NftReader(path, Sink(path, False))
    reader.read(text)
    return reader


def dynamic_set_sizes(text: str, path: str) -> dict[str, int | None]:
    """Each dynamic set of the ``ip kube-proxy`` table (kube-proxy's affinity sets) and
    the most elements it holds (None: no ``size``, the kernel sets no bound)."""
    table = _read(text, path).tables.get(KUBE_PROXY)
    sets = table.sets.values() if table is not None else ()
    return {s.name: s.size for s in sets if s.dynamic}


#: iptables-nft's own tables: the caller may replay them with iptables-nft-restore.
IPTABLES_TABLES = frozenset(("raw", "mangle", "nat", "filter", "security"))


def render_nft(
    text: str, path: str, mapper: Mapper, *, beside_replayed: bool = False
) -> tuple[str, tuple[str, ...]]:
    """The capture's ``ip kube-proxy`` table as ``nft -f`` input, addresses mapped, and
    what was left out, one sentence each: ``ip6`` tables (an IPv4 packet never passes one)
    and the live elements of dynamic sets (kube-proxy's affinity state: a replay starts
    empty, as kpsim's prediction for fresh clients does). Other tables beside it would
    meet the packet: iptables-nft's (``ip nat``, ``ip filter``, …) are left to the caller
    when ``beside_replayed`` (it loads them with iptables-nft-restore); any other is
    refused, not left out."""
    reader = _read(text, path)
    notes = [
        f"{f} {n}: an IPv4 connection never passes an ip6 table; not loaded"
        for f, n in sorted(reader.tables)
        if f == "ip6"
    ]
    others = sorted(
        f"{f} {n}"
        for f, n in reader.tables
        if (f, n) != KUBE_PROXY
        and f != "ip6"
        and not (beside_replayed and f == "ip" and n in IPTABLES_TABLES)
    )
    if others:
        raise NftWriteError(
            f"tables beside ip kube-proxy ({', '.join(others)}) are not replayed with nft -f"
        )
    table = reader.tables.get(KUBE_PROXY)
    if table is None:
        raise NftWriteError("the capture holds no table ip kube-proxy")
    notes += [
        f"set {s.name}: its {len(s.elements)} live element(s) not loaded; the replay starts "
        "with empty affinity state, as kpsim's prediction for fresh clients does"
        for s in table.sets.values()
        if s.dynamic and s.elements
    ]
    return _table(table, mapper), tuple(notes)
