"""Translate one statement of iptables-nft rules, as ``nft list ruleset`` prints it.

    meta l4proto tcp ip daddr 10.96.0.1 tcp dport 443 counter packets 0 bytes 0 jump X
    └─ -p tcp ────┘ └─ -d ──────────┘ └─ PortMatch ┘ └─ counters ────────────┘ └ Jump ┘

Only the statement shapes kube-proxy's rules take are translated; any other
statement is kept as ``OpaqueMatch(module="nft", text=...)`` so a trace reports it
as unknown instead of assuming it matches.
"""

from __future__ import annotations

from collections.abc import Callable

from kpsim.formats.iptables.options import PROTOCOL_NAMES, network, port_range, uint32
from kpsim.formats.iptables.targets import nat_range
from kpsim.formats.iptables.tokens import LineError
from kpsim.formats.numbers import U64, BadNumber, read_decimal
from kpsim.model import (
    Address,
    AddrTypeMatch,
    CommentMatch,
    ConntrackMatch,
    Counters,
    Dnat,
    Interface,
    Jump,
    MarkMatch,
    MarkTarget,
    Masquerade,
    Match,
    OpaqueMatch,
    PortMatch,
    Protocol,
    Snat,
    Standard,
    Target,
    Verdict,
)

_FULL = 0xFFFFFFFF


_STARTS = frozenset(
    {
        *("meta", "ip", "ip6", "tcp", "udp", "sctp", "iifname", "oifname", "counter"),
        *("jump", "goto", "accept", "drop", "return", "masquerade", "dnat", "snat"),
        *("comment", "mark", "fib", "ct"),
    }
)


