"""Training frames read from disk as they are needed (`train.stream: true`).

FrameCache decodes every frame up front and keeps it (448x256 RGB uint8, 344 KB a frame:
3,400 frames take 1.2 GB), the fast choice while the dataset fits in memory. FrameStream keeps
only the labels and paths and decodes a frame when TrainSet asks for it, in the DataLoader's
worker processes (`train.loader_workers`), so memory stays flat whatever the dataset's size.
The decode and resize are the cache's own (data.load_frame), so the network sees the same
pixels and, with TrainSet's per-sample random generators, the same samples as the cache (to
the last bit when both are made with the same torch thread count: loader workers use one).
"""

from __future__ import annotations

import numpy as np

from perception.model.data import frame_items, load_frame
from serving.contract import ModelContract


class FrameStream:
    """The frames of the given clips, decoded on each access (data.FrameSource)."""

    def __init__(
        self,
        root: str,
        clip_ids: list[str],
        contract: ModelContract,
        progress: bool = True,  # nothing to decode up front; FrameCache's signature
        max_frames: int | None = None,
    ):
        self.contract = contract
        items = frame_items(root, clip_ids, max_frames)
        self.paths = [it[0] for it in items]
        self.labels = [it[1] for it in items]
        self.sizes = [(it[2], it[3]) for it in items]
        self.h_samples = [it[4] for it in items]
        self.clip_ids = [it[5] for it in items]

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> np.ndarray:
        """uint8[input_height, input_width, 3] RGB."""
        return load_frame(self.paths[i], self.contract)
