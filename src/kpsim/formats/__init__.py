"""Read any capture of a node's rules into one ``Ruleset``.

    text ─ detect_format ─▶ iptables.save.parse_save     (iptables-save, -S, restore input, -A)
                         ├▶ iptables.listing.parse_list  (iptables -L, any flags)
                         └▶ nft.iptables_nft.parse_nft   (nft list ruleset)

The only package that imports pyparsing.
"""

from __future__ import annotations

import gc
import mmap
import re
from pathlib import Path
from typing import TYPE_CHECKING

from kpsim.errors import ParseError, UsageError

# The model is imported where used, and dataclasses: the prescan's child
# (``iptables.prescan``) imports the scanner through this package and scans ~0.08 s
# sooner without the model (measured), ~7 ms sooner without dataclasses (``-X importtime``).
if TYPE_CHECKING:
    from collections.abc import Callable

    from kpsim.model import Format, Ruleset

    #: Checks a reader left to be made later (``parse_text``'s ``later``): True, passed.
    Later = list[Callable[[], bool]]

# Blanks at a line's start are ``[^\S\n]*``, never ``\s*``: with MULTILINE, ``^\s*`` runs
# on over every blank line after it, from each line start (30 s on 40,000 blank lines).
# Each kind of line is a shape that never crosses a newline, looked for after each
# newline (``_Lines``): ``re`` skips to the next newline in C, where ``^`` with MULTILINE
# tries every position (8.2 → 3.9 ms on a 256 KiB sample, measured).


class _Lines:
    """The lines that begin with ``shape`` (which never matches a newline): after each
    newline, and the first line as if one came before it."""

    def __init__(self, shape: str) -> None:
        self.after = re.compile("\n" + shape, re.M)

    def count(self, text: str) -> int:
        return len(self.after.findall(text)) + self._first(text)

    def any(self, text: str) -> bool:
        return self._first(text) or self.after.search(text) is not None

    def _first(self, text: str) -> bool:
        end = text.find("\n")
        return self.after.match("\n" + (text if end < 0 else text[:end])) is not None


_LIST_HEADER = _Lines(r"[^\S\n]*Chain \S+ \((?:policy \S+|[0-9]+ references)")
_SAVE_LINE = _Lines(
    r"[^\S\n]*(?:\[[0-9]+:[0-9]+\][^\S\n]*)?"
    r"(?:-[AIPN] \S|\*\w+[^\S\n]*$|:\S+ \S+ \[[0-9]+:[0-9]+\])"
)
_NFT_LINE = _Lines(r"[^\S\n]*(?:table (?:ip|ip6|inet) \S+ \{|chain \S+ \{)")
#: ``nft -f`` input as kube-proxy writes it: ``add rule ip kube-proxy …``.
_NFT_COMMAND = _Lines(r"[^\S\n]*(?:add|insert) (?:rule|chain|table) (?:ip|ip6|inet) \S")
_RULES_ONLY = _Lines(r"[^\S\n]*-[PN] \S")
_SAMPLE = 256 * 1024
_TABLE_LINE = re.compile(r"^\*\w+\s*$", re.M)


def detect_format(text: str) -> Format:
    """Guess the format from the lines that only one format has.

    A markdown page may mix several; the most frequent kind of rule line wins. Only the
    first 256 KiB are read when they decide it: the multiline scans cost 0.35 s over a
    16 MB dump (measured), for an answer its first lines already give.
    """
    from kpsim.model import Format

    if len(text) > _SAMPLE:
        head = detect_format(text[:_SAMPLE])
        if head is not Format.UNKNOWN:
            return head
    counts = {
        Format.LIST: _LIST_HEADER.count(text),
        Format.SAVE: _SAVE_LINE.count(text),
        Format.NFT: _NFT_LINE.count(text) + _NFT_COMMAND.count(text),
    }
    best = max(counts, key=lambda f: counts[f])
    if counts[best] == 0:
        return Format.UNKNOWN
    if best is Format.SAVE and _RULES_ONLY.any(text) and not _TABLE_LINE.search(text):
        return Format.RULES
    return best


