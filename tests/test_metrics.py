"""Metrics on hand-computed cases: TuSimple, CULane F1, COCO AP, distance error; the Hough
baseline on a synthetic road."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from perception.baseline import HoughBaseline
from perception.metrics import culane, detection, distance, tusimple
from serving.contract import LANE_SLOTS, tusimple_h_samples
from serving.geometry import Calib
from serving.postprocess import NO_POINT

H = np.array(tusimple_h_samples(720), np.float64)  # 160..710, 56 rows


def vertical(x: float) -> np.ndarray:
    return np.full(len(H), x)


def slanted(x0: float, k: float) -> np.ndarray:
    """x = x0 + k * (y - 160): dx/dy = k, angle atan(k) from the vertical."""
    return x0 + k * (H - 160.0)


# ---------------------------------------------------------------- TuSimple


def test_tusimple_perfect_prediction():
    gt = [vertical(300), slanted(700, 1.0)]
    assert tusimple.bench(gt, gt, H) == (1.0, 0.0, 0.0)


def test_tusimple_shift_on_vertical_lane():
    gt = [vertical(300), vertical(900)]
    # 25 px > 20 px on a vertical lane: no point matches; that pred is a FP, that gt a FN
    acc, fp, fn = tusimple.bench([vertical(300), vertical(925)], gt, H)
    assert (acc, fp, fn) == (0.5, 0.5, 0.5)
    # 15 px < 20 px: everything matches
    assert tusimple.bench([vertical(315), vertical(885)], gt, H) == (1.0, 0.0, 0.0)


def test_tusimple_threshold_widens_on_slanted_lane():
    gt = [slanted(200, 1.0)]  # 45 deg: threshold 20 / cos(45 deg) = 28.3 px
    assert tusimple.lane_angle(gt[0], H) == pytest.approx(math.pi / 4)
    assert tusimple.bench([gt[0] + 25.0], gt, H) == (1.0, 0.0, 0.0)
    assert tusimple.bench([gt[0] + 30.0], gt, H) == (0.0, 1.0, 1.0)
    # the same 25 px shift fails on a vertical lane
    assert tusimple.bench([vertical(225)], [vertical(200)], H) == (0.0, 1.0, 1.0)


def test_tusimple_missing_points_count_on_both_sides():
    gt = vertical(300)
    gt[:28] = -2  # the lane exists only on the lower 28 rows
    assert tusimple.bench([gt.copy()], [gt], H) == (1.0, 0.0, 0.0)
    longer = vertical(300)  # the prediction also claims the 28 upper rows: 28 / 56 match
    acc, fp, fn = tusimple.bench([longer], [gt], H)
    assert acc == pytest.approx(0.5) and (fp, fn) == (1.0, 1.0)


def test_tusimple_extra_predictions_are_false_positives():
    gt = [vertical(300), vertical(900)]
    acc, fp, fn = tusimple.bench([*gt, vertical(600)], gt, H)
    assert (acc, fn) == (1.0, 0.0) and fp == pytest.approx(1 / 3)


def test_tusimple_too_many_predictions_rule():
    gt = [vertical(300)]
    three = [vertical(300), vertical(600), vertical(900)]  # n_gt + 2: scored normally
    acc, fp, fn = tusimple.bench(three, gt, H)
    assert (acc, fn) == (1.0, 0.0) and fp == pytest.approx(2 / 3)
    assert tusimple.bench([*three, vertical(1100)], gt, H) == (0.0, 0.0, 1.0)


def test_tusimple_more_than_four_gt_lanes():
    gt = [vertical(x) for x in (100, 300, 500, 700, 900)]
    # 4 of 5 found: the lowest score is dropped and one FN forgiven
    assert tusimple.bench(gt[:4], gt, H) == (1.0, 0.0, 0.0)
    acc, fp, fn = tusimple.bench(gt[:3], gt, H)
    assert (acc, fp, fn) == (0.75, 0.0, 0.25)


def test_tusimple_no_predictions_and_means():
    gt = [vertical(300), vertical(900)]
    assert tusimple.bench([], gt, H) == (0.0, 0.0, 1.0)
    res = tusimple.evaluate([(gt, gt, H), ([], gt, H)])
    assert res == {"accuracy": 0.5, "fp": 0.0, "fn": 0.5, "images": 2}
    assert tusimple.evaluate([])["accuracy"] is None


def test_tusimple_rejects_wrong_lengths():
    with pytest.raises(ValueError, match="h_samples"):
        tusimple.bench([np.zeros(3)], [vertical(1)], H)


# ---------------------------------------------------------------- CULane


def test_culane_identical_lanes():
    lanes = [slanted(300, -0.5), slanted(700, 0.5)]
    tp, fp, fn = culane.match_image(lanes, lanes, H, (1280, 720))
    assert (tp, fp, fn) == (2, 0, 0)
    res = culane.evaluate([(lanes, lanes, H, (1280, 720))])
    assert res["f1"] == 1.0 and res["precision"] == 1.0 and res["recall"] == 1.0


def test_culane_far_lane_is_no_match():
    gt = [vertical(300)]
    assert culane.match_image([vertical(400)], gt, H, (1280, 720)) == (0, 1, 1)
    assert culane.match_image([vertical(305)], gt, H, (1280, 720)) == (1, 0, 0)
    res = culane.evaluate([([vertical(400)], gt, H, (1280, 720))])
    assert res["f1"] == 0.0 and res["tp"] == 0


def test_culane_iou_of_shifted_lines():
    # 30 px wide lines 15 px apart overlap by half: IoU about 1/3
    iou = culane.iou_matrix([vertical(315)], [vertical(300)], H, (1280, 720), scale=1.0)
    assert iou.shape == (1, 1) and 0.28 < iou[0, 0] < 0.4
    assert culane.match_image([vertical(315)], [vertical(300)], H, (1280, 720)) == (0, 1, 1)


def test_culane_hungarian_is_one_to_one():
    gt = [vertical(300)]
    tp, fp, fn = culane.match_image([vertical(300), vertical(302)], gt, H, (1280, 720))
    assert (tp, fp, fn) == (1, 1, 0)


# ---------------------------------------------------------------- COCO AP


def coco_gt(boxes: list[tuple[int, list[float]]]) -> dict:
    """boxes: (category id, x1 y1 x2 y2) on one 1280x720 image."""
    anns = []
    for i, (cat, (x1, y1, x2, y2)) in enumerate(boxes, 1):
        anns.append(
            {
                "id": i,
                "image_id": 1,
                "category_id": cat,
                "iscrowd": 0,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
            }
        )
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(("car", "truck", "pedestrian"))]
    return {
        "images": [{"id": 1, "width": 1280, "height": 720}],
        "annotations": anns,
        "categories": cats,
    }


def det(cat: int, box: list[float], score: float = 0.9) -> dict:
    x1, y1, x2, y2 = box
    return {"image_id": 1, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}


def test_coco_perfect_detections():
    gt = coco_gt([(1, [100, 100, 200, 200]), (2, [400, 300, 600, 420])])
    r = detection.coco_ap(gt, [det(1, [100, 100, 200, 200]), det(2, [400, 300, 600, 420])])
    assert r["ap50"]["car"] == pytest.approx(1.0) and r["ap"]["truck"] == pytest.approx(1.0)
    assert r["ap50"]["pedestrian"] is None  # no gt: null, and out of the mean
    assert r["ap50"]["mean"] == pytest.approx(1.0)
    classes = {p["class"] for p in r["pr"]}
    assert classes == {"car", "truck"} and len(r["pr"]) == 2 * 101
    assert all(p["precision"] == pytest.approx(1.0) for p in r["pr"])


def test_coco_shifted_box_counts_at_50_not_75():
    gt = coco_gt([(1, [100, 100, 200, 200])])
    shifted = [125, 100, 225, 200]  # IoU 7500 / 12500 = 0.6
    assert distance.box_iou(np.array([shifted]), np.array([[100, 100, 200, 200]]))[0, 0] == (
        pytest.approx(0.6)
    )
    r = detection.coco_ap(gt, [det(1, shifted)])
    assert r["ap50"]["car"] == pytest.approx(1.0)
    assert r["ap75"]["car"] == pytest.approx(0.0)
    assert r["ap"]["car"] == pytest.approx(0.3)  # matched at .50 .55 .60 of 10 thresholds


def test_coco_no_detections_and_slices():
    gt = coco_gt([(1, [100, 100, 200, 200])])
    r = detection.coco_ap(gt, [])
    assert r["ap50"]["car"] == 0.0 and r["ap50"]["mean"] == 0.0
    empty = detection.CocoEvaluator(gt, []).evaluate([])
    assert empty["ap50"]["mean"] is None and empty["pr"] == []


def test_coco_operating_point_is_the_best_f1_score():
    """4 cars; by score: hit .9, hit .8, miss .7, hit .6, miss .5, miss .4. Cut at .6: P 3/4,
    R 3/4, F1 .75; at .8: P 1, R 1/2, F1 .67; lower cuts only add misses. The operating
    threshold is the score .6 (COCOeval's interpolated curve, 101 recall points)."""
    cars = [[100 + 200 * i, 100, 200 + 200 * i, 200] for i in range(4)]
    gt = coco_gt([(1, b) for b in cars])
    far = [[100 + 200 * i, 500, 200 + 200 * i, 600] for i in range(3)]
    dets = [det(1, cars[0], 0.9), det(1, cars[1], 0.8), det(1, far[0], 0.7),
            det(1, cars[2], 0.6), det(1, far[1], 0.5), det(1, far[2], 0.4)]  # fmt: skip
    op = detection.coco_ap(gt, dets)["operating"]
    assert set(op) == {"car"}  # classes without gt have no operating point
    assert op["car"]["score"] == pytest.approx(0.6)
    assert op["car"]["precision"] == pytest.approx(0.75) and op["car"]["f1"] == pytest.approx(0.75)
    assert op["car"]["recall"] == pytest.approx(0.75)
    # nothing found: no threshold keeps a true box, so keep nothing
    assert detection.coco_ap(gt, [det(1, far[0], 0.9)])["operating"]["car"]["score"] == 1.0


def test_coco_recall_by_box_height_hand_case():
    """Cars 10, 20, 30, 60, 60 and 120 px tall (bins <24, 24-48, 48-96, >=96); found at IoU
    0.5: the 20, one 60 (the other's detection is a truck: another class) and the 120; the 10
    px car's detection is too far off (IoU 1/3). A pedestrian at 30 px is found; no truck."""
    cars = [[100, 100, 110, 110], [200, 100, 210, 120], [300, 100, 330, 130],
            [400, 100, 440, 160], [500, 100, 540, 160], [600, 100, 700, 220]]  # fmt: skip
    gt = coco_gt([(1, b) for b in cars] + [(3, [800, 100, 815, 130])])
    dets = [det(1, [105, 100, 115, 110]), det(1, cars[1]), det(1, cars[3]), det(2, cars[4]),
            det(1, cars[5]), det(3, [800, 100, 815, 130])]  # fmt: skip
    by = detection.CocoEvaluator(gt, dets).recall_by_height()
    car = {k: (v["recall"], v["boxes"]) for k, v in by["car"].items()}
    assert car == {"<24": (0.5, 2), "24-48": (0.0, 1), "48-96": (0.5, 2), ">=96": (1.0, 1)}
    assert by["pedestrian"]["24-48"] == {"recall": 1.0, "boxes": 1}
    assert all(v == {"recall": None, "boxes": 0} for v in by["truck"].values())


def test_coco_slice_scores_as_an_evaluator_of_the_slice_alone():
    """Slices reuse the per-image matching of all images; the result must be what COCOeval
    gives on the slice's images alone (random boxes and scores, ties included)."""
    rng = np.random.default_rng(3)
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(("car", "truck", "pedestrian"))]
    images, anns, dets = [], [], []
    for img in range(1, 13):
        images.append({"id": img, "width": 1280, "height": 720})
        for _ in range(rng.integers(0, 5)):
            x, y, w, h = rng.uniform(0, 900), rng.uniform(0, 500), *rng.uniform(8, 300, 2)
            cat = int(rng.integers(1, 4))
            box = [float(x), float(y), float(w), float(h)]
            crowd = int(rng.random() < 0.1)
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": cat,
                         "iscrowd": crowd, "bbox": box, "area": w * h})  # fmt: skip
            for _ in range(rng.integers(0, 3)):  # near-hits, and a few class mix-ups
                jit = [box[0] + rng.normal(0, 15), box[1] + rng.normal(0, 15), box[2], box[3]]
                c = cat if rng.random() < 0.8 else int(rng.integers(1, 4))
                dets.append({"image_id": img, "category_id": c, "bbox": jit,
                             "score": float(rng.choice([0.3, 0.5, rng.random()]))})  # fmt: skip
        for _ in range(rng.integers(0, 3)):  # clutter
            box = [float(v) for v in (*rng.uniform(0, 900, 2), *rng.uniform(8, 200, 2))]
            dets.append({"image_id": img, "category_id": int(rng.integers(1, 4)), "bbox": box,
                         "score": float(rng.random())})  # fmt: skip
    gt = {"images": images, "annotations": anns, "categories": cats}
    shared = detection.CocoEvaluator(gt, dets)
    shared.evaluate()  # the matching of every image, done first
    for subset in ([2, 5, 7, 11], [12, 1, 3], [4], list(range(1, 13))):
        keep = set(subset)
        alone = detection.coco_ap(
            {**gt, "images": [i for i in images if i["id"] in keep],
             "annotations": [a for a in anns if a["image_id"] in keep]},
            [d for d in dets if d["image_id"] in keep],
        )  # fmt: skip
        assert shared.evaluate(subset) == alone, subset


