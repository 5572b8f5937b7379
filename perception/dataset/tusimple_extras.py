"""What a TuSimple import can add to the lane labels: boxes and a calibration.

TuSimple files hold lanes only. A set labelled for this project (data/real/source) keeps its
boxes in a BDD100K / Scalabel detection file and comes with a chessboard calibration:

* boxes: each Scalabel frame is matched to a labelled image by its ``name``: equal to the
  TuSimple raw_file, else to raw_file's file name (which must then fit one image only).
  Boxes are parsed by the BDD100K importer (perception.dataset.bdd100k.labels_to_obstacles),
  so both importers read boxes the same way: Scalabel's inclusive pixel indices (x2 is the
  last pixel) are kept as they are, our x1 y1 x2 y2 on pixel centres, clipped to the image.
* calib: one serving.geometry.Calib JSON for every clip (it must be of the images' size),
  instead of the default camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from perception.dataset.bdd100k import labels_to_obstacles
from perception.dataset.convert import ImportReport
from perception.dataset.output import provenance_path
from perception.dataset.scalabel import load_frames
from perception.dataset.schema import FormatError, Obstacle
from serving.geometry import Calib
from serving.io import load_calib
from serving.source import SourceError


@dataclass
class ImportExtras:
    """Box labels by Scalabel frame name (from det_path) and one calibration (calib_path)."""

    frames: dict[str, list[dict]] = field(default_factory=dict)
    det_path: Path | None = None
    calib: Calib | None = None
    calib_path: Path | None = None
    _used: dict[str, str] = field(default_factory=dict)  # frame name -> raw_file

    @classmethod
    def load(cls, det_labels: str | Path | None, calib: str | Path | None) -> ImportExtras:
        """Read the detection file and the calibration, either may be None; errors are
        FormatErrors naming the file."""
        extras = cls()
        if det_labels is not None:
            extras.det_path = Path(det_labels)
            for f in load_frames(extras.det_path):
                if f["name"] in extras.frames:
                    raise FormatError(f"{det_labels}: frame {f['name']} listed twice")
                extras.frames[f["name"]] = f.get("labels") or []
        if calib is not None:
            extras.calib_path = Path(calib)
            try:  # refuses what would give NaN downstream: fx of 0, a negative height
                extras.calib = load_calib(calib)
            except SourceError as e:
                raise FormatError(str(e)) from None
        return extras

    def _frame_for(self, raw_file: str) -> str | None:
        """The Scalabel frame name that labels raw_file, or None."""
        name = raw_file if raw_file in self.frames else Path(raw_file).name
        if name not in self.frames:
            return None
        if self._used.setdefault(name, raw_file) != raw_file:
            raise FormatError(
                f"{self.det_path}: frame {name} fits both {self._used[name]} and {raw_file}; "
                "name it by raw_file"
            )
        return name

    def obstacles(
        self, raw_file: str, size: tuple[int, int], report: ImportReport, next_id: int
    ) -> list[Obstacle]:
        """The boxes of one labelled image (its TuSimple raw_file; size: width, height
        pixels), track ids from next_id on; none when the detection file does not name it."""
        name = self._frame_for(raw_file)
        if name is None:
            return []
        where = f"{self.det_path}: frame {name}"
        return labels_to_obstacles(self.frames[name], size, where, report, next_id)

    def calib_for(self, size: tuple[int, int], clip_id: str) -> Calib:
        """The given calibration (it must be of the clip's image size), else the default."""
        if self.calib is None:
            return Calib.default(*size)
        if (self.calib.image_width, self.calib.image_height) != size:
            raise FormatError(
                f"{self.calib_path}: calibration is {self.calib.image_width}x"
                f"{self.calib.image_height}, the images of {clip_id} are {size[0]}x{size[1]}"
            )
        return self.calib

    def count_unused(self, report: ImportReport) -> None:
        """Count the detection frames that named no lane-labelled image (after the import)."""
        unused = len(set(self.frames) - set(self._used))
        if unused:
            report.dropped["box frames naming no lane-labelled image"] += unused

    def provenance(self) -> dict[str, str | None]:
        """Where the boxes and the calibration came from, for the manifest."""
        return {
            "det_labels": provenance_path(self.det_path) if self.det_path else None,
            "calib": provenance_path(self.calib_path) if self.calib_path else None,
        }
