"""What nftables has and iptables lacks, as model matches: set and map lookups keyed by
concatenations, and ``numgen random`` buckets.

    ip daddr . meta l4proto . th dport @set    ─▶ SetLookup(keys, elements)
    numgen random mod 3 vmap { 0 : goto A, … } ─▶ one rule per bucket, NumgenMatch(3, k, …)

A verdict map is read as one rule per element (its key as a one-element ``SetLookup``, its
verdict as the rule's target): the keys of a map are distinct, so at most one of those rules
can match, as at most one element of the map can. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

#: numgen draws a 32-bit random number r and takes bucket ⌊r·N / 2^32⌋ (reciprocal_scale).
NUMGEN_SCALE = 1 << 32


@lru_cache(maxsize=4096)
def _share(modulus: int, bucket: int) -> Fraction:
    """Cached (a Fraction is immutable): ``show`` asks for each of 50,000 endpoints' share,
    and 10,000 services of 5 endpoints have 5 distinct ones (~0.05 s saved, measured)."""
    return Fraction(numgen_count(modulus, bucket), NUMGEN_SCALE)


#: The key selectors kpsim evaluates, and the kind of value each compares.
KEY_KINDS = {
    "ip saddr": "addr",
    "ip daddr": "addr",
    "ip6 saddr": "addr",
    "ip6 daddr": "addr",
    "meta l4proto": "proto",
    "ip protocol": "proto",
    "th dport": "port",
    "th sport": "port",
    "tcp dport": "port",
    "tcp sport": "port",
    "udp dport": "port",
    "udp sport": "port",
    "sctp dport": "port",
    "sctp sport": "port",
}


@dataclass(frozen=True, slots=True)
class KeyPart:
    """One component of an element's key, as an inclusive integer interval: an address
    (or prefix, or range) as integers, a protocol number, a port (or range)."""

    lo: int
    hi: int
    text: str

    def contains(self, value: int) -> bool:
        return self.lo <= value <= self.hi


@dataclass(frozen=True, slots=True)
class SetLookup:
    """``KEYS @set`` / ``KEYS { … }`` (``!=``: negated): the flow's values of ``keys``,
    concatenated, are among ``elements``. ``dynamic`` sets (kube-proxy's affinity sets)
    hold what the kernel had when the capture was taken: their live elements."""

    name: str  # "@service-ips", or "{…}" for an anonymous set
    keys: tuple[str, ...]
    elements: tuple[tuple[KeyPart, ...], ...]
    negated: bool = False
    dynamic: bool = False
    text: str = ""


@dataclass(frozen=True, slots=True)
class NumgenMatch:
    """Bucket ``bucket`` of ``numgen random mod modulus offset offset``, lowered as a
    cascade: this rule runs only when the buckets in ``before`` were not drawn, so it
    matches with the conditional chance share(bucket) / (1 - Σ share(before)), and the
    cascade as a whole takes each bucket with exactly its share."""

    modulus: int
    bucket: int
    before: tuple[int, ...] = ()
    offset: int = 0

    @property
    def share(self) -> Fraction:
        """The kernel's exact chance of this bucket: a whole number over 2^32."""
        return _share(self.modulus, self.bucket - self.offset)

    @property
    def chance(self) -> Fraction:
        """The chance this rule matches, given the earlier buckets were not drawn."""
        left = NUMGEN_SCALE - sum(numgen_count(self.modulus, b - self.offset) for b in self.before)
        if left <= 0:
            return Fraction(0)
        return Fraction(numgen_count(self.modulus, self.bucket - self.offset), left)


def numgen_count(modulus: int, k: int) -> int:
    """How many of the 2^32 random values land in bucket ``k``: r with ⌊r·N/2^32⌋ = k,
    that is ⌈(k+1)·2^32/N⌉ − ⌈k·2^32/N⌉ (0 for a bucket outside [0, N))."""
    if modulus <= 0 or not 0 <= k < modulus:
        return 0
    return _ceil_div((k + 1) * NUMGEN_SCALE, modulus) - _ceil_div(k * NUMGEN_SCALE, modulus)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)
