"""Drawing of predictions, tracks, warnings and a HUD onto frames for the demo video.

OpenCV only and fast (well under 2 ms for 1280x720 with ten boxes and four lanes): no
full-frame copies, text and lines sized from the image's short side so 854x480, 1920x1080
and portrait frames all read the same. Tracks, lane geometry and warnings are duck-typed:
anything with the attributes of the Protocols below is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import cv2
import numpy as np

from serving.postprocess import NO_POINT, Detections, FramePrediction, Lanes

Color = tuple[int, int, int]  # BGR

# colour (BGR) and line width at a 720-pixel short side, per lane slot
SLOT_STYLE: dict[str, tuple[Color, float]] = {
    "ego_left": ((0, 230, 0), 4.0),
    "ego_right": ((255, 230, 0), 4.0),
    "outer_left": ((0, 190, 255), 2.0),
    "outer_right": ((255, 120, 255), 2.0),
}
CLASS_COLORS: dict[str, Color] = {
    "car": (255, 170, 40),
    "truck": (200, 90, 255),
    "pedestrian": (0, 220, 255),
    "cyclist": (120, 255, 160),
}
RED: Color = (0, 0, 255)
WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX

MAX_SHOWN_M = 120.0  # beyond this, distances are shown as ">120 m"
MAX_SHOWN_TTC_S = 10.0  # longer times to collision are not shown


class TrackLike(Protocol):
    """A tracked obstacle: box x1 y1 x2 y2 source pixels, cls (class index or name),
    distance_m (forward, metres), ttc_s (time to collision, s; None / inf when opening)."""

    @property
    def box(self) -> Any: ...
    @property
    def cls(self) -> int | str: ...
    @property
    def track_id(self) -> int: ...
    @property
    def distance_m(self) -> float | None: ...
    @property
    def ttc_s(self) -> float | None: ...
    @property
    def in_ego_lane(self) -> bool: ...


class LaneGeoLike(Protocol):
    """Ego lane geometry: offset_m (lateral offset from the lane centre, m), curvature_1pm
    (1/m), valid (False when no lane fit)."""

    @property
    def offset_m(self) -> float: ...
    @property
    def curvature_1pm(self) -> float: ...
    @property
    def valid(self) -> bool: ...


class WarningsLike(Protocol):
    """Active warnings: forward collision (fcw, the track and its TTC in s) and lane departure
    (ldw: 'left', 'right' or None)."""

    @property
    def fcw(self) -> bool: ...
    @property
    def fcw_track_id(self) -> int | None: ...
    @property
    def fcw_ttc_s(self) -> float | None: ...
    @property
    def ldw(self) -> str | None: ...


class _Style:
    """Sizes for one image: s = short side / 720."""

    def __init__(self, img: np.ndarray):
        self.h, self.w = img.shape[:2]
        self.s = s = max(min(self.h, self.w) / 720.0, 0.3)
        self.font = 0.6 * s
        self.text_th = max(1, round(1.5 * s))
        self.pad = max(2, round(5 * s))

    def px(self, width: float) -> int:
        return max(1, round(width * self.s))


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _label(img: np.ndarray, text: str, x: int, y: int, st: _Style, bg: Color, fg: Color) -> None:
    """Text on a filled box whose bottom-left corner is (x, y), kept inside the image."""
    (tw, th), base = cv2.getTextSize(text, FONT, st.font, st.text_th)
    x = min(max(x, 0), max(st.w - tw - 2 * st.pad, 0))
    y = max(y, th + base + 2 * st.pad)
    cv2.rectangle(img, (x, y - th - base - 2 * st.pad), (x + tw + 2 * st.pad, y), bg, -1)
    org = (x + st.pad, y - base - st.pad)
    cv2.putText(img, text, org, FONT, st.font, fg, st.text_th, cv2.LINE_AA)


def draw_lanes(img: np.ndarray, lanes: Lanes, st: _Style, slots: Sequence[str]) -> None:
    """Each slot's points (xs[l, r], rows[r]) as polylines, one per run of present rows."""
    for lane, xs in enumerate(lanes.xs):
        slot = slots[lane] if lane < len(slots) else ""
        color, width = SLOT_STYLE.get(slot, ((200, 200, 200), 2.0))
        ok = np.isfinite(xs) & (xs > NO_POINT + 0.5)
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            continue
        pts = np.round(np.stack([xs[idx], lanes.rows[idx]], axis=1) * 4).astype(np.int32)
        runs = np.split(pts, np.flatnonzero(np.diff(idx) > 1) + 1)
        cv2.polylines(img, runs, False, color, st.px(width), cv2.LINE_AA, shift=2)


