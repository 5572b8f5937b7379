"""params.yaml and the dataclasses that read it (perception.params) say the same thing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from perception.errors import UserError
from perception.params import SECTIONS, load_params, loop_settings, section

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.SECTION)
def test_defaults_are_the_values_of_params_yaml(cls: type) -> None:
    params = load_params(ROOT / "params.yaml")
    name = cls.SECTION  # type: ignore[attr-defined]
    assert name in params, f"params.yaml has no section {name!r}"
    assert set(params[name]) == {f.name for f in dataclasses.fields(cls)}, name
    assert section(params, cls) == cls(), f"{name}: a default differs from params.yaml"


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


@pytest.mark.parametrize("path", sorted((ROOT / "profiles").glob("*.yaml")), ids=lambda p: p.name)
def test_every_profile_has_the_keys_of_params_yaml(path: Path) -> None:
    """A profile is params.yaml with other values: the same keys (a key renamed in one and
    not the other fails here, not in a user's run), each section valid."""
    params, profile = load_params(ROOT / "params.yaml"), load_params(path)
    assert set(_flat(profile)) == set(_flat(params)), path.name
    for cls in SECTIONS:
        section(profile, cls)


def test_the_long_profile_is_the_default_with_more_epochs() -> None:
    base, long = (
        _flat(load_params(ROOT / "params.yaml")),
        _flat(load_params(ROOT / "profiles/long.yaml")),
    )
    assert {k for k in base if base[k] != long[k]} == {"train.epochs"}
    assert long["train.epochs"] > base["train.epochs"]  # type: ignore[operator]


def test_loop_settings_from_a_file_or_the_defaults(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the defaults
    assert loop_settings(None) == loop_settings(ROOT / "params.yaml")
    (tmp_path / "p.yaml").write_text("warnings:\n  fcw_ttc_s: 1.5\n")
    assert loop_settings(tmp_path / "p.yaml").warnings.fcw_ttc_s == 1.5
    with pytest.raises(UserError, match="missing"):
        loop_settings(tmp_path / "none.yaml")


def test_a_det_stride_other_than_4_or_8_is_a_one_line_params_error() -> None:
    from perception.params import TrainParams

    assert section({"train": {"det_stride": 8}}, TrainParams).det_stride == 8
    with pytest.raises(UserError, match=r"^params: train.det_stride = 6: 4 or 8$"):
        section({"train": {"det_stride": 6}}, TrainParams)


def test_lane_cells_out_of_range_is_a_one_line_params_error() -> None:
    from perception.params import TrainParams

    assert section({"train": {"lane_cells": 100}}, TrainParams).lane_cells == 100
    for bad in (1, 1001):
        with pytest.raises(UserError, match=rf"^params: train.lane_cells = {bad}: 2 to 1000$"):
            section({"train": {"lane_cells": bad}}, TrainParams)


def test_ema_decay_out_of_range_is_a_one_line_params_error() -> None:
    from perception.params import TrainParams

    assert section({"train": {"ema_decay": 0.995}}, TrainParams).ema_decay == 0.995
    for bad in (-0.1, 1.0):
        with pytest.raises(UserError, match=rf"^params: train.ema_decay = {bad}: 0 \(off\)"):
            section({"train": {"ema_decay": bad}}, TrainParams)
