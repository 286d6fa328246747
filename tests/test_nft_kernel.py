"""Round trips of the nftables-mode fixtures through the real kernel (root only): each
loads with ``nft -f`` into a throw-away namespace, is listed back with ``nft list
ruleset``, and the listing, the fixture and kube-proxy's transaction (the ``nft -f`` form)
all give the same model."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from kpsim.formats import load_file, parse_text
from kpsim.inputs.nft_regen import load_and_list
from kpsim.inputs.synth import seed_workshop
from kpsim.inputs.synth.nft import render_kube_proxy_nft
from kpsim.kube import services as kube
from kpsim.kube.scenario import NodeInput, TraceRequest, trace_nodes
from kpsim.model import Rule, Ruleset
from kpsim.verify import netns

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        not netns.available() or shutil.which("nft") is None, reason="needs root, ip and nft"
    ),
]

ROOT = Path(__file__).resolve().parents[1]
NFT_SET = ROOT / "fixtures/nftables/eks-nodeport-workshop"
NODES = sorted(p.name for p in NFT_SET.iterdir() if p.is_dir())


def _rule(r: Rule) -> str:
    return repr((r.target, r.source, r.destination, r.protocol, r.in_interface,
                 r.out_interface, r.matches))  # fmt: skip


def canonical(rs: Ruleset) -> dict[tuple[str, str], list[list[str]]]:
    """Each chain's rules in order, the rules one nft rule became (one per map element,
    whose order nft may print differently) as one sorted group."""
    out = {}
    for tname, table in rs.tables.items():
        for name, chain in table.chains.items():
            groups = itertools.groupby(chain.rules, key=lambda r: r.origin.text if r.origin else "")
            key = (tname, name if "#" not in name else name.split("#")[0] + "#")
            out[key] = [sorted(_rule(r) for r in rules) for _, rules in groups]
    return out


def _services(rs: Ruleset) -> list[tuple[object, ...]]:
    return [
        (s.name, sorted((f.kind, f.address, f.port) for f in s.frontends),
         [(e.destination, e.probability) for e in s.endpoints], s.no_endpoints)
        for s in kube.services(rs)
    ]  # fmt: skip


@pytest.mark.parametrize("node", NODES)
def test_fixture_lists_back_to_the_same_model(node: str) -> None:
    path = NFT_SET / node / "ruleset.nft"
    shipped = load_file(path)
    listed = parse_text(load_and_list(path.read_text()), f"{node} (listed back)")
    assert canonical(listed) == canonical(shipped)
    assert _services(listed) == _services(shipped)


@pytest.mark.parametrize("node", NODES)
def test_the_transaction_and_its_listing_give_the_same_model(node: str) -> None:
    transaction = render_kube_proxy_nft(seed_workshop(), node)
    commands = parse_text(transaction, f"{node}.nft-f")
    assert commands.diagnostics == ()
    listed = parse_text(load_and_list(transaction), f"{node} (listed)")
    assert canonical(commands) == canonical(listed)
    assert _services(commands) == _services(listed)
    assert _services(listed) == _services(load_file(NFT_SET / node / "ruleset.nft"))


#: Rules iptables-nft keeps beside kube-proxy's table on an EKS node (the VPC CNI's SNAT
#: RETURN, kubelet's KUBE-FIREWALL), as ``iptables`` commands.
_BESIDE = [
    ["iptables", "-t", "nat", "-A", "POSTROUTING", "-d", "10.11.0.0/16", "-m", "comment",
     "--comment", "AWS SNAT CHAIN", "-j", "RETURN"],
    ["iptables", "-t", "filter", "-N", "KUBE-FIREWALL"],
    ["iptables", "-t", "filter", "-A", "INPUT", "-j", "KUBE-FIREWALL"],
    ["iptables", "-t", "filter", "-A", "KUBE-FIREWALL", "-d", "127.0.0.0/8", "!", "-s",
     "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"],
    # ip6tables-nft's tables share the names (ip6 nat, ip6 filter): never walked by IPv4
    ["ip6tables", "-t", "filter", "-A", "FORWARD", "-j", "DROP"],
    ["ip6tables", "-t", "nat", "-A", "POSTROUTING", "-j", "RETURN"],
]  # fmt: skip


def test_iptables_nft_tables_beside_kube_proxys_are_walked_too() -> None:
    """A node's whole ``nft list ruleset``: iptables-nft's nat POSTROUTING RETURN ends only
    its own base chain; kube-proxy's nat-postrouting still masquerades, as in the kernel.
    ip6tables' FORWARD DROP is in ``table ip6 filter``, which IPv4 packets never pass."""
    path = NFT_SET / "ip-10-11-28-53" / "ruleset.nft"
    ns = netns.create()
    try:
        netns.run(ns, ["nft", "-f", str(path)])
        for argv in _BESIDE:
            netns.run(ns, argv)
        listed = netns.run(ns, ["nft", "list", "ruleset"]).stdout
    finally:
        netns.delete(ns)
    assert "table ip nat" in listed and "table ip kube-proxy" in listed
    assert "table ip6 filter" in listed and "table ip6 nat" in listed
    meta = path.read_text().splitlines()[0] + "\n"
    mixed = parse_text(meta + listed, "mixed.nft")
    assert {"iptables-nft:POSTROUTING", "nat-postrouting"} <= set(mixed.tables["nat"].chains)
    assert "KUBE-FIREWALL" in mixed.tables["filter"].chains
    six = {n for n, line in enumerate(listed.splitlines(), 2) if line.startswith("table ip6")}
    assert six, "the listing has ip6 tables"
    first_six = min(six)  # nft lists ip tables first, then ip6: every line after is theirs
    rules = [r for t in mixed.tables.values() for c in t.chains.values() for r in c.rules]
    assert all(r.origin is None or r.origin.line < first_six for r in rules)
    assert any(n.startswith("table ip6 filter (lines ") for n in mixed.notes)
    alone = load_file(path)

    def answers(rs: Ruleset) -> set[tuple[object, ...]]:
        report = trace_nodes([NodeInput("n", rs)], TraceRequest(30080))
        return {(o.outcome.verdict.value, o.destination, o.outcome.probability,
                 o.outcome.masquerade) for o in report.nodes[0].outcomes}  # fmt: skip

    assert answers(mixed) == answers(alone)
    assert all(a[3] is True for a in answers(mixed))


def test_fetch_collects_nft_list_ruleset_where_kube_proxy_runs_in_nftables_mode(
    tmp_path: Path,
) -> None:
    """``kpsim fetch --netns``: the script finds ``table ip kube-proxy`` and saves ``nft
    list ruleset`` as ruleset.nft, the node's primary capture, which traces as the fixture."""
    from kpsim.fetch import FetchRequest, LocalTarget, fetch_local
    from kpsim.inputs.fixtures import resolve_paths

    path = NFT_SET / "ip-10-11-28-53" / "ruleset.nft"
    with netns.Namespace() as ns:
        netns.run(ns.name, ["nft", "-f", str(path)])
        (result,) = fetch_local(FetchRequest(out=tmp_path), LocalTarget("netns", ns.name)).results
    assert result.ok, result.error
    names = sorted(f.name for f in result.files)
    assert "ruleset.nft" in names and "iptables-save.txt" in names
    (node,) = resolve_paths([str(result.files[0].parent)]).nodes
    assert node.primary.name == "ruleset.nft"
    fetched = load_file(node.primary)
    assert _services(fetched) == _services(load_file(path))
