"""Check kpsim's exact answer against the real kernel, node by node.

    NodeInput + VerifyRequest ─┬─ predict: trace once per client address ─▶ Prediction
                               │    (per destination p, masquerade, REJECT / DROP p,
                               │     expected matches per rule on the outcome paths)
                               └─ probe: replay the node's rules in namespaces, N real
                                    connections (kpsim.verify.replay) ─▶ KernelResult
    compare(Prediction, KernelResult) ─▶ NodeVerdict: counts, χ² p-value, agree + reasons

The trace is exact, the kernel samples: they agree when the kernel reaches what kpsim
says it can (all of it once every p·N ≥ 5), masquerades and refuses / drops as kpsim
says, and its split passes a χ² goodness-of-fit test against N·p (p ≥ 0.001).

Session affinity (``-m recent --rcheck`` in a chain the outcomes pass) keeps a client on
its first endpoint, so the split over all connections is not kpsim's fresh-client answer:

    clients connect in a seeded random order (replay ``order=``)
    first pick of each client  ─▶ χ² against Σ_clients p (K·p ≥ 5; else reached ⊆ predicted)
    repeat connections that changed endpoint ─▶ two-proportion test against the sampler
        (kpsim.simulate) run R times on the same order with the kernel's ip_list_tot

run.py runs the whole question (kernel requirements, the probes, ``verify``), leaves
nothing behind (``signals_unwind``: SIGINT/SIGTERM/SIGHUP unwind every namespace a run
made; ``remove_stale``: what SIGKILLed runs left, removed before each run) and re-exports
the pieces: predict.py (request, kpsim's exact answer), affinity.py
(session affinity), compare.py (rows, reasons, verdicts), stats.py (χ² and
two-proportion tests).

Nothing here prints; render/verify_text.py and render/verify_json.py format the report.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import replace
from types import FrameType
from typing import Any

from kpsim.errors import ExitCode, KpsimError, UsageError
from kpsim.kube import nft_services
from kpsim.kube.scenario import NodeInput, TraceRequest, check_mode, check_port, stand_in
from kpsim.verify import netns
from kpsim.verify.affinity import AFFINITY_RUNS as AFFINITY_RUNS
from kpsim.verify.affinity import IP_LIST_TOT as IP_LIST_TOT
from kpsim.verify.affinity import (
    AffinityCheck,
    AffinityPrediction,
    changes,
    nft_capacity,
    predict_affinity,
    recent_capacity,
)
from kpsim.verify.affinity import check_affinity as check_affinity
from kpsim.verify.compare import (
    CounterRow,
    EndpointRow,
    NodeVerdict,
    VerdictRow,
    VerifyReport,
    compare,
)
from kpsim.verify.predict import MAX_CLIENTS as MAX_CLIENTS
from kpsim.verify.predict import MAX_CONNECTIONS as MAX_CONNECTIONS
from kpsim.verify.predict import REACHED as REACHED
from kpsim.verify.predict import (
    Prediction,
    VerifyRequest,
    affinity_order,
    client_addresses,
    client_weights,
    predict,
)
from kpsim.verify.replay import KernelResult, MappingError, ReplayError, open_replay, replay
from kpsim.verify.stats import MIN_EXPECTED as MIN_EXPECTED
from kpsim.verify.stats import P_MIN, chi_square, two_proportion_p

__all__ = [
    "P_MIN",
    "AffinityCheck",
    "AffinityPrediction",
    "CounterRow",
    "EndpointRow",
    "Interrupted",
    "KeepingProbe",
    "KernelUnavailable",
    "NodeVerdict",
    "Prediction",
    "Probe",
    "Unwinding",
    "VerdictRow",
    "VerifyError",
    "VerifyReport",
    "VerifyRequest",
    "affinity_order",
    "changes",
    "chi_square",
    "client_addresses",
    "client_weights",
    "compare",
    "kernel_probe",
    "missing_requirements",
    "predict",
    "predict_affinity",
    "recent_capacity",
    "remove_stale",
    "require_kernel",
    "select_nodes",
    "signals_unwind",
    "two_proportion_p",
    "verify",
]

TOOLS = ("ip", "iptables", "iptables-save", "iptables-restore", "sysctl")


class KernelUnavailable(KpsimError):
    """verify needs root and the iptables tools; without them it cannot run at all."""

    exit_code = ExitCode.BAD_INPUT


class VerifyError(KpsimError):
    """The replay of one node failed (a harness problem, not a disagreement)."""


def missing_requirements() -> list[str]:
    """What the kernel replay lacks here: root, and each missing tool by name."""
    missing = [] if os.geteuid() == 0 else ["root (run as root, e.g. with sudo)"]
    missing += [f"the {t} command" for t in TOOLS if shutil.which(t) is None]
    return missing


def require_kernel() -> None:
    """Fail early, naming what is missing, rather than halfway through a replay."""
    missing = missing_requirements()
    if missing:
        raise KernelUnavailable(
            "verify replays the rules in the real kernel and needs " + ", ".join(missing)
        )


def select_nodes(inputs: Sequence[NodeInput], wanted: str | None) -> list[NodeInput]:
    """Every node, or the one named (full or short name) as ``trace --node``."""
    if wanted is None:
        return list(inputs)
    chosen = [n for n in inputs if wanted in (n.name, n.name.split(".")[0])]
    if not chosen:
        names = ", ".join(n.name for n in inputs)
        raise UsageError(f"--node {wanted}: no such node (nodes: {names})")
    return chosen


# ---------------------------------------------------------------- leaving nothing behind


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived inside ``signals_unwind``. A BaseException (as
    KeyboardInterrupt), so no ``except Exception`` swallows it; ``status`` = 128 + signum,
    what a shell reports for a process the signal ended (130, 143, 129)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.status = 128 + signum


class Unwinding:
    """The handler ``signals_unwind`` installs, and what it saw: ``signum``, the first
    signal (None: none came). The first raises Interrupted; later ones are only noted, so
    the cleanup they interrupt runs to its end."""

    kpsim_unwinds = True  # netns installs no handler of its own over this one

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            raise Interrupted(signum)


@contextmanager
def signals_unwind() -> Iterator[Unwinding]:
    """Inside, SIGINT, SIGTERM and SIGHUP raise ``Interrupted`` (once, in the main thread):
    every ``with`` unwinds, so each namespace, responder and probe of the run goes. Ignored
    signals (nohup) stay ignored; the previous handlers return on the way out."""
    state = Unwinding()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in netns.TERMINATING:
            if signal.getsignal(sig) != signal.SIG_IGN:
                previous[sig] = signal.signal(sig, state)
    try:
        yield state
    finally:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_DFL if old is None else old)


def remove_stale() -> list[str]:
    """Remove the namespaces that verify runs which are gone left behind (SIGKILL, a crash,
    ``--keep``): named ``kpsim-<pid>-<8 hex>``, ``<pid>`` no longer running. Never a live
    process's, never another name. Returns their names (NetnsError: some would not go)."""
    require_kernel()
    return netns.cleanup_stale()


