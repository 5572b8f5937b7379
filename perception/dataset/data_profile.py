"""The data profile: distributions of image properties and labels with FIXED bin edges, so that
a monitor can histogram live frames (or predictions) on the same bins and compute the
population stability index (PSI) against the training data.

Image statistics are computed on frames reduced to 1/4 of their width and height (the dataset
decodes with cv2.IMREAD_REDUCED_COLOR_4; a live monitor should use cv2.resize with
INTER_AREA to the same size) because sharpness depends on scale:

* brightness: mean grey level, 0..255
* contrast: RMS contrast, the standard deviation of the grey levels, 0..255 scale
* sharpness: variance of the Laplacian (cv2.CV_64F, ksize 1) of the grey image
* mean_b, mean_g, mean_r: channel means, 0..255

Label statistics: objects and lanes per frame (counts), box width / height as fractions of the
image width / height and box area as a fraction of the image area (resolution independent),
and class frequencies. Values outside the edges are counted in the outermost bins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from serving.contract import CLASS_NAMES
from serving.files import atomic_write_json

PROFILE_VERSION = 1
IMAGE_REDUCTION = 4
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _edges(values: np.ndarray) -> list[float]:
    return [round(float(v), 8) for v in values]


# name -> bin edges (len = bins + 1). Change them only together with PROFILE_VERSION.
BIN_EDGES: dict[str, list[float]] = {
    "brightness": _edges(np.linspace(0.0, 256.0, 33)),
    "contrast": _edges(np.linspace(0.0, 128.0, 33)),
    "sharpness": _edges(np.concatenate([[0.0], np.geomspace(1.0, 1e5, 31)])),
    "mean_b": _edges(np.linspace(0.0, 256.0, 33)),
    "mean_g": _edges(np.linspace(0.0, 256.0, 33)),
    "mean_r": _edges(np.linspace(0.0, 256.0, 33)),
    "objects_per_frame": _edges(np.arange(0, 42) - 0.5),
    "lanes_per_frame": _edges(np.arange(0, 7) - 0.5),
    "box_width": _edges(np.concatenate([[0.0], np.geomspace(1e-3, 1.0, 31)])),
    "box_height": _edges(np.concatenate([[0.0], np.geomspace(1e-3, 1.0, 31)])),
    "box_area": _edges(np.concatenate([[0.0], np.geomspace(1e-6, 1.0, 31)])),
}
IMAGE_STATS = ("brightness", "contrast", "sharpness", "mean_b", "mean_g", "mean_r")


def image_stats(bgr: np.ndarray) -> dict[str, float]:
    """Statistics of one BGR uint8 frame, already reduced by IMAGE_REDUCTION (see module doc)."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    b, g, r = (float(m) for m in cv2.mean(bgr)[:3])
    return {
        "brightness": float(grey.mean()),
        "contrast": float(grey.std()),
        "sharpness": float(cv2.Laplacian(grey, cv2.CV_64F, ksize=1).var()),
        "mean_b": b,
        "mean_g": g,
        "mean_r": r,
    }


def histogram(values: Iterable[float], edges: Sequence[float]) -> dict[str, Any]:
    """Fixed-bin histogram plus summary: {bin_edges, counts, n, mean, std, quantiles}.
    Values beyond the edges land in the first or last bin."""
    v = np.asarray(list(values), dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    counts, _ = np.histogram(np.clip(v, e[0], e[-1]), bins=e)
    out: dict[str, Any] = {"bin_edges": list(edges), "counts": counts.tolist(), "n": len(v)}
    if len(v):
        q = np.quantile(v, QUANTILES)
        out.update(
            mean=float(v.mean()),
            std=float(v.std()),
            quantiles={
                f"p{round(p * 100):02d}": float(x) for p, x in zip(QUANTILES, q, strict=True)
            },
        )
    return out


def build_profile(
    frame_stats: Sequence[Mapping[str, float]],
    objects_per_frame: Sequence[int],
    lanes_per_frame: Sequence[int],
    boxes: Sequence[tuple[str, float, float, int, int]],
) -> dict[str, Any]:
    """frame_stats: image_stats() of the sampled frames; boxes: (class, width px, height px,
    image width px, image height px) for every valid box of the dataset."""
    bw = [w / iw for _, w, _, iw, _ in boxes]
    bh = [h / ih for _, _, h, _, ih in boxes]
    area = [w * h / (iw * ih) for _, w, h, iw, ih in boxes]
    cls_counts = {c: 0 for c in CLASS_NAMES}
    for c, *_ in boxes:
        if c in cls_counts:
            cls_counts[c] += 1
    total = max(1, sum(cls_counts.values()))
    return {
        "profile_version": PROFILE_VERSION,
        "image_reduction": IMAGE_REDUCTION,
        "frames_sampled": len(frame_stats),
        "image": {k: histogram((s[k] for s in frame_stats), BIN_EDGES[k]) for k in IMAGE_STATS},
        "labels": {
            "frames": len(objects_per_frame),
            "objects_per_frame": histogram(objects_per_frame, BIN_EDGES["objects_per_frame"]),
            "lanes_per_frame": histogram(lanes_per_frame, BIN_EDGES["lanes_per_frame"]),
            "box_width": histogram(bw, BIN_EDGES["box_width"]),
            "box_height": histogram(bh, BIN_EDGES["box_height"]),
            "box_area": histogram(area, BIN_EDGES["box_area"]),
            "class_counts": cls_counts,
            "class_frequency": {c: n / total for c, n in cls_counts.items()},
        },
    }


def write_profile(path: str | Path, profile: Mapping[str, Any]) -> None:
    atomic_write_json(path, profile)
