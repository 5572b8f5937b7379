"""Where a dataset is written: a folder is replaced only when it is one this project wrote.

`perception generate` and the importers replace their --out folder. Before anything is
removed or written, ``check_replaceable`` refuses, with one line, a folder that is not a
dataset: one without this project's manifest.json, unless it is empty or holds only the
``clips/`` folder of an interrupted write. A typo such as ``--out ~`` or ``--out src`` must
never delete anything.

Importers write the whole dataset into a hidden sibling (``staged_dataset_dir``) and rename
it into place at the end, so that a failure half way leaves the previous dataset whole and no
mix of old and new clips for `validate` to pass.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from perception.dataset.schema import FormatError, read_json
from perception.errors import UserError


def _is_dataset(folder: Path) -> bool:
    """folder holds a manifest.json this project wrote (schema_version, source, clips)."""
    try:
        m = read_json(folder / "manifest.json", 64 * 2**20)
    except FormatError:
        return False
    return (
        isinstance(m, dict)
        and isinstance(m.get("schema_version"), int)
        and isinstance(m.get("source"), str)
        and isinstance(m.get("clips"), list)
    )


def _is_interrupted_write(folder: Path) -> bool:
    """folder holds nothing but a clips/ folder of folders: a write killed before its
    manifest (which comes last)."""
    entries = list(folder.iterdir())
    if [e.name for e in entries] != ["clips"] or not entries[0].is_dir():
        return False
    return all(c.is_dir() and not c.is_symlink() for c in entries[0].iterdir())


def check_replaceable(out: str | Path) -> None:
    """UserError naming out unless it is absent, an empty folder, a dataset written by this
    project (manifest.json) or an interrupted write of one (only clips/)."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; refusing to replace it")
    if not any(out.iterdir()) or _is_dataset(out) or _is_interrupted_write(out):
        return
    raise UserError(
        f"{out}: not a dataset written by perception (no manifest.json); refusing to replace "
        "it: remove it yourself or choose another --out"
    )


def fresh_dataset_dir(out: str | Path) -> Path:
    """check_replaceable, then an empty out with its clips/ folder (the old one removed)."""
    out = Path(out)
    check_replaceable(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "clips").mkdir(parents=True)
    return out


@contextmanager
def staged_dataset_dir(out: str | Path) -> Iterator[Path]:
    """Yield a hidden sibling of out, with clips/, to write the whole dataset into. When the
    block ends well the sibling replaces out (checked with check_replaceable before anything
    is written); when it fails the sibling is removed and out is left as it was."""
    out = Path(out)
    check_replaceable(out)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "clips").mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)


def provenance_path(path: str | Path) -> str:
    """How a manifest records an input path: relative to the working directory when the
    input lies under it (a DVC stage runs from the project root, so every clone writes the
    same bytes and the output's hash does not depend on where the project sits), absolute
    otherwise (a folder the user chose elsewhere, named where it is)."""
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)
