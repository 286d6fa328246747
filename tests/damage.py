"""Small, reproducible damages to a shipped fixture: each function takes a capture's text
and returns the damaged text (pure, no I/O), except ``make_list_no_v``, which has the real
``iptables`` print a listing inside a throw-away network namespace (``kernel_listing``).

    shipped iptables-save.txt ─ cut_mid_line / chain_removed / … ─▶ fixtures/damaged/*.txt

``DAMAGED`` names every committed file and the call that makes it from the shipped
fixture; ``python3 tests/damage.py`` rewrites them (``--list`` also the kernel-made
``list-no-v.txt``, as root), and tests/test_damaged.py checks each committed file is
still byte for byte what its call makes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED_SET = REPO / "fixtures/iptables/eks-nodeport-workshop"
NODE = "ip-10-11-28-53"
SHIPPED = SHIPPED_SET / NODE / "iptables-save.txt"
DAMAGED_DIR = REPO / "fixtures/damaged"
#: How the committed files name their source (never an absolute path).
SOURCE = f"fixtures/iptables/eks-nodeport-workshop/{NODE}/iptables-save.txt"

#: The endpoint whose DNAT line ``cut_mid_line`` cuts (node-test-01-svc, NodePort 30080).
CUT_ENDPOINT = "10.11.11.70"
#: What is left of its address after the cut: "--to-destination 10.11.1".
CUT_KEEP = "10.11.1"
#: The KUBE-SVC chain ``chain-removed.txt`` lacks: node-test-01/node-test-01-svc (30080).
REMOVED_CHAIN = "KUBE-SVC-6FADE4ADMXCZ7ACT"
#: The rule ``list_no_v`` puts before kube-proxy's jump in nat PREROUTING.
ETH1_DNAT = "-A PREROUTING -i eth1 -p tcp -m tcp --dport 30080 -j DNAT --to-destination 198.18.0.9"
KUBE_PORTALS_JUMP = (
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
)
NODEPORTS_JUMP = re.compile(r"^-A KUBE-SERVICES .*-j KUBE-NODEPORTS$")


# ---------------------------------------------------------------- save text helpers


def header(*lines: str) -> str:
    """``#`` comment lines (iptables-restore and kpsim skip them) to put first."""
    return "".join(f"# {line}\n" for line in lines)


def section(text: str, table: str) -> list[str]:
    """The lines of ``*table`` … ``COMMIT`` (both included) of an iptables-save text."""
    lines = text.splitlines()
    start = lines.index(f"*{table}")
    end = lines.index("COMMIT", start)
    return lines[start : end + 1]


def _in_table(text: str, table: str, keep: Callable[[str], bool]) -> str:
    """``text`` with the lines of ``table``'s section that ``keep`` refuses removed."""
    out: list[str] = []
    current: str | None = None
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\n")
        if bare.startswith("*"):
            current = bare[1:]
        if current == table and not keep(bare):
            continue
        if bare == "COMMIT":
            current = None
        out.append(line)
    return "".join(out)


def _chain_lines(chain: str) -> Callable[[str], bool]:
    """True for the lines that do not declare ``chain`` or add a rule to it."""

    def keep(line: str) -> bool:
        return not (line.startswith(f":{chain} ") or line.startswith(f"-A {chain} "))

    return keep


def tables_of(text: str) -> list[str]:
    return [line[1:] for line in text.splitlines() if line.startswith("*")]


def chains_of(text: str) -> list[tuple[str, str]]:
    """Every (table, chain) an iptables-save text declares, in order."""
    out: list[tuple[str, str]] = []
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            out.append((table, line[1:].split(" ", 1)[0]))
    return out


# ---------------------------------------------------------------- the damages


def remove_chain(text: str, table: str, chain: str) -> str:
    """``text`` without ``table``'s ``chain``: its declaration and all its rules (the jumps
    to it stay, as a capture that lost the chain would have them)."""
    return _in_table(text, table, _chain_lines(chain))


def cut(text: str, offset: int) -> str:
    """The capture as a paste cut off after ``offset`` characters."""
    return text[:offset]


def cut_after_line(text: str, number: int) -> str:
    """The capture's first ``number`` lines, each with its newline."""
    return "".join(text.splitlines(keepends=True)[:number])


