"""A second look at the far field: the model run again on a crop of the frame around the horizon.

The network sees a 1280x720 frame at 448x256: a car 14 px tall (about 80 m away) is 5 px
at its input, under two cells of the stride-4 heatmap, and is rarely found (recall at IoU
0.5 for cars under 24 px: 32 % on the simulated test split, where they are a quarter of the
car boxes; none of the 12 real cars under 18 px). A crop of the source frame around the
horizon, resized to the same input, shows them at 2x (a 640-px-wide crop) to the same
network: no retraining, one more inference. Slicing a large image into windows and merging
the detections is what SAHI (Akyon et al., 2022) does for aerial images; a road camera needs
one window, where the far traffic is: the horizon, ahead.

`far_window` places the crop (horizontally centred on the principal point, the flat road's
horizon at HORIZON_AT of its height, inside the frame); `merge` drops the crop's boxes cut
by an inner edge of the window (the full pass sees those objects whole) or as tall as
FAR_MAX_HEIGHT (near objects), maps the rest onto the frame and keeps one box per object
(class-wise NMS with the decode's own IoU). Lanes come from the full frame only. Used by
serving.runtime (the loop) and perception.evaluate.predictors.FarFieldPredictor
(evaluation), so that both run the same two passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.contract import ModelContract
from serving.geometry import Calib
from serving.postprocess import Detections, nms

HORIZON_AT = 0.45  # the horizon's height in the window, from its top: far cars sit on and
# just below it, trucks rise above it
EDGE_PX = 2.0  # a crop box within this many pixels of an inner window edge is cut by it
# A far box as tall as this share of the frame (96 px at 720 rows) or taller is a near
# object, which the full pass sees well (cars of 96+ px: 96.5 % recall at IoU 0.5 on the
# simulated test split); at 2x in the crop the network sometimes draws parts of it as more
# boxes. Chosen on the validation split (AP50 mean with no cap 0.474, 96 px 0.476, 64 px
# 0.473, 48 px 0.463, 32 px 0.438: lower caps cost the pedestrians of 48-96 px).
FAR_MAX_HEIGHT = 96 / 720


@dataclass(frozen=True)
class Window:
    """A crop of the source frame, in source pixels."""

    x0: int
    y0: int
    width: int
    height: int


def far_window(calib: Calib, crop_width: int, contract: ModelContract) -> Window | None:
    """The far-field crop for a source of calib's size: crop_width source pixels wide, the
    model input's aspect ratio; None when crop_width is 0 or the crop would not be smaller
    than the frame."""
    w, h = calib.image_width, calib.image_height
    if crop_width <= 0 or crop_width >= w:
        return None
    ch = min(round(crop_width * contract.input_height / contract.input_width), h)
    x0 = int(np.clip(round(calib.cx - crop_width / 2), 0, w - crop_width))
    y0 = int(np.clip(round(calib.horizon_v - HORIZON_AT * ch), 0, h - ch))
    return Window(x0, y0, crop_width, ch)


def crop(image: np.ndarray, win: Window) -> np.ndarray:
    """The window of image (a view)."""
    return image[win.y0 : win.y0 + win.height, win.x0 : win.x0 + win.width]


def merge(
    full: Detections, far: Detections, win: Window, frame_w: int, frame_h: int,
    iou: float, max_out: int,
) -> Detections:  # fmt: skip
    """full (frame pixels) and far (window pixels) -> one set in frame pixels: far boxes cut
    by an inner window edge or as tall as FAR_MAX_HEIGHT of the frame dropped, the rest
    shifted onto the frame, then class-wise NMS at iou (at most max_out boxes, by descending
    score)."""
    b = np.asarray(far.boxes, np.float32).reshape(-1, 4)
    keep = np.ones(len(b), bool)
    if win.x0 > 0:
        keep &= b[:, 0] > EDGE_PX
    if win.x0 + win.width < frame_w:
        keep &= b[:, 2] < win.width - 1 - EDGE_PX
    if win.y0 > 0:
        keep &= b[:, 1] > EDGE_PX
    if win.y0 + win.height < frame_h:
        keep &= b[:, 3] < win.height - 1 - EDGE_PX
    keep &= b[:, 3] - b[:, 1] < FAR_MAX_HEIGHT * frame_h
    shifted = b[keep] + np.array([win.x0, win.y0, win.x0, win.y0], np.float32)
    fb = np.asarray(full.boxes, np.float32).reshape(-1, 4)
    fs, fc = far.scores[keep], far.classes[keep]
    boxes = np.concatenate([fb, shifted])
    scores = np.concatenate([full.scores, fs]).astype(np.float32)
    classes = np.concatenate([full.classes, fc]).astype(np.int32)
    k = nms(boxes, scores, classes, iou, max_out)
    return Detections(boxes[k], scores[k], classes[k])
