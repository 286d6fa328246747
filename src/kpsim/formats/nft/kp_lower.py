"""One nft rule's statements into model rules.

    ip daddr 10.0.0.1 tcp dport 80 jump X      ─▶ Rule(-d 10.0.0.1 -p tcp --dport 80, Jump X)
    KEYS vmap @m  /  KEYS vmap { k : v, … }    ─▶ a Rule per element: SetLookup(k) → v
    numgen random mod N vmap { 0 : goto A, … } ─▶ a Rule per bucket: NumgenMatch cascade
    mark set mark or 0x4000 masquerade         ─▶ a jump to a chain of one statement a rule

The statement's words come from the grammar (grammar.parse_rule), so a word it cannot
read is an error at its column before any is lowered. Matches nft and iptables share
become the iptables model's types (-s/-d/-p, PortMatch, ConntrackMatch, AddrTypeMatch
for ``fib daddr type``, MarkMatch); the rest are
model/nft.py's. A statement kpsim cannot read is an error at its column (lenient: the
rule is kept with an opaque target, so a trace through it is UNKNOWN, never a guess).
"""

from __future__ import annotations

from kpsim.formats.nft.grammar import TWO_WORDS, GrammarError, parse_rule
from kpsim.formats.nft.kp_literal import Lowered, lower_literal
from kpsim.formats.nft.kp_maps import map_branches, set_elements
from kpsim.formats.nft.kp_text import NftSet, elements
from kpsim.formats.nft.kp_values import element_key, kind_of, nat_range, verdict
from kpsim.model import (
    CommentMatch,
    Dnat,
    Jump,
    Log,
    MarkTarget,
    Masquerade,
    Match,
    OpaqueTarget,
    RecentCommand,
    RecentMatch,
    Reject,
    Snat,
    Standard,
    Target,
    Verdict,
)
from kpsim.model.nft import NumgenMatch, SetLookup

_ONE = {"mark": "meta mark", "iifname": "meta iifname", "oifname": "meta oifname",
        "l4proto": "meta l4proto"}  # fmt: skip
_OPS = {"==": False, "eq": False, "!=": True, "ne": True}


