"""Render a ``Ruleset`` as canonical ``iptables-save`` text.

    *nat
    :PREROUTING ACCEPT [0:0]              built-in chains first, then user chains by name
    :KUBE-SERVICES - [0:0]
    -A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns" …
    COMMIT

Options come in the order iptables-save prints them, so text that came from
iptables-save renders back byte for byte (bar the ``# Generated`` lines), and
``iptables-restore`` accepts the result. Pure function; same model → same text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from kpsim.model import (
    BUILTIN_CHAINS,
    Address,
    AddrTypeMatch,
    Chain,
    CommentMatch,
    ConnmarkMatch,
    ConnmarkMode,
    ConnmarkTarget,
    ConntrackMatch,
    Ct,
    Dnat,
    Family,
    IPRangeMatch,
    Jump,
    Log,
    MarkMatch,
    MarkTarget,
    Masquerade,
    Match,
    MultiportMatch,
    Netmap,
    NfacctMatch,
    OpaqueMatch,
    OpaqueTarget,
    Option,
    OwnerMatch,
    PhysdevMatch,
    PortMatch,
    PortRange,
    RecentMatch,
    Redirect,
    Reject,
    Rule,
    Ruleset,
    SetMatch,
    Snat,
    Standard,
    StatisticMatch,
    StatisticMode,
    Table,
    Target,
    format_probability,
)

TABLE_ORDER = ("raw", "mangle", "filter", "nat", "security")
_NO_QUOTE_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
_BARE_ARG_RE = re.compile(r'[^ \t"]+\Z')
_FULL = 0xFFFFFFFF


def render_save(ruleset: Ruleset, *, counters: bool = False) -> str:
    """The whole ruleset as iptables-save text; ``counters`` adds ``[p:b]`` like ``-c``."""
    lines: list[str] = []
    names = sorted(ruleset.tables, key=lambda n: (n not in TABLE_ORDER, _table_rank(n), n))
    for name in names:
        lines.extend(_table(ruleset.tables[name], ruleset.family, counters))
    return "".join(line + "\n" for line in lines)


def _table_rank(name: str) -> int:
    return TABLE_ORDER.index(name) if name in TABLE_ORDER else 0


def _table(table: Table, family: Family, counters: bool) -> Iterator[str]:
    builtins = BUILTIN_CHAINS.get(table.name, ())
    chains = [table.chains[n] for n in builtins if n in table.chains]
    chains += [table.chains[n] for n in sorted(table.chains) if n not in builtins]
    yield f"*{table.name}"
    for chain in chains:
        yield _declaration(chain, counters)
    for chain in chains:
        for rule in chain.rules:
            yield render_rule(rule, family, counters=counters)
    yield "COMMIT"


def _declaration(chain: Chain, counters: bool) -> str:
    policy = chain.policy.value if chain.policy else "-"
    shown = chain.counters if counters and chain.counters else None
    packets, nbytes = (shown.packets, shown.bytes) if shown else (0, 0)
    return f":{chain.name} {policy} [{packets}:{nbytes}]"


def save_string(text: str) -> str:
    """Quote as iptables-save does: bare when only ``[A-Za-z0-9_-]``, else in double
    quotes with ``"``, ``'`` and ``\\`` escaped by a backslash."""
    if _NO_QUOTE_RE.match(text):
        return text
    return '"' + re.sub(r"([\"'\\])", r"\\\1", text) + '"'


def _arg(text: str) -> str:
    """A free argument: bare when iptables-restore would read it back unchanged."""
    return text if _BARE_ARG_RE.match(text) and text != "!" else save_string(text)


def render_rule(rule: Rule, family: Family = Family.IPV4, *, counters: bool = False) -> str:
    """One ``-A CHAIN …`` line, in iptables-save's option order."""
    parts = (
        [f"[{rule.counters.packets}:{rule.counters.bytes}]"] if counters and rule.counters else []
    )
    parts += ["-A", rule.chain]
    parts += _address("-s", rule.source) + _address("-d", rule.destination)
    for flag, iface in (("-i", rule.in_interface), ("-o", rule.out_interface)):
        if iface is not None:
            parts += [*_neg(iface.negated), flag, iface.name]
    if rule.protocol is not None:
        parts += [*_neg(rule.protocol.negated), "-p", rule.protocol.name]
    if rule.fragment is not None:
        parts += [*_neg(not rule.fragment), "-f"]
    for match in rule.matches:
        parts += _match(match, family)
    if rule.target is not None:
        parts += _target(rule.target, family)
    return " ".join(parts)


def _neg(negated: bool) -> list[str]:
    return ["!"] if negated else []


