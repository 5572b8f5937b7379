"""The frames `perception evaluate` scores: which clips and frames, their labels and
camera, the COCO ground truth they make, and their images decoded ahead by two threads."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from perception.dataset.coco import coco_categories, coco_image, obstacle_to_coco_annotation
from perception.dataset.lane_rows import lanes_to_tusimple_xs
from perception.dataset.schema import Clip, Dataset, FormatError, FrameLabel
from perception.params import EvaluateParams
from serving.geometry import Calib
from serving.io import read_image


@dataclass
class Frame:
    """One evaluated frame: where it is, its labels and camera, its COCO image id."""

    clip: Clip
    label: FrameLabel
    calib: Calib
    h_samples: list[int]
    tags: dict[str, str]
    image_id: int
    raw_file: str  # image path relative to the dataset root

    @property
    def size(self) -> tuple[int, int]:
        return self.calib.image_width, self.calib.image_height

    def gt_lanes(self) -> list[np.ndarray]:
        """TuSimple xs (float[len(h_samples)], -2 = no point) of lanes with >= 2 points."""
        return [np.asarray(xs, np.float64) for xs in lanes_to_tusimple_xs(self.label.lanes)]


@dataclass
class FrameResult:
    """One predictor's output on one frame, ready for scoring."""

    lanes: list[np.ndarray]  # float[len(h_samples)] x pixels, -2 = no point, >= 2 points
    boxes: np.ndarray  # float32[N, 4] x1 y1 x2 y2 pixels
    scores: np.ndarray  # float32[N]
    classes: np.ndarray  # int[N], index into CLASS_NAMES
    run_time_ms: float


@dataclass
class Run:
    """A predictor and its results, one per frame in frame order."""

    name: str
    detects: bool
    results: list[FrameResult] = field(default_factory=list)


def collect_frames(dataset: Dataset, clip_ids: Sequence[str], max_frames: int = 0) -> list[Frame]:
    """The frames of the clips in order; max_frames > 0 keeps that many spread evenly."""
    known = set(dataset.clip_ids())
    frames: list[Frame] = []
    for cid in clip_ids:
        if cid not in known:
            raise FormatError(f"{dataset.root}: splits name clip {cid!r}, not in the dataset")
        clip = dataset.clip(cid)
        calib, meta = clip.calib, clip.meta
        prefix = clip.path.relative_to(dataset.root).as_posix()
        for label in clip.labels:
            frames.append(
                Frame(
                    clip,
                    label,
                    calib,
                    list(meta.h_samples),
                    dict(meta.tags),
                    0,
                    f"{prefix}/{label.image}",
                )
            )
    if 0 < max_frames < len(frames):
        keep = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
        frames = [frames[i] for i in sorted(set(keep.tolist()))]
    for i, f in enumerate(frames, 1):
        f.image_id = i
    return frames


def coco_ground_truth(
    frames: Sequence[Frame], root: Path, params: EvaluateParams | None = None
) -> dict:
    """COCO gt dict of the frames (perception.dataset.coco's layout, image id = Frame.image_id).

    Objects too small or too hidden to be judged (box shorter than min_box_height_px at 720
    rows, or occlusion above max_occlusion) become "don't care" regions (iscrowd 1, as KITTI's
    DontCare and CityPersons' ignore regions): a detection on them is neither a true nor a
    false positive, and missing them is no false negative."""
    p = params or EvaluateParams()
    images: list[dict] = []
    anns: list[dict] = []
    for f in frames:
        images.append(coco_image(f.image_id, f.clip, f.label, root, f.size))
        min_h = p.min_box_height_px * f.size[1] / 720.0
        for obs in f.label.obstacles:
            try:
                ann = obstacle_to_coco_annotation(obs, len(anns) + 1, f.image_id)
            except ValueError as e:  # an unknown class, a box of other than 4 numbers
                where = f.clip.path / "labels.jsonl"
                raise FormatError(f"{where}: frame {f.label.frame}: {e}") from None
            if ann["bbox"][3] < min_h or obs.occlusion > p.max_occlusion:
                ann["iscrowd"] = 1
            anns.append(ann)
    return {
        "info": {"description": f"perception evaluate {root}"},
        "images": images,
        "annotations": anns,
        "categories": coco_categories(),
    }


def _read(path: Path) -> np.ndarray:
    """BGR; a regular image file within the size cap, else a SourceError naming it."""
    return read_image(path, cv2.IMREAD_COLOR)


def decoded(frames: Sequence[Frame], ahead: int = 4) -> Iterator[np.ndarray]:
    """BGR images of the frames in order, decoded by two threads a few frames ahead."""
    with ThreadPoolExecutor(2) as pool:
        queue: deque[Future[np.ndarray]] = deque()
        for f in frames:
            queue.append(pool.submit(_read, f.clip.frame_path(f.label)))
            if len(queue) > ahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
