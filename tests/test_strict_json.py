"""Strict JSON reading (serving.files.loads_finite) and the label type checks
(perception.dataset.json_types): their fast paths answer exactly as the full checks do."""

from __future__ import annotations

import json

import pytest

from perception.dataset.json_types import check_types
from perception.dataset.schema import FrameLabel, Lane
from serving.files import loads_finite


@pytest.mark.parametrize(
    "text",
    [
        '{"x": 1e400}',
        '{"x": -1E+999}',
        '{"x": 9223372036854775808}',  # 2**63: beyond int64
        '{"x": -99999999999999999999}',
        '{"x": 1' + "0" * 400 + ".5}",  # a float literal with 401 digits: inf
        '{"x": NaN}',
        '{"x": [1, Infinity]}',
    ],
)
def test_numbers_json_allows_but_strict_readers_do_not_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        loads_finite(text)
    with pytest.raises(ValueError):  # also as bytes, in any encoding json.loads reads
        loads_finite(text.encode("utf-16"))


@pytest.mark.parametrize(
    "text",
    [
        '{"t": 9223372036854775807, "u": -9223372036854775808}',  # int64's ends
        '{"t": 1796188420000000000}',  # a 19-digit epoch timestamp in ns
        '{"x": [1e5, 2.5E-3, 1e-400, 123456789012345678.25]}',
        '{"x": [612.4567891234567, -0.0, 0, 17]}',
        '{"name": "eee 0e0 1234567890123456789012"}',  # digits and e's inside a string
    ],
)
def test_finite_numbers_read_as_json_reads_them(text: str) -> None:
    assert loads_finite(text) == json.loads(text)
    assert loads_finite(text.encode()) == json.loads(text)


def test_lane_points_fast_path_agrees_with_the_full_rules() -> None:
    ok = {"points": [[1, 2.5], [3.0, 4]], "style": "solid"}
    assert check_types(ok, Lane, "lanes[0]") is ok
    for bad in (
        [[1, True]],  # bool is an int to isinstance, not a number to JSON
        [[1, "2"]],
        [1, 2],
        [[1, None]],
        [(1, 2)],  # a tuple is not a JSON list
    ):
        with pytest.raises(TypeError, match=r"lanes\[0\]\.points"):
            check_types({"points": bad}, Lane, "lanes[0]")
    # numpy scalars are numbers to the full rules (isinstance float): still accepted
    np = pytest.importorskip("numpy")
    assert check_types({"points": [[np.float64(1.0), 2.0]]}, Lane, "")


def test_a_label_line_parses_the_same_through_either_json_path() -> None:
    line = (
        '{"frame": 3, "image": "frames/000003.jpg", "timestamp_ns": 150000000, "lanes": '
        '[{"slot": "ego_left", "points": [[612.25, 700.0], [640.5, 600.0]], '
        '"x_at_h": [612.25, -2], "style": "dashed"}], "obstacles": []}'
    )
    slow = line.replace("612.25", "6.1225e2")  # an exponent: the per-number checks
    assert FrameLabel.from_dict(loads_finite(line)) == FrameLabel.from_dict(loads_finite(slow))
