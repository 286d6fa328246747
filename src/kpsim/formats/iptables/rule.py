"""Turn the options of one rule (the words after ``-A CHAIN``) into the model.

    ! -s 10.244.0.0/16 -p tcp -m tcp --dport 80 -m comment --comment "x" -j KUBE-MARK-MASQ
    └─ core fields ──────────┘ └─ PortMatch ──┘ └─ CommentMatch ────────┘ └─ Jump ────────┘

Two passes. ``collect`` walks the words like iptables' getopt loop: core options
fill the rule, ``-m`` loads a module, and every ``--option`` goes to whoever
claims it (the target, then the most recently loaded module, then the protocol's
implicit module, as iptables does), so ``-m tcp -p tcp -d X --dport 80`` works.
Then each module's options become a typed match (matches.py), the target's a typed
target (targets.py), or, when kpsim does not model them, an opaque one keeping every word.
An unquoted multi-word comment (kube-proxy's unit tests write them) is read whole, with
a diagnostic; any other stray word ends the rule, and what follows it is ignored.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from kpsim.formats.iptables.matches import EXTENSIONS, MATCH_SPECS, PROTO_MODULES, build_match
from kpsim.formats.iptables.options import PROTOCOL_NAMES, Loaded, network
from kpsim.formats.iptables.targets import TARGET_SPECS, build_target
from kpsim.formats.iptables.tokens import LineError, Words
from kpsim.formats.numbers import BAD_COUNTERS, U8, clip, decimal, is_decimal, shown
from kpsim.formats.numbers import counters as read_counters
from kpsim.model import Address, Counters, Interface, Match, Option, Protocol, Target

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


IGNORED = "ignored text after the rule"


@dataclass
class RuleBody:
    """Everything a rule line says after ``-A CHAIN``, and what the parser doubted.

    ``problems`` holds ``(column, message)`` pairs in line order: text it ignored, or
    read in a way iptables-restore would not (an unquoted multi-word comment). Each is
    a diagnostic, so lenient parsing is never silent and strict parsing stops there."""

    source: Address | None = None
    destination: Address | None = None
    protocol: Protocol | None = None
    in_interface: Interface | None = None
    out_interface: Interface | None = None
    fragment: bool | None = None
    matches: tuple[Match, ...] = ()
    target: Target | None = None
    counters: Counters | None = None
    ipv6: bool = False
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def garbage_col(self) -> int | None:
        """The column of the first problem, for callers that report only one."""
        return self.problems[0][0] if self.problems else None

    @property
    def ignored(self) -> bool:
        """Part of the line was not read: the rule may lack something it said."""
        return any(message == IGNORED for _, message in self.problems)


def parse_rule(words: Words, start: int, chains: Container[str], *, ipv6: bool = False) -> RuleBody:
    """Parse ``words.values[start:]`` into a ``RuleBody``; raise ``LineError`` at a bad word.

    ``chains`` are the chains the table declares: ``-j LOG`` is a jump when a
    chain called LOG exists, the LOG target otherwise. Internally errors carry a
    word index (cheap); it becomes a column here, only when something is wrong."""
    try:
        body = _parse(words.values[start:], chains, ipv6)
    except LineError as exc:
        raise LineError(_col(words, start + exc.col), exc.message) from None
    body.problems = [(_col(words, start + at), message) for at, message in body.problems]
    return body


def _col(words: Words, index: int) -> int:
    cols = words.cols
    return cols[index] if index < len(cols) else (cols[-1] if cols else 1)


def _parse(values: tuple[str, ...], chains: Container[str], ipv6: bool) -> RuleBody:
    walker = _Walker(values)
    walker.run()
    body = walker.body
    body.ipv6 = body.ipv6 or ipv6
    body.matches = tuple(build_match(m, body.ipv6) for m in walker.loaded)
    if walker.target is not None:
        body.target = build_target(walker.target, walker.goto, chains, body.ipv6)
    return body


def _is_option(word: str) -> bool:
    """``--dport`` or ``-s`` but not ``-1`` (a negative number is an argument)."""
    if len(word) < 2 or word[0] != "-":
        return False
    # "-j", "--dport": a letter after the dashes; "-1" is a number, "->" an arrow in a comment
    return word[1].isalpha() or (word[1] == "-" and len(word) > 2 and word[2].isalpha())


class _Walker:
    """The getopt-like pass: core fields into ``body``, module options into ``loaded``."""

    def __init__(self, values: tuple[str, ...]) -> None:
        self.values = values
        self.i = 0
        self.negated: int | None = None  # column of a pending "!"
        self.body = RuleBody()
        self.loaded: list[Loaded] = []
        self.claims: dict[str, Loaded] = {}  # option → the module that takes it
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
                at = self.i if self.negated is None else self.negated
                self.body.problems.append((at, IGNORED))
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
        self.body.counters = read_counters(packets, nbytes)
        if self.body.counters is None:
            raise LineError(col, BAD_COUNTERS)

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
        raise LineError(col, f"bad address {shown(arg)}")

    def _core_protocol(self, arg: str, col: int, negated: bool) -> None:
        if not arg.isascii() or (is_decimal(arg) and decimal(arg, U8) is None):
            raise LineError(col, f"bad protocol {shown(arg)} (a name, or a number 0-255)")
        name = PROTOCOL_NAMES.get(arg, arg.lower())
        self.body.protocol = None if name == "all" and not negated else Protocol(name, negated)

    def _core_in(self, arg: str, col: int, negated: bool) -> None:
        self.body.in_interface = Interface(arg, negated)

    def _core_out(self, arg: str, col: int, negated: bool) -> None:
        self.body.out_interface = Interface(arg, negated)

    def _core_match(self, arg: str, col: int, negated: bool) -> None:
        if arg not in EXTENSIONS:  # kept, evaluated UNKNOWN; iptables-restore refuses it
            self.body.problems.append((col, f"unknown match module {clip(arg)}"))
        self._load(Loaded(arg, col))

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
            if word == "--comment" and owner.name == "comment":
                args = self._comment_rest(args)
        owner.options.append(Option(word, args, negated))
        owner.cols.append(col)

    def _comment_rest(self, args: tuple[str, ...]) -> tuple[str, ...]:
        """``--comment kubernetes service portals -j X``: kube-proxy's unit tests write
        such comments unquoted. iptables-restore rejects the line; kpsim reads the words
        up to the next option (or ``!``) as the comment, with a diagnostic, so that the
        target and later matches are kept. (kube-proxy's own test parser keeps only the
        first word as the comment and skips the others one by one, keeping the target
        too; joining them keeps the text the author meant.)"""
        values, start = self.values, self.i
        while self.i < len(values) and values[self.i] != "!" and not _is_option(values[self.i]):
            self.i += 1
        if self.i == start:
            return args
        text = " ".join((*args, *values[start : self.i]))
        self.body.problems.append(
            (start, f'unquoted multi-word comment: read as "{clip(text, 200)}"')
        )
        return (text,)

    def _load(self, loaded: Loaded) -> None:
        """Load a module: it now claims its options, before any module loaded earlier."""
        self.loaded.append(loaded)
        spec = MATCH_SPECS.get(loaded.name)
        if spec is not None:
            self.claims.update(dict.fromkeys(spec, loaded))

    def _owner(self, word: str) -> tuple[Loaded, int | None]:
        """Who takes ``word``, as iptables decides, and how many arguments it has."""
        target = self.target
        if target is not None and word in TARGET_SPECS.get(target.name, {}):
            return target, TARGET_SPECS[target.name][word]
        claimed = self.claims.get(word)  # the last module loaded that knows ``word``
        if claimed is not None:
            return claimed, MATCH_SPECS[claimed.name][word]
        implicit = self._implicit_module(word)
        if implicit is not None:
            return implicit, MATCH_SPECS[implicit.name][word]
        owner = target or (self.loaded[-1] if self.loaded else None)
        if owner is None:
            raise LineError(self.i, f"unknown option {clip(word)}")
        spec = TARGET_SPECS.get(owner.name) if owner is target else MATCH_SPECS.get(owner.name)
        if spec is not None:  # a module kpsim knows every option of: iptables would refuse
            self.body.problems.append((self.i, f"unknown option {clip(word)} for {owner.name}"))
        return owner, (spec or {}).get(word)

    def _implicit_module(self, word: str) -> Loaded | None:
        """``-p tcp --dport 80`` loads ``-m tcp`` on the spot, as iptables does."""
        proto = self.body.protocol
        module = PROTO_MODULES.get(proto.name) if proto and not proto.negated else None
        if module is None or word not in MATCH_SPECS[module]:
            return None
        loaded = Loaded(module, self.i)
        self._load(loaded)
        return loaded
