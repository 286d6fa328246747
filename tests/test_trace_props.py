"""Properties where probabilities live: cascades give p_i · Π(1 − p_j), shares sum to
exactly 1, and merging does not depend on the order outcomes arrive in."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from kpsim.engine.packet import Packet, State
from kpsim.engine.trace import Disposition, Outcome, Step, Tracer, merge_outcomes
from kpsim.model import (
    PROBABILITY_SCALE,
    Address,
    Chain,
    Dnat,
    Family,
    Format,
    Jump,
    MarkMatch,
    MarkTarget,
    Masquerade,
    NatRange,
    PortMatch,
    PortRange,
    Protocol,
    Rule,
    Ruleset,
    Snat,
    Standard,
    StatisticMatch,
    StatisticMode,
    Table,
    Verdict,
)

PKT = Packet.of("203.0.113.9", "10.96.0.10", 80)
thresholds = st.integers(min_value=0, max_value=PROBABILITY_SCALE)


def ruleset(chains: dict[str, list[Rule]]) -> Ruleset:
    built = {
        name: Chain(
            name,
            tuple(replace(x, table="nat", chain=name, number=i) for i, x in enumerate(rules, 1)),
        )
        for name, rules in chains.items()
    }
    return Ruleset("<prop>", Format.SAVE, Family.IPV4, {"nat": Table("nat", built)})


def rule(target: object, *matches: object) -> Rule:
    return Rule("", "", 0, target, matches=tuple(matches))  # type: ignore[arg-type]


def rnd(t: int) -> StatisticMatch:
    return StatisticMatch(StatisticMode.RANDOM, threshold=t)


def endpoint(i: int) -> str:
    return f"10.244.{i // 250}.{i % 250 + 1}"


def cascade(ts: list[int], last_unconditional: bool) -> Ruleset:
    svc = [rule(Jump(f"SEP{i}"), rnd(t)) for i, t in enumerate(ts)]
    if last_unconditional:
        svc.append(rule(Jump(f"SEP{len(ts)}")))
    seps = {
        f"SEP{i}": [rule(Dnat((NatRange(endpoint(i), None, 8080, None),)))]
        for i in range(len(ts) + 1)
    }
    return ruleset({"PREROUTING": svc, **seps})


@settings(max_examples=150, deadline=None)
@given(st.lists(thresholds, min_size=1, max_size=12), st.booleans())
def test_cascade_shares_are_exact(ts: list[int], last: bool) -> None:
    res = Tracer(cascade(ts, last)).trace(PKT)
    got = {o.destination: o.probability for o in res.outcomes}
    survive = Fraction(1)
    for i, t in enumerate(ts):
        p = Fraction(t, PROBABILITY_SCALE)
        assert got.get((endpoint(i), 8080), Fraction(0)) == p * survive
        survive *= 1 - p
    rest_key = (endpoint(len(ts)), 8080) if last else ("10.96.0.10", 80)
    assert got.get(rest_key, Fraction(0)) == survive
    assert sum(got.values()) == 1 == res.total
    assert all(o.probability > 0 for o in res.outcomes)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(thresholds, st.integers(0, 3)), min_size=1, max_size=8))
def test_forking_marks_still_sum_to_one(spec: list[tuple[int, int]]) -> None:
    """Non-terminating random MARK rules fork without ending the chain; whatever the
    mix, the outcomes partition probability 1 exactly."""
    rules = [rule(MarkTarget(1 << bit, 0), rnd(t)) for t, bit in spec]
    rules += [rule(Jump(f"SEP{b}"), MarkMatch(1 << b, 1 << b)) for b in range(4)]
    seps = {f"SEP{b}": [rule(Dnat((NatRange(endpoint(b), None, 80, None),)))] for b in range(4)}
    res = Tracer(ruleset({"PREROUTING": rules, **seps})).trace(PKT)
    assert res.total == 1
    assert sum(o.merged for o in res.outcomes) == 2 ** sum(
        0 < t < PROBABILITY_SCALE for t, _ in spec
    )


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(0, 8))
def test_nth_matches_once_per_cycle(every: int, start: int) -> None:
    start %= every
    nth = StatisticMatch(StatisticMode.NTH, every=every, packet=start)
    rs = ruleset({"PREROUTING": [rule(Standard(Verdict.DROP), nth)]})
    tracer = Tracer(rs)
    key = ("nat", "PREROUTING", 1)
    drops = [
        tracer.trace(PKT, State(nth={key: c})).outcomes[0].verdict is Disposition.DROP
        for c in range(every)
    ]
    assert drops.count(True) == 1 and drops.index(True) == every - 1


outcome = st.builds(
    Outcome,
    verdict=st.sampled_from(list(Disposition)),
    probability=st.fractions(min_value=0, max_value=1, max_denominator=1 << 31),
    destination=st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2"]), st.sampled_from([80, 443])),
    masquerade=st.booleans(),
    path=st.lists(
        st.builds(Step, st.just("nat"), st.sampled_from(["A", "B"]), st.integers(0, 3), st.none()),
        max_size=3,
    ).map(tuple),
    assumptions=st.lists(st.sampled_from(["x", "y"]), max_size=2, unique=True).map(tuple),
)


@given(st.lists(outcome, max_size=12), st.randoms(use_true_random=False))
def test_merge_is_order_independent(outcomes: list[Outcome], rng: object) -> None:
    shuffled = list(outcomes)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    merged = merge_outcomes(outcomes)
    assert merged == merge_outcomes(shuffled)
    assert sum((o.probability for o in merged), Fraction(0)) == sum(
        (o.probability for o in outcomes), Fraction(0)
    )
    assert len({o.key for o in merged}) == len(merged)
    assert sum(o.merged for o in merged) == len(outcomes)


# ---------------------------------------------------------------- remembered walks

_POOL = ["10.244.0.1", "10.244.0.2", "10.244.1.1", "10.96.0.10", "192.0.2.5"]
_NETS = ["10.244.0.1/32", "10.244.0.0/24", "10.244.0.0/16", "10.96.0.10/32"]

post_rule = st.builds(
    lambda target, d, neg, port: Rule(
        "",
        "",
        0,
        target,
        destination=Address(ipaddress.ip_network(d), neg) if d else None,
        protocol=Protocol("tcp") if port else None,
        matches=(PortMatch("tcp", dport=PortRange(port, port)),) if port else (),
    ),
    st.sampled_from(
        [
            Masquerade(),
            Snat((NatRange("198.51.100.1", None, None, None),)),
            Snat(()),
            Standard(Verdict.RETURN),
            Standard(Verdict.ACCEPT),
            MarkTarget(0x4000, 0x4000),
            None,
        ]
    ),
    st.sampled_from([None, *_NETS]),
    st.booleans(),
    st.sampled_from([None, 80, 8080]),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(thresholds, st.sampled_from(_POOL), st.sampled_from([80, 8080])), max_size=4
    ),
    st.lists(post_rule, max_size=6),
    st.lists(st.tuples(st.sampled_from(_POOL), st.sampled_from([80, 8080, 443])), max_size=12),
)
def test_remembered_walks_answer_as_walked(
    dnats: list[tuple[int, str, int]],
    post: list[Rule],
    packets: list[tuple[str, int]],
) -> None:
    """Whatever DNAT leaves and POSTROUTING then sees, a tracer that replays remembered
    walks answers exactly as one that walks every hook, packet after packet."""
    pre = [rule(Jump(f"SEP{i}"), rnd(t)) for i, (t, _, _) in enumerate(dnats)]
    seps = {
        f"SEP{i}": [rule(Dnat((NatRange(a, None, port, None),)))]
        for i, (_, a, port) in enumerate(dnats)
    }
    rs = ruleset({"PREROUTING": pre, "POSTROUTING": post, **seps})
    warm, plain = Tracer(rs), Tracer(rs, memo=False)
    for dst, port in packets * 2:
        pkt = Packet.of("203.0.113.9", dst, port)
        assert warm.trace(pkt) == plain.trace(pkt)