def _address(flag: str, address: Address | None) -> list[str]:
    if address is None:
        return []
    text = address.network.with_prefixlen if address.network else (address.unresolved or "")
    return [*_neg(address.negated), flag, text]


def _options(options: tuple[Option, ...]) -> list[str]:
    parts: list[str] = []
    for option in options:
        parts += _neg(option.negated) + [option.name] + [_arg(a) for a in option.args]
    return parts


def _hex(value: int, mask: int, *, always_mask: bool) -> str:
    return f"0x{value:x}" if mask == _FULL and not always_mask else f"0x{value:x}/0x{mask:x}"


def _ports(ports: PortRange, sep: str = ":") -> str:
    return str(ports) if sep == ":" else str(ports).replace(":", sep)


# ---------------------------------------------------------------- matches


def _match(match: Match, family: Family) -> list[str]:
    render = _MATCH_RENDERERS[type(match)]
    return render(match, family)


def _port_match(m: PortMatch, family: Family) -> list[str]:
    parts = ["-m", m.protocol]
    if m.sport is not None:
        parts += [*_neg(m.sport_negated), "--sport", _ports(m.sport)]
    if m.dport is not None:
        parts += [*_neg(m.dport_negated), "--dport", _ports(m.dport)]
    return parts + _options(m.extra)


def _multiport(m: MultiportMatch, family: Family) -> list[str]:
    ports = ",".join(_ports(p) for p in m.ports)
    return ["-m", "multiport", *_neg(m.negated), f"--{m.direction}", ports]


def _comment(m: CommentMatch, family: Family) -> list[str]:
    return ["-m", "comment", "--comment", save_string(m.text)]


def _statistic(m: StatisticMatch, family: Family) -> list[str]:
    if m.mode is StatisticMode.RANDOM:
        probability = format_probability(m.threshold or 0)
        return [
            "-m",
            "statistic",
            "--mode",
            "random",
            *_neg(m.negated),
            "--probability",
            probability,
        ]
    every = ["--every", str(m.every), "--packet", str(m.packet or 0)]
    return ["-m", "statistic", "--mode", "nth", *_neg(m.negated), *every]


def _recent(m: RecentMatch, family: Family) -> list[str]:
    parts = ["-m", "recent", *_neg(m.negated), f"--{m.command.value}"]
    if m.seconds is not None:
        parts += ["--seconds", str(m.seconds)]
    parts += ["--reap"] if m.reap else []
    if m.hitcount is not None:
        parts += ["--hitcount", str(m.hitcount)]
    parts += ["--rttl"] if m.rttl else []
    full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" if family is Family.IPV6 else "255.255.255.255"
    parts += ["--name", _arg(m.name), "--mask", m.mask or full]
    return [*parts, "--rdest" if m.side == "dest" else "--rsource"]


def _addrtype(m: AddrTypeMatch, family: Family) -> list[str]:
    parts = ["-m", "addrtype"]
    if m.src_type:
        parts += [*_neg(m.src_negated), "--src-type", ",".join(m.src_type)]
    if m.dst_type:
        parts += [*_neg(m.dst_negated), "--dst-type", ",".join(m.dst_type)]
    parts += ["--limit-iface-in"] if m.limit_iface_in else []
    return parts + (["--limit-iface-out"] if m.limit_iface_out else [])


def _mark(m: MarkMatch | ConnmarkMatch, family: Family) -> list[str]:
    module = "mark" if isinstance(m, MarkMatch) else "connmark"
    return ["-m", module, *_neg(m.negated), "--mark", _hex(m.value, m.mask, always_mask=False)]


def _conntrack(m: ConntrackMatch, family: Family) -> list[str]:
    parts = ["-m", m.module]
    if m.ctstate:
        key = "--state" if m.module == "state" else "--ctstate"
        parts += [*_neg(m.negated), key, ",".join(m.ctstate)]
    return parts + _options(m.extra)


def _set(m: SetMatch, family: Family) -> list[str]:
    head = ["-m", "set", *_neg(m.negated), "--match-set", _arg(m.name), ",".join(m.flags)]
    return head + _options(m.extra)


def _physdev(m: PhysdevMatch, family: Family) -> list[str]:
    return ["-m", "physdev", *_options(m.options)]


def _nfacct(m: NfacctMatch, family: Family) -> list[str]:
    return ["-m", "nfacct", "--nfacct-name", _arg(m.name)]


def _iprange(m: IPRangeMatch, family: Family) -> list[str]:
    parts = ["-m", "iprange"]
    for flag, rng, neg in (
        ("--src-range", m.src, m.src_negated),
        ("--dst-range", m.dst, m.dst_negated),
    ):
        if rng is not None:
            parts += [*_neg(neg), flag, f"{rng[0]}-{rng[1]}"]
    return parts