def cut_mid_line(text: str, endpoint: str = CUT_ENDPOINT, keep: str = CUT_KEEP) -> str:
    """The capture cut off inside the DNAT line of ``endpoint``: the text ends in
    ``--to-destination 10.11.1`` with no newline and no COMMIT after it (a paste or a
    ticket that lost its end), so the address left looks like a whole, wrong one."""
    assert endpoint.startswith(keep) and endpoint != keep, (endpoint, keep)
    start = text.index(f"-j DNAT --to-destination {endpoint}:") + len("-j DNAT --to-destination ")
    return (
        header(
            f"kpsim fixture: {SOURCE} cut off inside the DNAT line of {endpoint} "
            f'("--to-destination {keep}"): no newline and no COMMIT after it.',
            "Made by tests/damage.py cut_mid_line (regenerate: python3 tests/damage.py).",
        )
        + text[: start + len(keep)]
    )


def chain_removed(text: str, chain: str = REMOVED_CHAIN) -> str:
    """One nat KUBE-SVC chain's declaration and rules removed: KUBE-SERVICES and
    KUBE-EXT still jump to it (a capture that grepped or trimmed chains)."""
    return header(
        f"kpsim fixture: {SOURCE} with nat {chain} (node-test-01/node-test-01-svc, "
        "NodePort 30080) removed: its declaration and its rules; the jumps to it stay.",
        "Made by tests/damage.py chain_removed (regenerate: python3 tests/damage.py).",
    ) + remove_chain(text, "nat", chain)


def postrouting_removed(text: str) -> str:
    """nat POSTROUTING's declaration and rules removed: whether the client IP is
    masqueraded cannot be told (KUBE-POSTROUTING stays, nothing jumps to it)."""
    return header(
        f"kpsim fixture: {SOURCE} with the nat POSTROUTING chain removed "
        "(its declaration and its rules).",
        "Made by tests/damage.py postrouting_removed (regenerate: python3 tests/damage.py).",
    ) + remove_chain(text, "nat", "POSTROUTING")


def nodeports_jump_removed(text: str) -> str:
    """KUBE-SERVICES' last rule (``-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS``)
    removed: the NodePorts stay listed in KUBE-NODEPORTS, but nothing jumps there."""
    out = _in_table(text, "nat", lambda line: NODEPORTS_JUMP.match(line) is None)
    assert out.count("\n") == text.count("\n") - 1
    return (
        header(
            f"kpsim fixture: {SOURCE} without KUBE-SERVICES' last rule, the "
            "-j KUBE-NODEPORTS jump: the NodePorts are listed but nothing jumps to them.",
            "Made by tests/damage.py nodeports_jump_removed (regenerate: python3 tests/damage.py).",
        )
        + out
    )


_QUOTED_COMMENT = re.compile(r'--comment "([^"]*)"')


def unquoted_comments(text: str, every: bool = True) -> str:
    """Every ``--comment "a b c"`` written ``--comment a b c``, as kube-proxy's unit tests
    write their expected dumps (iptables-restore would split such a comment). kube-proxy's
    tests keep the quotes where a word starts with ``-`` (``"ns/svc -> 10.0.1.1:80"``);
    ``every=False`` does the same, the committed file unquotes those too."""

    def unquote(m: re.Match[str]) -> str:
        if not every and any(word.startswith("-") for word in m[1].split()):
            return m[0]
        return f"--comment {m[1]}"

    return header(
        f"kpsim fixture: {SOURCE} with every comment unquoted, as kube-proxy's unit tests "
        "write them (--comment kubernetes service portals).",
        "Made by tests/damage.py unquoted_comments (regenerate: python3 tests/damage.py).",
    ) + _QUOTED_COMMENT.sub(unquote, text)


