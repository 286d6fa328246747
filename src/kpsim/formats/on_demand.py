"""A table's chains made when first looked up: the ``Table.chains`` of a capture read on
demand (``iptables.lazy``).

    ChainsOnDemand ─ {name: Chain made | recipe}, in declaration order
        m["KUBE-SVC-X"] ─▶ make("KUBE-SVC-X", *recipe) ─▶ stored in the recipe's place
        m.values() / m.items() / m == other ─▶ every recipe made at once (one ``map``)

Why: a 10,000-service dump declares 61,000 chains and ``trace`` reads ~30 of them;
creating an object for each one cost 0.068 s of a 0.55 s trace (pyinstrument), where a
dict of recipes is one ``dict.fromkeys`` in C.

It reads as a ``MappingProxyType`` of the dict it stands for: keys in the same order,
read only, equal (both ways) to any mapping of the same chains, unhashable, not pickled;
``copy()`` and ``|`` give a dict. Names (``len``, ``in``, ``keys()``, iteration) are
answered by the dict without making anything; a chain is made once, the same object
returned after.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from itertools import compress, repeat
from typing import Any, cast

from kpsim.model import Chain

#: How a chain not made yet is kept: the arguments after its name that ``make`` takes (a
#: tuple is a recipe, anything else a chain).
Recipe = tuple[Any, ...]


class ChainsOnDemand(Mapping[str, Chain]):
    """A read-only mapping of chain names to chains, each kept as its recipe until first
    looked up, then made by ``make(name, *recipe)`` (a generated constructor,
    ``iptables.construct``)."""

    __slots__ = ("_chains", "_make", "_pending")

    def __init__(self, chains: dict[str, Chain | Recipe], make: Callable[..., Chain]) -> None:
        """``chains`` is taken over, not copied: nobody else may change it."""
        self._chains = chains
        self._make = make
        self._pending = True  # some value may still be a recipe

    def __getitem__(self, name: str) -> Chain:
        found = self._chains[name]
        if not isinstance(found, tuple):
            return found
        made = self._chains[name] = self._make(name, *found)  # a key's value: order stays
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

    def stored(self) -> ValuesView[Chain | Recipe]:
        """What is kept for each name, in order: the chain if made, else its recipe (for
        a reader that wants its own recipes back without making anything)."""
        return self._chains.values()

    def made(self) -> int:
        """How many chains exist so far (made, or given as chains)."""
        if not self._pending:
            return len(self._chains)
        return len(self._chains) - sum(map(isinstance, self._chains.values(), repeat(tuple)))

    def _whole(self) -> dict[str, Chain]:
        """The dict with every recipe made, in C but for ``make`` itself: the names still
        pending and their recipes picked by one list of flags, one ``map`` (a chain made
        earlier stays itself). A table's recipes are mostly one shared tuple (every
        declared chain's, ``iptables.lazy``): then its arguments are repeated rather than
        61,000 recipes turned into columns (6 ms, measured)."""
        chains = self._chains
        if self._pending:
            flags = list(map(isinstance, chains.values(), repeat(tuple)))
            names = list(compress(chains, flags))
            if names:
                recipes = cast(list[Recipe], list(compress(chains.values(), flags)))
                shared = recipes.count(recipes[0]) == len(recipes)  # by identity first
                columns = map(repeat, recipes[0]) if shared else zip(*recipes, strict=True)
                enabled = gc.isenabled()  # chains hold no cycle: the collector would only
                gc.disable()  # rescan them: ~35 → ~28 ms for 61,000 (measured, best of 8)
                try:
                    chains.update(zip(names, map(self._make, names, *columns), strict=True))
                finally:
                    if enabled:
                        gc.enable()
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
