"""One error tree. Each error knows its exit code and renders ``path:line:col``
with a caret, so no library exception (pyparsing, botocore) reaches a user."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes are part of the CLI contract."""

    OK = 0
    FAILURE = 1  # the command ran and found a problem (e.g. a node failed to fetch)
    BAD_INPUT = 2  # unreadable input, usage errors, --strict diagnostics
    INTERNAL = 70  # a bug in kpsim (EX_SOFTWARE): one line, the traceback in a file
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)


class KpsimError(Exception):
    exit_code: ExitCode = ExitCode.FAILURE

    def to_dict(self) -> dict[str, object]:
        return {"error": type(self).__name__, "message": str(self)}


class UsageError(KpsimError):
    exit_code = ExitCode.BAD_INPUT


class ParseError(KpsimError):
    """Bad input at a known place."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, path: str, line: int, col: int, message: str, text: str = "") -> None:
        self.path = path
        self.line = line
        self.col = col
        self.message = message
        self.text = text
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.path}:{self.line}:{self.col}: {self.message}"
        if not self.text:
            return head
        caret = " " * max(self.col - 1, 0) + "^"
        return f"{head}\n    {self.text}\n    {caret}"

    def to_dict(self) -> dict[str, object]:
        return {
            "error": "ParseError",
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "message": self.message,
        }


class FetchError(KpsimError):
    exit_code = ExitCode.FAILURE


class TraceError(KpsimError):
    exit_code = ExitCode.BAD_INPUT
