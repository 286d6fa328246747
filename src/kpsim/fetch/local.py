"""Run the same capture script here (``--local``), in a network namespace (``--netns``)
or on a Kubernetes node through ``kubectl debug`` (``--via kubectl``).

No SSM cut applies, so the script keeps no spool; stdout must verify as a whole.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kpsim.errors import FetchError

DEFAULT_IMAGE = "public.ecr.aws/docker/library/busybox:stable"

#: Runs argv with a timeout and returns (returncode, stdout bytes, stderr text).
Runner = Callable[[Sequence[str], float], tuple[int, bytes, str]]


@dataclass(frozen=True, slots=True)
class LocalTarget:
    """Where the script runs: ``mode`` is local | netns | kubectl; ``name`` the ns/node."""

    mode: str
    name: str = ""
    image: str = DEFAULT_IMAGE

    @property
    def source(self) -> str:
        return {
            "local": "kpsim fetch --local",
            "netns": "kpsim fetch --netns",
            "kubectl": "kpsim fetch via kubectl debug",
        }[self.mode]


def shell() -> str:
    """dash when present (what AWS-RunShellScript gets on Debian/Ubuntu), else sh."""
    return shutil.which("dash") or shutil.which("sh") or "/bin/sh"


def argv_for(target: LocalTarget, script: str) -> list[str]:
    """The command line; the script travels as one argv element, never through a shell."""
    if target.mode == "local":
        return [shell(), "-c", script]
    if target.mode == "netns":
        return ["ip", "netns", "exec", target.name, shell(), "-c", script]
    if target.mode == "kubectl":
        # -i without -t: a TTY would turn \n into \r\n and break the checksum.
        return [
            "kubectl", "debug", f"node/{target.name}", "--profile=sysadmin", "-i", "--quiet",
            f"--image={target.image}", "--", "chroot", "/host", "sh", "-c", script,
        ]  # fmt: skip
    raise ValueError(f"unknown mode {target.mode!r}")


def preflight(target: LocalTarget) -> None:
    """Fail early with a clear reason instead of a confusing subprocess error."""
    if target.mode == "kubectl":
        if shutil.which("kubectl") is None:
            raise FetchError("--via kubectl needs kubectl on PATH (it is not installed)")
        return
    if os.geteuid() != 0:
        raise FetchError(f"--{target.mode} needs root (iptables-save reads the kernel tables)")
    if target.mode == "netns" and shutil.which("ip") is None:
        raise FetchError("--netns needs iproute2's `ip` command")


def subprocess_runner(argv: Sequence[str], timeout: float) -> tuple[int, bytes, str]:
    try:
        proc = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise FetchError(f"{argv[0]} did not finish within {timeout:g}s") from exc
    except OSError as exc:
        raise FetchError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")


def run_script(
    target: LocalTarget, script: str, timeout: float, runner: Runner = subprocess_runner
) -> bytes:
    """The script's stdout; a non-zero exit becomes a FetchError carrying its stderr."""
    preflight(target)
    code, out, err = runner(argv_for(target, script), timeout)
    if code != 0:
        where = f"{target.mode} {target.name}".strip()
        raise FetchError(f"capture failed on {where} (exit {code}): {err.strip()[-600:]}")
    return out