def parse_text(
    text: str,
    path: str,
    *,
    fmt: Format | None = None,
    strict: bool = False,
    lazy: bool = False,
    later: Later | None = None,
) -> Ruleset:
    """Parse one capture. ``fmt`` overrides detection. ``lazy``: a clean iptables-save
    has its chains built when first read (``iptables.lazy``: a trace reads a few); any
    other input is read whole, as without it. ``later``: where a lazy reader may leave
    its check that no jump leaves the capture, to be made before an answer is trusted
    (``iptables.lazy.lazy_save``); without it, every check is made now.

    The cyclic GC is off meanwhile: a reader builds acyclic objects by the million (a
    listing of a million junk lines: 9.4 s with it, 7.4 s without, measured); save.py
    says the same of a big dump."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_text(text, path, fmt, strict, lazy, later)
    finally:
        if was_enabled:
            gc.enable()


def _parse_text(
    text: str, path: str, fmt: Format | None, strict: bool, lazy: bool, later: Later | None
) -> Ruleset:
    from kpsim.formats.ipset import split_ipset, with_sets

    text, sets = split_ipset(text)
    # with sets, every chain is rewritten (lazy chains would all be built, each slower
    # than by the whole reader): such captures are read whole
    return with_sets(_parse_rules(text, path, fmt, strict, lazy and not sets, later), sets)


def _parse_rules(
    text: str, path: str, fmt: Format | None, strict: bool, lazy: bool, later: Later | None
) -> Ruleset:
    from kpsim.model import Format

    chosen = fmt or detect_format(text)
    if lazy and chosen is Format.SAVE:
        from kpsim.formats.iptables.lazy import lazy_save

        found = lazy_save(text, path, later)
        if found is not None:
            return found
    if chosen in (Format.SAVE, Format.RULES):
        from dataclasses import replace

        from kpsim.formats.iptables.save import parse_save

        ruleset = parse_save(text, path, strict=strict)
        return replace(ruleset, format=chosen)
    if chosen is Format.LIST:
        from kpsim.formats.iptables.listing import parse_list

        return parse_list(text, path, strict=strict)
    if chosen is Format.NFT:
        from kpsim.formats.nft.kube_proxy import is_kube_proxy_nft

        if is_kube_proxy_nft(text):  # kube-proxy's transaction in one pass, or read whole
            from kpsim.formats.nft.kp_lazy import read_kube_proxy

            return read_kube_proxy(text, path, strict=strict, lazy=lazy)
        from kpsim.formats.nft.iptables_nft import parse_nft

        return parse_nft(text, path, strict=strict)
    raise ParseError(path, 1, 1, "no iptables rules found (not iptables-save, -S, -L or nft text)")


def read_text(path: Path) -> str:
    """Read a capture; undecodable bytes become U+FFFD rather than a traceback.

    Decoded from a memory map of the file where there can be one: the kernel maps the
    cached file 64 KiB a fault, where a bytes copy costs a fault every 4 KiB (16 MB:
    4,300 page faults and 10-15 ms, against 8,200 and 20-44 ms, measured). A big input
    the command line named was read at start-up (``iptables.prescan``): that text is
    the one handed on when the file is the same, unchanged."""
    from kpsim.formats.iptables.prescan import early_text

    early = early_text(path)
    if early is not None:
        return early
    try:
        with path.open("rb") as file:
            try:
                with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
                    return str(view, "utf-8", "replace")
            except (ValueError, OSError):  # empty, a pipe, /proc: no map, read it
                return file.read().decode("utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def load_file(
    path: Path, *, fmt: Format | None = None, strict: bool = False, lazy: bool = False
) -> Ruleset:
    return parse_text(read_text(path), str(path), fmt=fmt, strict=strict, lazy=lazy)


def parse_captures(
    text: str,
    path: str,
    *,
    fmt: Format | None = None,
    strict: bool = False,
    lazy: bool = False,
    later: Later | None = None,
) -> tuple[Ruleset, ...]:
    """Every capture a text holds: one, or one per family when ``iptables-save`` and
    ``ip6tables-save`` output share the file (``sections.split_families``)."""
    from kpsim.formats.sections import split_families

    sections = split_families(text)
    if not sections:
        return (parse_text(text, path, fmt=fmt, strict=strict, lazy=lazy, later=later),)
    from dataclasses import replace

    out = []
    for family, part in sections:
        ruleset = parse_text(part, path, fmt=fmt, strict=strict, lazy=lazy, later=later)
        out.append(replace(ruleset, family=family))
    return tuple(out)


def load_captures(
    path: Path,
    *,
    fmt: Format | None = None,
    strict: bool = False,
    lazy: bool = False,
    later: Later | None = None,
) -> tuple[Ruleset, ...]:
    text = read_text(path)
    return parse_captures(text, str(path), fmt=fmt, strict=strict, lazy=lazy, later=later)


__all__ = [
    "detect_format",
    "load_captures",
    "load_file",
    "parse_captures",
    "parse_text",
    "read_text",
]
