"""Names shared by the data, the model and the loop.

This module holds the vocabulary that the dataset format and the model contract agree on:
obstacle classes, lane slots and the TuSimple row samples. The model's tensor layout joins it
when the model exists; at run time serving reads all of it back from the ONNX file.
"""

from __future__ import annotations

# Obstacle classes, in the order of the detection head's channels and COCO category ids - 1.
CLASS_NAMES: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist")

# Lane boundary slots relative to the ego vehicle, in the order of the lane head's slots.
LANE_SLOTS: tuple[str, ...] = ("ego_left", "ego_right", "outer_left", "outer_right")

LANE_STYLES: tuple[str, ...] = ("solid", "dashed", "double", "none")
LANE_COLORS: tuple[str, ...] = ("white", "yellow")


def tusimple_h_samples(image_height: int = 720) -> list[int]:
    """TuSimple's label rows: 160..710 step 10 on a 720-row image, scaled to other heights."""
    if image_height == 720:
        return list(range(160, 720, 10))
    return [round(r * image_height / 720) for r in range(160, 720, 10)]