# ---------------------------------------------------------------- the kernel's side

#: How the kernel is asked: (rules, request) → what it did. Tests inject their own.
Probe = Callable[[NodeInput, VerifyRequest], KernelResult]


def kernel_probe(node: NodeInput, request: VerifyRequest) -> KernelResult:
    """One replay in fresh namespaces, removed again whatever happens."""
    return replay(
        node.ruleset,
        node_ips=stand_in(node.ruleset, ())[0],  # a bare dump: the address trace uses
        port=request.port,
        dest=request.dest,
        n=request.n,
        clients=request.clients,
        source=request.source,
        connect_timeout_s=request.connect_timeout_s,
        timeout_s=request.budget_s,
        order=request.order,
    )


class KeepingProbe:
    """``--keep``: each node's session is entered into ``stack`` and left open, so its
    namespaces outlive the probe; ``namespaces`` lists them as (name, node, role). Whoever
    owns ``stack`` decides: close it (removal) or end the process without cleanup."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.namespaces: list[tuple[str, str, str]] = []

    def __call__(self, node: NodeInput, request: VerifyRequest) -> KernelResult:
        session = self.stack.enter_context(
            open_replay(
                node.ruleset,
                node_ips=stand_in(node.ruleset, ())[0],
                clients=request.clients,
                source=request.source,
                timeout_s=request.budget_s,
            )
        )
        topo = session.topology
        self.namespaces += [
            (topo.node, node.name, "node: the rules, eth0 and eni0"),
            (topo.client, node.name, "client"),
            (topo.pods, node.name, "pods: the endpoints"),
        ]
        return session.probe(
            request.port,
            dest=request.dest,
            n=request.n,
            connect_timeout_s=request.connect_timeout_s,
            order=request.order,
        )


# ---------------------------------------------------------------- the whole question


def _require_nft(inputs: Sequence[NodeInput]) -> None:
    """kube-proxy's nftables table is replayed with ``nft -f``: without nft, say so first."""
    nft = [n.name for n in inputs if nft_services.is_nft_kube_proxy(n.ruleset)]
    if nft and shutil.which("nft") is None:
        raise KernelUnavailable(
            f"{', '.join(nft)}: kube-proxy's nftables table is replayed with nft -f, "
            "and the nft command is missing"
        )


