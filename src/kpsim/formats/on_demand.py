"""A table's chains made when first looked up: the ``Table.chains`` of a capture read on
demand (``iptables.lazy``).

    ChainsOnDemand ─ {name: Chain made | recipe}, in declaration order
        m["KUBE-SVC-X"] ─▶ make(["KUBE-SVC-X"], [recipe]) ─▶ stored in the recipe's place
        m.values() / m.items() / m == other ─▶ every recipe made at once (one ``make``)

Why: a 10,000-service dump declares 61,000 chains and ``trace`` reads ~30 of them;
creating an object for each one cost 0.068 s of a 0.55 s trace (pyinstrument), and a dict
of recipes is built by ``dict.fromkeys`` in C.

It reads as a ``MappingProxyType`` of the dict it stands for: keys in the same order,
read only, equal (both ways) to any mapping of the same chains, unhashable, ``copy()``
and ``|`` give a dict. Names (``len``, ``in``, ``keys()``, iteration) are answered by the
dict without making anything; a chain is made once and the same object returned after.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from itertools import compress, repeat
from operator import not_
from typing import Any, Generic, TypeVar, cast

from kpsim.model import Chain

R = TypeVar("R")

#: ``make(names, recipes)``: a chain for each name, from its recipe, in that order.
Make = Callable[[list[str], list[R]], Iterable[Chain]]


class ChainsOnDemand(Mapping[str, Chain], Generic[R]):
    """A read-only mapping of chain names to chains, each made from its recipe (any
    value that is not a ``Chain``) the first time it is looked up."""

    __slots__ = ("_chains", "_make", "_pending")

    def __init__(self, chains: dict[str, Chain | R], make: Make[R]) -> None:
        """``chains`` is taken over, not copied: nobody else may change it."""
        self._chains = chains
        self._make = make
        self._pending = True  # some value may still be a recipe

    def __getitem__(self, name: str) -> Chain:
        found = self._chains[name]
        if isinstance(found, Chain):
            return found
        (made,) = self._make([name], [found])
        self._chains[name] = made  # an existing key: the order stays, iterators go on
        return made

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self._chains else default

    def __contains__(self, name: object) -> bool:
        return name in self._chains

    def __len__(self) -> int:
        return len(self._chains)

    def __iter__(self) -> Iterator[str]:
        return iter(self._chains)

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._chains)

    def keys(self) -> KeysView[str]:
        return self._chains.keys()

    def values(self) -> ValuesView[Chain]:
        return self._whole().values()

    def items(self) -> ItemsView[str, Chain]:
        return self._whole().items()

    def stored(self) -> ValuesView[Chain | R]:
        """What is kept for each name, in order: the chain if made, else its recipe (for
        a reader that wants its own recipes back without making anything)."""
        return self._chains.values()

    def made(self) -> int:
        """How many chains exist so far (made, or given as chains)."""
        if not self._pending:
            return len(self._chains)
        return sum(map(isinstance, self._chains.values(), repeat(Chain)))

    def _whole(self) -> dict[str, Chain]:
        """The dict with every recipe made: the names still pending picked in C, then one
        ``make`` for all of them, stored in place (a chain made earlier stays itself)."""
        chains = self._chains
        if self._pending:
            made = map(isinstance, chains.values(), repeat(Chain))
            names = list(compress(chains, map(not_, made)))
            if names:
                recipes = cast(list[R], list(map(chains.__getitem__, names)))
                chains.update(zip(names, self._make(names, recipes), strict=True))
            self._pending = False
        return chains  # type: ignore[return-value]  # every value is a Chain now

    def __eq__(self, other: object) -> bool:
        # as a mapping proxy: the dict's comparison, which hands a mapping that is no
        # dict back to its own ``__eq__`` (this one, reflected, for two of these)
        return self._whole() == other

    __hash__ = None  # type: ignore[assignment]  # as a mapping proxy: a mutable dict's

    def copy(self) -> dict[str, Chain]:
        return dict(self._whole())

    def __or__(self, other: Mapping[str, Chain]) -> dict[str, Chain]:
        return {**self._whole(), **other}

    def __ror__(self, other: Mapping[str, Chain]) -> dict[str, Chain]:
        return {**other, **self._whole()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self._chains)} chains, {self.made()} made>)"

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")  # as a mapping proxy