# ---------------------------------------------------------------- distance


def ground_row(calib: Calib, d: float) -> float:
    """Row of the road point d metres straight ahead, by hand: depression angle minus pitch."""
    return calib.cy + calib.fy * math.tan(math.atan(calib.camera_height_m / d) - calib.pitch_rad)


def test_distance_error_hand_case():
    c = Calib.default()
    v20, v30, v25 = ground_row(c, 20.0), ground_row(c, 30.0), ground_row(c, 25.0)
    gt_boxes = np.array(
        [[600, v20 - 100, 680, v20], [300, v30 - 60, 360, v30], [900, 300, 920, 330]]
    )
    gt_cls = np.array([0, 0, 2])
    gt_d = [20.0, 30.0, 80.0]  # the third one is beyond 50 m
    pred = np.array(
        [
            [600, v25 - 100, 680, v25],  # bottom at 25 m for a 20 m car: 25 %
            [300, v30 - 60, 360, v30],  # exact
            [900, 300, 920, 330],  # matched, but its gt is too far
            [300, v30 - 60, 360, v30],
        ]
    )  # wrong class
    errs = distance.frame_errors(
        c, pred, np.array([0.9, 0.8, 0.7, 0.95]), np.array([0, 0, 2, 1]), gt_boxes, gt_cls, gt_d
    )
    assert sorted(errs) == [pytest.approx(0.0, abs=1e-6), pytest.approx(0.25, abs=1e-6)]
    assert distance.summarize(errs) == {
        "median_rel_error": pytest.approx(0.125, abs=1e-6),
        "count": 2,
    }
    assert distance.summarize([]) == {"median_rel_error": None, "count": 0}


