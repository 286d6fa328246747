"""kpsim's simulated distribution against the real kernel's (root only; CI runs these).

For each scenario the same rules are loaded into throw-away namespaces (kpsim.verify.replay) and
N real TCP connections (fresh source port each) are sent; ``kpsim.simulate`` answers the
same question with n = N and a seeded generator. Both become counts per category:

    kernel  ok → the endpoint that answered ("ip:port"); refused; timeout
    kpsim   DNAT → "ip:port"; LOCAL/ACCEPT (no DNAT, delivered to the node) → "ip:port" of
            the node, where the harness's node-side responder answers; REJECT → refused;
            DROP → timeout

and the 2×k table must pass a χ² test of homogeneity, with both samples near the exact
shares. Affinity scenarios compare per-client behaviour: stickiness with few clients, and
with more clients than ``recent`` lists hold (ip_list_tot, 100) the share of repeat
visits that changed endpoint.

Flakiness: the kernel draws from get_random_u32 (not seedable), so each test is a real
two-sample test. Each requires p > 1e-3, i.e. a correct simulator fails a scenario about
1 run in 1,000 (the χ² approximation is good at these counts: merged cells expect ≥ 5);
six such tests make ≈ 0.6 % for the file. The exact-share checks allow 4.5 σ (≈ 1e-5 each).
So each test gets one rerun (pytest-rerunfailures): a correct simulator then fails a
scenario about 1 run in 10^6, while a real disagreement, being systematic, fails both.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2_contingency, chisquare, norm

from kpsim.engine.trace import Disposition
from kpsim.formats import load_file
from kpsim.inputs import synth
from kpsim.inputs.synth import ClusterSpec
from kpsim.kube.scenario import NodeInput
from kpsim.model import Ruleset
from kpsim.simulate.run import ServiceSim, SimRequest, simulate
from kpsim.verify import netns
from kpsim.verify.replay import KernelResult, open_replay
from test_trace_kernel import NODE, cluster_of, node_ruleset, service

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.flaky(reruns=1),  # statistical: see the module docstring
    pytest.mark.skipif(
        not netns.available(), reason="needs root plus ip/iptables/iptables-save/iptables-restore"
    ),
]

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = ROOT / "fixtures/iptables/eks-nodeport-workshop"
WITH_LOCAL_POD = "ip-10-11-28-53"  # runs an ecsdemo-crystal pod: 30082 (ETP Local) DNATs
WITHOUT_LOCAL_POD = "ip-10-11-3-14"  # runs none: 30082 is dropped
N = 2_000  # connections per scenario, kernel and kpsim alike
P_MIN = 1e-3  # see the module docstring for the false-failure rate
SIGMAS = 4.5  # exact-share tolerance, in binomial standard deviations
SEED = 20_240_601
PORT = 30100  # the generated service's NodePort


def our_namespaces() -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(netns.PREFIX)]


@pytest.fixture(autouse=True)
def no_namespace_left_behind() -> Iterator[None]:
    mine = f"{netns.PREFIX}{os.getpid()}-"
    yield
    assert [n for n in our_namespaces() if n.startswith(mine)] == []


def recent_capacity() -> int:
    """The kernel's ``ip_list_tot`` (xt_recent module parameter; 100 unless changed)."""
    p = Path("/sys/module/xt_recent/parameters/ip_list_tot")
    return int(p.read_text()) if p.is_file() else 100


# ---------------------------------------------------------------- categories


def kernel_counts(k: KernelResult) -> Counter[str]:
    return Counter(
        (c.destination or "ok:?") if c.status == "ok" else c.status for c in k.connections
    )


def sim_category(verdict: str, destination: str) -> str:
    if verdict in (Disposition.DNAT.value, Disposition.LOCAL.value, Disposition.ACCEPT.value):
        return destination
    return {Disposition.DROP.value: "timeout", Disposition.REJECT.value: "refused"}.get(
        verdict, f"{verdict} {destination}"
    )


def sim_counts(s: ServiceSim) -> Counter[str]:
    out: Counter[str] = Counter()
    for o in s.outcomes:
        out[sim_category(o.verdict, o.destination)] += o.count
    return +out


def sim_exact(s: ServiceSim) -> dict[str, Fraction]:
    out: dict[str, Fraction] = {}
    for o in s.outcomes:
        key = sim_category(o.verdict, o.destination)
        out[key] = out.get(key, Fraction(0)) + o.expected
    return {k: v for k, v in out.items() if v > 0}