def _class_name(cls: int | str, names: Sequence[str]) -> str:
    if isinstance(cls, str):
        return cls
    return names[int(cls)] if 0 <= int(cls) < len(names) else f"class {int(cls)}"


def _box(img: np.ndarray, box: Any, color: Color, width: int, text: str, st: _Style) -> None:
    x1, y1, x2, y2 = (round(float(v)) for v in box[:4])
    cv2.rectangle(img, (x1, y1), (x2, y2), color, width, cv2.LINE_AA)
    _label(img, text, x1, y1, st, color, BLACK)


def draw_detections(img: np.ndarray, det: Detections, st: _Style, names: Sequence[str]) -> None:
    """Raw detections: box and "class score"."""
    for box, score, cls in zip(det.boxes, det.scores, det.classes, strict=True):
        name = _class_name(int(cls), names)
        _box(img, box, CLASS_COLORS.get(name, WHITE), st.px(2), f"{name} {score:.2f}", st)


def draw_tracks(
    img: np.ndarray,
    tracks: Sequence[TrackLike],
    warnings: WarningsLike | None,
    st: _Style,
    names: Sequence[str],
) -> None:
    """Tracks: "car 23.4 m TTC 2.1 s"; ego-lane ones bolder, the FCW target red."""
    fcw_id = warnings.fcw_track_id if warnings is not None and warnings.fcw else None
    for t in tracks:
        name = _class_name(t.cls, names)
        text = name
        if _finite(t.distance_m) and t.distance_m is not None:
            # flat-road range from a box bottom near the horizon is not worth a number
            d = t.distance_m
            text += f" {d:.1f} m" if d <= MAX_SHOWN_M else f" >{MAX_SHOWN_M:.0f} m"
        if _finite(t.ttc_s) and t.ttc_s is not None and 0 < t.ttc_s <= MAX_SHOWN_TTC_S:
            text += f" TTC {t.ttc_s:.1f} s"
        color, width = CLASS_COLORS.get(name, WHITE), st.px(3 if t.in_ego_lane else 2)
        if fcw_id is not None and t.track_id == fcw_id:
            color, width = RED, st.px(5)
        _box(img, t.box, color, width, text, st)


def draw_lane_geo(img: np.ndarray, geo: LaneGeoLike, st: _Style) -> None:
    """Ego offset and curvature as a label at the bottom-left."""
    if geo.valid and _finite(geo.offset_m) and _finite(geo.curvature_1pm):
        text = f"offset {geo.offset_m:+.2f} m  curv {geo.curvature_1pm:+.4f} 1/m"
    else:
        text = "lanes: no fit"
    _label(img, text, st.pad, st.h - st.pad, st, BLACK, WHITE)


def _fmt(v: object) -> str:
    """Floats with one decimal (none from 1000 up), anything else as str()."""
    if isinstance(v, float | np.floating):
        x = float(v)
        return f"{x:.1f}" if abs(x) < 1000 else f"{x:.0f}"
    return str(v)


