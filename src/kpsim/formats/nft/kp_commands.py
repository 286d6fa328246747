"""The ``nft -f`` commands kube-proxy writes (and its tests print), one a line, applied
in order to the drafts of ``kp_text.NftText``:

    add table ip kube-proxy { comment "rules for kube-proxy" ; }
    add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
    add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
    add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
    add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-… }
    flush chain ip kube-proxy services / delete chain … / delete element …
"""

from __future__ import annotations

import re

from kpsim.formats.nft.blocks import Command, parse_command
from kpsim.formats.nft.grammar import FAMILIES, GrammarError
from kpsim.formats.nft.kp_text import (
    NftChain,
    NftSet,
    NftText,
    braced,
    elements,
    hook_spec,
    set_attributes,
)

_NAME = re.compile(r'[^\s{},;"]+')
_VERBS = ("add", "create", "insert", "replace", "flush", "delete", "destroy")


class NftReader(NftText):
    """Both forms: ``nft list`` blocks (NftText) and ``nft -f`` commands."""

    def command(self, number: int, col: int, stmt: str, line: str) -> None:
        _command(self, number, col, stmt, line)

    def line(self, number: int, line: str) -> None:
        """``add rule|element FAMILY TABLE NAME …`` at the top level, split by str.split:
        nearly every line of kube-proxy's transaction; reading 10k services 0.8 s → 0.37 s.
        ``add set|map … { … }`` too, as ``fast_command`` and ``_command`` read it (kube-proxy
        adds a set a service with affinity: 1,000 lines, 9 → 5 µs each)."""
        if (
            line.startswith(("add rule ", "add element ", "add chain ", "add set ", "add map "))
            and self._pending is None
            and self._table is None
            and self._chain is None
            and self._set is None
        ):
            parts = line.split(None, 5)  # parse_command's parts, when none holds a brace
            if len(parts) == 5 and parts[1] == "chain" and parts[2] in FAMILIES:
                if "{" not in line:  # ``add chain ip kube-proxy NAME``: 61k of them
                    table = self.table(parts[2], parts[3], number)
                    _chain(table.chains, "add", parts[4], number, "", self, 0, line.strip())
                    return
            elif parts[1] in ("set", "map"):
                if (
                    len(parts) == 6
                    and parts[2] in FAMILIES
                    and _NAME.fullmatch(parts[3])
                    and _NAME.fullmatch(parts[4])
                    and _simple_body(parts[5])
                ):
                    rest = parts[5].rstrip()
                    table = self.table(parts[2], parts[3], number)
                    col = len(line.rstrip()) - len(rest) + 1
                    _set(table.sets, "add", parts[4], parts[1], number, rest, self, col)
                    return
            elif (
                parts[1] != "chain"
                and len(parts) == 6
                and parts[2] in FAMILIES
                and "{" not in parts[3] + parts[4]
                and (parts[1] == "rule" or _simple_body(parts[5]))
            ):
                rest = parts[5].rstrip()
                if rest:
                    table = self.table(parts[2], parts[3], number)
                    col = len(line.rstrip()) - len(rest) + 1
                    if parts[1] == "rule":
                        _rule(table.chains, "add", parts[4], number, col, rest, self, line)
                    else:
                        _element(table.sets, "add", parts[4], number, col, rest, self, line)
                    return
        super().line(number, line)


def _command(reader: NftText, number: int, col: int, stmt: str, line: str) -> None:
    """Apply one command, read by the grammar (grammar.parse_command) unless
    ``fast_command`` takes it; what the grammar cannot read is reported at its column."""
    try:
        cmd = fast_command(stmt) or parse_command(stmt)
    except GrammarError as exc:
        reader.sink.report(number, col + exc.offset, str(exc), line)
        return
    verb, what = cmd.verb, cmd.what
    if what == "ruleset":
        if verb == "flush":
            reader.tables.clear()
        return
    family = cmd.family or "ip"
    table_name = cmd.table
    assert table_name is not None  # the grammar asks for it
    if what == "table":
        if verb in ("delete", "destroy"):
            reader.tables.pop((family, table_name), None)
        elif verb == "flush":
            t = reader.tables.get((family, table_name))
            if t is not None:
                for c in t.chains.values():
                    c.rules.clear()
                for s in t.sets.values():
                    s.elements.clear()
        else:
            reader.table(family, table_name, number)
        return
    table = reader.table(family, table_name, number)
    name = cmd.name
    assert name is not None  # the grammar asks for it
    rest = cmd.rest
    rest_col = col + cmd.rest_offset
    if what == "chain":
        _chain(table.chains, verb, name, number, rest, reader, rest_col, stmt)
    elif what == "rule":
        _rule(table.chains, verb, name, number, rest_col, rest, reader, line)
    elif what in ("set", "map"):
        _set(table.sets, verb, name, what, number, rest, reader, rest_col)
    else:  # element
        _element(table.sets, verb, name, number, rest_col, rest, reader, line)