#: A dual-stack node's IPv6 nat table for node-test-01-svc (ClusterIP fd00:172:20::b1a8,
#: NodePort 30080, three pods), as kube-proxy v1.29 writes it for IPv6 (the NodePort jump
#: has ``! -d ::1/128``; SEP hashes over ``[ip]:port``). Checked: ip6tables-restore 1.8.9
#: (nf_tables) loads it in a throw-away namespace and ip6tables-save prints it back
#: unchanged (tests/test_damaged.py repeats that as root).
IPV6_NAT = """\
# Generated by ip6tables-save v1.8.9 (nf_tables) on Thu Nov 26 00:00:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-EXT-6FADE4ADMXCZ7ACT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-SEP-KNWPG5SAMJGWNRD7 - [0:0]
:KUBE-SEP-O2CDJDKQNAUPSXDU - [0:0]
:KUBE-SEP-WNGKGZGVXZMLNTFO - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-6FADE4ADMXCZ7ACT - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-EXT-6FADE4ADMXCZ7ACT -m comment --comment "masquerade traffic for node-test-01/node-test-01-svc external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-6FADE4ADMXCZ7ACT -j KUBE-SVC-6FADE4ADMXCZ7ACT
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "node-test-01/node-test-01-svc" -m tcp --dport 30080 -j KUBE-EXT-6FADE4ADMXCZ7ACT
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-KNWPG5SAMJGWNRD7 -s fd00:10:11:11::70/128 -m comment --comment "node-test-01/node-test-01-svc" -j KUBE-MARK-MASQ
-A KUBE-SEP-KNWPG5SAMJGWNRD7 -p tcp -m comment --comment "node-test-01/node-test-01-svc" -m tcp -j DNAT --to-destination [fd00:10:11:11::70]:80
-A KUBE-SEP-O2CDJDKQNAUPSXDU -s fd00:10:11:41::25/128 -m comment --comment "node-test-01/node-test-01-svc" -j KUBE-MARK-MASQ
-A KUBE-SEP-O2CDJDKQNAUPSXDU -p tcp -m comment --comment "node-test-01/node-test-01-svc" -m tcp -j DNAT --to-destination [fd00:10:11:41::25]:80
-A KUBE-SEP-WNGKGZGVXZMLNTFO -s fd00:10:11:16::79/128 -m comment --comment "node-test-01/node-test-01-svc" -j KUBE-MARK-MASQ
-A KUBE-SEP-WNGKGZGVXZMLNTFO -p tcp -m comment --comment "node-test-01/node-test-01-svc" -m tcp -j DNAT --to-destination [fd00:10:11:16::79]:80
-A KUBE-SERVICES -d fd00:172:20::b1a8/128 -p tcp -m comment --comment "node-test-01/node-test-01-svc cluster IP" -m tcp --dport 8080 -j KUBE-SVC-6FADE4ADMXCZ7ACT
-A KUBE-SERVICES ! -d ::1/128 -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-6FADE4ADMXCZ7ACT -m comment --comment "node-test-01/node-test-01-svc -> [fd00:10:11:11::70]:80" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-KNWPG5SAMJGWNRD7
-A KUBE-SVC-6FADE4ADMXCZ7ACT -m comment --comment "node-test-01/node-test-01-svc -> [fd00:10:11:16::79]:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-WNGKGZGVXZMLNTFO
-A KUBE-SVC-6FADE4ADMXCZ7ACT -m comment --comment "node-test-01/node-test-01-svc -> [fd00:10:11:41::25]:80" -j KUBE-SEP-O2CDJDKQNAUPSXDU
COMMIT
# Completed on Thu Nov 26 00:00:00 2026
"""  # noqa: E501
#: The IPv6 pods of ``IPV6_NAT``, in the KUBE-SVC chain's order.
IPV6_PODS = ("fd00:10:11:11::70", "fd00:10:11:16::79", "fd00:10:11:41::25")


def v4_v6(text: str) -> str:
    """The IPv4 capture followed by a dual-stack node's ``ip6tables-save`` (``IPV6_NAT``)
    in one file, as ``iptables-save; ip6tables-save`` into one paste gives."""
    return (
        header(
            f"kpsim fixture: {SOURCE} (iptables-save) followed by the same node's IPv6 nat "
            "table as a dual-stack node prints it, in one file.",
            "Made by tests/damage.py v4_v6 (regenerate: python3 tests/damage.py); the IPv6 "
            "block is written by hand after kube-proxy v1.29's layout and was printed back "
            "unchanged by the real tool after loading.",
        )
        + text
        + IPV6_NAT
    )


def as_dash_s(lines: list[str]) -> list[str]:
    """An iptables-save section as ``iptables -t TABLE -S`` prints it: ``-P`` for built-in
    chains, ``-N`` for the others, then the rules (checked against iptables 1.8.9)."""
    out: list[str] = []
    for line in lines:
        if line.startswith(":"):
            name, policy = line[1:].split(" ")[:2]
            out.append(f"-N {name}" if policy == "-" else f"-P {name} {policy}")
        elif line.startswith("-A "):
            out.append(line)
    return out


