"""The other tables of an ``nft list ruleset`` that holds kube-proxy's table: iptables-nft's
own (``table ip nat``, ``table ip filter``: kubelet's and the CNI's rules on a node where
kube-proxy runs in nftables mode), read by the iptables-nft reader and put beside it.

    table ip nat { chain PREROUTING { type nat hook prerouting priority dstnat; … } }
    table ip kube-proxy { chain nat-prerouting { type nat hook prerouting priority dstnat; … } }
        ─▶ nat PREROUTING: iptables-nft's rules, then ``jump nat-prerouting``

Both base chains sit at the same hook and priority; the kernel runs the one registered last
first, which a listing does not show: kpsim walks iptables-nft's first and says so in a
note. Each is a HookEntry: an ACCEPT in one goes on to the next, as in the kernel.
"""

from __future__ import annotations

import dataclasses

from kpsim.formats.common import RulesetBuilder
from kpsim.formats.nft.iptables_nft import parse_nft
from kpsim.formats.nft.kp_text import _depth
from kpsim.model import Diagnostic, HookEntry, Rule, Ruleset, Verdict

KUBE_PROXY_TABLE = "kube-proxy"


def without_kube_proxy(text: str) -> str:
    """The text with kube-proxy's table blocks blanked, line numbers kept."""
    out, depth, inside = [], 0, False
    for line in text.split("\n"):
        words = line.split()
        if not inside and len(words) >= 3 and words[0] == "table" and words[2] == KUBE_PROXY_TABLE:
            inside, depth = True, 0
        if inside:
            depth += _depth(line)
            out.append("")
            if depth <= 0 and "}" in line:
                inside = False
            continue
        out.append(line)
    return "\n".join(out)


def read_beside(text: str, path: str, strict: bool, family: str = "ip") -> Ruleset:
    """The other tables of ``family`` (kube-proxy's table's): those of the other IP family
    are left out with a note, as an IPv4 packet never passes an ip6 table."""
    return parse_nft(without_kube_proxy(text), path, strict=strict, family=family)


def merge(builder: RulesetBuilder, beside: Ruleset) -> list[Diagnostic]:
    """Put the other tables' chains into ``builder``. A built-in chain both have becomes
    ``iptables-nft:<NAME>``, jumped to first from the slot: a RETURN or the end of it then
    goes on to kube-proxy's base chain, as the kernel goes on to the next base chain."""
    shared = []
    for tname, table in beside.tables.items():
        for name, chain in table.chains.items():
            ours = builder.tables.get(tname, {}).get(name)
            if ours is None:
                draft = builder.declare(tname, name, chain.policy, chain.counters, chain.origin)
                draft.rules = list(chain.rules)
                continue
            shared.append(f"{tname} {name}")
            wrapped = f"iptables-nft:{name}"
            draft = builder.declare(tname, wrapped, None, chain.counters, chain.origin)
            draft.rules = [dataclasses.replace(r, chain=wrapped) for r in chain.rules]
            policy = Verdict.DROP if chain.policy is Verdict.DROP else Verdict.ACCEPT
            first = Rule(tname, name, 1, HookEntry(wrapped, policy=policy), origin=chain.origin)
            mine = [dataclasses.replace(r, number=r.number + 1) for r in ours.rules]
            ours.rules = [first, *mine]
    if shared:
        builder.note(
            "iptables-nft's and kube-proxy's base chains share "
            + ", ".join(shared)
            + ": iptables-nft's walked first (of two base chains at one hook and priority "
            "the kernel runs the one registered last first, which a listing does not show); "
            "an ACCEPT in one ends only that chain, as in the kernel"
        )
    for note in beside.notes:
        builder.note(note)
    builder.metadata.update({k: v for k, v in beside.metadata.items() if k not in builder.metadata})
    return list(beside.diagnostics)
