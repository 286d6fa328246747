"""What every kpsim command shares: input options, error handling, colour choice.

Kept apart from cli.py so per-command modules (cli_fetch, cli_graph, …) can import it
without importing the command group itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from kpsim.errors import ExitCode, KpsimError
from kpsim.model import Format

F = TypeVar("F", bound=Callable[..., Any])

FORMAT_CHOICES = [f.value for f in Format if f is not Format.UNKNOWN]


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
