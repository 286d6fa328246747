"""``kpsim simulate --plot FILE``: observed shares with 95% intervals beside the exact
shares, one panel per service. Returns the file's bytes; the CLI writes them.

matplotlib is imported here only (Agg backend: no display needed), and only when asked.
"""

from __future__ import annotations

import io
import textwrap

from kpsim.simulate.run import ServiceSim, SimReport

FORMATS = ("png", "svg")


def _labels(s: ServiceSim) -> list[str]:
    out = []
    for o in s.outcomes:
        head = o.pod.name if o.pod else o.destination
        if o.verdict != "DNAT":
            head = f"{o.verdict} via {o.destination}"
        out.append("\n".join(textwrap.wrap(head, 22)))
    return out


def simulate_plot(report: SimReport, fmt: str = "png") -> bytes:
    """A bar chart per service: bars observed (with Wilson 95% whiskers), ◆ exact."""
    if fmt not in FORMATS:
        raise ValueError(f"plot format {fmt!r}: use one of {', '.join(FORMATS)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    services = report.services
    ncols = min(len(services), 2) or 1
    nrows = (len(services) + ncols - 1) // ncols or 1
    with plt.rc_context({"svg.hashsalt": "kpsim", "font.size": 9}):
        fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 3.6 * nrows), squeeze=False)
        for ax in axes.flat[len(services) :]:
            ax.set_visible(False)
        for ax, s in zip(axes.flat, services, strict=False):
            x = list(range(len(s.outcomes)))
            obs = [o.share for o in s.outcomes]
            lo = [max(0.0, o.share - o.ci95[0]) for o in s.outcomes]  # float noise at 0
            hi = [max(0.0, o.ci95[1] - o.share) for o in s.outcomes]
            colors = ["#4c72b0" if o.verdict == "DNAT" else "#c44e52" for o in s.outcomes]
            ax.bar(x, obs, color=colors, alpha=0.85, label="observed (95% interval)")
            ax.errorbar(x, obs, yerr=[lo, hi], fmt="none", ecolor="black", capsize=4, lw=1)
            ax.scatter(
                x,
                [float(o.expected) for o in s.outcomes],
                marker="D",
                color="#dd8452",
                zorder=3,
                label="exact (rules)",
            )
            ax.set_xticks(x, _labels(s), fontsize=7)
            ax.set_ylabel("share of connections")
            ax.set_ylim(0, max([*obs, *(float(o.expected) for o in s.outcomes), 0.05]) * 1.25)
            where = (
                f"NodePort {s.target.port}"
                if s.target.dest is None
                else (f"{s.target.dest}:{s.target.port}")
            )
            ax.set_title(f"{s.target.service} ({where}), n={s.n}", fontsize=9)
            ax.legend(fontsize=7, loc="upper right")
        fig.suptitle(f"kpsim simulate — seed {report.request.seed}", fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        meta = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(buf, format=fmt, dpi=110, metadata=meta)
        plt.close(fig)
    return buf.getvalue()
