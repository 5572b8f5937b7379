"""The checks of one frame's labels: obstacle boxes and lanes (perception.dataset.checks runs
them for every frame of a clip; the problem lines have its format).

Geometry conventions (schema.py): pixel centres sit at integer coordinates, boxes are
x1 y1 x2 y2 pixels clipped to the image; a coordinate counts as inside the image when it lies
in [-TOL_PX, size + TOL_PX].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from perception.dataset.schema import FrameLabel
from serving.contract import CLASS_NAMES, LANE_COLORS, LANE_SLOTS, LANE_STYLES

TOL_PX = 0.5  # pixels a box corner or lane point may lie outside the image


def problem(
    path: Path | str, clip: str, what: str, frame: int | None = None, fld: str | None = None
) -> str:
    """Format one problem line: ``path: clip c frame n field: what``."""
    where = f"clip {clip}" + (f" frame {frame}" if frame is not None else "")
    return f"{path}: {where}" + (f" {fld}" if fld else "") + f": {what}"


def _inside(x: float, size: int) -> bool:
    return -TOL_PX <= x <= size + TOL_PX


def check_obstacles(
    lab: FrameLabel, size: tuple[int, int] | None, err: list[str], path: Path, clip: str
) -> None:
    """Class names and boxes (finite, positive area, inside the image)."""
    for i, ob in enumerate(lab.obstacles):
        if ob.cls not in CLASS_NAMES:
            err.append(
                problem(path, clip, f"unknown class {ob.cls!r}", lab.frame, f"obstacles[{i}].cls")
            )
        box, fld = ob.box, f"obstacles[{i}].box"
        if len(box) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in box):
            err.append(problem(path, clip, f"not 4 finite numbers {box}", lab.frame, fld))
            continue
        x1, y1, x2, y2 = box
        if x2 <= x1 or y2 <= y1:
            kind = "zero" if x2 == x1 or y2 == y1 else "negative"
            err.append(problem(path, clip, f"{kind} area {box}", lab.frame, fld))
        elif size is not None and not (
            _inside(x1, size[0])
            and _inside(x2, size[0])
            and _inside(y1, size[1])
            and _inside(y2, size[1])
        ):
            err.append(
                problem(path, clip, f"outside the {size[0]}x{size[1]} image {box}", lab.frame, fld)
            )


def check_lanes(
    lab: FrameLabel, size: tuple[int, int] | None, n_h: int, err: list[str], path: Path, clip: str
) -> None:
    """Slots (known, once per frame), style/colour, points (on the image, v decreasing)."""
    seen: set[str] = set()
    for i, lane in enumerate(lab.lanes):
        pre = f"lanes[{i}]"
        if lane.slot not in LANE_SLOTS:
            err.append(problem(path, clip, f"unknown slot {lane.slot!r}", lab.frame, pre + ".slot"))
        elif lane.slot in seen:
            err.append(
                problem(
                    path, clip, f"slot {lane.slot} twice in the frame", lab.frame, pre + ".slot"
                )
            )
        seen.add(lane.slot)
        if lane.style not in LANE_STYLES:
            err.append(
                problem(path, clip, f"unknown style {lane.style!r}", lab.frame, pre + ".style")
            )
        if lane.color not in LANE_COLORS:
            err.append(
                problem(path, clip, f"unknown color {lane.color!r}", lab.frame, pre + ".color")
            )
        if n_h and lane.x_at_h and len(lane.x_at_h) != n_h:
            err.append(
                problem(
                    path,
                    clip,
                    f"{len(lane.x_at_h)} values for {n_h} h_samples",
                    lab.frame,
                    pre + ".x_at_h",
                )
            )
        _check_lane_points(lane.points, size, err, path, clip, lab.frame, pre + ".points")


def _check_lane_points(
    points: Sequence[Sequence[float]],
    size: tuple[int, int] | None,
    err: list[str],
    path: Path,
    clip: str,
    frame: int,
    pre: str,
) -> None:
    if len(points) < 2:
        err.append(problem(path, clip, f"{len(points)} points, a lane needs 2", frame, pre))
        return
    prev_v = math.inf
    for j, pt in enumerate(points):
        fld = f"{pre}[{j}]"
        if len(pt) != 2 or not all(isinstance(c, int | float) and math.isfinite(c) for c in pt):
            err.append(problem(path, clip, f"not a finite (u, v) pair {pt}", frame, fld))
            return
        u, v = pt
        if size is not None and not (_inside(u, size[0]) and _inside(v, size[1])):
            err.append(
                problem(path, clip, f"({u}, {v}) off the {size[0]}x{size[1]} image", frame, fld)
            )
            return
        if v >= prev_v:
            err.append(
                problem(
                    path,
                    clip,
                    f"v {v} not above the previous point's {prev_v} "
                    "(points go bottom to top, v strictly decreasing)",
                    frame,
                    fld,
                )
            )
            return
        prev_v = v
