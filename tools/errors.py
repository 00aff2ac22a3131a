"""Errors of the tools package: what the CLI turns into one line and an exit code."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing error: bad arguments, a file that does not parse, a failed check.

    ``exit_code`` is 2 for bad input (the convention of argparse) and 1 for a failed operation.
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
