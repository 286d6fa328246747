"""``LazyIPv4Network`` is an ``IPv4Network`` in every way a caller can observe.

Each property is read first on a fresh lazy object (so that read is the one that
builds it), then all of them again; the answers must equal ``IPv4Network``'s.
"""

from __future__ import annotations

import copy
import pickle
from ipaddress import IPv4Address, IPv4Network, collapse_addresses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpsim.formats.iptables.fast import FastRules
from kpsim.formats.iptables.lazynet import LazyIPv4Network
from kpsim.model import Address

READS = {
    "str": str,
    "repr": repr,
    "hash": hash,
    "prefixlen": lambda n: n.prefixlen,
    "network_address": lambda n: n.network_address,
    "netmask": lambda n: n.netmask,
    "broadcast_address": lambda n: n.broadcast_address,
    "hostmask": lambda n: n.hostmask,
    "num_addresses": lambda n: n.num_addresses,
    "hosts": lambda n: list(n.hosts()),
    "iter": list,
    "with_prefixlen": lambda n: n.with_prefixlen,
    "is_private": lambda n: n.is_private,
    "contains own address": lambda n: n.network_address in n,
    "contains 10.0.0.1": lambda n: IPv4Address("10.0.0.1") in n,
    "supernet": lambda n: n.supernet(),
    "subnet_of /8": lambda n: n.subnet_of(IPv4Network("10.0.0.0/8")),
    "equal": lambda n: n == IPv4Network(int(n.network_address)),
    "less than /0": lambda n: n < IPv4Network("0.0.0.0/0"),
    "collapse": lambda n: list(collapse_addresses([n])),
    "pickle": lambda n: pickle.loads(pickle.dumps(n)),
    "deepcopy": copy.deepcopy,
    "in an Address": lambda n: Address(n) == Address(IPv4Network(int(n.network_address))),
}

addresses = st.integers(0, 2**32 - 1)


@pytest.mark.parametrize("read", READS, ids=str)
@given(number=addresses)
def test_first_read_builds_the_same_network(read: str, number: int) -> None:
    lazy, real = LazyIPv4Network(number), IPv4Network(number)
    assert READS[read](lazy) == READS[read](real)  # this read builds it
    for name, how in READS.items():
        assert how(lazy) == how(real), name


@given(number=addresses)
def test_is_an_ipv4network(number: int) -> None:
    lazy = LazyIPv4Network(number)
    assert isinstance(lazy, IPv4Network)
    assert type(pickle.loads(pickle.dumps(lazy))) is IPv4Network
    assert {lazy: 1}[IPv4Network(number)] == 1
    with pytest.raises(AttributeError):
        _ = lazy.no_such_attribute  # type: ignore[attr-defined]


def test_the_parser_leaves_host_addresses_unbuilt() -> None:
    """What makes it worth having: ``show`` never builds a SEP chain's pod address."""
    fast = FastRules(frozenset())
    found = fast.shape("-A KUBE-SEP-X -s 10.1.2.3/32 -j KUBE-MARK-MASQ")
    assert found is not None
    source = found[2]
    assert source is not None and isinstance(source.network, LazyIPv4Network)
    assert "_pending" in source.network.__dict__
    assert source == Address(IPv4Network("10.1.2.3/32"))