def test_greedy_match_prefers_high_scores():
    gt = np.array([[0, 0, 100, 100]])
    pred = np.array([[0, 0, 100, 100], [10, 0, 110, 100]])
    pairs = distance.greedy_match(pred, np.array([0.2, 0.9]), np.array([0, 0]), gt, np.array([0]))
    assert pairs == [(1, 0)]


# ---------------------------------------------------------------- baseline


def synthetic_road(calib: Calib) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Grey image with two white lines from the bottom corners' direction to the vanishing
    point on the horizon; returns the image and each line's x per H row."""
    img = np.full((720, 1280, 3), 90, np.uint8)
    img[: int(calib.horizon_v)] = (200, 170, 120)  # sky
    vp = (640.0, calib.horizon_v)
    truth = {}
    for slot, x_bottom in (("ego_left", 340.0), ("ego_right", 980.0)):
        cv2.line(
            img, (int(x_bottom), 719), (int(vp[0]), int(vp[1])), (255, 255, 255), 10, cv2.LINE_AA
        )
        truth[slot] = vp[0] + (x_bottom - vp[0]) * (H - vp[1]) / (719.0 - vp[1])
    return img, truth


def test_baseline_finds_the_ego_lines():
    calib = Calib.default()
    img, truth = synthetic_road(calib)
    pred = HoughBaseline()(img, calib, H.astype(np.float32))
    lanes = pred.lanes
    assert lanes.xs.shape == (4, len(H)) and lanes.xs.dtype == np.float32
    assert len(pred.detections.boxes) == 0
    for slot, xs_true in truth.items():
        xs = lanes.xs[LANE_SLOTS.index(slot)]
        valid = xs != NO_POINT
        assert lanes.exist[LANE_SLOTS.index(slot)] == 1.0
        assert valid[H >= 450].all(), slot  # present on the lower part of the image
        above = calib.horizon_v > H
        assert not valid[above].any()  # never above the horizon
        assert np.abs(xs[valid] - xs_true[valid]).max() < 20.0, slot
    for slot in ("outer_left", "outer_right"):
        assert (lanes.xs[LANE_SLOTS.index(slot)] == NO_POINT).all()


