"""Read ``iptables -L`` output, in any of its variants, into the shared model.

    Chain KUBE-SVC-X (1 references)                         ← header: chain, policy/refs
    num   pkts bytes target     prot opt in  out  source     destination   ← columns line
    1      471K  28M KUBE-SEP-Y  all  --  *   *    0.0.0.0/0  0.0.0.0/0  /* … */ statistic …
    └num┘ └ -v ───┘ └ target ─┘ └prot┘└opt┘└-v┘   └ -n or names ──────┘ └ listing_matches ┘

The columns line says which optional columns follow (``--line-numbers``, ``-v``);
``-n`` only changes how addresses, ports and protocols are written, so both forms
are read. People paste listings with prompts, markdown, ``...`` and ``← 1`` notes:
each such line is reported through the Sink and skipped, the rules around it kept.
The result is the model a save-format parser gives for the same kernel state, minus
what ``-L`` does not show (see ``LOST``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from itertools import islice

from kpsim.formats.capture import CaptureFacts, unsure_last
from kpsim.formats.common import RulesetBuilder, Sink, classify_noise, read_meta, too_long
from kpsim.formats.iptables import names
from kpsim.formats.iptables.listing_columns import (
    OPTS,
    Layout,
    author_note,
    counter,
    guess_layout,
    iface,
    named,
)
from kpsim.formats.iptables.listing_matches import decode
from kpsim.formats.numbers import U32, U64, BadNumber, clip, decimal, shown
from kpsim.model import (
    Counters,
    Diagnostic,
    Family,
    Format,
    Rule,
    Ruleset,
    SourceLocation,
    Verdict,
)

#: What the list format cannot express, for the docs.
LOST = (
    "interfaces (-i/-o) unless -v",
    "counters unless -v; exact counters only with -x",
    "addresses and ports a resolver named, when kpsim's fixed tables do not know the name",
    "match options a module does not print, and modules kpsim does not decode (kept opaque)",
    "chain counters of user chains; chains of other tables unless listed with -t",
)

_HEADER = re.compile(r"^\s*Chain\s+(?P<name>\S+)\s+\((?P<info>[^)]*)\)\s*$")
_POLICY = re.compile(
    r"^policy\s+(?P<policy>[A-Z]+)"
    r"(?:\s+(?P<pk>[0-9]+[KMGT]?)\s+packets,\s+(?P<by>[0-9]+[KMGT]?)\s+bytes)?$"
)
_REFS = re.compile(r"^[0-9]+\s+references?$")
_COLUMNS = re.compile(
    r"^\s*(?P<num>num\s+)?(?P<v>pkts\s+bytes\s+)?target\s+prot\s+opt\s+"
    r"(?P<io>in\s+out\s+)?source\s+destination\s*$"
)
_FOOTER = re.compile(r"^\s*total\b[^:0-9]*rules?\b\s*+[:=-]?\s*+(?P<n>[0-9]+)?\s*+$", re.I)
_SEPARATOR = re.compile(r"^\s*[=\-]{3,}\s*$")
_COMMAND = re.compile(r"\b(?P<prog>ip6?tables)(?:-legacy|-nft)?(?P<args>(?:\s.*)?)$", re.I)
_TABLE_OPT = re.compile(r"(?:^|\s)(?:[-–]t\s*|[-–]{1,2}table[=\s]+)(?P<t>[a-z]+)\b")
_LIST_OPT = re.compile(r"(?:^|\s)(?:[-–](?=[a-zA-Z]*L)[a-zA-Z]++|[-–]{1,2}list)\b")
#: The columns before the matches: num, pkts, bytes, target, prot, opt, in, out, source,
#: destination; words after them are never split here (``decode`` reads them).
_COLUMN_WORDS = 10
_WORD = re.compile(r"\S+")


@dataclass
class _Draft:
    name: str
    table: str | None
    line: int
    text: str
    policy: Verdict | None = None
    counters: Counters | None = None
    rules: list[Rule] = field(default_factory=list)
    elided: bool = False
    repeated: bool = False


class _Error(Exception):
    """A rule line that cannot be read, at a 0-based offset."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


