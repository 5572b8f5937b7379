"""The error type of expected failures caused by input, and the step that turns a library's
failure on a named file into one.

`perception/cli.py` prints a UserError (and the FormatError / ValueError family) as one line,
``perception: error: <message>``, with exit status 2; a traceback only with --debug.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class UserError(Exception):
    """An expected failure caused by input: printed as one line, exit status 2."""


def first_line(e: BaseException) -> str:
    """The exception's message on one line (the first non-empty one), its type when empty."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


@contextmanager
def loading(path: str | Path, what: str) -> Iterator[None]:
    """Turn any failure while loading `path` into a one-line UserError naming it: for files
    parsed by libraries whose errors run over many lines (torch.load, onnx). `what` says
    what the file should have been, e.g. "model file written by perception train"."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{path}: not a {what} ({type(e).__name__}: {first_line(e)})") from None
