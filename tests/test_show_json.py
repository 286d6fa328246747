"""``show -o json`` is written as text for speed: it must stay exactly the bytes of
``json.dumps(show_doc(report), sort_keys=True)`` — the dict form is its definition."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from _paths import CORPUS
from kpsim import api
from kpsim.formats import load_file, parse_text
from kpsim.inputs import synth
from kpsim.kube import services as kube
from kpsim.kube.show import ShowReport, summarize
from kpsim.render.json import dumps, show_doc, show_json, write_show_json

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "fixtures" / "iptables" / "eks-nodeport-workshop"

# Strings JSON must escape, and text it must keep as is (ensure_ascii=False)
ODD = 'défault/wéb-ü:"q" \\ \t☃'
ODD_SAVE = "\n".join(
    [
        "*nat",
        ":KUBE-SERVICES - [0:0]",
        ":KUBE-SVC-ODDODDODDODDODDO - [0:0]",
        ":KUBE-SEP-ODD - [0:0]",
        ":KUBE-SVC-NOENDPOINTSXXXXXX - [0:0]",
        '-A KUBE-SERVICES -m comment --comment "défault/wéb-ü:http cluster IP" -m tcp -p tcp '
        "-d 10.96.0.10/32 --dport 80 -j KUBE-SVC-ODDODDODDODDODDO",
        '-A KUBE-SERVICES -m comment --comment "it\'s \\"quoted\\" / here cluster IP" '
        "-m udp -p udp -d fd00::10/128 --dport 53 -j KUBE-SVC-NOENDPOINTSXXXXXX",
        "-A KUBE-SVC-ODDODDODDODDODDO -m recent --rcheck --seconds 10800 --reap "
        "--name KUBE-SEP-ODD --mask 255.255.255.255 --rsource -j KUBE-SEP-ODD",
        "-A KUBE-SVC-ODDODDODDODDODDO -m statistic --mode random --probability 0.33333333349 "
        "-j KUBE-SEP-ODD",
        "-A KUBE-SVC-ODDODDODDODDODDO -j KUBE-SEP-MISSING",
        "-A KUBE-SEP-ODD -p tcp -m tcp -j DNAT --to-destination [fd00::1]:8080",
        "-A KUBE-NODEPORTS -j KUBE-SVC-ODDODDODDODDODDO",
        "this line is not a rule ☃",
        "COMMIT",
        "",
    ]
)


def _equal(got: str, want: str) -> None:
    """Equal texts; on a difference, where it starts (pytest's own diff of megabyte
    strings would take minutes)."""
    if got != want:
        at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
        at = min(len(got), len(want)) if at is None else at
        pytest.fail(f"texts differ from char {at}: {got[at : at + 60]!r} vs {want[at : at + 60]!r}")


def _same_bytes(report: ShowReport) -> None:
    text = show_json(report)
    _equal(text, dumps(show_doc(report)))
    assert json.loads(text) == show_doc(report)
    written = io.StringIO()
    write_show_json(report, written)
    _equal(written.getvalue(), text)


def test_seed_fixture_set_all_nodes_and_files() -> None:
    loaded = api.load([str(SEED)])
    report = api.show(loaded)
    assert len(report.inputs) > 1 and any(i.services for i in report.inputs)
    _same_bytes(report)


def test_strings_that_need_escaping_and_odd_shapes() -> None:
    rs = parse_text(ODD_SAVE, f"/tmp/{ODD}.save")
    services = kube.services(rs)
    assert services and any(s.affinity_seconds for s in services)
    report = ShowReport(ODD, ODD, (summarize(rs, ODD), summarize(rs, "second")))
    _same_bytes(report)
    doc = json.loads(show_json(report))
    assert doc["fixture_set"] == ODD and doc["inputs"][0]["node"] == ODD


def test_no_inputs_and_an_empty_capture() -> None:
    _same_bytes(ShowReport("none", "", ()))
    empty = parse_text("*nat\nCOMMIT\n", "empty.save")
    _same_bytes(ShowReport("empty", "", (summarize(empty, "n"),)))


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_corpus_captures() -> None:
    rulesets = [load_file(p) for p in sorted(CORPUS.glob("*.txt"))]
    _same_bytes(ShowReport("corpus", "", tuple(summarize(rs, "n") for rs in rulesets)))


def test_written_in_slices_as_one_text() -> None:
    """``write_show_json`` writes a big report in several slices: the same text."""
    cluster = synth.synth_large(1500, 2, seed=4)
    rs = parse_text(synth.render_restore(cluster, cluster.nodes[0]), "big")
    report = ShowReport("set", "test", (summarize(rs, "n"),))
    writes: list[str] = []

    class Out(io.StringIO):
        def write(self, s: str) -> int:
            writes.append(s)
            return super().write(s)

    out = Out()
    write_show_json(report, out)
    assert len(writes) > 1 and all(writes)
    _equal(out.getvalue(), show_json(report))
    _equal(show_json(report), dumps(show_doc(report)))
