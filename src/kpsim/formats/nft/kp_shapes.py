"""The rule grammar's answers for the shapes of kube-proxy's rules that kp_fast.py does
not lower (``mark set mark or 0x4000``, ``ip daddr . meta l4proto . th dport vmap @m``,
``masquerade fully-random``, …), written out so reading kube-proxy's table needs neither
the grammar nor pyparsing (~0.05 s of a ~1.3 s load: the import 0.036 s, the grammar's
construction and first parses the rest, measured).

``grammar.parse_rule`` reads a rule as its shape (each word not a keyword replaced by its
class); ``KEYWORDS`` are the grammar's keywords, ``SHAPES`` each shape's statements as
(kind, number of words). tests/test_nft_shapes.py checks both are what the grammar
itself gives; any other shape is parsed by the grammar.
"""

from __future__ import annotations

#: Every word the rule grammar names (``grammar._KEYWORDS`` once it is built).
KEYWORDS = frozenset(
    (
        "!=", "&", ".", "==", "^", "accept", "add", "addr", "and", "bytes", "comment", "continue",
        "counter", "ct", "daddr", "direction", "dnat", "dport", "drop", "eq", "fib", "flags",
        "fully-random", "goto", "group", "iif", "iifname", "ip", "ip6", "jump", "l4proto", "level",
        "log", "map", "mark", "masquerade", "meta", "mod", "ne", "nexthdr", "nfproto", "notrack",
        "numgen", "offset", "oif", "oifname", "or", "packets", "persistent", "port", "prefix",
        "protocol", "random", "reject", "return", "saddr", "sctp", "set", "snat", "sport", "state",
        "status", "tcp", "th", "to", "type", "udp", "update", "vmap", "with", "xor", "|",
    )
)  # fmt: skip

#: kube-proxy's rule shapes (words joined by blanks) the fast path leaves to the grammar,
#: and the grammar's answer.
SHAPES: dict[str, tuple[tuple[str, int], ...]] = {
    "ct state w drop": (("match", 3), ("verdict", 1)),
    "mark set mark or 0": (("mark-set", 5),),
    "mark and 0 == 0 return": (("match", 5), ("verdict", 1)),
    "mark set mark xor 0": (("mark-set", 5),),
    "masquerade fully-random": (("masquerade", 2),),
    "ip daddr . meta l4proto . th dport vmap @s": (("match", 10),),
    "fib daddr type w ip daddr != w meta l4proto . th dport vmap @s": (
        ("match", 4),
        ("match", 4),
        ("match", 7),
    ),
    'ip saddr { w } goto w comment "q"': (("match", 5), ("verdict", 2), ("comment", 2)),
    'ip daddr . meta l4proto . th dport @s drop comment "q"': (
        ("match", 9),
        ("verdict", 1),
        ("comment", 2),
    ),
    "reject": (("reject", 1),),
    'ip daddr @s reject comment "q"': (("match", 3), ("reject", 1), ("comment", 2)),
    'ip daddr { w } drop comment "q"': (("match", 5), ("verdict", 1), ("comment", 2)),
    "mark and 0 != 0 mark set mark xor 0 masquerade fully-random": (
        ("match", 5),
        ("mark-set", 5),
        ("masquerade", 2),
    ),
    "ct status dnat ip saddr . ip daddr . meta l4proto . th dport @s masquerade fully-random": (
        ("match", 3),
        ("match", 12),
        ("masquerade", 2),
    ),
    "ip daddr @s meta l4proto . th dport vmap @s": (("match", 3), ("match", 7)),
    'ip daddr @s ip saddr != w mark set mark or 0 comment "q"': (
        ("match", 3),
        ("match", 4),
        ("mark-set", 5),
        ("comment", 2),
    ),
    "meta l4proto tcp dnat ip addr . port to numgen random mod 0 map { 0 w w . 0 }": (
        ("match", 3),
        ("nat", 18),
    ),
    'fib saddr type w mark set mark or 0 comment "q"': (
        ("match", 4),
        ("mark-set", 5),
        ("comment", 2),
    ),
    'mark set mark or 0 comment "q"': (("mark-set", 5), ("comment", 2)),
    "meta l4proto tcp dnat ip addr . port to numgen random mod 0 map { 0 w w . 0 , 0 w w . 0 }": (
        ("match", 3),
        ("nat", 24),
    ),
    "ip saddr != { w } drop": (("match", 6), ("verdict", 1)),
    'drop comment "q"': (("verdict", 1), ("comment", 2)),
    'ip daddr w drop comment "q"': (("match", 3), ("verdict", 1), ("comment", 2)),
}
