"""The immutable rule model every stage shares: import its names from here.

    Ruleset ─ tables ─▶ Table ─ chains ─▶ Chain ─ rules ─▶ Rule
                                                          ├─ core fields (-s -d -p -i -o -f)
                                                          ├─ matches (-m …, typed or Opaque)
                                                          └─ target (-j / -g …, typed or Opaque)

values.py (addresses, ports, formats, probabilities), matches.py, targets.py, rules.py
(Rule, Chain, Table, Ruleset), capture.py (what a capture can and cannot tell); node.py
(the node a packet meets) and references.py (who jumps where) are imported from their own
modules. Standard library only.
"""

from __future__ import annotations

from kpsim.model.capture import Capture, Gap, GapKind
from kpsim.model.matches import (
    AddrTypeMatch,
    CommentMatch,
    ConnmarkMatch,
    ConntrackMatch,
    MarkMatch,
    Match,
    MultiportMatch,
    NfacctMatch,
    OpaqueMatch,
    PhysdevMatch,
    PortMatch,
    RecentCommand,
    RecentMatch,
    SetMatch,
    StatisticMatch,
    StatisticMode,
)
from kpsim.model.rules import BUILTIN_CHAINS, Chain, Diagnostic, Rule, Ruleset, Table
from kpsim.model.targets import (
    NON_TERMINATING,
    ConnmarkMode,
    ConnmarkTarget,
    Ct,
    Dnat,
    Jump,
    Log,
    MarkTarget,
    Masquerade,
    NatRange,
    OpaqueTarget,
    Redirect,
    Reject,
    Snat,
    Standard,
    Target,
    Verdict,
)
from kpsim.model.values import (
    PROBABILITY_SCALE,
    Address,
    Counters,
    Family,
    Format,
    Interface,
    IPNetwork,
    Option,
    PortRange,
    Protocol,
    SourceLocation,
    format_probability,
    freeze_mapping,
    probability_threshold,
)

__all__ = [
    "BUILTIN_CHAINS",
    "NON_TERMINATING",
    "PROBABILITY_SCALE",
    "AddrTypeMatch",
    "Address",
    "Capture",
    "Chain",
    "CommentMatch",
    "ConnmarkMatch",
    "ConnmarkMode",
    "ConnmarkTarget",
    "ConntrackMatch",
    "Counters",
    "Ct",
    "Diagnostic",
    "Dnat",
    "Family",
    "Format",
    "Gap",
    "GapKind",
    "IPNetwork",
    "Interface",
    "Jump",
    "Log",
    "MarkMatch",
    "MarkTarget",
    "Masquerade",
    "Match",
    "MultiportMatch",
    "NatRange",
    "NfacctMatch",
    "OpaqueMatch",
    "OpaqueTarget",
    "Option",
    "PhysdevMatch",
    "PortMatch",
    "PortRange",
    "Protocol",
    "RecentCommand",
    "RecentMatch",
    "Redirect",
    "Reject",
    "Rule",
    "Ruleset",
    "SetMatch",
    "Snat",
    "SourceLocation",
    "Standard",
    "StatisticMatch",
    "StatisticMode",
    "Table",
    "Target",
    "Verdict",
    "annotations",
    "format_probability",
    "freeze_mapping",
    "probability_threshold",
]