def fast_command(stmt: str) -> Command | None:
    """``add set ip kube-proxy NAME { type ipv4_addr ; flags dynamic,timeout ; … }`` and
    ``add table ip kube-proxy { comment "…" ; }`` by str.split: parse_command's very
    answer, or None. kube-proxy adds a set a service with affinity, 1,002 in the 10k-service
    bench: 0.21 ms each through the grammar, ~2 µs here; its table is its first line, the
    grammar's only command there (~0.01 s with building it). tests/test_nft_grammar.py and
    tests/test_nft_plain.py check both agree."""
    parts = stmt.split(None, 5)
    table = len(parts) > 1 and parts[1] == "table"
    if table:  # no object name after the table's
        parts = stmt.split(None, 4)
    words = 4 if table else 5  # verb, kind, family, table[, name]
    if (
        len(parts) < words
        or parts[0] not in _VERBS
        or parts[1] not in ("table", "chain", "set", "map", "element")
        or parts[2] not in FAMILIES
        or not all(_NAME.fullmatch(name) for name in parts[3:words])
    ):
        return None
    rest = parts[words].rstrip() if len(parts) == words + 1 else ""
    if rest and not _simple_body(rest):
        return None
    offset = len(stmt.rstrip()) - len(rest) if rest else len(stmt)
    name = None if table else parts[4]
    return Command(parts[0], parts[1], parts[2], parts[3], name, rest, offset)


def _simple_body(rest: str) -> bool:
    """``{ … }`` with no other brace and whole quotes without escapes (``comment "ns/svc"``
    of kube-proxy's no-endpoint elements, one a service without endpoints); the grammar
    reads any other."""
    rest = rest.rstrip()
    return (
        rest[:1] == "{"
        and rest[-1:] == "}"
        and rest.count("{") == 1
        and rest.count("}") == 1
        and rest.count('"') % 2 == 0
        and "\\" not in rest
    )


def _chain(
    chains: dict[str, NftChain],
    verb: str,
    name: str,
    number: int,
    rest: str,
    reader: NftText,
    col: int,
    stmt: str,
) -> None:
    if verb in ("delete", "destroy"):
        chains.pop(name, None)
        return
    chain = chains.get(name)
    if chain is None:
        chain = chains[name] = NftChain(name, number, stmt)
    if verb == "flush":
        chain.rules.clear()
        return
    if "hook" in rest:
        hook_spec(chain, rest, reader.sink, number, col)
    comment = re.search(r'comment\s+"((?:[^"\\]|\\.)*)"', rest)
    if comment is not None:
        chain.comment = comment.group(1)


def _rule(
    chains: dict[str, NftChain],
    verb: str,
    name: str,
    number: int,
    col: int,
    rest: str,
    reader: NftText,
    line: str,
) -> None:
    chain = chains.get(name)
    if chain is None:
        reader.sink.report(number, col, f"rule for chain {name!r}, not added before", line)
        chain = chains[name] = NftChain(name, number, line)
    if verb in ("delete", "destroy", "replace"):
        reader.sink.report(number, col, f"{verb} rule (by handle) is not read", line)
    elif verb == "insert":
        chain.rules.insert(0, (number, col, rest))
    else:
        chain.rules.append((number, col, rest))


def _set(
    sets: dict[str, NftSet],
    verb: str,
    name: str,
    what: str,
    number: int,
    rest: str,
    reader: NftText,
    col: int,
) -> None:
    if verb in ("delete", "destroy"):
        sets.pop(name, None)
        return
    found = sets.get(name)
    if found is None:
        found = sets[name] = NftSet(name, number, what == "map")
    if verb == "flush":
        found.elements.clear()
    elif (inner := braced(rest)) is not None:
        set_attributes(found, number, col + rest.index("{") + 1, inner, reader.sink)


def _element(
    sets: dict[str, NftSet],
    verb: str,
    name: str,
    number: int,
    col: int,
    rest: str,
    reader: NftText,
    line: str,
) -> None:
    found = sets.get(name)
    if found is None:
        reader.sink.report(number, col, f"element of set {name!r}, not added before", line)
        found = sets[name] = NftSet(name, number, ":" in rest)
    inner = braced(rest)
    if inner is None:
        reader.sink.report(number, col, "element list needs { … }", line)
        return
    start = col + rest.index("{") + 1
    items = elements(inner)
    if verb in ("delete", "destroy"):
        gone = {_key(e) for e in items}
        found.elements[:] = [e for e in found.elements if _key(e[2]) not in gone]
    else:
        found.elements.extend((number, start, e) for e in items)


def _key(element: str) -> str:
    return " ".join(element.partition(" : ")[0].split())
