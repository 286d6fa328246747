"""verify's ``nft -f`` text for kube-proxy's nftables table (no kernel needed): written
with the replay's address map, it reads back to the capture's model with the same map
applied — set and map elements, concatenated keys, DNAT targets and all — and what cannot
be moved exactly is refused, never replayed as something else."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from types import MappingProxyType

import pytest

import kpsim.verify.run as verification
from kpsim.errors import UsageError
from kpsim.formats import load_file, parse_text
from kpsim.formats.nft.write import NftWriteError, map_statement, render_nft
from kpsim.inputs.synth import seed_workshop
from kpsim.inputs.synth.nft import render_kube_proxy_nft
from kpsim.kube.scenario import NodeInput, stand_in
from kpsim.model import Ruleset
from kpsim.model.nft import SetLookup
from kpsim.verify.replay import KernelResult
from kpsim.verify.replay.mapping import (
    AddressMap,
    Block,
    MappingError,
    build_map,
    literal,
    map_ruleset,
)
from kpsim.verify.run import VerifyRequest
from test_nft_kernel import _services, canonical

ROOT = Path(__file__).resolve().parents[1]
NFT_SET = ROOT / "fixtures/nftables/eks-nodeport-workshop"
NODES = sorted(p.name for p in NFT_SET.iterdir() if p.is_dir())
KP_DUMP = ROOT / "tests/data/kube-proxy-nft/overall-nftables-rules.nft"
_N = ipaddress.IPv4Network
#: Every address with its top bit flipped: kube-proxy's test dump tests 10.0.0.0/8, more
#: than 198.18.0.0/15 holds, so the writer is checked there with a map that moves all.
FLIP = AddressMap(
    (
        Block(_N("0.0.0.0/1"), _N("128.0.0.0/1"), "tested"),
        Block(_N("128.0.0.0/1"), _N("0.0.0.0/1"), "tested"),
    ),
    MappingProxyType({}),
    _N("198.18.0.0/24"),
    _N("198.18.1.0/24"),
)


def written_dump() -> tuple[Ruleset, str]:
    """kube-proxy's own TestOverallNFTablesRules transaction, written with ``FLIP``."""
    text, skipped = render_nft(KP_DUMP.read_text(), str(KP_DUMP), lambda t: literal(FLIP, t))
    assert skipped == ()
    return load_file(KP_DUMP), text


def _written(rs: Ruleset, text: str) -> tuple[AddressMap, Ruleset]:
    amap = build_map(rs, hosts=stand_in(rs, ())[0], clients=["203.0.113.10"])
    out, skipped = render_nft(text, rs.path, lambda t: literal(amap, t))
    assert skipped == ()
    return amap, parse_text(out, f"{rs.path} (written)")


@pytest.mark.parametrize("node", NODES)
def test_written_table_reads_back_to_the_mapped_model(node: str) -> None:
    path = NFT_SET / node / "ruleset.nft"
    shipped = load_file(path)
    amap, back = _written(shipped, path.read_text())
    assert back.diagnostics == ()
    mapped = map_ruleset(shipped, amap)
    assert canonical(back) == canonical(mapped)
    assert _services(back) == _services(mapped)
    assert canonical(back) != canonical(shipped)  # the addresses did move
    lookups = [
        m
        for t in back.tables.values()
        for c in t.chains.values()
        for r in c.rules
        for m in r.matches
        if isinstance(m, SetLookup) and m.name == "@cluster-ips"
    ]
    assert lookups and all(  # every ClusterIP element now in 198.18.0.0/15
        198 << 24 | 18 << 16 <= p.lo <= p.hi < 198 << 24 | 20 << 16
        for m in lookups
        for e in m.elements
        for p in e
    )


def test_kube_proxys_transaction_form_writes_the_same_table() -> None:
    node = NODES[0]
    text = render_kube_proxy_nft(seed_workshop(), node)
    commands = parse_text(text, f"{node}.nft-f")
    amap, back = _written(commands, text)
    assert canonical(back) == canonical(map_ruleset(commands, amap))