def test_baseline_on_an_empty_road():
    calib = Calib.default()
    pred = HoughBaseline()(np.full((720, 1280, 3), 90, np.uint8), calib, H.astype(np.float32))
    assert (pred.lanes.xs == NO_POINT).all() and not pred.lanes.exist.any()


def test_bootstrap_intervals_by_hand():
    """Two samples 0 and 1: a draw's mean is 0, 0.5 or 1 (odds 1/4, 1/2, 1/4), so the 2.5 and
    97.5 percentiles of 10,000 draws are 0 and 1. Equal samples leave no spread; pairs with
    the same ratio give that ratio; pairs with nothing labelled drop out."""
    from perception.metrics.interval import mean_interval, ratio_interval

    assert mean_interval([0.0, 1.0]) == [0.0, 1.0]
    assert mean_interval([0.25] * 8) == [0.25, 0.25]
    assert mean_interval([0.5]) is None
    assert ratio_interval([1, 2, 3], [2, 4, 6]) == [0.5, 0.5]
    assert ratio_interval([1, 0, 2], [2, 0, 4]) == [0.5, 0.5]  # the 0/0 frame adds nothing
    assert ratio_interval([1, 5], [2, 0]) is None
    values = [0.0, 0.0, 1 / 3, 0.5, 0.0, 1 / 3, 1 / 3, 0.5]
    low, high = mean_interval(values)
    assert low < np.mean(values) < high and low > 0.0 and high < 0.5
    assert mean_interval(values) == [low, high]  # seeded: the same interval every run
