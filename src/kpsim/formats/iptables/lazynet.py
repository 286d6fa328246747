"""A host network that ``ipaddress`` builds on first use.

Why: every KUBE-SEP chain matches its pod's own IP (``-s 10.1.2.3/32 -j
KUBE-MARK-MASQ``), so a 10,000-service dump holds 50,000 addresses seen once. Building
an ``IPv4Network`` costs 1.1 µs even from an int, this placeholder 0.14 µs (measured),
and ``kpsim show`` never looks inside most of them; a trace does, and then gets the
very object ``IPv4Network`` would have built.

It *is* an ``IPv4Network`` (isinstance, equality, hashing, ordering, str, repr and
pickling all as one): the first read of any attribute runs ``IPv4Network.__init__``
on the stored argument. ``tests/test_lazynet.py`` compares it with ``IPv4Network``
attribute by attribute.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network


class LazyIPv4Network(IPv4Network):
    """``IPv4Network(address)`` for a host address the caller has already checked."""

    def __init__(self, address: int) -> None:
        # IPv4Network.__init__ runs on first use. A plain attribute, not ``__dict__[…]``:
        # the instance keeps its values inline, 121 bytes against 185 (measured).
        self._pending = address

    def _resolve(self) -> bool:
        """Build the network now; False when it was built already."""
        pending = self.__dict__.pop("_pending", None)
        if pending is None:
            return False
        IPv4Network.__init__(self, pending)
        return True

    def __getattr__(self, name: str) -> object:
        # only called for attributes not set yet: network_address, netmask, _prefixlen
        if self._resolve():
            return getattr(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def hosts(self) -> Iterator[IPv4Address]:
        """``IPv4Network.__init__`` replaces ``hosts`` for /31 and /32 networks."""
        self._resolve()
        own = self.__dict__.get("hosts")
        return own() if own is not None else IPv4Network.hosts(self)

    def __repr__(self) -> str:
        return f"IPv4Network({str(self)!r})"

    def __reduce__(self) -> tuple[type[IPv4Network], tuple[str]]:
        return IPv4Network, (str(self),)
