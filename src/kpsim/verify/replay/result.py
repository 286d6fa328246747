"""What the kernel did, in the capture's own addresses.

Connection (one per attempt) ─▶ KernelResult.reached      {"10.11.11.70:80": 104, …}
                               KernelResult.masqueraded  {"10.11.11.70:80": 104, …}
                               refused / timed_out / unreachable / errors
iptables-save -c (after − before) ─▶ KernelResult.counters {("nat", "KUBE-SVC-…", 1): 300}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from kpsim.verify.replay.mapping import AddressMap

__all__ = ["Connection", "KernelResult", "RuleKey"]

#: (table, chain, 1-based rule number), as in the model and ``--line-numbers``.
RuleKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class Connection:
    """One attempt. ``destination``/``peer`` are original-address ``ip:port`` texts
    (a mapped address nothing maps back to is shown as ``mapped:…``)."""

    source: str
    sport: int
    status: str  # ok | refused | timeout | unreachable | error | skipped
    destination: str | None = None
    peer: str | None = None
    masquerade: bool = False  # the endpoint saw another source ip:port than the client's
    detail: str = ""


@dataclass(frozen=True, slots=True)
class KernelResult:
    """The kernel's answer to one probe (``port`` on ``dest``, both original)."""

    port: int
    dest: str
    sources: tuple[str, ...]
    from_node: bool
    connections: tuple[Connection, ...]
    address_map: AddressMap
    counters: Mapping[RuleKey, int]  # packets each rule matched during the probe (non-zero)
    notes: tuple[str, ...] = ()
    from_pod: str | None = None
    counted: bool = True  # False: the replayed rules keep no counters (nftables)

    @property
    def reached(self) -> Mapping[str, int]:
        """Connections answered, per endpoint (original ``ip:port``)."""
        c = Counter(x.destination for x in self.connections if x.status == "ok")
        return {k: v for k, v in sorted(c.items()) if k is not None}

    @property
    def masqueraded(self) -> Mapping[str, int]:
        """Per endpoint, how many answered connections arrived from a node address."""
        c = Counter(x.destination for x in self.connections if x.status == "ok" and x.masquerade)
        return {k: v for k, v in sorted(c.items()) if k is not None}

    def masquerade_seen(self, destination: str) -> bool | None:
        """True if every connection to ``destination`` was masqueraded, False if none
        was, None if it was mixed or never reached."""
        total = self.reached.get(destination, 0)
        masq = self.masqueraded.get(destination, 0)
        if total == 0 or 0 < masq < total:
            return None
        return masq == total

    def _count(self, status: str) -> int:
        return sum(1 for x in self.connections if x.status == status)

    @property
    def answered(self) -> int:
        return self._count("ok")

    @property
    def refused(self) -> int:
        return self._count("refused")

    @property
    def timed_out(self) -> int:
        return self._count("timeout")

    @property
    def unreachable(self) -> int:
        return self._count("unreachable")

    @property
    def errors(self) -> int:
        return self._count("error") + self._count("skipped")

    @property
    def shares(self) -> Mapping[str, Fraction]:
        """Observed share of each endpoint among all attempts."""
        n = len(self.connections)
        return {k: Fraction(v, n) for k, v in self.reached.items()} if n else {}
