"""What every kpsim command shares: input options, error handling, colour choice.

Kept apart from main.py so per-command modules (fetch.py, graph.py, …) can import it
without importing the command group itself.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, ClassVar, TypeVar

import click

from kpsim.errors import ExitCode, KpsimError
from kpsim.model import Format

F = TypeVar("F", bound=Callable[..., Any])

FORMAT_CHOICES = [f.value for f in Format if f is not Format.UNKNOWN]


class _ProcessExit:
    """Set by the console entry point (``cli.run``): the process ends with the command."""

    fast: ClassVar[bool] = False
    kept: ClassVar[list[object]] = []


T = TypeVar("T")


def keep_until_exit(model: T) -> T:
    """Keep a loaded model alive until ``fast_exit`` instead of freeing it object by object.

    A 10,000-service ruleset is ~1M objects; freeing them when the command returns takes
    ~0.15 s (measured), 10% of ``kpsim show`` on such a dump, for memory the process is
    about to give back anyway. Only under the console entry point: a notebook or a test
    calling the commands frees as usual."""
    if _ProcessExit.fast:
        _ProcessExit.kept.append(model)
    return model


def fast_exit(main: Callable[[], object]) -> None:
    """Run ``main`` (a click group, standalone), then leave with ``os._exit``, as mypy's
    ``--fast-exit`` does: exit handlers run (network-namespace cleanup registers one),
    output is flushed, and the interpreter's teardown of kept models is skipped."""
    _ProcessExit.fast = True
    code: int = 0
    try:
        main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message"): what the interpreter would do with it
            print(exc.code, file=sys.stderr)
            code = 1
    atexit._run_exitfuncs()
    with contextlib.suppress(BrokenPipeError):  # `kpsim show | head`: the reader is gone
        sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def fail(exc: KpsimError) -> None:
    click.echo(f"kpsim: {exc}", err=True)
    sys.exit(int(exc.exit_code))


def handles_errors(func: F) -> F:
    """Turn kpsim's errors into a message and the error's exit code — never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KpsimError as exc:
            fail(exc)
        except BrokenPipeError:  # `kpsim show | head`
            sys.exit(int(ExitCode.OK))
        except Exception as exc:  # a bug: say so plainly, traceback only on request
            if os.environ.get("KPSIM_DEBUG"):
                raise
            click.echo(
                f"kpsim: internal error: {type(exc).__name__}: {exc} "
                "(set KPSIM_DEBUG=1 for the traceback, and please report it)",
                err=True,
            )
            sys.exit(int(ExitCode.FAILURE))

    return wrapper  # type: ignore[return-value]


def input_options(func: F) -> F:
    """PATH… plus the options every reading command shares."""
    func = click.argument("paths", nargs=-1, type=click.Path())(func)
    func = click.option(
        "--fixtures",
        "fixtures_dir",
        type=click.Path(),
        help="Fixture folder to use when no PATH is given (else $KPSIM_FIXTURES, "
        "./fixtures/iptables, or the packaged samples).",
    )(func)
    func = click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMAT_CHOICES),
        help="Input format; auto-detected when omitted.",
    )(func)
    func = click.option(
        "--strict", is_flag=True, help="Stop at the first line that does not parse (exit 2)."
    )(func)
    return func


def color(output: str) -> bool:
    return output == "text" and sys.stdout.isatty()
