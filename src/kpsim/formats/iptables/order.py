"""A chain's rules in the order ``-A`` and ``-I N`` lines leave them, in O(n log n).

    -A X a   -A X b   -I X 1 c   -A X d   -I X 2 e      →   c e a b d

``list.insert`` at the front of a long chain moves every rule after it: a dump of a
million ``-I X 1`` lines took minutes. Rules are kept in the order they came, each with
the index it went in at (an append goes in at the end: the number of rules before it);
``settle`` then places them last first, each in the free slot its index names (a
Fenwick tree over the slots finds the k-th free one), which is where it ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")
_FEW = 64


def settle(arrived: Sequence[T], inserted: Mapping[int, int]) -> list[T]:
    """``arrived[i]`` went in at index ``inserted.get(i, i)`` (at most ``i``) of the
    ``i`` items before it; the items in their final order."""
    if len(inserted) <= _FEW:  # a few list inserts beat a tree built over every slot
        out_: list[T] = []
        for i, item in enumerate(arrived):
            out_.insert(inserted.get(i, i), item)
        return out_
    n = len(arrived)
    tree = [0] * (n + 1)  # Fenwick tree: 1 for each free slot
    for i in range(1, n + 1):
        tree[i] += 1
        parent = i + (i & -i)
        if parent <= n:
            tree[parent] += tree[i]
    top = 1 << n.bit_length()
    out: list[T | None] = [None] * n
    for i in range(n - 1, -1, -1):
        k = inserted.get(i, i) + 1  # the k-th free slot, counting from 1
        slot = 0
        step = top
        while step:
            probe = slot + step
            if probe <= n and tree[probe] < k:
                slot = probe
                k -= tree[probe]
            step >>= 1
        out[slot] = arrived[i]
        j = slot + 1
        while j <= n:
            tree[j] -= 1
            j += j & -j
    return out  # type: ignore[return-value]  # every slot is filled once
