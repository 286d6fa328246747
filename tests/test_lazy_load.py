"""Chains read on demand (``formats.iptables.lazy``) give the answers of the whole reader.

Every shipped capture, corpus dump, kube-proxy test dump, damaged fixture and generated
dump is read both ways: the models must be equal (tables, chains in order, every rule and
its line, diagnostics, capture, metadata), and so must the JSON of traces of its NodePorts,
ClusterIPs and a port nobody has — the lazy one traced before anything else reads it — and
``show``'s JSON, byte for byte, from a lazy ruleset nothing has read before (generated
dumps in kube-proxy's order and in iptables-save's). A big chain's sketch (its rules read
off the text, built one by one) must say what the whole reader's rules say. Inputs the
lazy reader cannot vouch for must fall back to the whole reader.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _paths import CORPUS, REPO
from kpsim.engine.prepare import _index_key, _sketch_key
from kpsim.errors import KpsimError
from kpsim.formats import parse_captures, read_text
from kpsim.formats.iptables.lazy import LazyChain, lazy_save
from kpsim.formats.iptables.write import render_save
from kpsim.inputs import synth
from kpsim.kube.show import ShowReport, summarize
from kpsim.model import Jump, PortMatch, Ruleset
from kpsim.render.json import show_json
from lazy_compare import answer as _answer
from lazy_compare import model as _model
from lazy_compare import requests as _requests


def _inputs() -> list[Path]:
    roots = [REPO / "fixtures", REPO / "tests" / "data" / "kube-proxy", CORPUS]
    found = [p for root in roots if root.is_dir() for p in sorted(root.rglob("*"))]
    notes = ("README.md", "INDEX.md")
    return [p for p in found if p.is_file() and p.suffix in (".txt", ".md", ".nft", "")
            and p.name not in notes]  # fmt: skip


def _generated() -> dict[str, str]:
    cluster = synth.synth_large(300, 3, seed=7)
    out = {f"large-{n.name}": synth.render_restore(cluster, n) for n in cluster.nodes}
    # the same node as iptables-save prints it: each chain's rules together, options in
    # the kernel's order (KUBE-SERVICES in one run, not one per service)
    whole = parse_captures(out[f"large-{cluster.nodes[0].name}"], "g")[0]
    out["save-large"] = render_save(whole)
    seed = synth.seed_workshop()
    out.update({f"seed-{n.name}": synth.render_restore(seed, n) for n in seed.nodes})
    return out


def _show(rulesets: tuple[Ruleset, ...]) -> str:
    """``kpsim show -o json`` of the rulesets, as the command renders it."""
    try:
        return show_json(ShowReport("set", "origin", tuple(summarize(rs, "n") for rs in rulesets)))
    except KpsimError as exc:  # the same refusal both ways is the same answer; a crash fails
        return f"{type(exc).__name__}: {exc}"


def _compare(text: str, path: str) -> bool:
    """Lazy and whole read the same; True when the lazy reader took the input."""
    try:
        full = parse_captures(text, path)
    except KpsimError as exc:
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            parse_captures(text, path, lazy=True)
        return False
    lazy_first = parse_captures(text, path, lazy=True)
    chains = [c for rs in lazy_first for t in rs.tables.values() for c in t.chains.values()]
    taken = any(type(c) is LazyChain for c in chains)
    for lazy_rs, full_rs in zip(lazy_first, full, strict=True):
        for request in _requests(full_rs):  # the lazy ruleset is traced before it is read
            assert _answer(lazy_rs, request) == _answer(full_rs, request), (path, request)
    again = parse_captures(text, path, lazy=True)
    assert [_model(rs) for rs in again] == [_model(rs) for rs in full], path
    # show's JSON, byte for byte, from a lazy ruleset nothing has read before
    assert _show(parse_captures(text, path, lazy=True)) == _show(full), path
    return taken


@pytest.mark.parametrize("path", _inputs(), ids=lambda p: str(p.relative_to(p.parents[1])))
def test_lazy_reads_every_capture_as_the_whole_reader(path: Path) -> None:
    _compare(read_text(path), str(path))


def test_lazy_reads_generated_dumps_and_takes_them() -> None:
    taken = [name for name, text in _generated().items() if _compare(text, name)]
    assert len(taken) == 7  # clean dumps: every one is read on demand


def test_lazy_takes_the_shipped_saves() -> None:
    """The kernel's own iptables-save order is deferred too (not only kube-proxy's)."""
    saves = sorted((REPO / "fixtures" / "iptables").rglob("*iptables-save*"))
    taken = [p for p in saves if _compare(read_text(p), str(p))]
    assert saves and taken == saves


_DAMAGE = [
    # a port out of range in a chain no trace of 30000 reaches: a diagnostic either way
    (r"(-A KUBE-SEP-\S+ .*--to-destination \S+:)8080\n", r"\g<1>99999\n"),
    # a jump to a chain the capture lacks
    (r"(-A KUBE-SVC-\S+ .*-j )KUBE-SEP-\S+\n", r"\g<1>KUBE-SEP-NOTCAPTURED\n"),
    # … by a goto (never deferred: the jump check finds only a run's "-j NAME" line ends)
    (r"(-A KUBE-SVC-\S+ .*)-j KUBE-SEP-\S+\n", r"\g<1>-g KUBE-SEP-NOTCAPTURED\n"),
    # a rule line kpsim cannot read, and a line that is not a rule
    (r"(-A KUBE-SEP-\S+ [^\n]*-j KUBE-MARK-MASQ\n)", r"\g<1>-A KUBE-SEP-X -m nosuch --x\n"),
    (r"(\*nat\n)", r"\g<1>...\n"),
    # rules of a chain nobody declared (the whole reader creates it at its first rule)
    (r"(\n-A KUBE-SEP-\S+ [^\n]*-j KUBE-MARK-MASQ\n)", r"\g<1>-A KUBE-NEW -j KUBE-MARK-MASQ\n"),
    # a chain declared after rules
    (r"\nCOMMIT\n$", r"\n:KUBE-LATE - [0:0]\nCOMMIT\n"),
    # a target keyword declared as a chain (then -j DNAT is a jump): in a block of
    # declarations, on a line of its own read at once, in the filter table
    (r"(\*nat\n)", r"\g<1>:DNAT - [0:0]\n"),
    (r"(\*nat\n)", r"\g<1> :MASQUERADE - [0:0]\n"),
    (r"(\*nat\n)", r"\g<1>:DNAT[0:0]\n"),
    (r"(\*filter\n)", r"\g<1>:REJECT ACCEPT [0:0]\n"),
    # cut: no COMMIT, no newline at the end
    (r"COMMIT\n$", r""),
    (r"\n$", r""),
]


@pytest.mark.parametrize(("pattern", "replacement"), _DAMAGE)
def test_lazy_falls_back_where_it_cannot_vouch(pattern: str, replacement: str) -> None:
    clean = _generated()["large-" + synth.SEED_NODES[0].name]
    damaged = re.sub(pattern, replacement, clean, count=1)
    assert damaged != clean
    assert lazy_save(damaged, "d") is None
    _compare(damaged, "d")


def test_a_chain_read_on_demand_is_a_plain_chain() -> None:
    text = _generated()["large-" + synth.SEED_NODES[0].name]
    rs = lazy_save(text, "g")
    assert rs is not None
    chain = rs.tables["nat"].chains["KUBE-SERVICES"]
    assert type(chain) is LazyChain
    assert chain.rules and type(chain) is not LazyChain  # now a Chain, as the whole reader's
    full = parse_captures(text, "g")[0]
    assert chain == full.tables["nat"].chains["KUBE-SERVICES"]


@pytest.mark.parametrize("name", ["large-" + synth.SEED_NODES[0].name, "save-large"])
def test_a_sketch_says_what_the_rules_say(name: str) -> None:
    """A big chain's sketch (``formats.iptables.sketch``), in either order: each rule it
    builds is the whole reader's (line included), its jumps, ports and index are the rules'."""
    text = _generated()[name]
    rs, full = lazy_save(text, name), parse_captures(text, name)[0]
    assert rs is not None
    sketched = []
    for tname, table in rs.tables.items():
        for cname, chain in table.chains.items():
            sketch = chain.sketch()
            if sketch is None:
                continue
            sketched.append(cname)
            rules = full.tables[tname].chains[cname].rules
            built = [sketch.rule(at) for at in reversed(range(len(rules)))][::-1]
            assert built == list(rules)
            assert [r.origin for r in built] == [r.origin for r in rules]
            jumps = [r.target.chain if isinstance(r.target, Jump) else "" for r in rules]
            assert list(sketch.jumps) == jumps
            ports = [str(m.dport.lo) for r in rules for m in r.matches if isinstance(m, PortMatch)]
            assert [p for p in sketch.dports if p] == ports
            # each rule's index key read off the sketch is the rule's (its host as written)
            keys = [_sketch_key(sketch, at) for at in range(len(rules))]
            assert keys == [
                None if k is None else (None if k[0] is None else str(k[0]), *k[1:])
                for k in map(_index_key, rules)
            ]
            assert type(chain) is LazyChain  # none of it built the chain
    assert "KUBE-SERVICES" in sketched  # 301 rules