def homogeneity_p(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """χ² test of homogeneity on the 2×k table; columns expecting < 5 in either row are
    merged into one (and that one into its neighbour if it still expects < 5)."""
    keys = sorted(set(a) | set(b))
    table = np.array([[a.get(x, 0) for x in keys], [b.get(x, 0) for x in keys]], dtype=float)
    rows = table.sum(axis=1, keepdims=True)
    expected = rows * table.sum(axis=0) / table.sum()
    small = (expected < 5).any(axis=0)
    if small.any():
        merged = table[:, small].sum(axis=1, keepdims=True)
        table = np.hstack([table[:, ~small], merged])
        if (rows * table.sum(axis=0) / table.sum() < 5).any() and table.shape[1] > 1:
            table = np.hstack([table[:, :-2], table[:, -2:].sum(axis=1, keepdims=True)])
    if table.shape[1] < 2:
        return 1.0  # one category left: both samples put everything there
    return float(chi2_contingency(table, correction=False).pvalue)


def assert_near_exact(counts: Mapping[str, int], exact: Mapping[str, Fraction], who: str) -> None:
    n = sum(counts.values())
    for key in set(counts) | set(exact):
        p = float(exact.get(key, 0))
        tol = max(0.005, SIGMAS * math.sqrt(p * (1 - p) / n))
        assert abs(counts.get(key, 0) / n - p) <= tol, (who, key, dict(counts), exact)


@dataclass(frozen=True, slots=True)
class Compared:
    kernel: KernelResult
    sim: ServiceSim
    exact: dict[str, Fraction]  # category → exact share (the engine's, via kpsim)
    p: float  # χ² homogeneity, kernel vs kpsim


def compare(rs: Ruleset, port: int, *, connect_timeout_s: float = 1.0) -> Compared:
    """N kernel connections and N simulated ones to ``port`` on the node's own address."""
    with open_replay(rs, timeout_s=150) as session:
        k = session.probe(port, n=N, connect_timeout_s=connect_timeout_s)
    assert len(k.connections) == N
    node = str(rs.metadata.get("node", rs.path))
    report = simulate([NodeInput(node, rs)], SimRequest(N, port=port), np.random.default_rng(SEED))
    (s,) = report.services
    kc, sc, exact = kernel_counts(k), sim_counts(s), sim_exact(s)
    p = homogeneity_p(kc, sc)
    print(f"\n{port}: kernel {dict(kc)}\n{port}: kpsim  {dict(sc)}\nexact {exact}\nχ² p = {p:.3g}")
    assert set(kc) <= set(exact) and set(sc) <= set(exact), (dict(kc), dict(sc), exact)
    assert p > P_MIN, (dict(kc), dict(sc), p)
    assert_near_exact(kc, exact, "kernel")
    assert_near_exact(sc, exact, "kpsim")
    return Compared(k, s, exact, p)


# ---------------------------------------------------------------- distributions


def fixture(node: str) -> Ruleset:
    return load_file(FIXTURE_DIR / node / "iptables-save.txt")


def test_uniform_fixture_nodeport() -> None:
    """kube-proxy's own 1/3, 1/2, rest over three endpoints (NodePort 30080)."""
    got = compare(fixture(WITH_LOCAL_POD), 30080)
    assert len(got.exact) == 3


def test_etp_local_with_a_local_pod() -> None:
    """externalTrafficPolicy Local, node runs one crystal pod: KUBE-SVL → that pod only."""
    got = compare(fixture(WITH_LOCAL_POD), 30082)
    assert list(got.exact) == ["10.11.25.102:3000"]


def test_etp_local_without_a_local_pod() -> None:
    """No local crystal pod: KUBE-EXTERNAL-SERVICES drops every connection (filter table).
    A dropped SYN can only time out, so a short connect timeout keeps N affordable."""
    got = compare(fixture(WITHOUT_LOCAL_POD), 30082, connect_timeout_s=0.004)
    assert got.exact == {"timeout": Fraction(1)}
    drops = {key: v for key, v in got.kernel.counters.items() if key[1] == "KUBE-EXTERNAL-SERVICES"}
    assert list(drops.values()) == [N], drops


def generated(
    text_edit: Sequence[tuple[str, str]] = (), cluster: ClusterSpec | None = None
) -> Ruleset:
    cluster = cluster or cluster_of(service(3))
    text = synth.render_restore(cluster, NODE)
    for old, new in text_edit:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return node_ruleset(cluster, text)


def test_hand_skewed_chain() -> None:
    """Probabilities edited by hand: 0.1 / 0.8 → shares 0.1 / 0.18 / 0.72."""
    rs = generated(
        [
            ("--probability 0.3333333333", "--probability 0.1000000000"),
            ("--probability 0.5000000000", "--probability 0.8000000000"),
        ]
    )
    got = compare(rs, PORT)
    shares = sorted(round(float(x), 6) for x in got.exact.values())
    assert shares == [0.1, 0.18, 0.72]


def test_chain_that_falls_through() -> None:
    """The last jump of KUBE-SVC-… made random too (--probability 0.5): 1/6 of connections
    leave the chain un-DNATed, still addressed to the node's own NodePort, and are
    delivered locally (kpsim: LOCAL). On a real node nothing listens there and the client
    gets a RST; in the harness the node's responder answers, which shows the address."""
    text = synth.render_restore(cluster_of(service(3)), NODE)
    last = [ln for ln in text.splitlines() if ln.startswith("-A KUBE-SVC-")][-1]
    assert "statistic" not in last
    edited = last.replace(
        " -j KUBE-SEP-", " -m statistic --mode random --probability 0.5 -j KUBE-SEP-"
    )
    got = compare(generated([(last, edited)]), PORT)
    here = f"{NODE.ip}:{PORT}"
    assert abs(got.exact[here] - Fraction(1, 6)) < 1e-9
    assert any(o.verdict == Disposition.LOCAL.value for o in got.sim.outcomes)
    # Delivered locally, never through POSTROUTING: marked for masquerade, yet not SNATed.
    mine = [c for c in got.kernel.connections if c.destination == here]
    assert mine and not any(c.masquerade for c in mine)
    assert not next(o for o in got.sim.outcomes if o.destination == here).masquerade


# ---------------------------------------------------------------- session affinity

AFFINITY_S = 10_800  # kube-proxy's default timeout: nothing expires during a test


def recent_lists(ns: str) -> dict[str, int]:
    """Entries per xt_recent list in the node namespace (the lists are per network ns)."""
    script = 'for f in /proc/net/xt_recent/*; do echo "$f $(wc -l < "$f")"; done'
    out = netns.run(ns, ["sh", "-c", script], timeout=10).stdout
    return {Path(p).name: int(k) for p, k in (ln.split() for ln in out.splitlines()) if k}


def affinity_run(
    endpoints: int, clients: int
) -> tuple[KernelResult, dict[str, int], ServiceSim, dict[str, Fraction]]:
    """N connections from ``clients`` addresses in a seeded uniform random order — the
    order kpsim draws its clients in — through a ClientIP-affinity service."""
    rs = generated(cluster=cluster_of(service(endpoints, session_affinity_seconds=AFFINITY_S)))
    order = np.random.default_rng(SEED + clients).integers(0, clients, size=N).tolist()
    with open_replay(rs, clients=clients, timeout_s=150) as session:
        k = session.probe(PORT, n=N, order=order)
        lists = recent_lists(session.topology.node)
    assert k.answered == N, k.connections[:3]
    assert [c.source for c in k.connections] == [k.sources[i] for i in order]
    req = SimRequest(N, port=PORT, clients=clients, recent_capacity=recent_capacity())
    (s,) = simulate([NodeInput(NODE.name, rs)], req, np.random.default_rng(SEED)).services
    assert s.affinity is not None and s.affinity.seconds == AFFINITY_S
    return k, lists, s, sim_exact(s)


def per_client(k: KernelResult) -> tuple[dict[str, list[str]], int, int]:
    """Each client's endpoints in order; repeat visits; repeat visits that changed endpoint
    (as kpsim's AffinityStat counts them)."""
    seen: dict[str, list[str]] = {}
    repeats = changed = 0
    for c in k.connections:
        assert c.destination is not None
        visits = seen.setdefault(c.source, [])
        if visits:
            repeats += 1
            changed += visits[-1] != c.destination
        visits.append(c.destination)
    return seen, repeats, changed


def test_affinity_few_clients_stick() -> None:
    """5 clients, N connections: every client keeps its first endpoint, kernel and kpsim."""
    k, lists, s, exact = affinity_run(3, 5)
    seen, repeats, changed = per_client(k)
    a = s.affinity
    assert a is not None
    print(f"\nkernel: {len(seen)} clients, {changed}/{repeats} changed, lists {lists}")
    print(f"kpsim:  {a.changed}/{a.repeats} changed, {s.tested} fresh picks, χ² p {s.chi2_p}")
    assert len(seen) == 5 and all(len(set(v)) == 1 for v in seen.values()), seen.keys()
    assert {v[0] for v in seen.values()} <= set(exact)
    assert sum(lists.values()) == 5 and max(lists.values()) <= 5
    assert (a.changed, a.split_clients, a.evicted) == (0, 0, 0)
    assert s.tested == 5 and a.sticky == N - 5  # one fresh pick per client, then sticky


def two_proportion_p(k1: int, n1: int, k2: int, n2: int, dispersion: float = 1.0) -> float:
    """Two-sided z test of k1/n1 == k2/n2 with the pooled variance times ``dispersion``."""
    p = (k1 + k2) / (n1 + n2)
    var = dispersion * p * (1 - p) * (1 / n1 + 1 / n2)
    if var == 0:
        return 1.0 if k1 / n1 == k2 / n2 else 0.0
    return float(2 * norm.sf(abs(k1 / n1 - k2 / n2) / math.sqrt(var)))


def change_dispersion(rs_clients: int, replicates: int = 40) -> float:
    """Var(changed share) over kpsim replicates ÷ the binomial variance: repeat visits are
    not independent (one eviction can move a client for good), so the plain two-proportion
    test would be too strict. Measured ≈ 1.3 for 2 endpoints / 250 clients."""
    rs = generated(cluster=cluster_of(service(2, session_affinity_seconds=AFFINITY_S)))
    req = SimRequest(N, port=PORT, clients=rs_clients, recent_capacity=recent_capacity())
    shares, total = [], 0
    for r in range(replicates):
        (s,) = simulate([NodeInput(NODE.name, rs)], req, np.random.default_rng(r)).services
        assert s.affinity is not None
        shares.append(s.affinity.changed / s.affinity.repeats)
        total += s.affinity.repeats
    p, m = float(np.mean(shares)), total / replicates
    return max(1.0, float(np.var(shares, ddof=1)) / (p * (1 - p) / m))


def test_affinity_more_clients_than_a_recent_list_holds() -> None:
    """250 clients over 2 endpoints: each endpoint's recent list (KUBE-SEP-…) holds at most
    ip_list_tot = 100 clients, so ~50 clients are always out of both lists and re-pick at
    random; the share of repeat visits that changed endpoint must match.

    (With 150 clients over 2–3 endpoints no list overflows — the lists are per endpoint —
    and affinity holds in both kernel and kpsim: the break needs > 100 clients per list.)"""
    clients = 250
    if 2 * recent_capacity() >= clients:
        pytest.skip(f"xt_recent ip_list_tot={recent_capacity()}: 250 clients fit in 2 lists")
    k, lists, s, exact = affinity_run(2, clients)
    seen, repeats, changed = per_client(k)
    a = s.affinity
    assert a is not None
    phi = change_dispersion(clients)
    p = two_proportion_p(changed, repeats, a.changed, a.repeats, phi)
    p_plain = two_proportion_p(changed, repeats, a.changed, a.repeats)
    print(
        f"\nkernel: {changed}/{repeats} = {changed / repeats:.4f} changed, lists {lists}"
        f"\nkpsim:  {a.changed}/{a.repeats} = {a.changed / a.repeats:.4f} changed, "
        f"{a.evicted} evicted\ndispersion {phi:.2f}: p = {p:.3g} (plain {p_plain:.3g})"
    )
    cap = recent_capacity()
    assert len(lists) == 2 and max(lists.values()) == cap, lists  # full, never over
    assert a.evicted > 0
    assert changed / repeats > 0.03 and a.changed / a.repeats > 0.03
    assert p > P_MIN, (changed, repeats, a.changed, a.repeats, phi)
    # First picks: each client's first connection is a fresh draw from the cascade.
    first = Counter(v[0] for v in seen.values())
    keys = sorted(exact)
    fp = chisquare([first.get(x, 0) for x in keys], [float(exact[x]) * len(seen) for x in keys])
    print(f"kernel first picks {dict(first)}: χ² p = {fp.pvalue:.3g}; kpsim fresh χ² p {s.chi2_p}")
    assert fp.pvalue > P_MIN and s.chi2_p is not None and s.chi2_p > P_MIN