def _owner(m: OwnerMatch, family: Family) -> list[str]:
    return ["-m", "owner", *_options(m.options)]


def _opaque_match(m: OpaqueMatch, family: Family) -> list[str]:
    return ["-m", m.module, *_options(m.options)]


_MATCH_RENDERERS: dict[type, Callable[..., list[str]]] = {
    PortMatch: _port_match,
    MultiportMatch: _multiport,
    CommentMatch: _comment,
    StatisticMatch: _statistic,
    RecentMatch: _recent,
    AddrTypeMatch: _addrtype,
    MarkMatch: _mark,
    ConnmarkMatch: _mark,
    ConntrackMatch: _conntrack,
    SetMatch: _set,
    PhysdevMatch: _physdev,
    NfacctMatch: _nfacct,
    IPRangeMatch: _iprange,
    OwnerMatch: _owner,
    OpaqueMatch: _opaque_match,
}


# ---------------------------------------------------------------- targets


def _target(target: Target, family: Family) -> list[str]:
    return _TARGET_RENDERERS[type(target)](target, family)


def _standard(t: Standard, family: Family) -> list[str]:
    return ["-j", t.verdict.value]


def _jump(t: Jump, family: Family) -> list[str]:
    return ["-g" if t.goto else "-j", t.chain]


def _reject(t: Reject, family: Family) -> list[str]:
    default = "icmp6-port-unreachable" if family is Family.IPV6 else "icmp-port-unreachable"
    return ["-j", "REJECT", "--reject-with", t.with_ or default]


def _dnat(t: Dnat, family: Family) -> list[str]:
    parts = ["-j", "DNAT"]
    for to in t.to:
        parts += ["--to-destination", str(to)]
    return parts + (["--random"] if t.random else []) + (["--persistent"] if t.persistent else [])


def _snat(t: Snat, family: Family) -> list[str]:
    parts = ["-j", "SNAT"]
    for to in t.to:
        parts += ["--to-source", str(to)]
    flags = [("--random", t.random), ("--random-fully", t.random_fully)]
    flags.append(("--persistent", t.persistent))
    return parts + [name for name, on in flags if on]


def _masquerade(t: Masquerade | Redirect, family: Family) -> list[str]:
    parts = ["-j", "MASQUERADE" if isinstance(t, Masquerade) else "REDIRECT"]
    if t.to_ports is not None:
        parts += ["--to-ports", _ports(t.to_ports, "-")]
    parts += ["--random"] if t.random else []
    return parts + (["--random-fully"] if isinstance(t, Masquerade) and t.random_fully else [])


def _mark_target(t: MarkTarget, family: Family) -> list[str]:
    return ["-j", "MARK", "--set-xmark", _hex(t.value, t.mask, always_mask=True)]


def _connmark_target(t: ConnmarkTarget, family: Family) -> list[str]:
    if t.mode is ConnmarkMode.SET:
        return ["-j", "CONNMARK", "--set-xmark", _hex(t.value, t.mask, always_mask=True)]
    masks = ["--nfmask", f"0x{t.nfmask:x}", "--ctmask", f"0x{t.ctmask:x}"]
    return ["-j", "CONNMARK", f"--{t.mode.value}-mark", *masks]


def _log(t: Log, family: Family) -> list[str]:
    parts = ["-j", "LOG"]
    if t.prefix is not None:
        parts += ["--log-prefix", save_string(t.prefix)]
    if t.level is not None:
        parts += ["--log-level", t.level]
    return parts + _options(t.extra)


def _ct(t: Ct, family: Family) -> list[str]:
    if t.legacy:
        return ["-j", "NOTRACK", *_options(t.options)]
    return ["-j", "CT", *(["--notrack"] if t.notrack else []), *_options(t.options)]


def _opaque_target(t: OpaqueTarget, family: Family) -> list[str]:
    return ["-j", t.name, *_options(t.options)]


def _netmap(t: Netmap, family: Family) -> list[str]:
    return ["-j", "NETMAP", "--to", t.to]


_TARGET_RENDERERS: dict[type, Callable[..., list[str]]] = {
    Standard: _standard,
    Jump: _jump,
    Reject: _reject,
    Dnat: _dnat,
    Snat: _snat,
    Masquerade: _masquerade,
    Redirect: _masquerade,
    Netmap: _netmap,
    MarkTarget: _mark_target,
    ConnmarkTarget: _connmark_target,
    Log: _log,
    Ct: _ct,
    OpaqueTarget: _opaque_target,
}