class StatementError(ValueError):
    """What is wrong and the offset of the token in the statement text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class Statement:
    """Reads one statement's tokens left to right."""

    def __init__(self, text: str, sets: dict[str, NftSet]) -> None:
        self.text = text
        self.sets = sets
        try:  # the grammar's words: what it cannot read is an error at its column
            parsed = parse_rule(text)
        except GrammarError as exc:
            raise StatementError(str(exc), exc.offset) from None
        words = [w for _, statement in parsed for w in statement]
        self.toks = [t for t, _ in words]
        self.offs = [o for _, o in words] + [len(text)]
        self.i = 0
        self.out = Lowered()

    def peek(self, ahead: int = 0) -> str:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else ""

    def take(self) -> str:
        tok = self.peek()
        if not tok:
            raise StatementError("statement ends too early", len(self.text))
        self.i += 1
        return tok

    def fail(self, message: str) -> StatementError:
        return StatementError(message, self.offs[min(self.i, len(self.toks))])

    def read(self) -> Lowered:
        while self.i < len(self.toks):
            self.one()
        return self.out

    def one(self) -> None:
        tok = self.peek()
        out = self.out
        if tok == "counter":
            self.i += 1
            while self.peek() in ("packets", "bytes"):
                self.i += 2
        elif tok == "comment":
            self.i += 1
            out.matches.append(CommentMatch(_unquote(self.take())))
        elif tok in ("jump", "goto"):
            self.i += 1
            out.actions.append(Jump(self.take(), goto=tok == "goto"))
        elif tok in ("accept", "drop", "return"):
            self.i += 1
            out.actions.append(Standard(Verdict(tok.upper())))
        elif tok == "continue":
            self.i += 1
        elif tok == "reject":
            self.i += 1
            words = []
            if self.peek() == "with":
                self.i += 1
                while self.peek() and self.peek() not in ("comment", "counter"):
                    words.append(self.take())
            out.actions.append(Reject(" ".join(words) or None))
        elif tok in ("dnat", "snat"):
            self.nat(tok)
        elif tok == "masquerade":
            self.i += 1
            flags = self.flags()
            rf = "fully-random" in flags
            out.actions.append(Masquerade(random="random" in flags, random_fully=rf))
        elif tok == "log":
            self.i += 1
            prefix = None
            while self.peek() in ("prefix", "level", "group", "flags"):
                what = self.take()
                value = self.take()
                prefix = _unquote(value) if what == "prefix" else prefix
            out.actions.append(Log(prefix=prefix))
        elif tok == "notrack":
            self.i += 1
            out.actions.append(OpaqueTarget("notrack", text="notrack"))
        elif tok in ("update", "add") and self.peek(1).startswith("@"):
            # ``update @affinity-… { ip saddr }``: the client's address joins the set, as
            # ``-m recent --set`` adds it to a list; a SetLookup of a dynamic set reads it
            name = self.peek(1)[1:]
            self.i += 2
            inside = self.braces()
            if inside != ["ip", "saddr"] and inside != ["ip6", "saddr"]:
                raise self.fail(f"set update keyed by {' '.join(inside)} is not modelled")
            out.matches.append(RecentMatch(RecentCommand.SET, name))
        elif (tok == "mark" or (tok == "meta" and self.peek(1) == "mark")) and "set" in (
            self.peek(1),
            self.peek(2),
        ):
            self.mark_set()
        else:
            self.expression()

    def flags(self) -> set[str]:
        out = set()
        while self.peek() in ("random", "fully-random", "persistent", ","):
            out.add(self.take())
        return out

    def braces(self) -> list[str]:
        """The tokens inside ``{ … }`` (the braces consumed)."""
        if self.peek() != "{":
            raise self.fail("'{' expected")
        self.i += 1
        start = self.i
        depth = 1
        while depth:
            tok = self.take()
            depth += (tok == "{") - (tok == "}")
        return self.toks[start : self.i - 1]

    def brace_text(self) -> str:
        """The text between the braces as written (a set's name in answers is its text)."""
        start = self.offs[self.i]
        self.braces()
        return self.text[start + 1 : self.offs[self.i - 1]]

    # -------------------------------------------------------------- statements

    def mark_set(self) -> None:
        """``mark set mark or 0x4000`` / ``meta mark set meta mark | 0x4000`` / ``… xor …``
        / ``… and …`` / ``mark set 0x4000``: the kernel form (mark & ~mask) ^ value."""
        self.i += 3 if self.peek() == "meta" else 2
        if self.peek() in ("mark", "meta"):
            self.i += 2 if self.peek() == "meta" else 1
            op = self.take()
            value = _int(self.take(), self)
            masks = {"or": (value, value), "|": (value, value), "xor": (value, 0),
                     "^": (value, 0), "and": (0, ~value & 0xFFFFFFFF),
                     "&": (0, ~value & 0xFFFFFFFF)}  # fmt: skip
            if op not in masks:
                raise self.fail(f"mark operation {op!r} not understood")
            v, m = masks[op]
            self.out.actions.append(MarkTarget(v, m))
        else:
            self.out.actions.append(MarkTarget(_int(self.take(), self), 0xFFFFFFFF))

    def nat(self, kind: str) -> None:
        self.i += 1
        if self.peek() in ("ip", "ip6"):
            self.i += 1
        # ``dnat ip addr . port to …`` (kube-proxy's DNAT-map layout): a target ``A . P``
        pair = self.peek() == "addr"
        if pair and self.toks[self.i : self.i + 3] != ["addr", ".", "port"]:
            raise self.fail("'addr . port' expected")
        self.i += 3 if pair else 0
        if self.take() != "to":
            raise self.fail("'to' expected")
        if self.peek() == "numgen":
            _, params = self.selectors()
            if self.take() != "map":
                raise self.fail("'map' expected after numgen")
            self.numgen_branches(params, self.brace_text(), nat=kind)
            return
        where = self.i
        words = self.toks[self.i : self.i + 3] if pair else [self.take()]
        self.i += len(words) if pair else 0
        target = nat_range(" ".join(words)) if not pair or words[1:2] == ["."] else None
        if target is None:
            self.i = where
            raise self.fail(f"{kind} destination not understood")
        flags = self.flags()
        if kind == "dnat":
            self.out.actions.append(Dnat((target,), random="random" in flags))
        else:
            self.out.actions.append(Snat((target,), random="random" in flags))

    # -------------------------------------------------------------- matches

    def selectors(self) -> tuple[tuple[str, ...], tuple[int, int]]:
        """``ip daddr . meta l4proto . th dport``; numgen's (modulus, offset) if it is one."""
        keys: list[str] = []
        params = (0, 0)
        while True:
            tok = self.take()
            if tok in TWO_WORDS and self.peek() in TWO_WORDS[tok]:
                keys.append(f"{tok} {self.take()}")
            elif tok in _ONE:
                keys.append(_ONE[tok])
            elif tok == "fib":
                words = []
                while self.peek() != "type":
                    words.append(self.take())
                self.i += 1
                keys.append("fib " + " ".join(words) + " type")
            elif tok == "numgen":
                if self.take() != "random" or self.take() != "mod":
                    raise self.fail("only 'numgen random mod N' is read")
                modulus = _int(self.take(), self)
                offset = 0
                if self.peek() == "offset":
                    self.i += 1
                    offset = _int(self.take(), self)
                keys.append("numgen")
                params = (modulus, offset)
            else:
                self.i -= 1
                raise self.fail(f"nft expression {tok!r} not understood")
            if self.peek() != ".":
                return tuple(keys), params
            self.i += 1

    def expression(self) -> None:
        keys, params = self.selectors()
        mask = None
        if self.peek() in ("and", "&"):
            self.i += 1
            mask = _int(self.take(), self)
        negated = _OPS.get(self.peek(), False)
        if self.peek() in _OPS:
            self.i += 1
        tok = self.peek()
        if tok == "vmap":
            self.i += 1
            if keys == ("numgen",):
                self.numgen_branches(params, self.brace_text())
            else:
                self.vmap(keys)
            return
        if tok.startswith("@"):
            self.i += 1
            self.out.matches.append(self.lookup(keys, tok, negated))
        elif tok == "{":
            body = self.brace_text()
            items = [(0, 0, e) for e in elements(body)]
            anon = NftSet("{…}", 0, False, keys, elements=items)
            self.out.matches.append(self.set_match(keys, anon, "{" + body + "}", negated))
        else:
            self.literal(keys, negated, mask)

    def literal(self, keys: tuple[str, ...], negated: bool, mask: int | None) -> None:
        where = self.i  # an error names the value, not the word after it
        values = [self.take()]
        while self.peek() == ",":
            self.i += 1
            values.append(self.take())
        if len(keys) > 1:
            self.i = where
            raise self.fail("a concatenation compared with a single value is not read")
        found = lower_literal(self.out, keys[0], values, negated, mask)
        if isinstance(found, str):
            self.i = where
            raise self.fail(found)
        if found is not None:
            self.out.matches.append(self.set_match(keys, found, values[0], negated))

    def lookup(self, keys: tuple[str, ...], name: str, negated: bool) -> Match:
        found = self.sets.get(name[1:])
        if found is None:
            raise self.fail(f"set {name} is not in the capture")
        if found.dynamic and keys in (("ip saddr",), ("ip6 saddr",)) and not negated:
            # kube-proxy's session affinity: ``ip saddr @affinity-…`` is ``-m recent
            # --rcheck --seconds T --reap --name affinity-…``, the client's entry put there
            # by ``update @affinity-… { ip saddr }`` (RecentCommand.SET) and living T seconds
            return RecentMatch(RecentCommand.RCHECK, found.name, found.timeout, reap=True)
        return self.set_match(keys, found, name, negated)

    def set_match(self, keys: tuple[str, ...], found: NftSet, name: str, neg: bool) -> SetLookup:
        fast = set_elements(found, keys)  # kube-proxy's plain elements (kp_maps.py)
        if fast is not None:
            label = " . ".join(keys) + (" != " if neg else " ") + name
            return SetLookup(name, keys, fast, neg, found.dynamic, label)
        kinds = tuple(kind_of(k) for k in keys)
        elements = []
        for _, _, text in found.elements:
            key = element_key(text.partition(" : ")[0], kinds)
            if key is not None:
                elements.append(key)
        text = " . ".join(keys) + (" != " if neg else " ") + name
        # a set has no order and no duplicates (adding an element twice is one element):
        # sorted and unique, the model is the same however nft printed or was given it
        unique = {tuple((p.lo, p.hi) for p in e): e for e in elements}
        ordered = tuple(unique[k] for k in sorted(unique))
        return SetLookup(name, keys, ordered, neg, found.dynamic, text)

    def vmap(self, keys: tuple[str, ...]) -> None:
        if self.peek() == "{":
            body = self.brace_text()
            found = NftSet("{…}", 0, True, keys, elements=[(0, 0, e) for e in elements(body)])
            name = "{…}"
        else:
            name = self.take()
            got = self.sets.get(name[1:])
            if got is None:
                raise self.fail(f"map {name} is not in the capture")
            found = got
            fast = map_branches(found, keys, name)  # kube-proxy's plain elements (kp_maps.py)
            if fast is not None:
                self.out.branches = fast
                return
        kinds = tuple(kind_of(k) for k in keys)
        branches: list[tuple[Match, Target]] = []
        for _, _, text in found.elements:
            key_text, _, value = text.partition(" : ")
            key = element_key(key_text, kinds)
            target = verdict(value)
            if key is None or target is None:
                raise self.fail(f"element {text!r} of {name} not understood")
            label = f"{' . '.join(keys)} {key_text.strip()} (in {name})"
            branches.append((SetLookup(name, keys, (key,), False, False, label), target))
        self.out.branches = branches

    def numgen_branches(self, params: tuple[int, int], body: str, nat: str = "") -> None:
        modulus, offset = params
        branches: list[tuple[Match, Target]] = []
        before: list[int] = []
        for text in elements(body):
            key_text, _, value = text.partition(" : ")
            try:
                bucket = int(key_text.strip())
            except ValueError:
                raise self.fail(f"numgen bucket {key_text.strip()!r} not understood") from None
            target: Target | None
            if nat:
                rng = nat_range(value)
                target = None if rng is None else Dnat((rng,)) if nat == "dnat" else Snat((rng,))
            else:
                target = verdict(value)
            if target is None:
                raise self.fail(f"numgen element {text!r} not understood")
            branches.append((NumgenMatch(modulus, bucket, tuple(before), offset), target))
            before.append(bucket)
        self.out.branches = branches


def _int(text: str, st: Statement) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise st.fail(f"number {text!r} not understood") from None


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
