"""The JSON types of the dataset schema's dataclasses (schema.Lane, Obstacle, FrameLabel),
read off their annotations and checked when a label is parsed, so that every reader (validate,
split, evaluate, training, the exporters) can trust them: a box of strings or a lane that is a
number is a one-line error naming the field, not a TypeError deep inside a reader. What the
values mean (a known class, a box inside the image) is checks.py's business.
"""

from __future__ import annotations

import functools
import json
from dataclasses import fields
from itertools import chain

# Kinds of JSON value, from the annotation that names them: "num" is an int or a float, "nums"
# a list of numbers, "rows" a list of lists of numbers; a trailing "?" also allows null.
_KINDS = {
    "int": "int",
    "float": "num",
    "str": "str",
    "list[int]": "ints",
    "list[float]": "nums",
    "list[str]": "strs",
    "list[list[float]]": "rows",
    "dict[str, str]": "tags",
}
_TYPE_WORDS = {
    "int": "a whole number",
    "num": "a number",
    "str": "a string",
    "ints": "a list of whole numbers",
    "nums": "a list of numbers",
    "strs": "a list of strings",
    "rows": "a list of lists of numbers",
    "tags": "an object of strings",
}


@functools.cache
def _json_types(cls: type) -> dict[str, str]:
    """field name -> kind for the fields of dataclass cls whose annotation has a kind."""
    out = {}
    for f in fields(cls):
        base = str(f.type).removesuffix(" | None")
        if base in _KINDS:
            out[f.name] = _KINDS[base] + ("?" if base != str(f.type) else "")
    return out


# Types json.loads makes for a number. The exact-type tests below are a fast path only (this
# runs for every lane point of every label a stage reads): a value they do not accept goes
# through the full isinstance rules of _is, so the answer is the same either way.
_JSON_NUMBERS = {int, float}


def _fast_nums(v: list) -> bool:
    return set(map(type, v)) <= _JSON_NUMBERS


def _fast_rows(v: list) -> bool:
    return set(map(type, v)) <= {list} and set(map(type, chain.from_iterable(v))) <= _JSON_NUMBERS


_FAST = {"nums": _fast_nums, "rows": _fast_rows}


def _is(kind: str, v: object) -> bool:
    fast = _FAST.get(kind)
    if fast is not None and type(v) is list and fast(v):
        return True
    if kind.endswith("?"):
        return v is None or _is(kind[:-1], v)
    if kind == "str":
        return isinstance(v, str)
    if kind == "tags":
        return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
    if kind in ("ints", "nums", "strs", "rows"):
        item = {"ints": "int", "nums": "num", "strs": "str", "rows": "nums"}[kind]
        return isinstance(v, list) and all(_is(item, x) for x in v)
    number = isinstance(v, int | float) and not isinstance(v, bool)
    return number and (kind == "num" or isinstance(v, int))


def check_types(d: object, cls: type, where: str) -> dict:
    """d as a dict whose fields present have the JSON types of cls's annotations; TypeError
    naming the field (prefixed by `where`, e.g. "obstacles[2]") otherwise."""
    if not isinstance(d, dict):
        raise TypeError(f"{where or 'label'}: {_short(d)} is not an object")
    for key, kind in _json_types(cls).items():
        if key in d and not _is(kind, d[key]):
            word = _TYPE_WORDS[kind.rstrip("?")] + (" or null" if kind.endswith("?") else "")
            raise TypeError(f"{where}{'.' if where else ''}{key}: {_short(d[key])} is not {word}")
    return d


def _short(v: object) -> str:
    text = json.dumps(v) if isinstance(v, str | int | float | list | dict | None) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def json_list(d: dict, key: str) -> list:
    """d[key] (default []) when it is a list; TypeError naming the key otherwise."""
    v = d.get(key, [])
    if not isinstance(v, list):
        raise TypeError(f"{key}: {_short(v)} is not a list")
    return v