def draw_hud(img: np.ndarray, hud: Mapping[str, object], st: _Style) -> tuple[int, int]:
    """A darkened box at the top-left with "key: value" lines; returns its (right, bottom) px."""
    lines = [f"{k}: {_fmt(v)}" for k, v in hud.items()]
    if not lines:
        return 0, 0
    sizes = [cv2.getTextSize(s, FONT, st.font, st.text_th) for s in lines]
    line_h = max(th + base for (_, th), base in sizes) + st.pad
    x2 = min(max(tw for (tw, _), _ in sizes) + 3 * st.pad, st.w)
    y2 = min(line_h * len(lines) + 2 * st.pad, st.h)
    roi = img[st.pad : y2, st.pad : x2]
    np.right_shift(roi, 1, out=roi)  # halve the brightness in place: a cheap translucent box
    for i, s in enumerate(lines):
        y = st.pad + (i + 1) * line_h
        cv2.putText(img, s, (2 * st.pad, y), FONT, st.font, WHITE, st.text_th, cv2.LINE_AA)
    return x2, y2


def _warning_text(warnings: WarningsLike) -> str:
    msgs = []
    if warnings.fcw:
        ttc = warnings.fcw_ttc_s
        msgs.append("FORWARD COLLISION" + (f"  TTC {ttc:.1f} s" if _finite(ttc) else ""))
    if warnings.ldw:
        msgs.append(f"LANE DEPARTURE {str(warnings.ldw).upper()}")
    return "   ".join(msgs)


def draw_warnings(
    img: np.ndarray, warnings: WarningsLike, st: _Style, hud_box: tuple[int, int]
) -> None:
    """A big red banner at the top centre: beside the HUD when there is room, else below it;
    the text shrinks to the free width (portrait frames)."""
    text = _warning_text(warnings)
    if not text:
        return
    font, thick = 1.2 * st.s, max(2, round(2.5 * st.s))
    (tw, th), base = cv2.getTextSize(text, FONT, font, thick)
    beside = (hud_box[0] + st.pad, st.pad)  # right of the HUD, at the top
    below = (st.pad, hud_box[1] + st.pad)  # full width, under the HUD
    fits = [min((st.w - x - 5 * st.pad) / max(tw, 1), 1.0) for x, _ in (beside, below)]
    left, top = beside if fits[0] >= fits[1] else below
    fit = max(*fits, 0.25)  # a HUD as wide as a tiny frame: still a readable banner
    if fit < 1.0:
        font *= fit
        thick = max(1, round(thick * fit))
        (tw, th), base = cv2.getTextSize(text, FONT, font, thick)
    x1 = max((st.w - tw) // 2 - 2 * st.pad, left)
    y2 = top + th + base + 4 * st.pad
    cv2.rectangle(img, (x1, top), (x1 + tw + 4 * st.pad, y2), RED, -1)
    org = (x1 + 2 * st.pad, y2 - base - 2 * st.pad)
    cv2.putText(img, text, org, FONT, font, WHITE, thick, cv2.LINE_AA)


def draw(
    img: np.ndarray,
    pred: FramePrediction,
    tracks: Sequence[TrackLike] | None = None,
    lane_geo: LaneGeoLike | None = None,
    warnings: WarningsLike | None = None,
    hud: Mapping[str, object] | None = None,
    *,
    lane_slots: Sequence[str],
    class_names: Sequence[str],
) -> None:
    """Draw everything onto img (uint8 H x W x 3 BGR, in place; gray / BGRA also work).

    pred: lanes (xs float32[L, R] source px, NO_POINT = none) and detections (boxes x1 y1 x2
    y2 source px). tracks: when given, drawn instead of the raw detections, with distance and
    TTC. lane_geo: offset / curvature text. warnings: red banner and FCW target in red.
    hud: "key: value" lines at the top-left (floats with one decimal). lane_slots,
    class_names: the model contract's (what the slot and class indices name).
    """
    st = _Style(img)
    draw_lanes(img, pred.lanes, st, lane_slots)
    if tracks is None:
        draw_detections(img, pred.detections, st, class_names)
    else:
        draw_tracks(img, tracks, warnings, st, class_names)
    if lane_geo is not None:
        draw_lane_geo(img, lane_geo, st)
    hud_box = draw_hud(img, hud, st) if hud else (0, 0)
    if warnings is not None:
        draw_warnings(img, warnings, st, hud_box)
