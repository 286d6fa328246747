"""Regex words the fast path (``fast``) and the scan (``lazy_scan``) share.

Standard library only, as is ``lazy_scan``: the prescan's child process
(``prescan``) imports the scanner in a few milliseconds, where ``fast`` would bring the
model with it (~0.08 s of imports before the first line is scanned, measured)."""

from __future__ import annotations

#: A dotted quad exactly as ipaddress accepts it (no leading zeros), so no address the
#: regex lets through can fail later; a prefix length 0-32 without leading zeros. An
#: octet is 0-255 written as a tree on its first digit, each branch possessive (a digit
#: follows an octet nowhere): ``re`` tries one branch where ``25[0-5]|2[0-4]\d|1\d\d|
#: [1-9]?\d`` tried up to four and backtracked, the scan of a 10,000-service dump 102 →
#: 92 ms (measured); the same 256 strings (``tests/test_patterns.py``).
OCTET = r"(?:1\d{0,2}+|2(?:[0-4]\d?+|5[0-5]?+|[6-9])?+|[3-9]\d?+|0)"
IP = rf"{OCTET}\.{OCTET}\.{OCTET}\.{OCTET}"
NET = IP + r"(?:/(?:3[0-2]|[12]?\d))?"
#: Possessive (3.11+): a failing line fails fast, without backtracking. ASCII only: the
#: Unicode ``\w`` class costs 15% more over a whole dump (measured); any other name
#: simply takes the general path. Every part is bounded (a name, a number, a comment in
#: ``fast._comment``), so no line the general path finds too long (``MAX_LINE``) is
#: taken by the fast path.
NAME = r"[A-Za-z0-9_.-]{1,128}+"
