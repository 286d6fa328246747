"""``kpsim lint``: each finding on real captures (the shipped seed lab, kube-proxy's own
test dumps, the published corpus) and on seed-lab dumps edited one line at a time, the
exit codes a pipeline relies on, and the JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from _paths import CORPUS, REPO, needs_corpus
from kpsim import api
from kpsim.cli.main import main
from kpsim.lint import Finding

SEED = REPO / "fixtures/iptables/eks-nodeport-workshop"
N1 = SEED / "ip-10-11-28-53/iptables-save.txt"
KP = REPO / "tests/data/kube-proxy"


def findings(*paths: Path | str) -> tuple[Finding, ...]:
    return api.lint(api.load([str(p) for p in paths], all_files=False)).findings


def kinds(found: tuple[Finding, ...], kind: str) -> list[Finding]:
    return [f for f in found if f.kind == kind]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def edited(tmp_path: Path, edits: dict[int, str], append: str = "") -> Path:
    """The seed lab's first node, with lines (1-based) replaced in place: the line
    numbers of everything else stay those of the shipped capture."""
    lines = N1.read_text().splitlines()
    for number, text in edits.items():
        lines[number - 1] = text
    out = tmp_path / "iptables-save.txt"
    out.write_text("\n".join(lines) + "\n" + append)
    return out


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("KPSIM_FIXTURES", raising=False)


def test_shipped_fixtures_name_the_black_hole_and_the_service_without_endpoints() -> None:
    found = findings(SEED)
    holes = kinds(found, "local-black-hole")
    assert [(f.node.split(".")[0], f.service, f.location) for f in holes] == [
        (
            "ip-10-11-3-14",
            "nodeport-test/ecsdemo-crystal",
            f"{SEED}/ip-10-11-3-14/iptables-save.txt:41",
        )
    ]
    assert "externalTrafficPolicy" in holes[0].message and "NodePort 30082" in holes[0].message
    # the nodes that do serve it, with their local pod
    assert "ip-10-11-28-53" in holes[0].message and "10.11.25.102:3000" in holes[0].message
    assert "ip-10-11-40-87" in holes[0].message and "10.11.44.17:3000" in holes[0].message
    empty = kinds(found, "no-endpoints")
    assert {(f.node.split(".")[0], f.location) for f in empty} == {
        ("ip-10-11-28-53", f"{SEED}/ip-10-11-28-53/iptables-save.txt:41"),
        ("ip-10-11-3-14", f"{SEED}/ip-10-11-3-14/iptables-save.txt:42"),
        ("ip-10-11-40-87", f"{SEED}/ip-10-11-40-87/iptables-save.txt:41"),
    }
    assert all(f.service == "node-test-01/node-test-02-svc" for f in empty)
    assert all("NodePort 30083" in f.message and "172.20.66.201:8080" in f.message for f in empty)
    # nothing else is wrong with the lab's rules
    assert {f.kind for f in found} == {"local-black-hole", "no-endpoints"}


def test_kube_proxy_dumps_no_endpoints_and_itp_local() -> None:
    (empty,) = kinds(findings(KP / "health-check-node-port.txt"), "no-endpoints")
    assert empty.service == "ns1/svc1:p80" and empty.location.endswith(
        "health-check-node-port.txt:10"
    )
    (hole,) = kinds(
        findings(KP / "internal-traffic-policy-local-no-local-endpoints.txt"), "local-black-hole"
    )
    assert hole.service == "ns1/svc1" and "internalTrafficPolicy" in hole.message
    assert hole.location and hole.location.endswith(":9") and "172.30.1.1:80" in hole.message
    etp = kinds(findings(KP / "overall-iptables-rules.txt"), "local-black-hole")
    assert [f.location.rsplit(":", 1)[1] for f in etp if f.location] == ["11", "12", "13"]
    assert all("externalTrafficPolicy" in f.message for f in etp)


def test_a_hand_edited_probability_is_an_uneven_cascade(tmp_path: Path) -> None:
    line = '-A KUBE-SVC-6FADE4ADMXCZ7ACT -m comment --comment "node-test-01/node-test-01-svc -> 10.11.11.70:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-GT3XY65SJT4AIPQ2'  # noqa: E501
    found = findings(edited(tmp_path, {162: line}))
    (uneven,) = kinds(found, "uneven-cascade")
    assert uneven.location and uneven.location.endswith("iptables-save.txt:162")
    assert "50.0000% / 25.0000% / 25.0000%" in uneven.message and "33.3333%" in uneven.message
    assert not kinds(found, "cascade-falls-through")


def test_a_last_rule_with_a_probability_falls_through(tmp_path: Path) -> None:
    line = '-A KUBE-SVC-6FADE4ADMXCZ7ACT -m comment --comment "node-test-01/node-test-01-svc -> 10.11.41.25:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-VRAYARBIVYGEAZH5'  # noqa: E501
    (falls,) = kinds(findings(edited(tmp_path, {164: line})), "cascade-falls-through")
    # 1/3, 1/3, then 1/2 of the last third: 1/6 of new connections fall through
    assert "16.6667% of new connections fall through" in falls.message


@needs_corpus
def test_old_kube_proxy_rounding_is_not_uneven() -> None:
    """kube-proxy once printed 5 decimals (0.33332999982): equal within its rounding."""
    assert not kinds(findings(CORPUS / "007-kube-fw-loadbalancer-save-fragment-annotated.txt"),
                     "uneven-cascade")  # fmt: skip


def test_the_same_endpoint_twice(tmp_path: Path) -> None:
    line = '-A KUBE-SVC-6FADE4ADMXCZ7ACT -m comment --comment "node-test-01/node-test-01-svc -> 10.11.16.79:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-GT3XY65SJT4AIPQ2'  # noqa: E501
    found = findings(edited(tmp_path, {163: line}))
    (dup,) = kinds(found, "duplicate-endpoint")
    assert "10.11.11.70:80 appears 2 times" in dup.message
    assert dup.location and dup.location.endswith(":163")
    # and the endpoint it displaced is left stale
    (stale,) = kinds(found, "unreferenced-chain")
    assert "KUBE-SEP-UW7U42NGK7WZATEY" in stale.message and stale.location.endswith(":76")


def test_a_rule_after_an_unconditional_return_never_matches(tmp_path: Path) -> None:
    found = findings(edited(tmp_path, {121: "-A KUBE-SEP-GT3XY65SJT4AIPQ2 -j RETURN"}))
    (dead,) = kinds(found, "shadowed-rule")
    assert dead.severity.value == "warning" and dead.location.endswith("iptables-save.txt:122")
    assert "KUBE-SEP-GT3XY65SJT4AIPQ2: 1 rule(s) after rule 1" in dead.message


@needs_corpus
def test_a_listing_that_hides_matches_is_only_an_info() -> None:
    shadow = kinds(findings(CORPUS / "004-kubeadm-flannel-newer-list-resolved.txt"),
                   "shadowed-rule")  # fmt: skip
    assert shadow and all(f.severity.value == "info" and "iptables -L" in f.message for f in shadow)


def test_missing_chain_whole_capture_is_a_warning() -> None:
    (gone,) = kinds(findings(REPO / "fixtures/damaged/chain-removed.txt"), "missing-chain")
    assert gone.severity.value == "warning" and gone.location.endswith("chain-removed.txt:105")


@needs_corpus
def test_missing_chain_of_a_partial_capture_is_not_captured() -> None:
    gone = kinds(findings(CORPUS / "008-kubeadm-iptables-nft-kube-services-nft-syntax.txt"),
                 "missing-chain")  # fmt: skip
    assert len(gone) == 5 and all(f.severity.value == "info" for f in gone)
    assert all("not captured (a partial capture)" in f.message for f in gone)


def test_cut_capture_stale_chains_are_one_hedged_info() -> None:
    (stale,) = kinds(findings(REPO / "fixtures/damaged/cut-mid-line.txt"), "unreferenced-chain")
    assert "the capture is partial" in stale.message and stale.severity.value == "info"


def test_stale_chain(tmp_path: Path) -> None:
    out = edited(tmp_path, {})
    lines = out.read_text().splitlines()
    lines.insert(50, ":KUBE-SVC-STALESTALESTALE1 - [0:0]")  # after *nat, line 50
    out.write_text("\n".join(lines) + "\n")
    (stale,) = kinds(findings(out), "unreferenced-chain")
    assert stale.location.endswith(":51") and "a stale chain" in stale.message


def test_legacy_and_nft_both_present(tmp_path: Path) -> None:
    warning = "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n"
    out = edited(tmp_path, {}, append=warning)
    n = len(out.read_text().splitlines())
    (both,) = kinds(findings(out), "legacy-and-nft")
    assert both.location == f"{out}:{n}" and both.severity.value == "warning"


@needs_corpus
def test_partial_capture_findings_come_from_the_gaps() -> None:
    gaps = kinds(findings(CORPUS / "028-calico-ipvs-mode-nat-header-save-fragment-elided.txt"),
                 "partial-capture")  # fmt: skip
    assert sorted(f.location.rsplit(":", 1)[1] for f in gaps if f.location) == ["24", "25"]
    assert {f.message.split(")")[0] for f in gaps if f.location} == {
        "partial capture (elided",
        "partial capture (truncated",
    }


@needs_corpus
def test_every_corpus_dump_lints_and_a_whole_save_is_clean() -> None:
    files = sorted(p for p in CORPUS.iterdir() if p.name[0].isdigit())
    assert len(files) >= 10
    for path in files:
        code, out, err = run("lint", str(path), "--fail-on", "never")
        assert code == 0 and "Traceback" not in err, path
        assert "capture(s)" in out
    # kind 1.23's whole iptables-save: nothing to say
    assert findings(CORPUS / "005-kind-1.23-traefik-save-all-tables.txt") == ()


def test_fail_on_exit_codes() -> None:
    assert run("lint")[0] == 0  # default --fail-on error; the lab has warnings only
    assert run("lint", "--fail-on", "warning")[0] == 1
    assert run("lint", "--fail-on", "never")[0] == 0
    assert run("lint", "--fail-on", "info", str(KP / "node-port.txt"))[0] == 1
    assert run("lint", "--fail-on", "warning", str(KP / "node-port.txt"))[0] == 0
    assert run("lint", "--fail-on", "warning", "--node", "ip-10-11-40-87")[0] == 1


def test_json_schema_and_node_selection() -> None:
    code, out, _ = run("lint", "-o", "json", "--node", "ip-10-11-3-14")
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == "kpsim/lint/v1"
    assert out == json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n"
    assert [f["code"] for f in doc["findings"]] == ["KP002", "KP001"]
    first = doc["findings"][0]
    assert set(first) == {"code", "kind", "location", "message", "node", "service", "severity"}
    assert first["location"].endswith("ip-10-11-3-14/iptables-save.txt:41")
    assert [i["capture"]["complete"] for i in doc["inputs"]] == [True, True, True]


def test_bad_input_exits_2_with_file_and_line(tmp_path: Path) -> None:
    dump = tmp_path / "dump.txt"
    dump.write_text("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m bogus --what -j\nCOMMIT\n")
    code, _, err = run("lint", str(dump), "--strict")
    assert code == 2 and f"{dump}:3:" in err and "Traceback" not in err
    code, _, err = run("lint", "/nonexistent/kpsim")
    assert code == 2 and err.startswith("kpsim: ")


def test_an_empty_service_chain_has_no_endpoints(tmp_path: Path) -> None:
    """The nat layout: KUBE-SVC whole but with no KUBE-SEP jump (its rules replaced by
    comment lines, so every other line keeps its number)."""
    gone = {n: "# rule removed" for n in (162, 163, 164)}
    found = findings(edited(tmp_path, gone))
    (empty,) = [
        f for f in kinds(found, "no-endpoints") if f.service != "node-test-01/node-test-02-svc"
    ]
    assert empty.service == "node-test-01/node-test-01-svc"
    assert "KUBE-SVC-6FADE4ADMXCZ7ACT jumps to no endpoint" in empty.message
    assert "172.20.177.168:8080, NodePort 30080 lead nowhere" in empty.message
    assert empty.location and empty.location.endswith(":84")  # the chain's declaration
    # the three endpoint chains are left with no jump to them
    assert len(kinds(found, "unreferenced-chain")) == 3


def test_a_nat_only_capture_says_what_it_cannot_see() -> None:
    """ip-10-11-3-14's `iptables -t nat -nvL`: the black hole and the REJECTs are in the
    filter table it lacks, so lint says it cannot tell — not that all is well."""
    (only,) = findings(SEED / "ip-10-11-3-14/iptables-nat.txt")
    assert (only.kind, only.severity.value) == ("partial-capture", "info")
    assert "filter table is not captured" in only.message


def test_nodeport_addresses_against_the_node_ip() -> None:
    """kube-proxy's own nodePortAddresses dump: NodePorts only on 192.168.0.2. Unknown node
    address → an info naming the limit; a node address outside it → a warning; inside → none."""
    from click.testing import CliRunner

    from kpsim.cli.main import main

    dump = str(REPO / "tests/data/kube-proxy/only-local-node-ports.txt")

    def kp011(*extra: str) -> list[dict[str, object]]:
        done = CliRunner().invoke(main, ["lint", dump, "-o", "json", "--fail-on", "never", *extra])
        assert done.exit_code == 0, done.output
        return [f for f in json.loads(done.output)["findings"] if f["code"] == "KP011"]

    (info,) = kp011()
    assert info["severity"] == "info" and info["location"].endswith(":24")
    (warn,) = kp011("--node-ip", "10.0.0.9", "--node-ip", "192.168.0.2")
    assert warn["severity"] == "warning" and "10.0.0.9" in warn["message"]
    assert kp011("--node-ip", "192.168.0.2") == []
    bad = CliRunner().invoke(main, ["lint", dump, "--node-ip", "nope"])
    assert bad.exit_code == 2 and "--node-ip" in bad.output
