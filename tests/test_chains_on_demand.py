"""A lazily read table's chains (``formats.on_demand.ChainsOnDemand``) are made when first
looked up, once, and the mapping reads as the whole reader's ``MappingProxyType``: same
names in declaration order, equal both ways, read only. Random look-up sequences (by
hypothesis) against a plain dict: the same answers, each chain made once, never one more
than was asked for.
"""

from __future__ import annotations

import copy
import pickle
import re
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpsim.formats import parse_captures
from kpsim.formats.iptables.lazy import LazyChain, lazy_save
from kpsim.formats.iptables.lazy_text import table_text
from kpsim.formats.on_demand import ChainsOnDemand, Recipe
from kpsim.inputs import synth
from kpsim.model import BUILTIN_CHAINS, Chain, Ruleset, Table


def _dump() -> str:
    cluster = synth.synth_large(40, 3, seed=11)
    return synth.render_restore(cluster, cluster.nodes[0])


_TEXT = _dump()


def _lazy() -> Ruleset:
    found = lazy_save(_TEXT, "d")
    assert found is not None  # a clean dump: read on demand
    return found


def _whole() -> Ruleset:
    return parse_captures(_TEXT, "d")[0]


def _nat(rs: Ruleset) -> ChainsOnDemand:
    chains = rs.tables["nat"].chains
    assert isinstance(chains, ChainsOnDemand)
    return chains


def _pending(chains: ChainsOnDemand) -> list[str]:
    return [n for n, v in zip(chains, chains.stored(), strict=True) if not isinstance(v, Chain)]


def test_nothing_is_made_to_read_names() -> None:
    rs = _lazy()
    chains = _nat(rs)
    made = chains.made()
    assert made < len(chains) - 100  # declared chains wait for their first look-up
    made_lazy = {c.name for c in chains.stored() if type(c) is LazyChain}
    assert made_lazy <= set(BUILTIN_CHAINS["nat"])  # only those declared with a policy
    names = list(chains)
    assert len(names) == len(chains) == len(chains.keys())
    assert all(n in chains for n in names) and "NOPE" not in chains
    assert list(reversed(chains)) == names[::-1]
    assert table_text(rs.tables["nat"]) is not None  # finds its source in a recipe
    assert rs.chain("nat", "NOPE") is None
    assert chains.made() == made


