"""Files that a later stage can trust, and files that a hostile input cannot turn against us.

Writes are atomic: a crash never leaves a half-written file that a later stage trusts, and JSON
is written strict (no NaN or Infinity, which strict readers refuse). Reads of input files go
through ``read_regular`` / ``open_regular_text``: only regular files, up to a size cap, so
that a FIFO or a device named as a frame (``/dev/zero``) cannot hang or exhaust the reader.
Paths named inside a dataset or label file go through ``resolve_inside``, which refuses one
that leaves its folder (``../x``, an absolute path, a symlink pointing out).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

MAX_IMAGE_BYTES = 256 * 2**20  # a 16-bit 8K PNG is about 200 MiB
MAX_TEXT_BYTES = 4 * 2**30  # label and metadata files (BDD100K's largest is about 1 GiB)


class UnsafeFileError(ValueError):
    """An input file refused for what it is or where it is; the message names it."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write data to path through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _naming(e, path) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary shared files
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _naming(e, path) from e
        raise


def _naming(e: OSError, path: Path) -> OSError:
    """e with the file it was writing in its message: a full disk's write() names none
    ('[Errno 28] No space left on device'), and the one-line error must say where."""
    return OSError(e.errno, f"cannot write {path}: {e.strerror or e}")


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """obj with numpy values made Python ones and non-finite floats made None (JSON null)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps_strict(obj: Any, **kwargs: Any) -> str:
    """json.dumps that never writes NaN or Infinity: they become null (see json_safe)."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except (TypeError, ValueError):
        return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Strict JSON (non-finite numbers written as null), atomically."""
    atomic_write_text(path, dumps_strict(obj, indent=indent, sort_keys=False) + "\n")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"{text} overflows a float")
    return x


def _int64(text: str) -> int:
    x = int(text)
    if not -(2**63) <= x < 2**63:
        raise ValueError(f"{text[:24]}... is too large a number")
    return x


# A number that json's C scanner could turn into inf or a > 64-bit int has a run of 19 or
# more digits or an exponent. Text with neither is parsed by the C scanner alone; other text
# goes through the per-number checks, which cost twice the parse (a labels line holds ~2,000
# numbers). The screen maps digits to "0", e and E to "e", all else to " " (one C pass).
_SCREEN = bytes(48 if 48 <= b <= 57 else 101 if b in (69, 101) else 32 for b in range(256))
_LONG_RUN = b"0" * 19


def _plain_numbers(text: str) -> bool:
    t = text.encode("utf-8", "surrogatepass").translate(_SCREEN)
    return _LONG_RUN not in t and b"0e" not in t


def loads_finite(text: str | bytes) -> Any:
    """json.loads that refuses NaN, Infinity, numbers too large for a float (1e400) and
    integers beyond 64 bits, which Python's json accepts but strict readers, numpy and the
    label checks do not."""
    if isinstance(text, bytes | bytearray):  # decoded as json.loads would (UTF-8/16/32)
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    if _plain_numbers(text):
        return json.loads(text, parse_constant=_reject_constant)
    return json.loads(
        text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_int64
    )


def _open_regular(path: Path, max_bytes: int) -> int:
    """A read-only descriptor of path after checking, on the open file itself, that it is a
    regular file of at most max_bytes. O_NONBLOCK: opening a FIFO must not wait for a
    writer (it is refused right after)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing file") from None
    except OSError as e:
        raise UnsafeFileError(f"{path}: cannot open ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise UnsafeFileError(f"{path}: {kind}")
    if st.st_size > max_bytes:
        os.close(fd)
        raise UnsafeFileError(f"{path}: {st.st_size} bytes, more than the {max_bytes} allowed")
    os.set_blocking(fd, True)
    return fd


def read_regular(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of a regular file of at most max_bytes (a file growing past the cap while it
    is read is cut there and refused). FileNotFoundError or UnsafeFileError naming it."""
    path = Path(path)
    with os.fdopen(_open_regular(path, max_bytes), "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFileError(f"{path}: more than the {max_bytes} bytes allowed")
    return data


def open_regular_text(path: str | Path, max_bytes: int = MAX_TEXT_BYTES) -> io.TextIOWrapper:
    """A text stream (UTF-8) on a regular file of at most max_bytes, for line-by-line reads."""
    return open(_open_regular(Path(path), max_bytes), encoding="utf-8")


def resolve_inside(root: str | Path, rel: str) -> Path:
    """root / rel after checking that rel is a relative path whose target, symlinks
    resolved, lies inside root. UnsafeFileError (message without the file that named rel:
    the caller adds it) for an absolute path, a '..' that climbs out or a link pointing out.
    Returns the joined path, not the resolved one, so that messages show what was named."""
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise UnsafeFileError(f"{rel!r} is not a file name")
    if os.path.isabs(rel):
        raise UnsafeFileError(f"{rel!r} is an absolute path, not one inside {root}")
    path = Path(root) / rel
    base = Path(root).resolve()
    target = path.resolve()
    if target != base and base not in target.parents:
        raise UnsafeFileError(f"{rel!r} leads outside {root}")
    return path
