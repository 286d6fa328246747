"""Click commands: options → api → render → echo.

The only module that prints or chooses an exit code (see errors.ExitCode).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from kpsim import api
from kpsim.errors import ExitCode, KpsimError
from kpsim.model import Format

F = TypeVar("F", bound=Callable[..., Any])

FORMAT_CHOICES = [f.value for f in Format if f is not Format.UNKNOWN]


def _fail(exc: KpsimError) -> None:
    click.echo(f"kpsim: {exc}", err=True)
    sys.exit(int(exc.exit_code))


def handles_errors(func: F) -> F:
    """Turn kpsim's errors into a message and the error's exit code — never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KpsimError as exc:
            _fail(exc)
        except BrokenPipeError:  # `kpsim show | head`
            sys.exit(int(ExitCode.OK))

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


def _color(output: str) -> bool:
    return output == "text" and sys.stdout.isatty()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kpsim")
def main() -> None:
    """Explain how Kubernetes traffic flows through a node's iptables rules."""


@main.command()
@input_options
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@click.option("--chains", is_flag=True, help="Also list every chain with its counts.")
@handles_errors
def show(
    paths: tuple[str, ...],
    fixtures_dir: str | None,
    fmt: str | None,
    strict: bool,
    output: str,
    chains: bool,
) -> None:
    """Load captures and say what they hold: format, tables, chains, services, diagnostics."""
    from kpsim.render.json import show_json
    from kpsim.render.text import show_text

    loaded = api.load(
        paths, fixtures_dir=fixtures_dir, fmt=Format(fmt) if fmt else None, strict=strict
    )
    report = api.show(loaded)
    if output == "json":
        click.echo(show_json(report), nl=False)
    else:
        click.echo(show_text(report, color=_color(output), chains=chains), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