def test_kube_proxys_own_test_dump_writes_back_to_the_moved_model() -> None:
    """Every layout detail of kube-proxy's test (LB source ranges, firewall sets, the pod
    CIDR's short-circuit, intervals) survives: the text reads back to the moved model."""
    dump, text = written_dump()
    back = parse_text(text, "written")
    assert back.diagnostics == ()
    assert canonical(back) == canonical(map_ruleset(dump, FLIP)) != canonical(dump)
    assert _services(back) == _services(map_ruleset(dump, FLIP))
    assert "ip saddr != 138.0.0.0/8 jump mark-for-masquerade" in text  # 10.0.0.0/8 moved


def test_names_and_comments_keep_their_addresses_literals_move() -> None:
    moved = map_statement(
        'ip saddr 10.1.2.3 jump endpoint-X-a/b/tcp/__10.1.2.3/80 comment "10.1.2.3" '
        "ip daddr { 10.0.0.0/8, 10.1.0.1-10.1.0.9 } dnat to 10.1.2.3:8080",
        lambda a: f"<{a}>",
    )
    assert moved == (
        'ip saddr <10.1.2.3> jump endpoint-X-a/b/tcp/__10.1.2.3/80 comment "10.1.2.3" '
        "ip daddr { <10.0.0.0/8>, <10.1.0.1-10.1.0.9> } dnat to <10.1.2.3>:8080"
    )


def test_an_address_kpsim_cannot_move_is_refused() -> None:
    with pytest.raises(NftWriteError, match=r"10\.0\.0\.0/255\.0\.0\.0"):
        map_statement("ip daddr 10.0.0.0/255.0.0.0 drop", lambda a: a)
    text = "table ip kube-proxy {\n}\ntable ip nat {\n}\ntable ip6 kube-proxy {\n}\n"
    with pytest.raises(NftWriteError, match=r"beside ip kube-proxy \(ip nat\)"):
        render_nft(text, "x.nft", lambda a: a)


def test_ip6_tables_and_live_affinity_state_are_left_out_and_named() -> None:
    """An IPv4 connection never passes an ip6 table, and a replay (like kpsim's answer for
    a fresh client) starts without affinity state: both are left out, each with a note."""
    path = NFT_SET / NODES[0] / "ruleset.nft"
    affinity = "tcp/__10.11.19.230/3000 {"
    text = path.read_text().replace(
        affinity, affinity + "\n\t\telements = { 203.0.113.10 timeout 3h expires 2h }", 1
    )
    ip6 = "table ip6 kube-proxy {\n\tset cluster-ips {\n\t\ttype ipv6_addr\n\t}\n}\n"
    written, notes = render_nft(text + ip6, str(path), lambda a: a)
    assert [n.split(":")[0] for n in notes] == [
        "ip6 kube-proxy",
        "set affinity-QY5FJNGL-nodeport-test/ecsdemo-nodejs/tcp/__10.11.19.230/3000",
    ]
    assert "ipv6_addr" not in written and written.count("table ") == 1
    assert "203.0.113.10" not in written and "expires" not in written


def test_a_range_across_mapped_blocks_is_refused() -> None:
    path = NFT_SET / NODES[0] / "ruleset.nft"
    shipped = load_file(path)
    amap = build_map(shipped, hosts=stand_in(shipped, ())[0])
    assert literal(amap, "172.20.0.1-172.20.0.9").startswith("198.")  # inside 172.20.0.0/16
    with pytest.raises(MappingError, match="spans"):
        literal(amap, "172.20.0.1-172.21.0.9")


def test_an_affinity_set_smaller_than_the_clients_is_refused_before_the_replay(
    tmp_path: Path,
) -> None:
    """A full nft set adds nothing more where kpsim's sampler (xt_recent) drops the
    oldest: with fewer elements than clients verify says so and replays nothing."""
    src = NFT_SET / NODES[0] / "ruleset.nft"
    small = tmp_path / "ruleset.nft"
    small.write_text(src.read_text().replace("size 65535", "size 10"))
    probed: list[str] = []

    def probe(node: NodeInput, request: VerifyRequest) -> KernelResult:
        probed.append(node.name)
        raise AssertionError("no replay expected")

    req = VerifyRequest(port=80, dest="172.20.91.45", n=40, clients=20)
    with pytest.raises(UsageError, match="holds 10 elements, fewer than the 20 clients"):
        verification.verify([NodeInput(NODES[0], load_file(small))], req, probe=probe)
    assert probed == []
    assert "\t\tsize 10" in render_nft(small.read_text(), str(small), lambda a: a)[0]