def test_a_chain_is_made_on_its_first_look_up_and_kept() -> None:
    chains = _nat(_lazy())
    made = chains.made()
    pending = _pending(chains)
    first, second, third = pending[0], pending[len(pending) // 2], pending[-1]
    a = chains[first]
    assert chains.made() == made + 1
    assert type(a) is LazyChain and a.name == first
    assert chains[first] is a and chains.get(first) is a
    b, c = chains.get(second), chains[third]
    assert chains.made() == made + 3
    assert chains.get("NOPE") is None and chains.get("NOPE", a) is a
    with pytest.raises(KeyError):
        chains["NOPE"]
    assert a.rules == _whole().tables["nat"].chains[first].rules  # built as whole
    assert chains[first] is a  # a plain Chain now, the same object
    values = list(chains.values())  # every other one made; these three kept
    assert chains.made() == len(chains) == len(values)
    assert values[list(chains).index(first)] is a
    assert dict(chains.items())[second] is b and dict(chains)[third] is c


def test_names_in_declaration_order_as_the_whole_reader() -> None:
    lazy, whole = _lazy(), _whole()
    for tname, table in whole.tables.items():
        assert list(lazy.tables[tname].chains) == list(table.chains)
    declared = re.findall(
        r"^:(\S+) - \[0:0\]$", _TEXT.split("*nat\n")[1].split("\nCOMMIT")[0], re.MULTILINE
    )
    assert [n for n in _nat(lazy) if n in set(declared)] == declared


@pytest.mark.parametrize("order", ["lazy first", "whole first"])
def test_equal_both_ways_to_the_whole_reader(order: str) -> None:
    whole = _whole()
    for tname, table in whole.tables.items():
        lazy = _lazy().tables[tname]  # fresh: nothing made before the comparison
        assert isinstance(table.chains, MappingProxyType)
        if order == "lazy first":
            assert lazy == table and lazy.chains == table.chains
            assert (lazy.chains != table.chains) is False
        else:
            assert table == lazy and table.chains == lazy.chains
    assert _lazy() == whole and whole == _lazy()  # Ruleset: tables, capture, metadata…
    a, b = _lazy(), _lazy()
    assert a.tables["nat"].chains == b.tables["nat"].chains  # two of these
    assert a.tables["nat"] == b.tables["nat"] == whole.tables["nat"]
    changed = dict(whole.tables["nat"].chains)
    changed.popitem()
    assert a.tables["nat"].chains != changed and changed != b.tables["nat"].chains


def test_read_only_unhashable_and_not_pickled_as_a_mapping_proxy() -> None:
    table = _lazy().tables["nat"]
    chains = _nat(_lazy())
    with pytest.raises(TypeError):
        chains["X"] = Chain("X")  # type: ignore[index]
    with pytest.raises(TypeError):
        hash(chains)
    with pytest.raises(TypeError):
        hash(table)
    with pytest.raises(TypeError):
        pickle.dumps(chains)
    with pytest.raises(TypeError):
        copy.deepcopy(table)
    with pytest.raises((AttributeError, TypeError)):
        chains.extra = 1  # type: ignore[attr-defined]
    assert copy.copy(table).chains is table.chains  # a shallow copy shares the mapping
    assert replace(table, name="x").chains is table.chains
    whole = _whole().tables["nat"].chains
    assert dict(chains) == dict(whole) and list(dict(_nat(_lazy()))) == list(whole)
    assert chains.copy() == whole.copy() and type(chains.copy()) is dict
    assert (chains | {}) == (whole | {}) and ({} | chains) == ({} | whole)


def test_a_table_read_whole_is_left_a_mapping_proxy() -> None:
    text = _TEXT.replace("-A KUBE-SERVICES ", "-I KUBE-SERVICES ", 1)  # not vouched for
    assert lazy_save(text, "d") is None
    rs = parse_captures(text, "d", lazy=True)[0]
    assert isinstance(rs.tables["nat"].chains, MappingProxyType)


# ---------------------------------------------------------------- the mapping alone


def _make(calls: list[str]) -> Callable[..., Chain]:
    def make(name: str, policy: None, counters: None) -> Chain:
        calls.append(name)
        return Chain(name, (), policy, counters)

    return make


_NAMES = [f"C{i}" for i in range(12)]
_OPS = st.lists(
    st.tuples(st.sampled_from(["get", "item", "in", "values", "items", "eq"]),
              st.sampled_from([*_NAMES, "NOPE"])),
    max_size=30,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(_OPS, st.sets(st.sampled_from(_NAMES)))
def test_random_look_ups_answer_as_a_dict_and_make_each_chain_once(
    ops: list[tuple[str, str]], given_made: set[str]
) -> None:
    calls: list[str] = []
    stored: dict[str, Chain | Recipe] = {n: Chain(n) if n in given_made else (None, None)
                                         for n in _NAMES}  # fmt: skip
    chains = ChainsOnDemand(stored, _make(calls))
    expected = {n: Chain(n) for n in _NAMES}
    seen: dict[str, Chain] = {}
    whole = False
    for op, name in ops:
        if op == "get":
            got = chains.get(name)
            assert got == expected.get(name)
        elif op == "item":
            if name in expected:
                got = chains[name]
                assert got == expected[name]
            else:
                with pytest.raises(KeyError):
                    chains[name]
                got = None
        elif op == "in":
            assert (name in chains) == (name in expected)
            got = None
        else:
            if op == "values":
                assert list(chains.values()) == list(expected.values())
            elif op == "items":
                assert list(chains.items()) == list(expected.items())
            else:
                assert chains == expected and expected == chains
            whole, got = True, None
        if got is not None:
            assert seen.setdefault(name, got) is got  # the same object every time
        assert list(chains) == _NAMES
        made = [n for n, v in zip(chains, chains.stored(), strict=True) if isinstance(v, Chain)]
        wanted = set(_NAMES) if whole else given_made | {n for n in seen}
        assert set(made) == wanted  # never one more than was asked for
        for n in seen:
            assert chains[n] is seen[n]
    assert len(calls) == len(set(calls)) and not set(calls) & given_made  # each made once
    assert set(calls) == set(_NAMES) - given_made if whole else set(calls) == set(seen) - given_made


def test_table_dataclass_takes_it() -> None:
    calls: list[str] = []
    chains = ChainsOnDemand({"A": (None, None), "B": (None, None)}, _make(calls))
    assert Table("t", chains) == Table("t", MappingProxyType({"A": Chain("A"), "B": Chain("B")}))
    assert "2 chains" in repr(chains)
