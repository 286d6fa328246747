"""``kpsim show`` text output: rich's box tables for small inputs, plain fixed-width tables
(with a summary line) above RICH_MAX_ROWS rows."""

from __future__ import annotations

import re
from dataclasses import replace
from fractions import Fraction
from itertools import pairwise

import pytest
from rich.cells import cell_len

from kpsim.formats import parse_text
from kpsim.inputs import synth
from kpsim.kube import services as kube
from kpsim.kube import show
from kpsim.kube.show import InputSummary, ShowReport
from kpsim.render import plain_table
from kpsim.render.text import RICH_MAX_ROWS, show_text


def _varied(services: tuple[kube.Service, ...]) -> tuple[kube.Service, ...]:
    """The synthetic services, with uneven endpoint counts, some with none, one long name."""
    out = []
    for n, s in enumerate(services):
        k = n % 7  # 0..6 endpoints
        eps = tuple(replace(e, probability=Fraction(1, k)) for e in (s.endpoints * 2)[:k])
        name = s.name + ("-a-very-long-service-port-name" * 3 if n == 17 else "")
        out.append(replace(s, name=name, endpoints=eps, no_endpoints=not eps))
    return tuple(out)


@pytest.fixture(scope="module")
def big() -> InputSummary:
    cluster = synth.synth_large(RICH_MAX_ROWS + 50, 5, seed=7)
    node = cluster.nodes[0]
    summary = show.summarize(parse_text(synth.render_restore(cluster, node), "big.save"), "n1")
    assert len(summary.services) > RICH_MAX_ROWS
    return replace(summary, services=_varied(summary.services))


def _report(*inputs: InputSummary) -> ShowReport:
    return ShowReport("test", "paths given", inputs)


def _plain(text: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """Cut the plain table whose header starts with ``header_start`` into cells, at the
    column starts its dashed rule gives; check every row respects those starts."""
    lines = text.splitlines()
    h = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    rule = lines[h + 1]
    assert set(rule) <= {"-", " "}
    starts = [m.start() for m in re.finditer(r"-+", rule)]
    rows = []
    for line in lines[h + 2 :]:
        if not line:
            break
        for s in starts[1:]:  # each column starts right after the separator
            assert len(line) < s or line[s - 2 : s] == "  ", (line, s)
        bounds = [*starts, len(line) + 1]
        rows.append([line[a:b].rstrip() for a, b in pairwise(bounds)])
    header = [lines[h][a:b].rstrip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return header, rows


#: Wide enough for every column: these tests are about completeness and alignment
#: (test_width.py checks that output fits 80 and 120 columns).
WIDE = 400


def _share(p: Fraction) -> str:
    return f"{p.numerator * 100 / p.denominator:.2f}%"


def test_big_services_table_is_plain_aligned_and_complete(big: InputSummary) -> None:
    text = show_text(_report(big), details=True, width=WIDE)
    assert "┃" not in text and "│" not in text  # no rich box
    header, rows = _plain(text, "service ")
    assert header == ["service", "proto", "cluster IP", "NodePort", "endpoints", "shares", "notes"]
    assert len(rows) == len(big.services)
    for row, s in zip(rows, big.services, strict=True):
        assert row[0] == s.name
        assert row[1] == (s.protocol or "-")
        assert row[2] == (", ".join(s.cluster_ips) or "-")
        assert row[3] == (", ".join(map(str, s.node_ports)) or "-")
        assert row[4] == str(len(s.endpoints))
        if s.endpoints:
            shares = [_share(e.probability) for e in s.endpoints]
            assert row[5] == " / ".join(shares)
            assert row[5].count("%") == len(s.endpoints)
        else:
            assert row[5] == "-"
            assert "NO ENDPOINTS" in row[6]
        assert ("policy Local" in row[6]) == s.traffic_policy_local
        assert ("affinity" in row[6]) == (s.affinity_seconds is not None)
    # a long cell is not wrapped or cut: it widens its column
    long = next(s.name for s in big.services if s.name.endswith("service-port-name"))
    assert any(line.startswith(long + "  ") for line in text.splitlines())
    assert not any(line.endswith(" ") for line in text.splitlines() if line)


def test_big_services_table_has_a_summary_line(big: InputSummary) -> None:
    text = show_text(_report(big), details=True, width=WIDE)
    n = len(big.services)
    none = sum(1 for s in big.services if not s.endpoints)
    endpoints = sum(len(s.endpoints) for s in big.services)
    local = sum(1 for s in big.services if s.traffic_policy_local)
    sticky = sum(1 for s in big.services if s.affinity_seconds is not None)
    assert none > 0 and local > 0 and sticky > 0  # the fixture exercises every count
    line = next(x for x in text.splitlines() if x.startswith("kube-proxy services"))
    assert line == (
        f"kube-proxy services: {n} ({endpoints} endpoints); {none} with no endpoints, "
        f"{local} with policy Local, {sticky} with session affinity, 0 unnamed"
    )


def test_threshold_keeps_rich_tables_for_small_inputs(big: InputSummary) -> None:
    small = _report(replace(big, services=big.services[:RICH_MAX_ROWS]))
    at = show_text(small, details=True, width=WIDE)
    assert "┏" in at and "kube-proxy services:" not in at
    above = show_text(
        _report(replace(big, services=big.services[: RICH_MAX_ROWS + 1])), details=True, width=WIDE
    )
    assert "┏" not in above and "kube-proxy services: " in above


def test_big_chains_table_lists_every_chain(big: InputSummary) -> None:
    assert len(big.chains) > RICH_MAX_ROWS
    text = show_text(_report(big), chains=True, width=WIDE)
    assert f"\nchains: {len(big.chains)}\n" in text
    header, rows = _plain(text, "table ")
    assert header == ["table", "chain", "policy", "rules", "references"]
    expected = [
        [c.table, c.name, c.policy or "-", str(c.rules), str(c.references)] for c in big.chains
    ]
    assert rows == expected


def test_color_bolds_only_the_plain_header(big: InputSummary) -> None:
    plain = show_text(_report(big), details=True, width=WIDE)
    colored = show_text(_report(big), color=True, details=True, width=WIDE)
    assert "\x1b" not in plain
    assert "\x1b[1mservice  " in colored
    assert re.sub(r"\x1b\[[0-9;]*m", "", colored) == plain


def test_plain_table_pads_by_terminal_cells_and_escapes_control_characters() -> None:
    lines = plain_table.render(
        ("name", "x", "note"),
        [["日本語", "ok"], ["ascii", "\tb"], ["e\x1b[31m", ""]],  # columns, not rows
    )
    assert lines[0] == "name    x      note"
    assert lines[1] == "------  -----  ---------"
    assert lines[2] == "日本語  ascii  e\\x1b[31m"
    assert lines[3] == "ok      \\tb"
    assert cell_len(lines[2][: lines[2].index("ascii")]) == lines[0].index("x")


def test_plain_table_with_no_rows_is_just_the_header() -> None:
    assert plain_table.render(("a", "bb"), [[], []]) == ["a  bb", "-  --"]
