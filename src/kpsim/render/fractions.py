"""One notation for exact shares in text: ``715827883/2^31`` (a power of two spelled as
``2^k``, the kernel's own scale), other denominators as they are; percentages to two
decimals. JSON keeps ``n/d`` (render/json.py)."""

from __future__ import annotations

from fractions import Fraction


def exact(f: Fraction, over: int | None = None) -> str:
    """``715827883/2^31``; ``1/2`` stays ``1/2`` (``2^1`` reads worse); a whole as ``1``
    (as graph.model.fraction_text writes it). ``over``, a power of two: a share that is a
    whole number of its parts is written over it (nftables' numgen: ``1431655766/2^32``,
    not the reduced ``715827883/2^31``, beside ``1431655765/2^32``)."""
    den = f.denominator
    if over is not None and den != 1 and over % den == 0:
        return f"{f.numerator * (over // den)}/2^{over.bit_length() - 1}"
    if den == 1:
        return str(f.numerator)
    if den > 2 and den & (den - 1) == 0:
        return f"{f.numerator}/2^{den.bit_length() - 1}"
    return f"{f.numerator}/{den}"


def pct(f: Fraction | float) -> str:
    return f"{float(f) * 100:.2f}%"
