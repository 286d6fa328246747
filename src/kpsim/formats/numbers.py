"""Numbers and quoted words in captures, read by explicit grammars with a range each.

    decimal("30080", PORT_MAX) → 30080        [0-9]+ only, at most ``maximum``
    decimal("²", PORT_MAX)     → None         str.isdigit() says yes; int() says no
    decimal("٣", PORT_MAX)     → None         int() reads Arabic-Indic digits; iptables does not
    decimal("9" * 5000, U64)   → None         never int() of 4,300+ digits (ValueError)
    hexadecimal("0x4000", U32) → 16384        0x[0-9a-fA-F]+
    strtoul("040000", U32)     → 16384        as iptables reads marks: 0x…, 0… (octal), …

Every reader goes through these, never through ``int()``, ``float()`` or ``str.isdigit``
on input text: a bad number is a ``BadNumber`` (a ``ValueError``) whose message a reader
turns into a diagnostic at the number's column. ``shown`` quotes input text in a message
without carrying megabytes of it.
"""

from __future__ import annotations

import math
import re

from kpsim.model import Counters, probability_threshold

U8 = 0xFF
PORT_MAX = 0xFFFF
U32 = 0xFFFF_FFFF
U64 = 0xFFFF_FFFF_FFFF_FFFF
#: Digits of the largest number any reader accepts (U64: 20), past leading zeros.
_MAX_DIGITS = 20

_HEX_RE = re.compile(r"0[xX]([0-9a-fA-F]+)")
_OCTAL_RE = re.compile(r"0([0-7]*)")
#: strtod's decimal form, ASCII only (no "nan", "inf", hex floats, "_" or Unicode digits).
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: How many characters of input text a message quotes.
SHOWN = 40


class BadNumber(ValueError):
    """A number outside its grammar or range; the message says which."""


def shown(text: str, limit: int = SHOWN) -> str:
    """``repr(text)``, cut to about ``limit`` characters with "…": messages quote input,
    and input can be a 50 MB line."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + "…"


def clip(text: str, limit: int = SHOWN) -> str:
    """``text`` cut to ``limit`` characters with "…" (``shown`` without the quotes)."""
    return text if len(text) <= limit else text[:limit] + "…"


def is_decimal(text: str) -> bool:
    """``[0-9]+``: ASCII digits only (``str.isdigit`` also takes ``²`` and ``٣``)."""
    return text.isascii() and text.isdigit()


def decimal(text: str, maximum: int) -> int | None:
    """The value of ``[0-9]+`` text when it is at most ``maximum``, else None."""
    if not (text.isascii() and text.isdigit()):
        return None
    if len(text) > _MAX_DIGITS:
        text = text.lstrip("0") or "0"
        if len(text) > _MAX_DIGITS:
            return None
    value = int(text)
    return value if value <= maximum else None


def read_decimal(text: str, maximum: int, what: str) -> int:
    """``decimal`` or BadNumber: "bad port '70000' (0-65535)"."""
    value = decimal(text, maximum)
    if value is None:
        raise BadNumber(f"bad {what} {shown(text)} (0-{maximum})")
    return value


def hexadecimal(text: str, maximum: int) -> int | None:
    """The value of ``0x[0-9a-fA-F]+`` text when it is at most ``maximum``, else None."""
    match = _HEX_RE.fullmatch(text)
    if match is None:
        return None
    digits = match[1].lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:
        return None
    value = int(digits, 16)
    return value if value <= maximum else None


def read_hex(text: str, maximum: int, what: str) -> int:
    value = hexadecimal(text, maximum)
    if value is None:
        raise BadNumber(f"bad {what} {shown(text)} (0x0-{maximum:#x})")
    return value


def strtoul(text: str, maximum: int) -> int | None:
    """``0x…`` hexadecimal, ``0…`` octal, else decimal, as C's strtoul with base 0
    (which iptables uses for marks) reads a whole word; None when not one or too big."""
    if text[:2] in ("0x", "0X"):
        return hexadecimal(text, maximum)
    octal = _OCTAL_RE.fullmatch(text)
    if octal is not None:
        digits = octal[1].lstrip("0") or "0"
        if len(digits) > 2 * _MAX_DIGITS:
            return None
        value = int(digits, 8)
        return value if value <= maximum else None
    return decimal(text, maximum)


#: What a reader says of ``[packets:bytes]`` or ``-c packets bytes`` it cannot read.
BAD_COUNTERS = "counters must be two numbers (0 to 2^64-1)"


def counters(packets: str, octets: str) -> Counters | None:
    """Packet and byte counters, each ``[0-9]+`` up to 2^64-1; else None."""
    counted, octets_counted = decimal(packets, U64), decimal(octets, U64)
    if counted is None or octets_counted is None:
        return None
    return Counters(counted, octets_counted)


def probability(text: str) -> int:
    """The kernel's threshold for ``--probability text`` (``probability_threshold``), for a
    decimal number in [0, 1]; BadNumber for anything else ("nan", "0x1p-1", "٠.٥", 1.5)."""
    if _FLOAT_RE.fullmatch(text) is None:
        raise BadNumber(f"bad probability {shown(text)}")
    value = float(text)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise BadNumber(f"probability {shown(text)} out of range [0, 1]")
    return probability_threshold(text)


__all__ = [
    "BAD_COUNTERS",
    "PORT_MAX",
    "U8",
    "U32",
    "U64",
    "BadNumber",
    "clip",
    "counters",
    "decimal",
    "hexadecimal",
    "is_decimal",
    "probability",
    "read_decimal",
    "read_hex",
    "shown",
    "strtoul",
]
