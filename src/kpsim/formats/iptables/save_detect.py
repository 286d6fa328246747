"""What an iptables-save-like text is before it is read: ``-S`` output or a save, which
target keywords (``DNAT``, ``LOG``, …) it also declares as chains (then ``-j NAME`` jumps),
and the table a pasted ``iptables -t NAME`` command names.

Both answers come from whole-text regex scans that skip ahead on a literal newline: they
run once per capture, on texts up to a million lines.
"""

from __future__ import annotations

import re

from kpsim.formats.iptables.targets import TARGET_KEYWORDS
from kpsim.model import Format

_KEYWORDS = "|".join(sorted(TARGET_KEYWORDS))
_DECLARE = rf"[ \t]*(?::|-N[ \t]+|--new-chain[ \t]+)({_KEYWORDS})(?=[ \t\[\r\n]|\Z)"
_DECLARE_RE = re.compile(_DECLARE)
_NL_DECLARE_RE = re.compile("\n" + _DECLARE)
# ``[^\S\n]``: blanks within a line. ``\n\s*`` would run on over every blank line after
# each newline (9 s on 40,000 blank lines).
_TABLE_OR_CHAIN_RE = re.compile(r"[^\S\n]*[*:]")
_NL_TABLE_OR_CHAIN_RE = re.compile(r"\n[^\S\n]*[*:]")
_RULES_RE = re.compile(r"[^\S\n]*-[PN] ")
_NL_RULES_RE = re.compile(r"\n[^\S\n]*-[PN] ")
#: ``-t NAME`` after the command word: searched from the first ``iptables`` only (a
#: search from each of many would scan the rest of the line each time).
_PROMPT_TABLE_RE = re.compile(r"\s(?:-t\s*+|--table[= ])(\w+)")
_PROMPT_TOOL_RE = re.compile(r"ip6?tables(?:-save)?\b")


def _matches_a_line(first: re.Pattern[str], later: re.Pattern[str], text: str) -> bool:
    """``first`` at the start of ``text`` or ``later`` (the same after a newline)
    anywhere: a literal newline lets the regex engine skip ahead, where ``^`` with
    MULTILINE tries every position (50 ms more on a 16 MB dump)."""
    return first.match(text) is not None or later.search(text) is not None


def detect_save_format(text: str) -> Format:
    """``-S`` output has ``-P``/``-N`` lines and no ``*table`` or ``:CHAIN`` lines."""
    if _matches_a_line(_TABLE_OR_CHAIN_RE, _NL_TABLE_OR_CHAIN_RE, text):
        return Format.SAVE
    return Format.RULES if _matches_a_line(_RULES_RE, _NL_RULES_RE, text) else Format.SAVE


def declared_keywords(text: str) -> frozenset[str]:
    """Target keywords (``DNAT``, ``LOG``, …) that ``text`` also declares as chains.

    Only for these does a declaration change what ``-j NAME`` means (a jump, not
    the target), so only these are looked for: collecting every chain name of a
    big dump costs 90 ms, this 15 ms."""
    first = _DECLARE_RE.match(text)
    return frozenset(_NL_DECLARE_RE.findall(text) + ([first[1]] if first else []))


def declares_keyword(line: str) -> bool:
    """Does this one line declare a target keyword as a chain (``declared_keywords``, for
    a reader that sees every declaration line itself)?"""
    return _DECLARE_RE.match(line) is not None


def prompt_table(line: str) -> str | None:
    """The table a pasted ``iptables -t NAME …`` command (or its comment) names, if any."""
    tool = _PROMPT_TOOL_RE.search(line)
    found = _PROMPT_TABLE_RE.search(line, tool.end()) if tool is not None else None
    return found[1] if found is not None else None