def verify(
    inputs: Iterable[NodeInput],
    request: VerifyRequest,
    *,
    fixture_set: str = "",
    probe: Probe | None = None,
    capacity_of: Callable[[], int] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> VerifyReport:
    """Every chosen node: predict, probe the kernel, compare. Under session affinity the
    clients connect in ``affinity_order`` and kpsim's sampler replays that order (recent
    lists of ``capacity_of()`` entries, default the kernel's ip_list_tot). Harness failures
    raise VerifyError; rules that cannot be moved into 198.18.0.0/15 raise UsageError."""
    request.check()
    inputs = list(inputs)
    if probe is None:
        require_kernel()
        _require_nft(inputs)
        if netns.available():  # a leftover that will not go blocks no new run
            with suppress(netns.NetnsError, OSError):
                netns.cleanup_stale()
        probe = kernel_probe  # looked up now, so a test can stand in for the kernel
    chosen = select_nodes(list(inputs), request.node)
    check_mode(chosen)  # replaying rules that do not pick the pod would prove nothing
    if request.dest is None:
        check_port(TraceRequest(port=request.port), chosen)
    out = []
    for node in chosen:
        req = request
        pred = predict(node, req)
        if pred.affinity and req.order is None:  # affinity: a known, mixed client order
            req = replace(req, order=affinity_order(req))
            pred = predict(node, req)
        nft_cap = None
        if pred.affinity and nft_services.is_nft_kube_proxy(node.ruleset):
            nft_cap = nft_capacity(node, req.clients)  # refuses before any namespace is made
        try:
            start = clock()
            k = probe(node, req)
            elapsed = clock() - start
        except MappingError as exc:  # the capture itself cannot be replayed: bad input
            raise UsageError(f"{node.name}: cannot be replayed: {exc}") from exc
        except (ReplayError, OSError, RuntimeError) as exc:  # NetnsError is a RuntimeError
            raise VerifyError(f"{node.name}: the kernel replay failed: {exc}") from exc
        sim = None
        if pred.affinity:  # after the probe: xt_recent is loaded, ip_list_tot readable
            capacity = (
                capacity_of() if capacity_of is not None
                else nft_cap if nft_cap is not None
                else recent_capacity()
            )  # fmt: skip
            sim = predict_affinity(
                node,
                req,
                capacity=capacity,
                seconds=pred.affinity_seconds,
                elapsed_s=elapsed,
            )
        verdict = compare(node.name, pred, k, sim)
        note = stand_in(node.ruleset, ())[1]
        notes = (note, *verdict.notes) if note else verdict.notes
        rs = node.ruleset
        out.append(replace(verdict, notes=notes, capture=rs.capture, diagnostics=rs.diagnostics))
    return VerifyReport(request, fixture_set, tuple(out))
