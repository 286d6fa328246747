"""The ``kpsim`` console script and ``python -m kpsim``: a look at the command line, then
the CLI (``main.run``).

When the command reads a big iptables-save lazily (``show``, ``trace``), its one pass
starts at once in a second process (``formats.iptables.prescan``), before the ~0.13 s of
imports this process still has to make. The look is a guess, never a decision: a wrong
one costs the child's work, not an answer (the reader takes the child's items only for
the very text it scanned)."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence

#: The commands that read their inputs lazily (``main.show``, ``main.trace``; ``trace
#: -o dot`` draws every chain and reads them whole).
LAZY_LOADS = frozenset({"show", "trace"})
#: Smaller inputs are scanned in a few milliseconds: not worth a process.
SMALLEST = 1 << 20


def run() -> None:
    try:
        path = big_input(sys.argv[1:])
        if path is not None:
            from kpsim.formats.iptables.prescan import start

            start(path)
        from kpsim.cli.main import run as run_main
    except KeyboardInterrupt:  # Ctrl-C while starting: as the CLI says it once running
        if "--debug" in sys.argv:
            raise
        from kpsim.errors import ExitCode

        sys.stderr.write("kpsim: interrupted\n")
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    run_main()


def big_input(args: Sequence[str]) -> str | None:
    """The first regular file of at least ``SMALLEST`` bytes among the words after a
    command in ``LAZY_LOADS``; None for any other command line."""
    words = [a for a in args if not a.startswith("-")]
    if not words or words[0] not in LAZY_LOADS or "dot" in words:
        return None
    for word in words[1:]:
        try:
            st = os.stat(word)
        except (OSError, ValueError):  # not a path; a NUL in it
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size >= SMALLEST:
            return word
    return None
