"""`perception calibrate PHOTOS... --out calib.json`: a camera's intrinsics and lens distortion
from chessboard photos, written as the project's calibration file (serving.geometry.Calib).

OpenCV's standard recipe: findChessboardCorners on each photo, cornerSubPix to refine the
corners to a tenth of a pixel, calibrateCamera over every board found (pinhole K and the
five coefficients k1 k2 p1 p2 k3). The RMS reprojection error says how well the model fits
the corners: below ~1 px is a usable calibration.

A chessboard gives the intrinsics only. The camera's pose on the car comes from elsewhere:
its height is measured (or a typical value: a sedan's windscreen camera sits ~1.2-1.3 m up),
and its pitch follows from where a flat, straight road's lines meet, the vanishing point:
a ray to the horizon is parallel to the road, so a camera pitched down by p sees the horizon
at v = cy - fy tan(p) in the undistorted image (serving.geometry.Calib.horizon_v), hence
p = atan((cy - v) / fy). ``--horizon-lanes`` estimates v from TuSimple lane labels of frames
taken with the camera (see ``vanishing_row``).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from perception.dataset.lane_rows import xs_to_points
from perception.dataset.tusimple import read_records
from perception.errors import UserError
from serving.files import atomic_write_json
from serving.geometry import Calib
from serving.io import read_image
from serving.source import SourceError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# cornerSubPix: 11x11 search window, stop after 30 iterations or a 0.001 px step
_SUBPIX_WIN = (11, 11)
_SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.001)
# rows used for the vanishing point: the near road, below this fraction of the image height
# (far away, roads curve and crest, and the lines bend away from their near-field direction)
NEAR_ROAD_FROM = 0.6


@dataclass
class Calibration:
    """calibrateCamera's answer: K float64[3, 3], dist (k1 k2 p1 p2 k3), RMS reprojection
    error in pixels, image size (width, height) pixels, and which photos showed the board."""

    K: np.ndarray
    dist: tuple[float, float, float, float, float]
    rms_px: float
    size: tuple[int, int]
    found: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def to_calib(self, camera_height_m: float, pitch_rad: float) -> Calib:
        w, h = self.size
        K = self.K
        return Calib(
            w, h, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
            camera_height_m, pitch_rad, dist=self.dist,
        )  # fmt: skip


def photo_paths(items: list[str]) -> list[Path]:
    """The photos named on the command line: files as given, folders as their images in
    name order. A missing path is a UserError."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in PHOTO_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: no such photo or folder")
    if not out:
        raise UserError(f"{' '.join(items)}: no photos ({', '.join(PHOTO_SUFFIXES)})")
    return out


def find_corners(gray: np.ndarray, board: tuple[int, int]) -> np.ndarray | None:
    """The board's inner corners, float32[cols * rows, 1, 2] pixels refined to sub-pixel,
    or None when the whole board is not seen. board: (cols, rows) inner corners."""
    ok, corners = cv2.findChessboardCorners(
        gray, board, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    )
    if not ok:
        return None
    return cv2.cornerSubPix(gray, corners, _SUBPIX_WIN, (-1, -1), _SUBPIX_CRITERIA)


def board_points(board: tuple[int, int], square_m: float) -> np.ndarray:
    """float32[cols * rows, 3]: the inner corners on the board's plane (z = 0), metres, in
    findChessboardCorners' order (row by row)."""
    cols, rows = board
    grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2).astype(np.float32)
    return np.concatenate([grid * square_m, np.zeros((len(grid), 1), np.float32)], axis=1)