class Draft:
    """One statement line being translated, left to right."""

    def __init__(self) -> None:
        self.source: Address | None = None
        self.destination: Address | None = None
        self.protocol: Protocol | None = None
        self.in_interface: Interface | None = None
        self.out_interface: Interface | None = None
        self.matches: list[Match] = []
        self.target: Target | None = None
        self.counters: Counters | None = None
        self.ipv6 = False
        self.problems: list[tuple[int, str]] = []  # (word index, message): bad numbers

    def translate(self, words: list[str]) -> None:
        i = 0
        while i < len(words):
            handler = _HANDLERS.get(words[i])
            taken = 0
            if handler is not None:
                try:
                    taken = handler(self, words[i:])
                except BadNumber as exc:
                    self.problems.append((i, f"{exc}; kept as unknown"))
                    taken = 0
                except (LineError, ValueError, IndexError):
                    taken = 0
            if not taken:
                taken = 1
                while i + taken < len(words) and words[i + taken] not in _STARTS:
                    taken += 1
                self.matches.append(OpaqueMatch("nft", text=" ".join(words[i : i + taken])))
            i += taken

    # each handler returns how many words it used, or 0 for an unknown shape

    def _meta(self, w: list[str]) -> int:
        if w[1] == "l4proto":
            return self._protocol(w[2:], 2)
        if w[1] == "mark":
            return 1 + self._mark(w[1:])
        return 0

    def _protocol(self, w: list[str], used: int) -> int:
        negated = w[0] == "!="
        name = w[1] if negated else w[0]
        self.protocol = Protocol(PROTOCOL_NAMES.get(name, name), negated)
        return used + 1 + negated

    def _ip(self, w: list[str]) -> int:
        if w[1] == "protocol" or w[1] == "nexthdr":
            return self._protocol(w[2:], 2)
        if w[1] not in ("saddr", "daddr"):
            return 0
        negated = w[2] == "!="
        net = network(w[3] if negated else w[2])
        if net is None:
            return 0
        self.ipv6 = self.ipv6 or net.version == 6
        address = Address(net, negated)
        if w[1] == "saddr":
            self.source = address
        else:
            self.destination = address
        return 3 + negated

    def _port(self, w: list[str]) -> int:
        if w[1] not in ("dport", "sport"):
            return 0
        negated = w[2] == "!="
        ports = port_range((w[3] if negated else w[2]).replace("-", ":"), 0)
        if ports.name is not None:
            return 0
        if self.protocol is None:  # nft's ``tcp dport`` carries its own ``meta l4proto tcp``
            self.protocol = Protocol(w[0], False)
        if w[1] == "dport":
            self.matches.append(PortMatch(w[0], dport=ports, dport_negated=negated))
        else:
            self.matches.append(PortMatch(w[0], sport=ports, sport_negated=negated))
        return 3 + negated

    def _iface(self, w: list[str]) -> int:
        negated = w[1] == "!="
        name = w[2] if negated else w[1]
        iface = Interface(name[:-1] + "+" if name.endswith("*") else name, negated)
        if w[0] == "iifname":
            self.in_interface = iface
        else:
            self.out_interface = iface
        return 2 + negated

    def _counter(self, w: list[str]) -> int:
        if len(w) >= 5 and w[1] == "packets" and w[3] == "bytes":
            packets, octets = read_decimal(w[2], U64, "packets"), read_decimal(w[4], U64, "bytes")
            self.counters = Counters(packets, octets)
            return 5
        return 1

    def _jump(self, w: list[str]) -> int:
        self.target = Jump(w[1], goto=w[0] == "goto")
        return 2

    def _verdict(self, w: list[str]) -> int:
        self.target = Standard(Verdict(w[0].upper()))
        return 1

    def _masquerade(self, w: list[str]) -> int:
        flags = [x for x in w[1:3] if x in ("random", "fully-random")]
        self.target = Masquerade(random="random" in flags, random_fully="fully-random" in flags)
        return 1 + len(flags)

    def _nat(self, w: list[str]) -> int:
        skip = 1 if w[1] in ("ip", "ip6") else 0
        if w[1 + skip] != "to":
            return 0
        to = (nat_range(w[2 + skip], 0),)
        self.target = Dnat(to) if w[0] == "dnat" else Snat(to)
        return 3 + skip

    def _comment(self, w: list[str]) -> int:
        self.matches.append(CommentMatch(w[1]))
        return 2

    def _mark(self, w: list[str]) -> int:
        """``mark set mark or 0x4000`` → MARK; ``mark and 0x4000 == 0x4000`` → -m mark."""
        if w[1] == "set":
            return self._mark_set(w)
        if w[1] in ("and", "&") and w[3] in ("==", "!="):
            mask, value = uint32(w[2], 0), uint32(w[4], 0)
            self.matches.append(MarkMatch(value, mask, negated=w[3] == "!="))
            return 5
        return 0

    def _mark_set(self, w: list[str]) -> int:
        if w[2] not in ("mark", "meta"):
            self.target = MarkTarget(uint32(w[2], 0), _FULL)
            return 3
        at = 4 if w[2] == "meta" else 3
        op, value = w[at], uint32(w[at + 1], 0)
        ops = {"or": (value, value), "|": (value, value), "xor": (value, 0), "^": (value, 0)}
        ops |= {"and": (0, ~value & _FULL), "&": (0, ~value & _FULL)}
        if op not in ops:
            return 0
        self.target = MarkTarget(*ops[op])
        return at + 2

    def _fib(self, w: list[str]) -> int:
        if w[1] != "daddr" or w[2] != "type":
            return 0
        negated = w[3] == "!="
        kind = (w[4] if negated else w[3]).upper()
        self.matches.append(AddrTypeMatch(dst_type=(kind,), dst_negated=negated))
        return 4 + negated

    def _ct(self, w: list[str]) -> int:
        if w[1] != "state":
            return 0
        negated = w[2] == "!="
        states = (w[3] if negated else w[2]).upper().split(",")
        self.matches.append(ConntrackMatch(ctstate=tuple(states), negated=negated))
        return 3 + negated


_HANDLERS: dict[str, Callable[[Draft, list[str]], int]] = {
    "meta": Draft._meta,
    "ip": Draft._ip,
    "ip6": Draft._ip,
    "tcp": Draft._port,
    "udp": Draft._port,
    "sctp": Draft._port,
    "iifname": Draft._iface,
    "oifname": Draft._iface,
    "counter": Draft._counter,
    "jump": Draft._jump,
    "goto": Draft._jump,
    "accept": Draft._verdict,
    "drop": Draft._verdict,
    "return": Draft._verdict,
    "masquerade": Draft._masquerade,
    "dnat": Draft._nat,
    "snat": Draft._nat,
    "comment": Draft._comment,
    "mark": Draft._mark,
    "fib": Draft._fib,
    "ct": Draft._ct,
}


__all__ = ["Draft"]
