"""iptables-nft's tables beside kube-proxy's nftables table, for the replay: the CNI's
SNAT, kubelet's firewall, a FORWARD DROP — they meet the packet too.

    node/ruleset.nft ─ read_beside ─▶ ip nat, ip filter … (the listing's reading)
    node/iptables-save.txt (kpsim fetch saves it too) ─▶ the same chains, exact xt matches
        ─ map_ruleset ─▶ render_save ─▶ iptables-nft-restore, after kube-proxy's nft -f
"""

from __future__ import annotations

from pathlib import Path

from kpsim.errors import KpsimError
from kpsim.formats import load_file
from kpsim.formats.iptables.write import render_save
from kpsim.formats.nft.beside import read_beside
from kpsim.model import OpaqueMatch, Ruleset
from kpsim.verify.replay.mapping import AddressMap, MappingError, map_ruleset

__all__ = ["beside_restore"]


def beside_restore(text: str, path: str, amap: AddressMap) -> tuple[str, tuple[str, ...]]:
    """iptables-nft's tables beside kube-proxy's (the CNI's SNAT, kubelet's firewall) as
    iptables-restore input, addresses moved, for iptables-nft-restore to load after kube-
    proxy's table: registered last at a shared hook and priority, they run first, the
    order kpsim walks them in. Only what kpsim read whole is replayed: a statement it kept
    as unknown cannot be written back, so the capture is refused, naming its line."""
    beside = read_beside(text, path, strict=False)
    if not beside.tables:
        return "", ()
    saved = _saved_beside(beside, path, amap)
    if saved is not None:
        return saved
    if beside.diagnostics:
        d = beside.diagnostics[0]
        raise MappingError(f"{path}:{d.line}:{d.col}: {d.message}: the tables beside kube-proxy's "
                           "are replayed only when read whole")  # fmt: skip
    for table in beside.tables.values():
        for chain in table.chains.values():
            for rule in chain.rules:
                opaque = next((m for m in rule.matches if isinstance(m, OpaqueMatch)), None)
                if opaque is not None:
                    where = f"{path}:{rule.origin.line}" if rule.origin else path
                    raise MappingError(
                        f"{where}: {opaque.text!r} in {table.name} {chain.name} was not "
                        "translated, so it cannot be replayed with iptables-nft-restore"
                    )
    names = ", ".join(f"ip {t}" for t in sorted(beside.tables))
    note = (f"{names}: iptables-nft's tables, replayed with iptables-nft-restore after "
            "kube-proxy's table is loaded, so that at a shared hook and priority they run "
            "first, as kpsim walks them")  # fmt: skip
    return render_save(map_ruleset(beside, amap)), (note,)


def _saved_beside(
    beside: Ruleset, path: str, amap: AddressMap
) -> tuple[str, tuple[str, ...]] | None:
    """The same tables from the node's ``iptables-save.txt`` beside the capture (``kpsim
    fetch`` saves both), which writes xt matches back exactly where nft's listing of them
    may not (kubelet's ``! --ctstate RELATED,ESTABLISHED,DNAT`` is listed as ``ct status
    dnat``). Used only when it holds the same chains with as many rules each: else the two
    were taken at different moments, and None sends the caller to the listing."""
    sibling = Path(path).with_name("iptables-save.txt")
    if not sibling.is_file():
        return None
    try:
        saved = load_file(sibling)
    except (KpsimError, OSError):
        return None
    if saved.diagnostics or _shape(saved) != _shape(beside):
        return None
    note = (f"{', '.join(f'ip {t}' for t in sorted(saved.tables))}: iptables-nft's tables, "
            f"replayed from {sibling.name} beside the capture (the same chains and rules as "
            "its listing) with iptables-nft-restore after kube-proxy's table, so that at a "
            "shared hook and priority they run first, as kpsim walks them")  # fmt: skip
    return render_save(map_ruleset(saved, amap)), (note,)


def _shape(rs: Ruleset) -> dict[tuple[str, str], int]:
    """Rules per chain that has any (iptables-save prints every built-in chain of a
    table, a listing only those iptables-nft created)."""
    return {
        (t, name): len(c.rules)
        for t, table in rs.tables.items()
        for name, c in table.chains.items()
        if c.rules
    }
