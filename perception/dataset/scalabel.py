"""Scalabel label files (BDD100K's format): reading the list of frames and checking each
frame's shape before anything uses it, so that a malformed file is one line naming the
file, the frame and the field (perception.dataset.bdd100k and tusimple_extras read them)."""

from __future__ import annotations

import json
from pathlib import Path

from perception.dataset.schema import FormatError, read_json


def load_frames(path: Path) -> list[dict]:
    """A Scalabel label file: a list of frames, or an object with a "frames" list, each
    shaped as ``check_frame`` wants. Strict JSON (no NaN, Infinity or 1e400); errors name the
    file, the frame and the field."""
    obj = read_json(path)
    frames = obj.get("frames") if isinstance(obj, dict) else obj
    if not isinstance(frames, list):
        raise FormatError(f"{path}: expected a list of frames")
    for i, f in enumerate(frames):
        check_frame(path, i, f)
    return frames


def _fail(where: str, field: str, what: str, v: object) -> FormatError:
    text = json.dumps(v)
    text = text if len(text) <= 40 else text[:37] + "..."
    return FormatError(f"{where}: malformed {field.split('.')[-1]} ({field}: {text} {what})")


def check_frame(path: Path, i: int, f: object) -> None:
    """FormatError naming the file, the frame and the field unless frame i of the file has
    Scalabel's shape: a name string, attributes an object, labels a list of objects with a
    string category, box2d an object of four numbers x1 y1 x2 y2, poly2d a list of objects
    whose vertices are [x, y] number pairs."""
    if not isinstance(f, dict) or not isinstance(f.get("name"), str):
        raise FormatError(f"{path}: frame {i} has no name")
    where = f"{path}: frame {f['name']}"
    if not isinstance(f.get("attributes") or {}, dict):
        raise _fail(where, "attributes", "is not an object", f["attributes"])
    labels = f.get("labels") or []
    if not isinstance(labels, list):
        raise _fail(where, "labels", "is not a list", labels)
    for k, label in enumerate(labels):
        at = f"labels[{k}]"
        if not isinstance(label, dict):
            raise _fail(where, at, "is not an object", label)
        if not isinstance(label.get("category", ""), str):
            raise _fail(where, f"{at}.category", "is not a string", label["category"])
        if not isinstance(label.get("attributes") or {}, dict):
            raise _fail(where, f"{at}.attributes", "is not an object", label["attributes"])
        if "box2d" in label and not _is_box(label["box2d"]):
            what = "is not an object of numbers x1 y1 x2 y2"
            raise _fail(where, f"{at}.box2d", what, label["box2d"])
        if "poly2d" in label and not _is_poly(label["poly2d"]):
            what = "is not a list of {vertices: [[x, y], ...]}"
            raise _fail(where, f"{at}.poly2d", what, label["poly2d"])


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_box(b: object) -> bool:
    return isinstance(b, dict) and all(_number(b.get(k)) for k in ("x1", "y1", "x2", "y2"))


def _is_poly(polys: object) -> bool:
    return isinstance(polys, list) and all(
        isinstance(p, dict)
        and isinstance(p.get("vertices"), list)
        and len(p["vertices"]) > 0
        and all(isinstance(v, list) and len(v) == 2 and all(map(_number, v)) for v in p["vertices"])
        and isinstance(p.get("types", ""), str)
        for p in polys
    )
