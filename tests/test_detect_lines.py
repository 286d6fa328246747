"""The format detector counts lines of each kind after each newline (``formats._Lines``):
the same counts, and the same answer to "is there one", as the multiline ``^`` patterns
they replace, on any text made of the pieces those kinds are made of."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from kpsim import formats

#: Each kind's shape as it was, with its ``^`` and MULTILINE.
_BEFORE = {
    formats._LIST_HEADER: r"^[^\S\n]*Chain \S+ \((?:policy \S+|[0-9]+ references)",
    formats._SAVE_LINE: r"^[^\S\n]*(?:\[[0-9]+:[0-9]+\][^\S\n]*)?"
    r"(?:-[AIPN] \S|\*\w+[^\S\n]*$|:\S+ \S+ \[[0-9]+:[0-9]+\])",
    formats._NFT_LINE: r"^[^\S\n]*(?:table (?:ip|ip6|inet) \S+ \{|chain \S+ \{)",
    formats._NFT_COMMAND: r"^[^\S\n]*(?:add|insert) (?:rule|chain|table) (?:ip|ip6|inet) \S",
    formats._RULES_ONLY: r"^[^\S\n]*-[PN] \S",
}
_PIECES = st.sampled_from(
    ["\n", " ", "\t", "\r", "x", "Chain ", "KUBE-X ", "(policy ", "ACCEPT", "(3 references",
     "-A ", "-P ", "-N ", "*nat", ":", "[0:0]", "[12:345]", " - ", "table ", "ip ", "ip6 ",
     "inet ", "chain ", "{", "add ", "insert ", "rule ", "\n\n", "#"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_same_counts(text: str) -> None:
    for kind, before in _BEFORE.items():
        old = re.compile(before, re.M)
        assert kind.count(text) == len(old.findall(text)), (before, text)
        assert kind.any(text) == (old.search(text) is not None), (before, text)


def test_a_dump() -> None:
    text = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j X\nChain X (policy DROP)\n-P Y\n"
    assert [k.count(text) for k in _BEFORE] == [1, 4, 0, 0, 1]
    assert formats._RULES_ONLY.any("  -N X") and not formats._RULES_ONLY.any("x -N X")