def markdown_filter_nat(text: str) -> str:
    """A markdown page (a ticket, a blog post) showing the node's filter table and its
    nat table as two fenced ``-S`` blocks with prose between; each block starts with the
    root-prompt command that printed it (``# iptables -t filter -S``)."""
    fence = "```"
    filter_s = "\n".join(as_dash_s(section(text, "filter")))
    nat_s = "\n".join(as_dash_s(section(text, "nat")))
    return (
        header(
            f"kpsim fixture: a markdown page with the filter and nat tables of {SOURCE} "
            "as fenced -S blocks, prose between.",
            "Made by tests/damage.py markdown_filter_nat (regenerate: python3 tests/damage.py).",
        )
        + "\n## Why does NodePort 30080 reach pods on other nodes?\n\n"
        + f"First the filter table of {NODE}, as root:\n\n"
        + f"{fence}\n# iptables -t filter -S\n{filter_s}\n{fence}\n\n"
        + "Nothing there touches port 30080, so the packet is not dropped. Now the nat\n"
        + "table, where kube-proxy rewrites the destination:\n\n"
        + f"{fence}\n# iptables -t nat -S\n{nat_s}\n{fence}\n\n"
        + "KUBE-SVC-6FADE4ADMXCZ7ACT picks one of the three pods at random.\n"
    )


def with_eth1_dnat(text: str) -> str:
    """The nat section of an iptables-save text with ``ETH1_DNAT`` before kube-proxy's
    jump in PREROUTING: iptables-restore input for ``list_no_v``."""
    lines = section(text, "nat")
    lines.insert(lines.index(KUBE_PORTALS_JUMP), ETH1_DNAT)
    return "\n".join(lines) + "\n"


def iptables_version() -> str:
    """``iptables --version`` here ("iptables v1.8.9 (nf_tables)")."""
    return subprocess.run(
        ["iptables", "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def list_no_v(text: str, listing: str, version: str) -> str:
    """``list-no-v.txt`` from the real tool's ``iptables -t nat -L -n`` ``listing`` of
    ``with_eth1_dnat(text)``: header lines, the fixture's ``# kpsim:meta`` line and the
    prompt line a paste starts with, then the listing as printed."""
    meta = next(line for line in text.splitlines() if line.startswith("# kpsim:meta "))
    return (
        header(
            f"kpsim fixture: the nat table of {SOURCE} plus one rule before kube-proxy's jump "
            f"in PREROUTING ({ETH1_DNAT.removeprefix('-A PREROUTING ')}), listed without -v: "
            "the listing cannot show its -i eth1.",
            f"Made by tests/damage.py list_no_v: loaded with iptables-restore into a "
            f"throw-away network namespace and listed there by {version}.",
        )
        + meta
        + "\n"
        + f"root@{NODE}:~# iptables -t nat -L -n\n"
        + listing
    )


def kernel_listing(restore_input: str) -> str:
    """``iptables -t nat -L -n`` after ``iptables-restore`` of ``restore_input``, in a
    throw-away network namespace ``kpsim-damage-<pid>``, always deleted (root only)."""
    from kpsim.verify import netns

    with netns.Namespace(f"kpsim-damage-{os.getpid()}") as ns:
        ns.load_rules(restore_input)
        return ns.run(["iptables", "-t", "nat", "-L", "-n"]).stdout


def make_list_no_v(text: str) -> str:
    """``list-no-v.txt`` made through the real kernel (root, iptables present)."""
    return list_no_v(text, kernel_listing(with_eth1_dnat(text)), iptables_version())


# ---------------------------------------------------------------- the committed files


@dataclass(frozen=True)
class Damage:
    name: str  # file in fixtures/damaged/
    make: Callable[[str], str]  # shipped iptables-save text → the file's text
    kernel: bool = False  # made through the real iptables (root only)


DAMAGED: tuple[Damage, ...] = (
    Damage("cut-mid-line.txt", cut_mid_line),
    Damage("chain-removed.txt", chain_removed),
    Damage("postrouting-removed.txt", postrouting_removed),
    Damage("nodeports-jump-removed.txt", nodeports_jump_removed),
    Damage("list-no-v.txt", make_list_no_v, kernel=True),
    Damage("unquoted-comments.txt", unquoted_comments),
    Damage("v4-v6.txt", v4_v6),
    Damage("markdown-filter-nat.md", markdown_filter_nat),
)


def shipped_text() -> str:
    return SHIPPED.read_text()


def write_all(kernel: bool) -> list[Path]:
    """Rewrite the committed files (the kernel-made one only when ``kernel``)."""
    text = shipped_text()
    out = []
    for made in DAMAGED:
        if made.kernel and not kernel:
            continue
        path = DAMAGED_DIR / made.name
        path.write_text(made.make(text))
        out.append(path)
    return out


if __name__ == "__main__":
    for written in write_all(kernel="--list" in sys.argv[1:]):
        print(written.relative_to(REPO))
