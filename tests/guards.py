"""What the hostile-input and fuzz tests assert about every command they run: it ends in time,
with exit status 0 or 2 and at most one `perception:` line (never a traceback), it changes no
file outside its output, and it opens no file in a folder it must not read."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from perception.cli import main


def tree_hashes(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """relative path -> sha256 (or "link -> target", "fifo") of everything under root,
    leaving out the folders in skip (the outputs)."""
    out: dict[str, str] = {}
    skipped = [s.resolve() for s in skip]
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if (here / d).resolve() not in skipped]
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            p = here / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = f"link -> {os.readlink(p)}"
            elif p.is_fifo():
                out[rel] = "fifo"
            elif p.resolve() not in skipped:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class _Opens:
    """Paths opened (or hard-linked from) while active; filled by the audit hook."""

    active: bool = False
    seen: list[str] = field(default_factory=list)


_OPENS = _Opens()


def _audit(event: str, args: tuple) -> None:
    if not _OPENS.active:
        return
    named = event == "open" and isinstance(args[0], str | bytes | os.PathLike)
    if named or event == "os.link":
        _OPENS.seen.append(os.fsdecode(args[0]))


_HOOKED = False


@contextlib.contextmanager
def opened_paths() -> Iterator[list[str]]:
    """The paths that Python code opens within the block (audit hook 'open' and 'os.link';
    OpenCV's own reads are not seen, which is why every reader goes through Python)."""
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True
    _OPENS.seen, _OPENS.active = [], True
    try:
        yield _OPENS.seen
    finally:
        _OPENS.active = False


class Hang(Exception):
    """A command ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise Hang in the main thread when the block runs longer than seconds."""

    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Outcome:
    code: int
    lines: list[str]  # stderr lines starting with "perception:"
    stderr: str
    opened: list[str]

    @property
    def error(self) -> str:
        """The one error line; fails the test unless there is exactly one."""
        errors = [ln for ln in self.lines if ln.startswith("perception: error")]
        assert len(errors) == 1, self.stderr[-3000:]
        return errors[0]


def run(argv: list[str], capsys: pytest.CaptureFixture[str], seconds: float = 60.0) -> Outcome:
    """`perception ARGV` in this process: exit status, its `perception:` lines, and the paths
    it opened. A traceback, an unexpected exception type or a hang fails the test."""
    capsys.readouterr()
    with opened_paths() as opened, time_limit(seconds):
        code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("perception:")]
    assert not [ln for ln in lines if ln.startswith("perception: error (")], err[-3000:]
    assert code in (0, 2), err[-3000:]
    return Outcome(code, lines, err, list(opened))


def refused(outcome: Outcome, *names: str) -> str:
    """outcome is exit 2 with one error line naming every one of names; returns the line."""
    line = outcome.error
    assert outcome.code == 2, outcome.stderr[-3000:]
    for name in names:
        assert name in line, line
    return line


def none_inside(paths: list[str], folder: Path) -> None:
    """No path of `paths` lies in folder (symlinks resolved)."""
    base = folder.resolve()
    bad = [p for p in paths if Path(p).resolve() == base or base in Path(p).resolve().parents]
    assert not bad, bad
