"""What every kpsim command shares: input options, error handling, colour choice.

Kept apart from main.py so per-command modules (fetch.py, graph.py, …) can import it
without importing the command group itself.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from functools import wraps
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar

import click

from kpsim.errors import ExitCode, KpsimError, UsageError
from kpsim.model import Format

if TYPE_CHECKING:
    from kpsim.api import Loaded

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


def load_inputs(
    paths: Sequence[str],
    fixtures_dir: str | None,
    fmt: str | None,
    strict: bool,
    *,
    all_files: bool = False,
    lazy: bool = False,
    confirm_later: bool = False,
) -> Loaded:
    """``input_options`` → ``api.load``, the model kept until exit (``keep_until_exit``):
    what every reading command does first."""
    from kpsim import api

    loaded = api.load(
        paths,
        fixtures_dir=fixtures_dir,
        fmt=Format(fmt) if fmt else None,
        strict=strict,
        all_files=all_files,
        lazy=lazy,
        confirm_later=confirm_later,
    )
    return keep_until_exit(loaded)


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


def fail(exc: KpsimError) -> NoReturn:
    click.echo(f"kpsim: {exc}", err=True)
    sys.exit(int(exc.exit_code))


def debugging() -> bool:
    """``kpsim --debug`` (or ``KPSIM_DEBUG=1``): let a bug's traceback through."""
    if os.environ.get("KPSIM_DEBUG"):
        return True
    ctx = click.get_current_context(silent=True)
    return ctx is not None and bool(ctx.find_root().params.get("debug"))


def _write_traceback(exc: BaseException) -> str | None:
    """The traceback in a file of its own under the temp folder; None when it cannot be."""
    import tempfile
    import traceback

    try:
        fd, path = tempfile.mkstemp(prefix="kpsim-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as out:
            out.write(f"command: {' '.join(sys.argv)}\npython: {sys.version.split()[0]}\n\n")
            out.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    except Exception:  # a full or read-only temp folder: say so instead
        return None
    return path


def internal_error(exc: BaseException) -> NoReturn:
    """A bug: one line on stderr, the traceback in a file, exit 70 (EX_SOFTWARE)."""
    where = _write_traceback(exc)
    tail = f"traceback written to {where}" if where else "run with --debug for the traceback"
    click.echo(f"kpsim: internal error ({type(exc).__name__}), please report it; {tail}", err=True)
    sys.exit(int(ExitCode.INTERNAL))


@contextlib.contextmanager
def error_boundary() -> Iterator[None]:
    """Every way a command can end, as a message and an exit code (docs/errors.md).

    kpsim's errors: their message and code. click's own (usage, --help, Abort): click
    prints them. Ctrl-C: one line, 130. The reader of stdout gone: 0. Anything else is a
    bug: one line, the traceback in a file, 70 — or, under ``--debug``, re-raised."""
    try:
        yield
    except KpsimError as exc:
        fail(exc)
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except BrokenPipeError:  # `kpsim show | head`: the reader is gone, nothing to say
        sys.exit(int(ExitCode.OK))
    except KeyboardInterrupt:
        if debugging():
            import traceback

            traceback.print_exc()
        click.echo("kpsim: interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as exc:
        if debugging():
            raise
        internal_error(exc)


def handles_errors(func: F) -> F:
    """A command inside ``error_boundary`` (the group wraps every command in it too; this
    keeps a command run on its own, in a test or another group, as clean)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with error_boundary():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def ip_option(text: str, what: str) -> str:
    """An option's IP address, normalised; anything else is a usage error naming it."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not an IP address") from None


def port_option(port: int, what: str = "--port") -> int:
    if not 0 < port < 65536:
        raise UsageError(f"{what} {port}: not a port (1-65535)")
    return port


def input_options(func: F) -> F:
    """PATH… plus the options every reading command shares."""
    # readable=False: kpsim says why it cannot read a path, in one line (docs/errors.md)
    paths = click.Path(readable=False, allow_dash=True)
    func = click.argument("paths", nargs=-1, type=paths)(func)
    func = click.option(
        "--fixtures",
        "fixtures_dir",
        type=click.Path(readable=False),
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
