"""Turn the options of one rule (the words after ``-A CHAIN``) into the model.

    ! -s 10.244.0.0/16 -p tcp -m tcp --dport 80 -m comment --comment "x" -j KUBE-MARK-MASQ
    └─ core fields ──────────┘ └─ PortMatch ──┘ └─ CommentMatch ────────┘ └─ Jump ────────┘

Two passes. ``collect`` walks the words like iptables' getopt loop: core options
fill the rule, ``-m`` loads a module, and every ``--option`` goes to whoever
claims it (the target, then the most recently loaded module, then the protocol's
implicit module, as iptables does), so ``-m tcp -p tcp -d X --dport 80`` works.
Then each module's options become a typed match (``matchtypes``) or, when kpsim
does not model them, an ``OpaqueMatch`` that keeps every word.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from functools import lru_cache

from kpsim.model import (
    Address,
    AddrTypeMatch,
    CommentMatch,
    ConnmarkMatch,
    ConnmarkMode,
    ConnmarkTarget,
    ConntrackMatch,
    Counters,
    Ct,
    Dnat,
    Interface,
    Jump,
    Log,
    MarkMatch,
    MarkTarget,
    Masquerade,
    Match,
    MultiportMatch,
    NatRange,
    NfacctMatch,
    OpaqueMatch,
    OpaqueTarget,
    Option,
    PhysdevMatch,
    PortMatch,
    PortRange,
    Protocol,
    RecentCommand,
    RecentMatch,
    Redirect,
    Reject,
    SetMatch,
    Snat,
    Standard,
    StatisticMatch,
    StatisticMode,
    Target,
    Verdict,
    probability_threshold,
)
from kpsim.parse.tokens import LineError, Words

_CORE = {
    "-s": "source",
    "--source": "source",
    "--src": "source",
    "-d": "destination",
    "--destination": "destination",
    "--dst": "destination",
    "-p": "protocol",
    "--protocol": "protocol",
    "-i": "in",
    "--in-interface": "in",
    "-o": "out",
    "--out-interface": "out",
    "-f": "fragment",
    "--fragment": "fragment",
    "-m": "match",
    "--match": "match",
    "-j": "jump",
    "--jump": "jump",
    "-g": "goto",
    "--goto": "goto",
    "-c": "counters",
    "--set-counters": "counters",
    "-4": "family",
    "--ipv4": "family",
    "-6": "family",
    "--ipv6": "family",
}

#: Protocol numbers iptables-save prints by name (it uses /etc/protocols names).
PROTOCOL_NAMES = {
    "0": "all",
    "1": "icmp",
    "2": "igmp",
    "4": "ipencap",
    "6": "tcp",
    "17": "udp",
    "33": "dccp",
    "41": "ipv6",
    "47": "gre",
    "50": "esp",
    "51": "ah",
    "58": "ipv6-icmp",
    "89": "ospf",
    "103": "pim",
    "112": "vrrp",
    "132": "sctp",
    "135": "mh",
    "136": "udplite",
}


@dataclass
class Loaded:
    """A module (``-m name``) or target (``-j name``) and the options given to it.

    ``cols`` holds, for each option, the index of its argument among the rule's
    words; ``parse_rule`` turns an index into a column only when reporting."""

    name: str
    col: int
    options: list[Option] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)


@dataclass
class RuleBody:
    """Everything a rule line says after ``-A CHAIN``; ``garbage_col`` marks ignored text."""

    source: Address | None = None
    destination: Address | None = None
    protocol: Protocol | None = None
    in_interface: Interface | None = None
    out_interface: Interface | None = None
    fragment: bool | None = None
    matches: tuple[Match, ...] = ()
    target: Target | None = None
    counters: Counters | None = None
    garbage_col: int | None = None
    ipv6: bool = False


def parse_rule(words: Words, start: int, chains: Container[str], *, ipv6: bool = False) -> RuleBody:
    """Parse ``words.values[start:]`` into a ``RuleBody``; raise ``LineError`` at a bad word.

    ``chains`` are the chains the table declares: ``-j LOG`` is a jump when a
    chain called LOG exists, the LOG target otherwise. Internally errors carry a
    word index (cheap); it becomes a column here, only when something is wrong."""
    try:
        body = _parse(words.values[start:], chains, ipv6)
    except LineError as exc:
        raise LineError(_col(words, start + exc.col), exc.message) from None
    if body.garbage_col is not None:
        body.garbage_col = _col(words, start + body.garbage_col)
    return body


def _col(words: Words, index: int) -> int:
    cols = words.cols
    return cols[index] if index < len(cols) else (cols[-1] if cols else 1)


def _parse(values: tuple[str, ...], chains: Container[str], ipv6: bool) -> RuleBody:
    walker = _Walker(values)
    walker.run()
    body = walker.body
    body.ipv6 = body.ipv6 or ipv6
    body.matches = tuple(_build_match(m, body.ipv6) for m in walker.loaded)
    if walker.target is not None:
        body.target = build_target(walker.target, walker.goto, chains, body.ipv6)
    return body


def _build_match(loaded: Loaded, ipv6: bool) -> Match:
    builder = MATCH_BUILDERS.get(loaded.name)
    if builder is None:
        return OpaqueMatch(loaded.name, tuple(loaded.options))
    try:
        return builder(loaded, ipv6)
    except Degrade:
        return OpaqueMatch(loaded.name, tuple(loaded.options))


def _is_option(word: str) -> bool:
    """``--dport`` or ``-s`` but not ``-1`` (a negative number is an argument)."""
    return len(word) > 1 and word[0] == "-" and not word[1].isdigit()


class _Walker:
    """The getopt-like pass: core fields into ``body``, module options into ``loaded``."""

    def __init__(self, values: tuple[str, ...]) -> None:
        self.values = values
        self.i = 0
        self.negated: int | None = None  # column of a pending "!"
        self.body = RuleBody()
        self.loaded: list[Loaded] = []
        self.target: Loaded | None = None
        self.goto = False

    def run(self) -> None:
        values, n = self.values, len(self.values)
        while self.i < n:
            word = values[self.i]
            if word == "!":
                if self.negated is not None:
                    raise LineError(self.i, "'!' given twice")
                self.negated = self.i
                self.i += 1
            elif word in _CORE:
                self._core(_CORE[word])
            elif _is_option(word):
                self._extension(word)
            else:
                self.body.garbage_col = self.negated or self.i
                self.negated = None
                return
        if self.negated is not None:
            raise LineError(self.negated, "'!' not followed by an option")

    # -- helpers

    def _take_negation(self) -> bool:
        negated = self.negated is not None
        self.negated = None
        return negated

    def _args(self, count: int, negated: bool) -> tuple[tuple[str, ...], int, bool]:
        """Consume the option word and ``count`` arguments, allowing ``--opt ! arg``."""
        name_col = self.i
        self.i += 1
        if count and self.i < len(self.values) and self.values[self.i] == "!":
            if negated:
                raise LineError(self.i, "'!' given twice")
            negated = True
            self.i += 1
        end = self.i + count
        if end > len(self.values):
            raise LineError(name_col, f"option {self.values[self.i - 1]} needs an argument")
        col = self.i if count else name_col
        args = self.values[self.i : end]
        self.i = end
        return args, col, negated

    def _free_args(self, negated: bool) -> tuple[tuple[str, ...], int, bool]:
        """Arguments of an option kpsim has no table for: words up to the next option."""
        col = self.i
        self.i += 1
        values = self.values
        if (
            self.i + 1 < len(values)
            and values[self.i] == "!"
            and not _is_option(values[self.i + 1])
        ):
            negated = True
            self.i += 1
        start = self.i
        while self.i < len(values) and values[self.i] != "!" and not _is_option(values[self.i]):
            self.i += 1
        return values[start : self.i], col, negated

    # -- core options

    def _core(self, kind: str) -> None:
        negated = self._take_negation()
        if kind == "fragment":
            self.i += 1
            self.body.fragment = not negated
            return
        if kind == "family":
            self.i += 1
            return
        if kind == "counters":
            self._counters(negated)
            return
        (arg,), col, negated = self._args(1, negated)
        if kind in ("match", "jump", "goto") and negated:
            raise LineError(col, f"'!' cannot negate {self.values[self.i - 2]}")
        getattr(self, "_core_" + kind)(arg, col, negated)

    def _counters(self, negated: bool) -> None:
        (packets, nbytes), col, _ = self._args(2, negated)
        if not (packets.isdigit() and nbytes.isdigit()):
            raise LineError(col, "counters must be two numbers")
        self.body.counters = Counters(int(packets), int(nbytes))

    def _core_source(self, arg: str, col: int, negated: bool) -> None:
        self.body.source = self._address(arg, col, negated)

    def _core_destination(self, arg: str, col: int, negated: bool) -> None:
        self.body.destination = self._address(arg, col, negated)

    def _address(self, arg: str, col: int, negated: bool) -> Address:
        net = network(arg)
        if net is not None:
            if net.version == 6:
                self.body.ipv6 = True
            return Address(net, negated)
        if "," in arg:
            raise LineError(col, "address lists expand into several rules; give one address")
        if any(c.isalpha() for c in arg) and ":" not in arg:
            return Address(None, negated, unresolved=arg)
        raise LineError(col, f"bad address {arg!r}")

    def _core_protocol(self, arg: str, col: int, negated: bool) -> None:
        name = PROTOCOL_NAMES.get(arg, arg.lower())
        self.body.protocol = None if name == "all" and not negated else Protocol(name, negated)

    def _core_in(self, arg: str, col: int, negated: bool) -> None:
        self.body.in_interface = Interface(arg, negated)

    def _core_out(self, arg: str, col: int, negated: bool) -> None:
        self.body.out_interface = Interface(arg, negated)

    def _core_match(self, arg: str, col: int, negated: bool) -> None:
        self.loaded.append(Loaded(arg, col))

    def _core_jump(self, arg: str, col: int, negated: bool, goto: bool = False) -> None:
        if self.target is not None:
            raise LineError(col, "a rule has one target")
        self.target = Loaded(arg, col)
        self.goto = goto

    def _core_goto(self, arg: str, col: int, negated: bool) -> None:
        self._core_jump(arg, col, negated, goto=True)

    # -- module and target options

    def _extension(self, word: str) -> None:
        negated = self._take_negation()
        owner, arity = self._owner(word)
        if arity is None:
            args, col, negated = self._free_args(negated)
        else:
            args, col, negated = self._args(arity, negated)
        owner.options.append(Option(word, args, negated))
        owner.cols.append(col)

    def _owner(self, word: str) -> tuple[Loaded, int | None]:
        """Who takes ``word``, as iptables decides, and how many arguments it has."""
        target = self.target
        if target is not None and word in TARGET_SPECS.get(target.name, {}):
            return target, TARGET_SPECS[target.name][word]
        for loaded in reversed(self.loaded):
            spec = MATCH_SPECS.get(loaded.name)
            if spec is not None and word in spec:
                return loaded, spec[word]
        implicit = self._implicit_module(word)
        if implicit is not None:
            return implicit, MATCH_SPECS[implicit.name][word]
        owner = target or (self.loaded[-1] if self.loaded else None)
        if owner is None:
            raise LineError(self.i, f"unknown option {word}")
        spec = TARGET_SPECS.get(owner.name) if owner is target else MATCH_SPECS.get(owner.name)
        return owner, (spec or {}).get(word)

    def _implicit_module(self, word: str) -> Loaded | None:
        """``-p tcp --dport 80`` loads ``-m tcp`` on the spot, as iptables does."""
        proto = self.body.protocol
        module = PROTO_MODULES.get(proto.name) if proto and not proto.negated else None
        if module is None or word not in MATCH_SPECS[module]:
            return None
        loaded = Loaded(module, self.i)
        self.loaded.append(loaded)
        return loaded


@lru_cache(maxsize=1 << 16)
def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """``10.0.0.1`` → 10.0.0.1/32, ``10.1.2.3/8`` → 10.0.0.0/8 (strict=False), else None.

    Cached: a kube-proxy dump repeats each cluster IP and pod IP many times."""
    if not text or not (text[0].isdigit() or text[0] == ":" or text[0] in "abcdefABCDEF"):
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


# ================================================================ typed matches


class Degrade(Exception):
    """The module is used in a way kpsim does not model: keep it as opaque."""


_PORT_OPTS = {"--dport": 1, "--destination-port": 1, "--sport": 1, "--source-port": 1}
_CT_EXTRA_ORDER = (
    "--ctproto",
    "--ctorigsrc",
    "--ctorigdst",
    "--ctreplsrc",
    "--ctrepldst",
    "--ctorigsrcport",
    "--ctorigdstport",
    "--ctreplsrcport",
    "--ctrepldstport",
    "--ctstatus",
    "--ctexpire",
    "--ctdir",
)
_PHYSDEV_ORDER = (
    "--physdev-in",
    "--physdev-out",
    "--physdev-is-in",
    "--physdev-is-out",
    "--physdev-is-bridged",
)

#: Options (and their argument counts) of the modules kpsim knows.
MATCH_SPECS: dict[str, dict[str, int]] = {
    "tcp": {**_PORT_OPTS, "--tcp-flags": 2, "--syn": 0, "--tcp-option": 1},
    "udp": dict(_PORT_OPTS),
    "sctp": {**_PORT_OPTS, "--chunk-types": 2},
    "icmp": {"--icmp-type": 1},
    "icmp6": {"--icmpv6-type": 1},
    "multiport": dict.fromkeys(
        ("--dports", "--destination-ports", "--sports", "--source-ports", "--ports"), 1
    ),
    "comment": {"--comment": 1},
    "statistic": {"--mode": 1, "--probability": 1, "--every": 1, "--packet": 1},
    "recent": {
        **dict.fromkeys(("--set", "--rcheck", "--update", "--remove", "--reap"), 0),
        **dict.fromkeys(("--rttl", "--rsource", "--rdest"), 0),
        **dict.fromkeys(("--seconds", "--hitcount", "--name", "--mask"), 1),
    },
    "addrtype": {"--src-type": 1, "--dst-type": 1, "--limit-iface-in": 0, "--limit-iface-out": 0},
    "mark": {"--mark": 1},
    "connmark": {"--mark": 1},
    "conntrack": {"--ctstate": 1, **dict.fromkeys(_CT_EXTRA_ORDER, 1)},
    "state": {"--state": 1},
    "set": {
        "--match-set": 2,
        **dict.fromkeys(("--return-nomatch", "--update-counters", "--update-subcounters"), 0),
        **{f"--{w}-{op}": 1 for w in ("packets", "bytes") for op in ("eq", "lt", "gt")},
    },
    "physdev": {**dict.fromkeys(_PHYSDEV_ORDER, 0), "--physdev-in": 1, "--physdev-out": 1},
    "nfacct": {"--nfacct-name": 1},
}

#: ``-p NAME`` loads this module when one of its options appears without ``-m``.
PROTO_MODULES = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "icmp": "icmp", "ipv6-icmp": "icmp6"}

_ALIASES = {
    "--destination-port": "--dport",
    "--source-port": "--sport",
    "--destination-ports": "--dports",
    "--source-ports": "--sports",
}

#: Bit order of the kernel's flags: iptables prints lists in this order.
CTSTATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
ADDRTYPES = (
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
)
FULL_MASKS = ("255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")

_Opts = list[tuple[Option, int]]


def _canon(option: Option) -> Option:
    name = _ALIASES.get(option.name, option.name)
    return option if name == option.name else Option(name, option.args, option.negated)


def _pairs(loaded: Loaded) -> _Opts:
    """The options with aliases resolved, each with the column of its argument."""
    return [(_canon(o), c) for o, c in zip(loaded.options, loaded.cols, strict=True)]


def _single(pairs: _Opts, allowed: Container[str]) -> dict[str, tuple[Option, int]]:
    """Options by name; a repeated or unknown option means kpsim cannot model it."""
    found: dict[str, tuple[Option, int]] = {}
    for option, col in pairs:
        if option.name not in allowed or option.name in found:
            raise Degrade
        found[option.name] = (option, col)
    return found


def uint32(text: str, col: int) -> int:
    """strtoul with base 0, as iptables reads marks: ``0x4000``, ``16384``, ``040000``."""
    try:
        if len(text) > 1 and text[0] == "0" and text[1] not in "xX":
            value = int(text, 8)
        else:
            value = int(text, 0)
    except ValueError:
        raise LineError(col, f"bad number {text!r}") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise LineError(col, f"{text} does not fit in 32 bits")
    return value


def value_mask(text: str, col: int) -> tuple[int, int | None]:
    """``v/m`` or ``v`` (mask None when absent)."""
    value, slash, mask = text.partition("/")
    return uint32(value, col), (uint32(mask, col) if slash else None)


def _port(text: str, col: int) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise LineError(col, f"bad port {text!r}")
    return int(text)


def port_range(text: str, col: int, sep: str = ":") -> PortRange:
    """``80``, ``1000:2000``, ``:2000``, ``1000:``; a service name is kept by name."""
    lo, has_sep, hi = text.partition(sep)
    if not has_sep:
        if text.isdigit():
            port = _port(text, col)
            return PortRange(port, port)
        if text and text.replace("-", "").replace("_", "").isalnum():
            return PortRange(-1, -1, name=text)
        raise LineError(col, f"bad port {text!r}")
    low = _port(lo, col) if lo else 0
    high = _port(hi, col) if hi else 65535
    if low > high:
        raise LineError(col, f"port range {text} is reversed")
    return PortRange(low, high)


def _port_match(loaded: Loaded, ipv6: bool) -> Match:
    ports: dict[str, tuple[PortRange, bool]] = {}
    extra: list[Option] = []
    for option, col in _pairs(loaded):
        if option.name in ("--dport", "--sport"):
            if option.name in ports:
                raise Degrade
            ports[option.name] = (port_range(option.args[0], col), option.negated)
        elif option.name == "--syn":  # iptables stores and prints --syn as these flags
            extra.append(Option("--tcp-flags", ("FIN,SYN,RST,ACK", "SYN"), option.negated))
        else:
            extra.append(option)
    dport, dneg = ports.get("--dport", (None, False))
    sport, sneg = ports.get("--sport", (None, False))
    return PortMatch(loaded.name, dport, dneg, sport, sneg, tuple(extra))


def _multiport(loaded: Loaded, ipv6: bool) -> Match:
    found = _single(_pairs(loaded), ("--dports", "--sports", "--ports"))
    if len(found) != 1:
        raise Degrade
    (option, col) = next(iter(found.values()))
    ports = tuple(port_range(p, col) for p in option.args[0].split(","))
    return MultiportMatch(option.name[2:], ports, option.negated)


def _comment(loaded: Loaded, ipv6: bool) -> Match:
    found = _single(_pairs(loaded), ("--comment",))
    if "--comment" not in found or found["--comment"][0].negated:
        raise Degrade
    return CommentMatch(found["--comment"][0].args[0])


def _statistic(loaded: Loaded, ipv6: bool) -> Match:
    found = _single(_pairs(loaded), MATCH_SPECS["statistic"])
    mode = found.get("--mode", (Option("--mode", ("",)), 0))[0].args[0]
    if mode == "random" and set(found) == {"--mode", "--probability"}:
        option, col = found["--probability"]
        try:
            threshold = probability_threshold(option.args[0])
        except ValueError:
            raise LineError(col, f"bad probability {option.args[0]!r}") from None
        return StatisticMatch(StatisticMode.RANDOM, threshold=threshold, negated=option.negated)
    if mode == "nth" and "--every" in found and "--probability" not in found:
        every, col = found["--every"]
        packet = found.get("--packet", (Option("--packet", ("0",)), col))
        return StatisticMatch(
            StatisticMode.NTH,
            every=_count(every.args[0], col),
            packet=_count(packet[0].args[0], packet[1]),
            negated=every.negated,
        )
    raise Degrade


def _count(text: str, col: int) -> int:
    if not text.isdigit():
        raise LineError(col, f"bad number {text!r}")
    return int(text)


_RECENT_COMMANDS = {f"--{c.value}": c for c in RecentCommand}


def _recent(loaded: Loaded, ipv6: bool) -> Match:
    found = _single(_pairs(loaded), MATCH_SPECS["recent"])
    commands = [name for name in found if name in _RECENT_COMMANDS]
    if len(commands) != 1 or ("--rsource" in found and "--rdest" in found):
        raise Degrade
    command = found[commands[0]][0]
    seconds = found.get("--seconds")
    hitcount = found.get("--hitcount")
    name = found.get("--name")
    return RecentMatch(
        command=_RECENT_COMMANDS[command.name],
        name=name[0].args[0] if name else "DEFAULT",
        seconds=_count(seconds[0].args[0], seconds[1]) if seconds else None,
        reap="--reap" in found,
        hitcount=_count(hitcount[0].args[0], hitcount[1]) if hitcount else None,
        rttl="--rttl" in found,
        mask=_recent_mask(found.get("--mask")),
        side="dest" if "--rdest" in found else "source",
        negated=command.negated,
    )


def _recent_mask(given: tuple[Option, int] | None) -> str | None:
    """None stands for the default all-ones mask, however it was written."""
    if given is None:
        return None
    try:
        mask = ipaddress.ip_address(given[0].args[0]).compressed
    except ValueError:
        raise LineError(given[1], f"bad mask {given[0].args[0]!r}") from None
    return None if mask in FULL_MASKS else mask


def _types(option: Option, col: int) -> tuple[str, ...]:
    names = {n.upper() for n in option.args[0].split(",")}
    unknown = names - set(ADDRTYPES)
    if unknown:
        raise LineError(col, f"unknown address type {sorted(unknown)[0]}")
    return tuple(t for t in ADDRTYPES if t in names)


def _addrtype(loaded: Loaded, ipv6: bool) -> Match:
    found = _single(_pairs(loaded), MATCH_SPECS["addrtype"])
    src = found.get("--src-type")
    dst = found.get("--dst-type")
    return AddrTypeMatch(
        src_type=_types(*src) if src else (),
        src_negated=bool(src and src[0].negated),
        dst_type=_types(*dst) if dst else (),
        dst_negated=bool(dst and dst[0].negated),
        limit_iface_in="--limit-iface-in" in found,
        limit_iface_out="--limit-iface-out" in found,
    )


def _mark(loaded: Loaded, ipv6: bool) -> Match:
    found = _single(_pairs(loaded), ("--mark",))
    if "--mark" not in found:
        raise Degrade
    option, col = found["--mark"]
    value, mask = value_mask(option.args[0], col)
    cls = MarkMatch if loaded.name == "mark" else ConnmarkMatch
    return cls(value, 0xFFFFFFFF if mask is None else mask, option.negated)


def _states(option: Option, col: int) -> tuple[str, ...]:
    names = {n.upper() for n in option.args[0].split(",")}
    unknown = names - set(CTSTATES)
    if unknown:
        raise LineError(col, f"unknown conntrack state {sorted(unknown)[0]}")
    return tuple(s for s in CTSTATES if s in names)


def _conntrack(loaded: Loaded, ipv6: bool) -> Match:
    key = "--state" if loaded.name == "state" else "--ctstate"
    allowed = (key,) if loaded.name == "state" else MATCH_SPECS["conntrack"]
    found = _single(_pairs(loaded), allowed)
    state = found.pop(key, None)
    extra = sorted((o for o, _ in found.values()), key=lambda o: _CT_EXTRA_ORDER.index(o.name))
    return ConntrackMatch(
        ctstate=_states(*state) if state else (),
        negated=bool(state and state[0].negated),
        extra=tuple(extra),
        module=loaded.name,
    )


def _set(loaded: Loaded, ipv6: bool) -> Match:
    pairs = _pairs(loaded)
    main = [(o, c) for o, c in pairs if o.name == "--match-set"]
    if len(main) != 1:
        raise Degrade
    option = main[0][0]
    extra = tuple(o for o, _ in pairs if o.name != "--match-set")
    return SetMatch(option.args[0], tuple(option.args[1].split(",")), option.negated, extra)


def _physdev(loaded: Loaded, ipv6: bool) -> Match:
    found = _single(_pairs(loaded), _PHYSDEV_ORDER)
    return PhysdevMatch(tuple(found[n][0] for n in _PHYSDEV_ORDER if n in found))


def _nfacct(loaded: Loaded, ipv6: bool) -> Match:
    found = _single(_pairs(loaded), ("--nfacct-name",))
    if "--nfacct-name" not in found or found["--nfacct-name"][0].negated:
        raise Degrade
    return NfacctMatch(found["--nfacct-name"][0].args[0])


MATCH_BUILDERS: dict[str, Callable[[Loaded, bool], Match]] = {
    "tcp": _port_match,
    "udp": _port_match,
    "sctp": _port_match,
    "multiport": _multiport,
    "comment": _comment,
    "statistic": _statistic,
    "recent": _recent,
    "addrtype": _addrtype,
    "mark": _mark,
    "connmark": _mark,
    "conntrack": _conntrack,
    "state": _conntrack,
    "set": _set,
    "physdev": _physdev,
    "nfacct": _nfacct,
}


# ================================================================ targets

_VERDICTS = {v.value: v for v in Verdict}

#: Options (and argument counts) of the targets kpsim models.
TARGET_SPECS: dict[str, dict[str, int]] = {
    "REJECT": {"--reject-with": 1},
    "DNAT": {"--to-destination": 1, "--random": 0, "--persistent": 0},
    "SNAT": {"--to-source": 1, "--random": 0, "--random-fully": 0, "--persistent": 0},
    "MASQUERADE": {"--to-ports": 1, "--random": 0, "--random-fully": 0},
    "REDIRECT": {"--to-ports": 1, "--random": 0},
    "MARK": dict.fromkeys(
        ("--set-xmark", "--set-mark", "--or-mark", "--and-mark", "--xor-mark"), 1
    ),
    "CONNMARK": {
        **dict.fromkeys(("--set-xmark", "--set-mark", "--or-mark", "--and-mark", "--xor-mark"), 1),
        **dict.fromkeys(("--nfmask", "--ctmask", "--mask"), 1),
        "--save-mark": 0,
        "--restore-mark": 0,
    },
    "LOG": {
        "--log-prefix": 1,
        "--log-level": 1,
        **dict.fromkeys(
            ("--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid"), 0
        ),
        "--log-macdecode": 0,
    },
    "CT": {
        "--notrack": 0,
        **dict.fromkeys(("--helper", "--ctevents", "--expevents", "--timeout"), 1),
        **dict.fromkeys(("--zone", "--zone-orig", "--zone-reply"), 1),
    },
    "NOTRACK": {},
}

#: Target names that are targets, not chains, unless the table declares such a chain.
TARGET_KEYWORDS = frozenset(
    {*_VERDICTS, *TARGET_SPECS}
    | {
        "AUDIT", "CHECKSUM", "CLASSIFY", "CLUSTERIP", "CONNSECMARK", "DSCP", "ECN", "HL",
        "HMARK", "IDLETIMER", "LED", "NETMAP", "NFLOG", "NFQUEUE", "RATEEST", "SECMARK",
        "SET", "SYNPROXY", "TCPMSS", "TCPOPTSTRIP", "TEE", "TOS", "TPROXY", "TRACE", "TTL",
        "ULOG",
    }
)  # fmt: skip

_LOG_FLAGS = ("--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid")
_LOG_ORDER = (*_LOG_FLAGS, "--log-macdecode")
LOG_LEVELS = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug")
_LOG_ALIASES = {"panic": "0", "err": "3", "warn": "4"}

DEFAULT_REJECT = ("icmp-port-unreachable", "icmp6-port-unreachable")
_REJECT_V4 = {
    "net-unreach": "icmp-net-unreachable",
    "host-unreach": "icmp-host-unreachable",
    "proto-unreach": "icmp-proto-unreachable",
    "port-unreach": "icmp-port-unreachable",
    "net-prohib": "icmp-net-prohibited",
    "host-prohib": "icmp-host-prohibited",
    "admin-prohib": "icmp-admin-prohibited",
    "tcp-rst": "tcp-reset",
}
_REJECT_V6 = {
    "no-route": "icmp6-no-route",
    "adm-prohibited": "icmp6-adm-prohibited",
    "addr-unreach": "icmp6-addr-unreachable",
    "port-unreach": "icmp6-port-unreachable",
    "tcp-rst": "tcp-reset",
}


def build_target(loaded: Loaded, goto: bool, chains: Container[str], ipv6: bool) -> Target:
    """``-j NAME opts`` → a typed target, a Jump to a chain, or an OpaqueTarget."""
    name, options = loaded.name, tuple(loaded.options)
    if goto or name in chains or name not in TARGET_KEYWORDS:
        return OpaqueTarget(name, options) if options else Jump(name, goto)
    if name in _VERDICTS:
        return OpaqueTarget(name, options) if options else Standard(_VERDICTS[name])
    builder = TARGET_BUILDERS.get(name)
    if builder is None:
        return OpaqueTarget(name, options)
    try:
        return builder(loaded, ipv6)
    except Degrade:
        return OpaqueTarget(name, options)


def _reject(loaded: Loaded, ipv6: bool) -> Target:
    found = _single(_pairs(loaded), ("--reject-with",))
    if "--reject-with" not in found:
        return Reject()
    text = found["--reject-with"][0].args[0]
    kind = (_REJECT_V6 if ipv6 else _REJECT_V4).get(text, text)
    return Reject(None if kind in DEFAULT_REJECT else kind)


def nat_range(text: str, col: int) -> NatRange:
    """``ip[-ip][:port[-port]]``; IPv6 is ``[ip[-ip]]:port`` or bare ``ip`` with no port."""
    if text.startswith("["):
        close = text.find("]")
        rest = text[close + 1 :]
        if close < 0 or (rest and not rest.startswith(":")):
            raise LineError(col, f"bad address range {text!r}")
        addrs, ports = text[1:close], (rest[1:] if rest else None)
    elif text.count(":") > 1:
        addrs, ports = text, None
    else:
        addrs, colon, after = text.partition(":")
        ports = after if colon else None
    lo, hi = _addr_pair(addrs, col) if addrs else (None, None)
    port_lo = port_hi = None
    if ports is not None:
        plo, _, phi = ports.partition("-")
        port_lo = _port(plo, col)
        port_hi = _port(phi, col) if phi else None
        port_hi = None if port_hi == port_lo else port_hi
    return NatRange(lo, hi, port_lo, port_hi)


def _addr_pair(text: str, col: int) -> tuple[str, str | None]:
    lo_text, _, hi_text = text.partition("-")
    try:
        lo = ipaddress.ip_address(lo_text).compressed
        hi = ipaddress.ip_address(hi_text).compressed if hi_text else None
    except ValueError:
        raise LineError(col, f"bad address {text!r}") from None
    return lo, (None if hi == lo else hi)


def _flags(found: Container[str], *names: str) -> list[bool]:
    return [n in found for n in names]


def _dnat(loaded: Loaded, ipv6: bool) -> Target:
    pairs = _pairs(loaded)
    to = tuple(nat_range(o.args[0], c) for o, c in pairs if o.name == "--to-destination")
    found = _single([p for p in pairs if p[0].name != "--to-destination"], TARGET_SPECS["DNAT"])
    random, persistent = _flags(found, "--random", "--persistent")
    return Dnat(to, random, persistent)


def _snat(loaded: Loaded, ipv6: bool) -> Target:
    pairs = _pairs(loaded)
    to = tuple(nat_range(o.args[0], c) for o, c in pairs if o.name == "--to-source")
    found = _single([p for p in pairs if p[0].name != "--to-source"], TARGET_SPECS["SNAT"])
    random, fully, persistent = _flags(found, "--random", "--random-fully", "--persistent")
    return Snat(to, random, fully, persistent)


def _to_ports(found: dict[str, tuple[Option, int]]) -> PortRange | None:
    if "--to-ports" not in found:
        return None
    option, col = found["--to-ports"]
    return port_range(option.args[0], col, sep="-")


def _masquerade(loaded: Loaded, ipv6: bool) -> Target:
    found = _single(_pairs(loaded), TARGET_SPECS["MASQUERADE"])
    random, fully = _flags(found, "--random", "--random-fully")
    return Masquerade(_to_ports(found), random, fully)


def _redirect(loaded: Loaded, ipv6: bool) -> Target:
    found = _single(_pairs(loaded), TARGET_SPECS["REDIRECT"])
    return Redirect(_to_ports(found), "--random" in found)


def _mark_op(option: Option, col: int) -> tuple[int, int]:
    """The kernel's (value, mask) for one MARK/CONNMARK operation, as libxt_MARK stores it."""
    value, mask = value_mask(option.args[0], col)
    full = 0xFFFFFFFF
    if option.name == "--set-xmark":
        return value, full if mask is None else mask
    if option.name == "--set-mark":
        return value, value | (full if mask is None else mask)
    if mask is not None:
        raise LineError(col, f"{option.name} takes no mask")
    if option.name == "--and-mark":
        return 0, ~value & full
    if option.name == "--or-mark":
        return value, value
    return value, 0  # --xor-mark