def read_photos(
    photos: list[Path], skip_other_sizes: bool = False
) -> tuple[list[tuple[Path, np.ndarray]], list[Path]]:
    """([(path, uint8[H, W] grey image)], photos left out). Every photo must be readable and
    of one size; with skip_other_sizes, photos of another size than the commonest are left
    out instead of being an error (the Udacity set has two photos 1 px larger, resaved).
    Errors are UserErrors naming the photo."""
    images = []
    for path in photos:
        try:  # a regular file within the size cap: a FIFO or a device never hangs this
            gray = read_image(path, cv2.IMREAD_GRAYSCALE)
        except SourceError as e:
            raise UserError(str(e)) from None
        images.append((path, gray))
    sizes = [(g.shape[1], g.shape[0]) for _, g in images]
    common = max(set(sizes), key=lambda s: (sizes.count(s), s == sizes[0]))
    odd = [(p, s) for (p, _), s in zip(images, sizes, strict=True) if s != common]
    if odd and not skip_other_sizes:
        (path, (w, h)), (cw, ch) = odd[0], common
        raise UserError(
            f"{path}: {w}x{h} pixels, but {sizes.count(common)} other photos are {cw}x{ch} "
            "(one camera at one resolution; --skip-other-sizes leaves such photos out)"
        )
    kept = [(p, g) for (p, g), s in zip(images, sizes, strict=True) if s == common]
    return kept, [p for p, _ in odd]


def calibrate(
    images: list[tuple[Path, np.ndarray]],
    board: tuple[int, int] = (9, 6),
    square_m: float = 0.025,
    min_boards: int = 5,
    progress: bool = False,
) -> Calibration:
    """Calibrate from chessboard photos of one camera: (path, uint8[H, W] grey) pairs of one
    size (``read_photos``). square_m (metres) only scales the board poses: K and the
    distortion do not depend on it. Fewer than min_boards boards found is a UserError."""
    image_points: list[np.ndarray] = []
    found: list[str] = []
    missed: list[str] = []
    for path, gray in tqdm(images, desc="calibrate", unit="photo", disable=not progress):
        corners = find_corners(gray, board)
        (found if corners is not None else missed).append(path.name)
        if corners is not None:
            image_points.append(corners)
    if len(image_points) < min_boards:
        where = images[0][0].parent if images else "no photos"
        raise UserError(
            f"{where}: the {board[0]}x{board[1]} board was found in {len(image_points)} of "
            f"{len(images)} photos, at least {min_boards} are needed "
            "(check --board: inner corners, columns x rows)"
        )
    size = (images[0][1].shape[1], images[0][1].shape[0])
    obj = [board_points(board, square_m)] * len(image_points)
    rms, K, dist, _, _ = cv2.calibrateCamera(obj, image_points, size, None, None)
    k1, k2, p1, p2, k3 = (float(v) for v in np.ravel(dist)[:5])
    return Calibration(np.asarray(K), (k1, k2, p1, p2, k3), float(rms), size, found, missed)


def undistort_points(calib: Calib, uv: np.ndarray) -> np.ndarray:
    """Distorted source pixels float[N, 2] -> undistorted pixels (same K), float64[N, 2]."""
    pts = np.asarray(uv, np.float64).reshape(-1, 1, 2)
    if not calib.has_distortion:
        return pts.reshape(-1, 2)
    return cv2.undistortPoints(pts, calib.K, np.array(calib.dist), P=calib.K).reshape(-1, 2)


def _line(points: np.ndarray) -> np.ndarray | None:
    """The line a u + b v + c = 0 (a^2 + b^2 = 1) through points float[N, 2] by total least
    squares, or None with fewer than 3 points."""
    if len(points) < 3:
        return None
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre)
    normal = vt[-1]
    return np.array([normal[0], normal[1], -normal @ centre])


def vanishing_point(lines: list[np.ndarray]) -> np.ndarray | None:
    """The point (u, v) pixels nearest to all lines (least squares over their normal
    distances), or None with fewer than two lines."""
    if len(lines) < 2:
        return None
    a = np.array([ln[:2] for ln in lines])
    b = -np.array([ln[2] for ln in lines])
    uv, *_ = np.linalg.lstsq(a, b, rcond=None)
    return uv


