"""Labels (source-image pixels) -> training targets on the model's grids, and back.

Lanes: per slot and row anchor, the index of the column cell that holds the lane's x
(0..G-1), or G where the lane has no point on that row (the classification target); the
same x in cell units, unquantised (the expectation's regression target: quantised to the
cell index, it would pin the expectation to cell centres, an error of up to half a cell);
existence per slot.
Obstacles: a Gaussian bump per object on its class's heatmap at the centre of its (clipped)
box, and the distances from that cell's centre to the box edges, in input pixels.

`serving/postprocess.py` inverts both (the test suite checks the round trip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.dataset.schema import FrameLabel
from serving.contract import ModelContract


@dataclass
class Targets:
    heat: np.ndarray  # float32[C, h, w] in [0, 1], 1 at object centres
    box: np.ndarray  # float32[4, h, w] l t r b input pixels (valid where mask)
    box_mask: np.ndarray  # float32[h, w] 1 at object centre cells
    lane_cls: np.ndarray  # int64[L, R] cell index, G = no point
    lane_pos: np.ndarray  # float32[L, R] x in cells, centre convention (0 = cell 0's centre)
    lane_exist: np.ndarray  # float32[L]


def lane_cells(xs: np.ndarray, width: float, cells: int) -> np.ndarray:
    """xs float[R] source pixels (< 0: none) -> int64[R] cell index, `cells` = none."""
    out = np.full(len(xs), cells, np.int64)
    ok = (xs >= 0) & (xs < width)
    out[ok] = np.minimum((xs[ok] / width * cells).astype(np.int64), cells - 1)
    return out


def lane_positions(xs: np.ndarray, width: float, cells: int) -> np.ndarray:
    """xs float[R] source pixels -> float32[R] the same x in cells, measured from the first
    cell's centre (x = (pos + 0.5) * width / cells, the decode's convention), kept within
    0..G-1 where a softmax expectation over the cells can reach; 0 where there is no point
    (lane_cells says which rows have one)."""
    pos = np.clip(np.asarray(xs, np.float64) / width * cells - 0.5, 0.0, cells - 1.0)
    return np.where((xs >= 0) & (xs < width), pos, 0.0).astype(np.float32)


@dataclass(frozen=True)
class Affine:
    """A zoom about the origin and a shift, in source-image pixels: p' = scale * p + (tx, ty).
    Scale and crop augmentation moves pixels with it, and the labels with this."""

    scale: float = 1.0
    tx: float = 0.0
    ty: float = 0.0

    def matrix(self, sx: float = 1.0, sy: float = 1.0) -> np.ndarray:
        """float32[2, 3] for cv2.warpAffine on an image resized by (sx, sy) from the source."""
        return np.array([[self.scale, 0, self.tx * sx], [0, self.scale, self.ty * sy]], np.float32)


IDENTITY = Affine()


def lane_xs_at_anchors(
    x_at_h: list[float], h_samples: list[int], rows: np.ndarray, aff: Affine = IDENTITY
) -> np.ndarray:
    """Resample a lane's TuSimple xs to the anchor rows (exact when the rows coincide), after
    moving its points by aff. Points that leave the image are dropped by the caller."""
    h = np.asarray(h_samples, np.float64) * aff.scale + aff.ty
    x = np.asarray(x_at_h, np.float64)
    ok = x >= 0
    x = np.where(ok, x * aff.scale + aff.tx, x)
    out = np.full(len(rows), -2.0)
    if ok.sum() < 2:
        return out
    lo, hi = h[ok].min(), h[ok].max()
    inside = (rows >= lo - 1e-6) & (rows <= hi + 1e-6)
    out[inside] = np.interp(rows[inside], h[ok], x[ok])
    return out


def _gaussian(heat: np.ndarray, cx: float, cy: float, sigma: float) -> None:
    h, w = heat.shape
    r = math.ceil(3 * sigma)
    x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
    y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    g = np.exp(-((xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2) / (2 * sigma**2))
    np.maximum(heat[y0:y1, x0:x1], g, out=heat[y0:y1, x0:x1])


def encode(
    label: FrameLabel,
    src_w: int,
    src_h: int,
    h_samples: list[int],
    c: ModelContract,
    flip: bool = False,
    aff: Affine = IDENTITY,
) -> Targets:
    """One frame's labels -> Targets. flip mirrors the frame left-right (slots swap sides),
    then aff moves everything (boxes are clipped to the image; one that the move pushed
    mostly out of it, less than 30 % of its area left, is dropped)."""
    gh, gw = c.grid
    s = c.stride
    sx, sy = c.input_width / src_w, c.input_height / src_h
    heat = np.zeros((len(c.class_names), gh, gw), np.float32)
    box = np.zeros((4, gh, gw), np.float32)
    mask = np.zeros((gh, gw), np.float32)
    for ob in sorted(label.obstacles, key=lambda o: -(o.box[2] - o.box[0]) * (o.box[3] - o.box[1])):
        x1, y1, x2, y2 = ob.box
        if flip:
            x1, x2 = src_w - 1 - x2, src_w - 1 - x1
        if aff is not IDENTITY:
            moved = [x1 * aff.scale + aff.tx, y1 * aff.scale + aff.ty]
            moved += [x2 * aff.scale + aff.tx, y2 * aff.scale + aff.ty]
            x1, x2 = np.clip([moved[0], moved[2]], 0, src_w - 1)
            y1, y2 = np.clip([moved[1], moved[3]], 0, src_h - 1)
            area = (moved[2] - moved[0]) * (moved[3] - moved[1])
            if x2 <= x1 or y2 <= y1 or (x2 - x1) * (y2 - y1) < 0.3 * area:
                continue  # pushed (mostly) out of the frame by the augmentation
        x1, x2, y1, y2 = x1 * sx, x2 * sx, y1 * sy, y2 * sy
        cx, cy = (x1 + x2) / 2 / s, (y1 + y2) / 2 / s
        ix, iy = min(int(cx), gw - 1), min(int(cy), gh - 1)
        sigma = max(0.6, math.sqrt((x2 - x1) * (y2 - y1)) / s / 6.0)
        _gaussian(heat[c.class_names.index(ob.cls)], cx, cy, sigma)
        heat[c.class_names.index(ob.cls), iy, ix] = 1.0
        px, py = (ix + 0.5) * s, (iy + 0.5) * s  # smaller objects drawn last win the cell
        box[:, iy, ix] = (px - x1, py - y1, x2 - px, y2 - py)
        mask[iy, ix] = 1.0
    rows = np.asarray(c.row_anchors) * src_h
    slots = list(c.lane_slots)
    lane_cls = np.full((len(slots), len(rows)), c.lane_cells, np.int64)
    lane_pos = np.zeros((len(slots), len(rows)), np.float32)
    exist = np.zeros(len(slots), np.float32)
    swap = {
        "ego_left": "ego_right",
        "ego_right": "ego_left",
        "outer_left": "outer_right",
        "outer_right": "outer_left",
    }
    for lane in label.lanes:
        slot = swap.get(lane.slot, lane.slot) if flip else lane.slot
        x_at_h = lane.x_at_h
        if flip:
            x_at_h = [src_w - 1 - x if x >= 0 else x for x in x_at_h]
        xs = lane_xs_at_anchors(x_at_h, h_samples, rows, aff)
        k = slots.index(slot)
        lane_cls[k] = lane_cells(xs, src_w, c.lane_cells)
        lane_pos[k] = lane_positions(xs, src_w, c.lane_cells)
        exist[k] = float((lane_cls[k] < c.lane_cells).sum() >= 2)
    return Targets(heat, box, mask, lane_cls, lane_pos, exist)


def logits_from_targets(t: Targets, c: ModelContract) -> np.ndarray:
    """Ideal lane logits for targets (to check that decode inverts encode): each row with a
    point shares its probability between the two cells whose centres bracket the exact
    position, so that the softmax expectation is that position; rows without one are all
    "no point"."""
    n_l, n_r = t.lane_cls.shape
    cells = c.lane_cells
    prob = np.zeros((n_l, n_r, cells + 1), np.float64)
    lo = np.minimum(np.floor(t.lane_pos).astype(np.int64), cells - 1)
    frac = t.lane_pos - lo
    has = t.lane_cls < cells
    ll, rr = np.nonzero(has)
    prob[ll, rr, lo[has]] += 1.0 - frac[has]
    prob[ll, rr, np.minimum(lo[has] + 1, cells - 1)] += frac[has]
    ll, rr = np.nonzero(~has)
    prob[ll, rr, cells] = 1.0
    return np.log(np.maximum(prob, 1e-12)).astype(np.float32)
