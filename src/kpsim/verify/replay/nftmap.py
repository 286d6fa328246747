"""The addresses nftables keeps in sets and maps, moved as mapping.py moves the rest.

    ip daddr . meta l4proto . th dport vmap @service-ips ─▶ SetLookup elements
       172.20.0.10 . tcp . 53      ─▶ 198.19.0.3 . tcp . 53   (the address part only)
       10.11.0.0/16 (interval)     ─▶ its tested block, same prefix length
       10.11.0.1-10.11.0.9 (range) ─▶ only inside one tested block (offsets kept), else refused

``literal`` is also the map ``formats.nft.write`` applies to the nft text, so the written
table and the mapped model agree element by element.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import replace

from kpsim.formats.nft.kp_values import key_part, kind_of
from kpsim.formats.nft.write import map_statement
from kpsim.model import Rule
from kpsim.model.nft import KeyPart, SetLookup

__all__ = ["lookup_parts", "map_lookup", "split_part"]

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network


def lookup_parts(rule: Rule) -> Iterable[KeyPart]:
    """Every address part of every element the rule's set lookups hold."""
    for m in rule.matches:
        if isinstance(m, SetLookup):
            addr = [i for i, k in enumerate(m.keys) if kind_of(k) == "addr"]
            for element in m.elements:
                yield from (element[i] for i in addr if i < len(element))


def split_part(part: KeyPart) -> tuple[list[Net], list[IPv4]]:
    """A part as what mapping.py collects: the CIDRs it tests and its single addresses
    (an address range's two ends: the range must then lie inside one tested block)."""
    if part.lo == part.hi:
        return [], [IPv4(part.lo)]
    nets = list(ipaddress.summarize_address_range(IPv4(part.lo), IPv4(part.hi)))
    if len(nets) == 1 and isinstance(nets[0], Net):
        return [nets[0]], []
    return [], [IPv4(part.lo), IPv4(part.hi)]


def map_lookup(m: SetLookup, literal: Callable[[str], str]) -> SetLookup:
    """The lookup with its address parts (and the texts naming them) moved by ``literal``;
    the elements sorted again, as the reader sorts them."""
    kinds = [kind_of(k) for k in m.keys]
    elements = []
    for element in m.elements:
        parts = []
        for kind, part in zip(kinds, element, strict=False):
            if kind == "addr":
                moved = key_part(literal(part.text), "addr")
                parts.append(moved if moved is not None else part)
            else:
                parts.append(part)
        elements.append(tuple(parts))
    unique = {tuple((p.lo, p.hi) for p in e): e for e in elements}
    ordered = tuple(unique[k] for k in sorted(unique))
    name = m.name if m.name.startswith("@") else map_statement(m.name, literal)
    return replace(m, name=name, elements=ordered, text=map_statement(m.text, literal))