def _mark_target(loaded: Loaded, ipv6: bool) -> Target:
    found = _single(_pairs(loaded), TARGET_SPECS["MARK"])
    if len(found) != 1:
        raise Degrade
    option, col = next(iter(found.values()))
    if option.negated:
        raise Degrade
    return MarkTarget(*_mark_op(option, col))


def _connmark_target(loaded: Loaded, ipv6: bool) -> Target:
    found = _single(_pairs(loaded), TARGET_SPECS["CONNMARK"])
    masks = {n: found.pop(n) for n in ("--nfmask", "--ctmask", "--mask") if n in found}
    if len(found) != 1:
        raise Degrade
    (name, (option, col)) = next(iter(found.items()))
    if name in ("--save-mark", "--restore-mark"):
        both = masks.get("--mask")
        nf = masks.get("--nfmask", both)
        ct = masks.get("--ctmask", both)
        mode = ConnmarkMode.SAVE if name == "--save-mark" else ConnmarkMode.RESTORE
        return ConnmarkTarget(
            mode,
            nfmask=uint32(nf[0].args[0], nf[1]) if nf else 0xFFFFFFFF,
            ctmask=uint32(ct[0].args[0], ct[1]) if ct else 0xFFFFFFFF,
        )
    if masks:
        raise Degrade
    value, mask = _mark_op(option, col)
    return ConnmarkTarget(ConnmarkMode.SET, value, mask)


