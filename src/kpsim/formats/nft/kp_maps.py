"""The elements of kube-proxy's maps and sets read by one regex each, before the general
path (``kp_values.element_key`` / ``verdict`` a part at a time) is asked:

    172.30.0.41 . tcp . 80 : goto service-…   (``service-ips``: a vmap branch)
    172.30.0.41                               (``cluster-ips``: a set lookup's element)

Why: the ``services`` chain's vmap has an element a service port (10,000 in the bench's
table) and ``cluster-ips`` one a ClusterIP; through the general path they cost 0.15 s of a
~1.5 s load (a regex per element and the parts split by it: ~0.04 s). Only elements in
the one spelling kube-proxy writes are taken (dotted quads as ``kp_values.ipv4`` takes
them, ``tcp``/``udp``/``sctp``, decimal ports ≤ 65535, ``goto``/``jump`` a plain name);
if one element of a map or set is anything else (a timeout, an interval, a comment, a
name in quotes, a damaged line) the whole of it is left to the general path, which gives
the same model or the same diagnostic. tests/test_nft_maps.py checks both agree.
"""

from __future__ import annotations

import re
from _socket import inet_aton  # socket's own: ``socket`` itself costs ~3 ms to import
from collections.abc import Callable
from functools import lru_cache
from typing import Any, cast

from kpsim.formats.iptables.construct import constructor
from kpsim.formats.nft.kp_text import NftSet
from kpsim.formats.nft.kp_values import PROTOCOLS, kind_of
from kpsim.model import Jump, Match, Target
from kpsim.model.nft import KeyPart, SetLookup

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: The part of each kind, as ``kp_values.key_part`` reads it (``ipv4``: no leading zero).
_PARTS = {
    "addr": rf"({_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET})",
    "proto": r"(tcp|udp|sctp)",
    "port": r"([0-9]{1,5})",
}
#: A verdict's chain as ``kp_values.verdict`` reads it (a word), in kube-proxy's spelling.
_VERDICT = r" : (goto|jump) ([A-Za-z0-9_][A-Za-z0-9_./:-]*)"

_new_part: Callable[[int, int, str], KeyPart] = constructor(KeyPart)
_new_lookup: Callable[..., SetLookup] = constructor(SetLookup)
_new_jump: Callable[[str, bool], Jump] = constructor(Jump)


@lru_cache(maxsize=64)
def _pattern(kinds: tuple[str | None, ...], is_map: bool) -> re.Pattern[str] | None:
    """An element of these kinds (and a verdict, for a map), a whole line of the elements
    joined by newlines; None: a kind not read here."""
    parts = [_PARTS.get(k or "") for k in kinds]
    if not parts or None in parts:
        return None
    body = r" \. ".join(p or "" for p in parts) + (_VERDICT if is_map else "")
    return re.compile(f"^{body}$", re.ASCII | re.MULTILINE)


def _rows(found: NftSet, keys: tuple[str, ...], is_map: bool) -> list[tuple[str, ...]] | None:
    """Each element's parts (and a map's verdict's two words), all by one ``findall``
    over the elements joined (~0.9 µs an element); None when one element is not in the
    plain spelling (then it found fewer rows than elements)."""
    pattern = _pattern(tuple(kind_of(k) for k in keys), is_map)
    texts = [text for _, _, text in found.elements]
    joined = "\n".join(texts)
    if pattern is None or not texts or joined.count("\n") != len(texts) - 1:
        return None
    rows: list[Any] = pattern.findall(joined)  # strings for one group, else tuples
    if len(rows) != len(texts):
        return None
    return [(row,) for row in rows] if isinstance(rows[0], str) else rows


@lru_cache(maxsize=1 << 17)
def _part(value: str) -> KeyPart | None:
    """One part's KeyPart, its kind told by its text (the kinds' spellings are apart);
    None for a port over 65535 (the general path says so). Cached, as ``key_part``: a
    ClusterIP is in ``cluster-ips`` and ``service-ips``, a port in most elements."""
    if "." in value:  # a dotted quad, vouched for by the pattern
        number = int.from_bytes(inet_aton(value), "big")
    elif value[0] in "0123456789":
        number = int(value)
        if number > 65535:
            return None
    else:
        number = PROTOCOLS[value]
    return _new_part(number, number, value)


def _keys(rows: list[tuple[str, ...]], n: int) -> list[tuple[KeyPart, ...]] | None:
    """Each row's key of its first ``n`` parts."""
    keys = [tuple(map(_part, row[:n])) for row in rows]
    if any(None in key for key in keys):
        return None
    return cast(list[tuple[KeyPart, ...]], keys)


def map_branches(
    found: NftSet, keys: tuple[str, ...], name: str
) -> list[tuple[Match, Target]] | None:
    """``Statement.vmap``'s branches for ``KEYS vmap @name``, or None: the general path's."""
    rows = _rows(found, keys, True)
    n = len(keys)
    read = None if rows is None else _keys(rows, n)
    if rows is None or read is None:
        return None
    head = " . ".join(keys) + " "
    tail = f" (in {name})"
    return [
        (
            _new_lookup(name, keys, (key,), False, False, head + " . ".join(row[:n]) + tail),
            _new_jump(row[n + 1], row[n] == "goto"),
        )
        for key, row in zip(read, rows, strict=True)
    ]


def set_elements(found: NftSet, keys: tuple[str, ...]) -> tuple[tuple[KeyPart, ...], ...] | None:
    """``Statement.set_match``'s elements of a set: sorted, each key once (the last
    element of a key wins, as there); None: the general path's."""
    rows = _rows(found, keys, False)
    read = None if rows is None else _keys(rows, len(keys))
    if read is None:
        return None
    # every part here is one value (lo == hi): its lo alone orders and tells keys apart
    unique = {tuple([p.lo for p in key]): key for key in read}
    return tuple(unique[k] for k in sorted(unique))