def vanishing_row(labels: Path, calib: Calib) -> tuple[float, int]:
    """(median vanishing-point row in undistorted pixels, frames used) over the frames of a
    TuSimple label file. Per frame: each lane's near-road points (rows below NEAR_ROAD_FROM
    of the height) are undistorted with calib and fitted with a straight line; the lines'
    least-squares meeting point is that frame's vanishing point. The median resists frames
    whose road bends or crests in the near field."""
    rows = []
    for rec in read_records(labels):
        lines = []
        for xs in rec.lanes:
            pts = np.array(xs_to_points(xs, rec.h_samples), np.float64).reshape(-1, 2)
            pts = pts[pts[:, 1] >= NEAR_ROAD_FROM * calib.image_height]
            line = _line(undistort_points(calib, pts)) if len(pts) else None
            if line is not None:
                lines.append(line)
        vp = vanishing_point(lines)
        if vp is not None:
            rows.append(float(vp[1]))
    if not rows:
        raise UserError(f"{labels}: no frame with two lanes to find the vanishing point")
    return float(np.median(rows)), len(rows)


def _board(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected COLSxROWS inner corners, got {text!r}"
        ) from None
    if min(cols, rows) < 2:
        raise argparse.ArgumentTypeError(f"a board needs >= 2x2 inner corners, got {text!r}")
    return cols, rows


def _cmd(args: argparse.Namespace) -> int:
    images, skipped = read_photos(photo_paths(args.photos), args.skip_other_sizes)
    for path in skipped:
        print(f"perception: warning: {path}: left out, another size", file=sys.stderr)
    bar = sys.stderr.isatty()  # no bar in logs (dvc repro) and captured output
    result = calibrate(images, args.board, args.square_m, args.min_boards, progress=bar)
    calib = result.to_calib(args.camera_height_m, 0.0)
    pitch_note = "pitch 0 (no --horizon-lanes)"
    if args.horizon_lanes:
        v, n = vanishing_row(Path(args.horizon_lanes), calib)
        pitch = math.atan((calib.cy - v) / calib.fy)
        calib = result.to_calib(args.camera_height_m, pitch)
        pitch_note = f"pitch {math.degrees(pitch):.2f} deg, horizon at v {v:.1f} ({n} frames)"
    doc = {
        **calib.to_dict(),
        "calibration": {
            "board": list(args.board),
            "rms_px": round(result.rms_px, 4),
            "boards_found": len(result.found),
            "photos": len(result.found) + len(result.missed),
            "missed": result.missed,
            "left_out": [p.name for p in skipped],
        },
    }
    atomic_write_json(args.out, doc)
    w, h = result.size
    print(
        f"{args.out}: {w}x{h}, board found in {len(result.found)} of "
        f"{len(result.found) + len(result.missed)} photos, RMS reprojection error "
        f"{result.rms_px:.3f} px; fx {calib.fx:.1f} fy {calib.fy:.1f} cx {calib.cx:.1f} "
        f"cy {calib.cy:.1f}; dist {' '.join(f'{c:.4f}' for c in calib.dist)}; {pitch_note}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate", help="intrinsics and lens distortion from chessboard photos"
    )
    p.add_argument("photos", nargs="+", help="chessboard photos, or folders of them")
    p.add_argument("--out", required=True, help="calibration JSON to write")
    p.add_argument(
        "--board", type=_board, default=(9, 6), help="inner corners COLSxROWS (default 9x6)"
    )
    p.add_argument("--square-m", type=float, default=0.025, help="square side, metres")
    p.add_argument("--min-boards", type=int, default=5, help="fewest boards to accept")
    p.add_argument(
        "--skip-other-sizes",
        action="store_true",
        help="leave out photos of another size than most (default: an error)",
    )
    p.add_argument(
        "--camera-height-m", type=float, default=1.25, help="camera height above the road"
    )
    p.add_argument(
        "--horizon-lanes",
        help="TuSimple lane labels of frames from this camera: pitch from their vanishing point",
    )
    p.set_defaults(func=_cmd)