def _log(loaded: Loaded, ipv6: bool) -> Target:
    pairs = _pairs(loaded)
    found = _single([p for p in pairs if p[0].name in TARGET_SPECS["LOG"]], TARGET_SPECS["LOG"])
    unknown = [o for o, _ in pairs if o.name not in TARGET_SPECS["LOG"]]
    prefix = found.get("--log-prefix")
    level = found.get("--log-level")
    flags = [found[n][0] for n in _LOG_ORDER if n in found]
    return Log(
        prefix=prefix[0].args[0] if prefix else None,
        level=_log_level(*level) if level else None,
        extra=tuple(flags + unknown),
    )


def _log_level(option: Option, col: int) -> str | None:
    """Levels as iptables prints them: a number, with the default 4 left out."""
    text = option.args[0].lower()
    number = _LOG_ALIASES.get(text) or (str(LOG_LEVELS.index(text)) if text in LOG_LEVELS else text)
    if not number.isdigit() or int(number) > 7:
        raise LineError(col, f"bad log level {option.args[0]!r}")
    return None if number == "4" else number


def _ct(loaded: Loaded, ipv6: bool) -> Target:
    options = tuple(o for o in loaded.options if o.name != "--notrack")
    if loaded.name == "NOTRACK":  # the old target: no options, kept apart to render back
        return Ct(notrack=True, options=options, legacy=True)
    return Ct(notrack=len(options) != len(loaded.options), options=options)


TARGET_BUILDERS: dict[str, Callable[[Loaded, bool], Target]] = {
    "REJECT": _reject,
    "DNAT": _dnat,
    "SNAT": _snat,
    "MASQUERADE": _masquerade,
    "REDIRECT": _redirect,
    "MARK": _mark_target,
    "CONNMARK": _connmark_target,
    "LOG": _log,
    "CT": _ct,
    "NOTRACK": _ct,
}
