"""``services`` of a capture read on demand, its endpoint and service chains answered from
their vouched lines (``formats.iptables.lazy_text``) instead of their rules.

Why: a 10,000-service dump's 60,000 KUBE-SVC/KUBE-SEP chains hold 150,000 rules, and
``services`` reads only each endpoint jump's statistic and each endpoint's DNAT
destination; building those rules for it took most of ``show`` (~1 s, measured).

The same ``Service`` values as ``services.services``, or the same path: a chain with a rule
read at once is read from its rules (``_ServiceBuilder``); one with ``-m recent`` (session
affinity) or without an endpoint jump from its lines' fields (``TableText.fields``);
frontends come off KUBE-SERVICES' sketch (``kube.frontends``), names are read as ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from kpsim.formats.iptables.lazy_text import TableText, table_text
from kpsim.formats.numbers import probability
from kpsim.kube.chance import cascade_shares, matches_chance
from kpsim.kube.service import Endpoint, Service
from kpsim.kube.services import _Facts, _new_endpoint, _ServiceBuilder, services
from kpsim.model import Chain, Ruleset, StatisticMatch, StatisticMode


def fast_services(ruleset: Ruleset) -> tuple[Service, ...]:
    """``services(ruleset)``, reading deferred service and endpoint chains from their text
    when the nat table was read on demand."""
    nat = ruleset.table("nat")
    text = table_text(nat) if nat is not None else None
    if text is None:
        return services(ruleset)

    def builder_of(chains: Mapping[str, Chain], gaps: frozenset[str]) -> _ServiceBuilder:
        return _TextBuilder(chains, gaps, text)

    return services(ruleset, builder_of)


class _TextBuilder(_ServiceBuilder):
    """``_ServiceBuilder`` whose endpoints and destinations come from the text."""

    def __init__(self, nat: Mapping[str, Chain], gaps: frozenset[str], text: TableText) -> None:
        super().__init__(nat, gaps)
        self.text = text
        self.jumps = text.sep_jumps()
        self.dests = text.dnat()
        # no endpoint chain with a rule read at once: each destination is its text's
        # (``destination``), looked up in C: 0.04 s less for 50,000 endpoints (measured)
        plain = not any(name.startswith("KUBE-SEP-") for name in text.eager)
        self._destination = self.dests.get if plain else self.destination
        self._chances: dict[str, tuple[int, int]] = {}
        self._by_text: dict[tuple[str, ...], list[Fraction]] = {}

    def endpoints(self, chain: Chain | None) -> tuple[tuple[Endpoint, ...], _Facts | None]:
        if chain is None:
            return (), None
        if not self.text.deferred_only(chain.name):
            return super().endpoints(chain)
        found = self.jumps.get(chain.name)
        if found is None:  # with session affinity, or no endpoint jump
            return self._from_fields(chain)
        probabilities, seps = found
        key = tuple(probabilities)
        shares = self._by_text.get(key)
        if shares is None:
            shares = self._by_text[key] = cascade_shares(map(self._chance, probabilities))
        dests = map(self._destination, seps)
        return tuple(map(_new_endpoint, seps, dests, shares)), None

    def _from_fields(self, chain: Chain) -> tuple[tuple[Endpoint, ...], _Facts | None]:
        """``_ServiceBuilder.endpoints`` off the chain's lines (``TableText.fields``): a
        vouched line has at most one recent match and one statistic."""
        rows = self.text.fields(chain.name, "recent", "seconds", "probability", "jump")
        if rows is None:
            return super().endpoints(chain)
        probabilities: list[str] = []
        seps: list[str] = []
        rcheck = None
        for recent, seconds, chance, jump in rows:
            if recent is not None:  # needs a client's history: its last --rcheck counts
                if seconds is not None:
                    rcheck = _Facts(False, self._chance(chance or ""), True, int(seconds))
            elif jump is not None and jump.startswith("KUBE-SEP-"):
                probabilities.append(chance or "")
                seps.append(jump)
        shares = cascade_shares(map(self._chance, probabilities))
        dests = map(self._destination, seps)
        return tuple(map(_new_endpoint, seps, dests, shares)), rcheck

    def _chance(self, text: str) -> tuple[int, int]:
        """``matches_chance`` of the statistic the fast path builds from ``text``."""
        found = self._chances.get(text)
        if found is None:
            matches = (StatisticMatch(StatisticMode.RANDOM, probability(text)),) if text else ()
            found = self._chances[text] = matches_chance(matches, False)
        return found

    def destination(self, sep_chain: str) -> str | None:
        if sep_chain not in self.nat:
            return None
        if self.text.deferred_only(sep_chain):
            return self.dests.get(sep_chain)
        return super().destination(sep_chain)
