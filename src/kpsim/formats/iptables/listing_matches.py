"""Decode the free text ``iptables -L`` prints after the destination column.

    /* kube-system/kube-dns:dns */ tcp dpt:53 statistic mode random probability 0.5…  tcp to:…
    └ CommentMatch ────────────────┘ └PortMatch┘ └ StatisticMatch ──────────────────┘ └─ target

Each match module prints its own words, in rule order, then the target prints its
own. The words are decoded into the same typed objects the save parser builds, with
the kernel's values (a probability becomes ``threshold``, ``MARK or 0x4000`` becomes
value/mask 0x4000/0x4000). Text no decoder claims is kept as ``OpaqueMatch(module="?")``
(or the opaque target's text), never dropped or guessed.

listing_matches.py walks the text and keeps what no decoder claims; the decoders live in
listing_match_decoders.py (one per match module) and listing_target_decoders.py (one per
target extension, and what a bare target word means).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import cast

from kpsim.formats.iptables.listing_match_decoders import _MATCHES, FULL, HEX
from kpsim.formats.iptables.listing_target_decoders import (
    _TARGETS,
    KNOWN_TARGETS,
    _TargetBuilder,
    bare_target,
)
from kpsim.formats.numbers import BadNumber, shown
from kpsim.model import Match, OpaqueMatch, OpaqueTarget, Target

__all__ = ["FULL", "HEX", "KNOWN_TARGETS", "Decoded", "bare_target", "decode"]

#: Words that start a decoder: an undecodable chunk starting with one is a damaged
#: (e.g. cut) rule, worth a diagnostic; other unknown words are just unmodelled modules.
_KNOWN_STARTS = (
    "/*", "statistic", "recent:", "to:", "MARK", "CONNMARK", "mark match", "connmark match",
    "multiport", "ADDRTYPE", "masq", "redir", "reject-with", "match-set", "ctstate",
    "spt:", "dpt:", "spts:", "dpts:",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Decoded:
    """Typed matches and target of one rule, plus what could not be decoded."""

    matches: tuple[Match, ...]
    target: Target | None
    problems: tuple[tuple[int, str], ...] = ()  # (0-based offset in the text, message)
    opaque: int = 0  # how many chunks were kept opaque


_BLANKS = re.compile(r"\s*")
_WORD = re.compile(r"\S*")

#: Targets whose text says what they do; without it they cannot be modelled.
_TEXT_REQUIRED = frozenset({"DNAT", "SNAT", "MARK", "CONNMARK", "REDIRECT"})


def decode(text: str, target_name: str | None, goto: bool = False) -> Decoded:
    """Split ``text`` into typed matches and the target ``target_name`` prints."""
    matches: list[Match] = []
    problems: list[tuple[int, str]] = []
    target = bare_target(target_name, goto)
    target_text_seen = False
    chunks: list[tuple[int, int]] = []  # undecoded spans
    pending: int | None = None
    pos, end = 0, len(text.rstrip())
    tdec = _TARGETS.get(target_name or "")

    def flush(upto: int) -> None:
        nonlocal pending
        if pending is not None:
            chunks.append((pending, upto))
            pending = None

    blanks, word = _BLANKS.match, _WORD.match  # a regex each: a 50 MB line is no Python loop
    while pos < end:
        pos = cast(re.Match[str], blanks(text, pos)).end()
        if pos >= end:
            break
        hit = _match_at(text, pos)
        if isinstance(hit, BadNumber):
            problems.append((pos, f"{hit}; kept as opaque text"))
        elif hit is not None:
            flush(pos)
            matches.append(hit[0])
            pos = hit[1]
            continue
        if tdec is not None and not target_text_seen:
            built = _target_at(tdec, text, pos)
            if isinstance(built, BadNumber):
                problems.append((pos, f"{built}; kept as opaque text"))
            elif built is not None:
                flush(pos)
                target, pos = built
                target_text_seen = True
                continue
        if pending is None:
            pending = pos
        pos = cast(re.Match[str], word(text, pos)).end()
    flush(end)

    opaque = 0
    reported = {at for at, _ in problems}  # a bad number, said already
    for i, (start, stop) in enumerate(chunks):
        chunk = text[start:stop].rstrip()
        last = i == len(chunks) - 1 and stop == end
        if last and isinstance(target, OpaqueTarget) and not target.text and tdec is None:
            target = OpaqueTarget(target.name, target.options, chunk)
        else:
            matches.append(OpaqueMatch("?", text=chunk))
        opaque += 1
        if chunk.startswith(_KNOWN_STARTS) and start not in reported:
            problems.append((start, f"could not decode {shown(chunk)}; kept as opaque text"))
    if target_name in _TEXT_REQUIRED and not target_text_seen:
        problems.append((end, f"{target_name} target without the text that says what it does"))
        target = OpaqueTarget(target_name or "")
    return Decoded(tuple(matches), target, tuple(sorted(problems)), opaque)


def _target_at(
    tdec: tuple[re.Pattern[str], _TargetBuilder], text: str, pos: int
) -> tuple[Target, int] | BadNumber | None:
    """The target decoded at ``pos``; a BadNumber (to report) or None: the opaque path."""
    m = tdec[0].match(text, pos)
    if m is None or m.end() == pos:
        return None
    try:
        return tdec[1](m), m.end()
    except BadNumber as exc:  # e.g. ``to:1.2.3.4:70000``
        return exc
    except ValueError:  # e.g. ``to:host:80``: leave it to the opaque path
        return None


def _match_at(text: str, pos: int) -> tuple[Match, int] | BadNumber | None:
    for pattern, builder in _MATCHES:
        m = pattern.match(text, pos)
        if m is not None:
            try:
                return builder(m), m.end()
            except BadNumber as exc:  # e.g. ``dpt:70000``: reported, kept opaque
                return exc
            except ValueError:  # e.g. a bad address: leave it opaque
                return None
    return None
