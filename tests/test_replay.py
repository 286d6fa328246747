"""kpsim.verify.replay without a kernel: the address map and the API's refusals."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpsim.formats import load_file, parse_text
from kpsim.formats.iptables.write import render_save
from kpsim.model import Dnat, Ruleset, Snat
from kpsim.verify import replay as rp
from kpsim.verify.replay import MappingError, build_map, map_ruleset

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "fixtures/iptables/eks-nodeport-workshop").glob("*/iptables-save.txt"))
SPACE = ipaddress.ip_network("198.18.0.0/15")
V4 = ipaddress.IPv4Address


def rules(*lines: str) -> Ruleset:
    text = "*nat\n:PREROUTING ACCEPT [0:0]\n:X - [0:0]\n" + "\n".join(lines) + "\nCOMMIT\n"
    return parse_text(text, "test")


def addresses_in(rs: Ruleset) -> list[ipaddress.IPv4Network]:
    """Every address a rule holds: -s/-d and DNAT/SNAT ranges."""
    out: list[ipaddress.IPv4Network] = []
    for t in rs.tables.values():
        for c in t.chains.values():
            for r in c.rules:
                for a in (r.source, r.destination):
                    if a is not None and isinstance(a.network, ipaddress.IPv4Network):
                        out.append(a.network)
                if isinstance(r.target, Dnat | Snat):
                    out += [ipaddress.ip_network(x.addr_lo) for x in r.target.to if x.addr_lo]
    return out


@pytest.fixture(scope="module", params=FIXTURES, ids=lambda p: p.parent.name)
def fixture_rs(request: pytest.FixtureRequest) -> Ruleset:
    path: Path = request.param
    return load_file(path)


def test_fixture_vpc_cidr_maps_onto_a_16_and_keeps_offsets(fixture_rs: Ruleset) -> None:
    amap = build_map(fixture_rs, clients=["203.0.113.10"])
    vpc = ipaddress.ip_network("10.11.0.0/16")
    (block,) = [b for b in amap.blocks if b.original == vpc]
    assert block.mapped.prefixlen == 16 and block.mapped.subnet_of(SPACE)
    meta = fixture_rs.metadata
    pods = [str(p["ip"]) for p in meta["pods"]]  # type: ignore[attr-defined]
    for ip in [*pods, *meta["private_ips"]]:  # type: ignore[misc]
        mapped = amap.forward(ip)
        assert mapped in block.mapped
        offset = int(V4(ip)) - int(vpc.network_address)
        assert int(mapped) - int(block.mapped.network_address) == offset
        assert amap.back(mapped) == V4(ip)


def test_fixture_singles_and_client_lie_outside_every_tested_block(fixture_rs: Ruleset) -> None:
    amap = build_map(fixture_rs, clients=["203.0.113.10", "203.0.113.11"])
    service = amap.forward("172.20.0.10")
    client = amap.forward("203.0.113.10")
    for b in amap.blocks:
        assert service not in b.mapped and client not in b.mapped
    assert service in amap.singles_block and client in amap.client_block
    assert amap.forward("203.0.113.11") == client + 1
    assert amap.forward("127.0.0.1") == V4("127.0.0.1")
    assert amap.back("198.19.255.254") is None


def test_mapped_rules_hold_only_benchmark_or_loopback_addresses(fixture_rs: Ruleset) -> None:
    amap = build_map(fixture_rs)
    mapped = map_ruleset(fixture_rs, amap)
    nets = addresses_in(mapped)
    assert nets
    loopback = ipaddress.ip_network("127.0.0.0/8")
    assert all(n.subnet_of(SPACE) or n.subnet_of(loopback) for n in nets)
    # Same chains and numbering, so kernel counters map back to the original rules.
    for name, table in fixture_rs.tables.items():
        for cname, chain in table.chains.items():
            assert len(mapped.tables[name].chains[cname].rules) == len(chain.rules)
    again = parse_text(render_save(mapped), "mapped")
    assert addresses_in(again) == nets


def test_tested_cidr_membership_is_preserved() -> None:
    rs = rules(
        "-A X -s 10.0.0.0/16 -j RETURN",
        "-A X -d 10.0.8.0/22 -j RETURN",
        "-A X -d 172.16.5.0/24 -j RETURN",
        "-A X -d 172.16.5.9/32 -j DNAT --to-destination 10.0.9.1:80",
    )
    amap = build_map(rs, hosts=["10.0.11.255", "10.1.0.1"], clients=["172.16.5.77", "8.8.8.8"])
    cidrs = ["10.0.0.0/16", "10.0.8.0/22", "172.16.5.0/24"]
    for addr in ["10.0.11.255", "10.1.0.1", "172.16.5.77", "8.8.8.8", "172.16.5.9", "10.0.9.1"]:
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr)
            assert (V4(addr) in net) == (amap.forward(addr) in amap.network(net)), (addr, cidr)
    # A client inside a tested CIDR keeps its place; one outside gets the client block.
    assert amap.forward("172.16.5.77") in amap.network(ipaddress.ip_network("172.16.5.0/24"))
    assert amap.forward("8.8.8.8") in amap.client_block


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(19, 30)), min_size=1, max_size=6),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=12),
)
def test_membership_property(cidrs: list[tuple[int, int]], hosts: list[int]) -> None:
    nets = [ipaddress.ip_network(f"{V4(a)}/{p}", strict=False) for a, p in cidrs]
    nets = [n for n in nets if not n.subnet_of(ipaddress.ip_network("127.0.0.0/8"))]
    addrs = [V4(h) for h in hosts if not V4(h).is_loopback]
    rs = rules(*(f"-A X -d {n} -j RETURN" for n in nets))
    amap = build_map(rs, hosts=[str(a) for a in addrs])
    for a in addrs:
        assert amap.forward(a) in SPACE
        assert amap.back(amap.forward(a)) == a
        for n in nets:
            assert (a in n) == (amap.forward(a) in amap.network(n))


def test_map_is_deterministic(fixture_rs: Ruleset) -> None:
    assert build_map(fixture_rs).rows() == build_map(fixture_rs).rows()


def test_refuses_a_slash_8_naming_it() -> None:
    rs = rules("-A X -d 10.0.0.0/8 -j RETURN")
    with pytest.raises(MappingError, match=r"10\.0\.0\.0/8 \(16777216 addresses\)"):
        build_map(rs)


def test_refuses_when_two_16s_leave_no_room() -> None:
    rs = rules("-A X -d 10.0.0.0/16 -j RETURN", "-A X -d 10.1.0.0/16 -j RETURN")
    with pytest.raises(MappingError, match="cannot map"):
        build_map(rs, hosts=["172.20.0.1"])


@pytest.mark.parametrize(
    "rule",
    [
        "-A X -m iprange --src-range 10.0.0.1-10.0.0.9 -j RETURN",
        "-A X -m owner ! --uid-owner 10.0.0.1 -j RETURN",
        "-A X -j NETMAP --to 10.9.0.0/16",
    ],
)
def test_refuses_addresses_hidden_in_options_and_ranges(rule: str) -> None:
    with pytest.raises(MappingError, match="cannot map"):
        build_map(rules(rule))


def test_replay_refuses_other_protocols() -> None:
    rs = load_file(FIXTURES[0])
    with pytest.raises(rp.ReplayError, match="only tcp"):
        rp.replay(rs, port=53, protocol="udp")


def test_replay_says_what_it_needs_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from kpsim.verify import netns

    monkeypatch.setattr(netns, "available", lambda: False)
    rs = load_file(FIXTURES[0])
    with pytest.raises(rp.ReplayError, match="needs root"):
        rp.replay(rs, port=30080)


def test_replay_needs_a_node_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from kpsim.verify import netns

    monkeypatch.setattr(netns, "available", lambda: True)  # fails before touching the kernel
    rs = rules("-A X -j RETURN")
    with pytest.raises(rp.ReplayError, match="node's address is unknown"), rp.open_replay(rs, {}):
        pass  # pragma: no cover
