"""The error type of expected failures caused by input.

`perception/cli.py` prints a UserError (and the FormatError / ValueError family) as one line,
``perception: error: <message>``, with exit status 2; a traceback only with --debug.
"""

from __future__ import annotations


class UserError(Exception):
    """An expected failure caused by input: printed as one line, exit status 2."""


def first_line(e: BaseException) -> str:
    """The exception's message on one line (the first non-empty one), its type when empty."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
