"""Training frames: decoded once, resized with the serving preprocessing, kept in memory.

Decoding a 1280x720 JPEG costs ~6 ms; an epoch reads each frame once, so the frames are
decoded and resized once up front (the same resize the real-time loop uses, so the
network never sees pixels that serving would not produce) and kept as uint8. 3,400 frames at
448x256 take 1.2 GB. For a dataset larger than memory, `train.stream: true` reads them from
disk in the loader's workers instead (FrameStream), through the same load_frame.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from tqdm import tqdm

from perception.dataset.schema import Dataset, FrameLabel
from perception.model.targets import IDENTITY, Affine, encode
from serving.contract import ModelContract
from serving.io import read_image
from serving.preprocess import resize_rgb_u8

# one training frame: image path, label, source width and height, h_samples, clip id
FrameItem = tuple[str, FrameLabel, int, int, list[int], str]


def frame_items(root: str, clip_ids: list[str], max_frames: int | None = None) -> list[FrameItem]:
    """Every frame of the given clips in clip then frame order (the first max_frames)."""
    ds = Dataset(root)
    items: list[FrameItem] = []
    for cid in clip_ids:
        clip = ds.clip(cid)
        calib, meta = clip.calib, clip.meta
        for lb in clip.labels:
            items.append(
                (
                    str(clip.frame_path(lb)),
                    lb,
                    calib.image_width,
                    calib.image_height,
                    meta.h_samples,
                    cid,
                )
            )
    return items if max_frames is None else items[:max_frames]


def load_frame(path: str, contract: ModelContract) -> np.ndarray:
    """uint8[input_height, input_width, 3] RGB: decoded and resized as serving does."""
    img = read_image(path, cv2.IMREAD_COLOR)
    return resize_rgb_u8(img, contract.input_width, contract.input_height)


class FrameSource(Protocol):
    """What TrainSet reads: FrameCache (in memory) or FrameStream."""

    contract: ModelContract
    labels: list[FrameLabel]
    sizes: list[tuple[int, int]]  # source image width, height (pixels)
    h_samples: list[list[int]]

    def __len__(self) -> int: ...

    def image(self, i: int) -> np.ndarray: ...  # uint8[H, W, 3] RGB at model input size


class FrameStream:
    """The frames of the given clips, decoded on each access (`train.stream: true`): only
    labels and paths stay in memory, frames are decoded in the DataLoader's worker processes
    (`train.loader_workers`), so memory stays flat whatever the dataset's size."""

    def __init__(
        self,
        root: str,
        clip_ids: list[str],
        contract: ModelContract,
        progress: bool = True,
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


class FrameCache(FrameStream):
    """The same frames, each decoded and resized once up front and kept (448x256 RGB uint8,
    344 KB a frame): the fast choice while the dataset fits in memory."""

    def __init__(
        self,
        root: str,
        clip_ids: list[str],
        contract: ModelContract,
        progress: bool = True,
        max_frames: int | None = None,
    ):
        super().__init__(root, clip_ids, contract, progress, max_frames)
        h, w = contract.input_height, contract.input_width
        self.images = np.empty((len(self.paths), h, w, 3), np.uint8)
        # two threads: OpenCV's decode and resize release the GIL (12.0 -> 7.0 s for 1,050
        # frames on 2 cores); map keeps the order, so the bytes are the same
        with ThreadPoolExecutor(2) as pool:
            decoded = pool.map(lambda path: load_frame(path, contract), self.paths)
            for i, img in enumerate(
                tqdm(decoded, total=len(self.paths), desc="decode", disable=not progress,
                     unit="frame")
            ):  # fmt: skip
                self.images[i] = img

    def image(self, i: int) -> np.ndarray:
        return self.images[i]


class TrainSet(TorchDataset):
    """Tensors for training: normalised image, targets; flips and photometric jitter when
    augment is on. Randomness comes from a per-sample generator seeded by (seed, epoch,
    index) so that a run is reproducible whatever the number of loader workers."""

    def __init__(self, cache: FrameSource, augment: bool, seed: int):
        self.cache, self.augment, self.seed = cache, augment, seed
        self.epoch = 0
        c = cache.contract
        self.mean = torch.tensor(c.mean).view(3, 1, 1)
        self.std = torch.tensor(c.std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        c = self.cache.contract
        rng = np.random.default_rng((self.seed, self.epoch, i))
        w, h = self.cache.sizes[i]
        img_u8 = self.cache.image(i)
        flip = bool(self.augment and rng.random() < 0.5)
        aff = self._affine(rng, w, h) if self.augment else IDENTITY
        if flip:
            img_u8 = img_u8[:, ::-1]
        if aff is not IDENTITY:
            m = aff.matrix(c.input_width / w, c.input_height / h)
            fill = tuple(float(v) for v in c.mean)  # pads normalise to 0
            img_u8 = cv2.warpAffine(
                np.ascontiguousarray(img_u8),
                m,
                (c.input_width, c.input_height),
                flags=cv2.INTER_LINEAR,
                borderValue=fill,
            )
        img = torch.from_numpy(np.ascontiguousarray(img_u8)).permute(2, 0, 1).float()  # RGB
        if self.augment:
            img = self._photometric(img, rng)
        t = encode(self.cache.labels[i], w, h, self.cache.h_samples[i], c, flip=flip, aff=aff)
        return {
            "image": (img - self.mean) / self.std,
            "heat": torch.from_numpy(t.heat),
            "box": torch.from_numpy(t.box),
            "box_mask": torch.from_numpy(t.box_mask),
            "lane_cls": torch.from_numpy(t.lane_cls),
            "lane_pos": torch.from_numpy(t.lane_pos),
            "lane_exist": torch.from_numpy(t.lane_exist),
        }

    @staticmethod
    def _affine(rng: np.random.Generator, w: int, h: int) -> Affine:
        """Zoom 0.8-1.25x about a random point and shift: other fields of view, camera
        heights and pitches than the simulator's rigs; a third of the frames stay as they are."""
        if rng.random() < 0.33:
            return IDENTITY
        scale = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.35, 0.75) * h
        return Affine(
            scale,
            cx * (1 - scale) + rng.uniform(-0.05, 0.05) * w,
            cy * (1 - scale) + rng.uniform(-0.06, 0.06) * h,
        )

    @staticmethod
    def _photometric(img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Exposure, white balance, contrast, saturation, blur and sensor noise, on 0-255 RGB."""
        gain = float(rng.uniform(0.6, 1.4))
        tint = torch.tensor(rng.uniform(0.88, 1.12, 3)).view(3, 1, 1).float()
        mean = img.mean()
        contrast = float(rng.uniform(0.7, 1.3))
        img = ((img - mean) * contrast + mean) * gain * tint
        grey = img.mean(0, keepdim=True)
        img = grey + (img - grey) * float(rng.uniform(0.5, 1.4))  # saturation
        if rng.random() < 0.3:  # defocus / motion blur
            k = int(rng.choice([3, 5]))
            img = torch.nn.functional.avg_pool2d(img[None], k, 1, k // 2, count_include_pad=False)[
                0
            ]
        img = img + torch.from_numpy(rng.normal(0, rng.uniform(0, 6), img.shape[1:])).float()
        return img.clamp(0, 255)