class _Reader:
    """One pass over the lines; chains are kept as drafts until the table is known."""

    def __init__(self, path: str, strict: bool, table: str | None) -> None:
        self.path = path
        self.sink = Sink(path, strict)
        self.forced_table = table
        self.table_hint: str | None = None
        self.family = Family.IPV4
        self.drafts: list[_Draft] = []
        self.seen: dict[tuple[str | None, str], _Draft] = {}
        self.current: _Draft | None = None
        self.layout: Layout | None = None
        self.metadata: dict[str, object] = {}
        self.rounded = False
        self.opaque = 0
        self.rules_since_footer = 0
        self.hidden_interfaces = False  # a rule read from a layout without in/out columns
        self.resolved = False  # a name where -n prints a number (anywhere, a host, http)
        self.elisions: list[int] = []
        self.lost: list[tuple[int, _Draft]] = []  # rule lines not read, with their chain

    # ------------------------------------------------------------ lines

    def feed(self, lineno: int, raw: str) -> None:
        meta = read_meta(raw, lineno, self.sink)
        if meta is not None:
            self.metadata.update(meta)
            return
        line = raw.rstrip("\r")
        if (note := author_note(line)) is not None:
            text = line[note[1] :].rstrip()
            self.sink.report(lineno, note[1] + 1, f"skipped author note {shown(text)}", raw)
            line = line[: note[0]]
        if not line.strip():
            return
        header = _HEADER.match(line)
        if header is not None:
            self._header(lineno, line, header)
            return
        columns = _COLUMNS.match(line)
        if columns is not None:
            self.layout = Layout(bool(columns["num"]), bool(columns["v"]), bool(columns["io"]))
            return
        if self._footer(lineno, line):
            return
        kind = classify_noise(line)
        command = _COMMAND.search(line)
        if kind is not None or (command is not None and not self._looks_like_rule(line)):
            self._noise(lineno, line, kind or "command line", command)
            return
        if self.current is None:
            self.sink.skip_line(lineno, line, "line outside any chain listing")
            return
        self._rule(lineno, line, self.current)

    def _header(self, lineno: int, line: str, m: re.Match[str]) -> None:
        name, info = m["name"], m["info"].strip()
        draft = _Draft(name, self.table_hint, lineno, line)
        policy = _POLICY.match(info)
        if policy is not None:
            try:
                draft.policy = Verdict[policy["policy"]]
            except KeyError:
                self.sink.report(lineno, m.start("info") + 1, f"unknown policy {shown(info)}", line)
            if policy["pk"] is not None:
                packets, octets = self._count(policy["pk"]), self._count(policy["by"])
                if packets is None or octets is None:
                    lead = len(m["info"]) - len(m["info"].lstrip())
                    col = m.start("info") + lead + policy.start("pk") + 1
                    self.sink.report(lineno, col, "counters out of range (0 to 2^64-1)", line)
                else:
                    draft.counters = Counters(packets, octets)
        elif not _REFS.match(info):
            message = f"unexpected chain info {shown(info)}"
            self.sink.report(lineno, m.start("info") + 1, message, line)
        key = (self.table_hint, name)
        if key in self.seen:
            self.sink.report(
                lineno,
                m.start("name") + 1,
                f"chain {clip(name)} listed again; this copy is skipped",
                line,
            )
            draft.repeated = True
        else:
            self.seen[key] = draft
            self.drafts.append(draft)
        self.current = draft

    def _footer(self, lineno: int, line: str) -> bool:
        """The EKS log collector's ``Total Number of Rules: N`` (and its ``====`` rule)."""
        if _SEPARATOR.match(line):
            return True
        m = _FOOTER.match(line)
        if m is None:
            return False
        if m["n"] is not None and decimal(m["n"], U64) != self.rules_since_footer:
            self.sink.report(
                lineno,
                m.start("n") + 1,
                f"footer counts {clip(m['n'])} rules but {self.rules_since_footer} were read",
                line,
            )
        self.rules_since_footer = 0
        return True

    def _noise(self, lineno: int, line: str, kind: str, command: re.Match[str] | None) -> None:
        if command is not None and not command["prog"].lower().endswith("-save"):
            args = command["args"]
            table = _TABLE_OPT.search(args)
            if table is not None:
                self.table_hint = table["t"].lower()
            elif _LIST_OPT.search(args):
                self.table_hint = "filter"  # iptables' own default table
            if command["prog"].lower().startswith("ip6"):
                self.family = Family.IPV6
        if kind == "markdown fence":
            self.current = None
        elif kind == "elision" and self.current is not None:
            self.current.elided = True
            self.elisions.append(lineno)
        self.sink.skip_line(lineno, line, kind)

    @staticmethod
    def _looks_like_rule(line: str) -> bool:
        return any(tok in OPTS for tok in line.split(None, 6)[:6])

    # ------------------------------------------------------------ rules

    def _rule(self, lineno: int, line: str, chain: _Draft) -> None:
        if chain.repeated:
            what = f"rule of the repeated listing of chain {clip(chain.name)}"
            self.sink.skip_line(lineno, line, what)
            return
        try:
            if (long := too_long(line)) is not None:
                raise _Error(len(line) - len(line.lstrip()), long)
            rule = self._read_rule(lineno, line, chain)
        except _Error as exc:
            self.lost.append((lineno, chain))
            self.sink.report(lineno, exc.offset + 1, exc.message, line)
            return
        chain.rules.append(rule)
        self.rules_since_footer += 1

    def _read_rule(self, lineno: int, line: str, chain: _Draft) -> Rule:
        found = islice(_WORD.finditer(line), _COLUMN_WORDS)
        toks = [(m.start(), m.end(), m.group()) for m in found]
        layout = self.layout or guess_layout([t[2] for t in toks])
        self.layout = layout
        i = 0

        def take(what: str) -> tuple[int, int, str]:
            nonlocal i
            if i >= len(toks):
                raise _Error(len(line), f"rule line ends before the {what} column")
            i += 1
            return toks[i - 1]

        number = len(chain.rules) + 1
        if layout.num:
            start, _, text = take("num")
            listed = decimal(text, U32)
            if listed is None:
                raise _Error(start, f"expected a rule number, found {shown(text)}")
            if listed != number:
                if chain.elided:
                    number = listed
                else:
                    self.sink.report(
                        lineno, start + 1, f"rule number {text}, expected {number}", line
                    )
        counters = None
        if layout.verbose:
            pk, by = take("pkts"), take("bytes")
            counters = Counters(self._count_at(pk), self._count_at(by))
        target: str | None = None
        if not (i + 1 < len(toks) and toks[i + 1][2] in OPTS):
            target = take("target")[2]
        prot_start, _, prot = take("prot")
        try:
            protocol = names.protocol(prot)
        except BadNumber as exc:
            raise _Error(prot_start, str(exc)) from None
        opt_start, _, opt = take("opt")
        if opt not in OPTS:
            found_opt = f"found {shown(opt)}"
            raise _Error(opt_start, f"expected '--', '-f' or '!f' in the opt column, {found_opt}")
        in_if = out_if = None
        if layout.io:
            in_if, out_if = iface(take("in")[2]), iface(take("out")[2])
        else:
            self.hidden_interfaces = True
        src = take("source")[2]
        dst_end = take("destination")[1]
        self.resolved = self.resolved or named(src) or named(toks[i - 1][2])
        rest = line[dst_end:]
        offset = dst_end + len(rest) - len(rest.lstrip())
        goto = rest.lstrip().startswith("[goto]")
        if goto:
            offset += len("[goto]")
        decoded = decode(line[offset:], target, goto)
        for where, message in decoded.problems:
            self.sink.report(lineno, offset + where + 1, message, line)
        self.opaque += decoded.opaque
        return Rule(
            table="",
            chain=chain.name,
            number=number,
            target=decoded.target,
            source=names.address(src),
            destination=names.address(toks[i - 1][2]),
            protocol=protocol,
            in_interface=in_if,
            out_interface=out_if,
            fragment=OPTS[opt],
            matches=decoded.matches,
            counters=counters,
            origin=SourceLocation(self.path, lineno, line),
        )

    def _count_at(self, tok: tuple[int, int, str]) -> int:
        counted = self._count(tok[2])
        if counted is None:
            raise _Error(tok[0], f"expected a counter (0 to 2^64-1), found {shown(tok[2])}")
        return counted

    def _count(self, text: str) -> int | None:
        """``1651K`` → 1651000 (``counter``); a unit makes the counters approximate."""
        found = counter(text)
        if found is None:
            return None
        self.rounded = self.rounded or found[1]
        return found[0]

    # ------------------------------------------------------------ result

    def finish(self, diagnostics: list[Diagnostic]) -> Ruleset:
        builder = RulesetBuilder(self.path, Format.LIST, self.family)
        builder.metadata.update(self.metadata)
        inferred = self.forced_table or self._infer_table(builder)
        self._facts(builder.facts, inferred)
        for d in self.drafts:
            table = self.forced_table or d.table or inferred
            origin = SourceLocation(self.path, d.line, d.text)
            builder.declare(table, d.name, d.policy, d.counters, origin)
            for rule in d.rules:
                builder.add_rule(dataclasses.replace(rule, table=table))
            if d.elided:
                elided = f"chain {clip(d.name)}: rules elided ('...')"
                builder.note(f"{elided}; numbers are listing positions")
        if self.rounded:
            builder.note("counters with K/M/G/T units are rounded down to 1000s (list without -x)")
        if self.opaque:
            builder.note(f"{self.opaque} match/target text(s) not decoded; kept as opaque text")
        return builder.freeze(diagnostics)

    def _facts(self, facts: CaptureFacts, inferred: str) -> None:
        """What the listing showed of the capture itself (``kpsim.formats.capture``)."""
        facts.interfaces_known = not self.hidden_interfaces
        facts.names_resolved = self.resolved
        facts.elisions = [(line, None) for line in self.elisions]
        facts.lost = [
            (line, self.forced_table or d.table or inferred, d.name) for line, d in self.lost
        ]

    def _infer_table(self, builder: RulesetBuilder) -> str:
        undecided = {d.name for d in self.drafts if d.table is None}
        if not undecided:
            return "nat"
        if "FORWARD" in undecided and undecided & {"PREROUTING", "POSTROUTING"}:
            table = "mangle"
        elif undecided & {"PREROUTING", "POSTROUTING"}:
            table = "nat"
        elif undecided & {"INPUT", "FORWARD"}:
            table = "filter"
        else:
            table = "nat"
        builder.note(f"table not given: read as {table} (from the built-in chains listed)")
        return table


def parse_list(text: str, path: str, *, strict: bool = False, table: str | None = None) -> Ruleset:
    """Parse ``iptables -L`` output (any of -n, -v, -x, --line-numbers, pasted or not).

    ``table`` forces the table; otherwise a ``-t NAME`` on a pasted command line
    decides, else the built-in chains listed (noted in ``Ruleset.notes``).
    Lenient: unreadable lines become diagnostics. Strict: ParseError at the first.
    """
    reader = _Reader(path, strict, table)
    lines = text.split("\n")
    for lineno, raw in enumerate(lines, start=1):
        reader.feed(lineno, raw)
    ruleset = reader.finish(reader.sink.items)
    if lines[-1].strip():  # no newline at the end: the last rule may be cut (a paste)
        return unsure_last(ruleset, len(lines))
    return ruleset
