"""perception bench: statistics, hardware profiles, a short run on tiny assets, CUDA path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from perception.bench.naive import numpy_decode_lanes, numpy_nms_per_class
from perception.bench.variants import Builder
from perception.cli import main
from serving.config import Settings
from serving.contract import ModelContract
from serving.geometry import Calib
from serving.postprocess import decode_lanes, nms
from serving.stats import describe
from serving.target import ProfileError, fingerprint, load_profile

HW = Path(__file__).resolve().parents[1] / "hw"
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_describe_hand_checked() -> None:
    d = describe(list(range(1, 101)))
    assert d["n"] == 100 and d["min"] == 1.0 and d["max"] == 100.0
    assert d["p50"] == pytest.approx(50.5)
    assert d["p99"] == pytest.approx(99.01)  # 1 + 0.99 * 99, numpy's linear method
    assert d["p90"] == pytest.approx(90.1)
    assert d["p99.9"] == pytest.approx(99.901)
    assert d["mean"] == pytest.approx(50.5)
    assert d["std"] == pytest.approx(np.sqrt((100**2 - 1) / 12))  # population std of 1..n
    assert d["cv"] == pytest.approx(d["std"] / 50.5)
    c = describe([2.0, 2.0, 2.0])
    assert c["std"] == 0.0 and c["cv"] == 0.0 and c["p99"] == 2.0
    assert describe([])["n"] == 0


def test_shipped_profiles_load() -> None:
    for path in sorted(HW.glob("*.yaml")):
        p = load_profile(path)
        assert p.variant in ("fp32", "int8", "fp16") and p.budget.e2e_p50_ms > 0
    assert load_profile(HW / "cuda.yaml").variant == "fp16"
    assert load_profile(HW / "cpu-2core.yaml").device == "cpu"


def _bad(tmp_path: Path, edit: dict[str, object] | None = None, drop: str | None = None) -> Path:
    import yaml

    d = yaml.safe_load((HW / "cpu-2core.yaml").read_text())
    if drop:
        del d[drop]
    for k, v in (edit or {}).items():
        if k.startswith("budget."):
            d["budget"][k.split(".", 1)[1]] = v
        else:
            d[k] = v
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.mark.parametrize(
    ("edit", "drop", "field"),
    [
        (None, "threads", "threads"),
        ({"device": "tpu"}, None, "device"),
        ({"budget.e2e_p99_ms": -5}, None, "budget.e2e_p99_ms"),
        ({"budget.model_p50_ms": 0}, None, "budget.model_p50_ms"),
        ({"variant": "int4"}, None, "variant"),
        ({"threads": "two"}, None, "threads"),
        ({"variants_side_by_side": ["fp32", "bf16"]}, None, "variants_side_by_side"),
    ],
)
def test_bad_profile_names_file_and_field(
    tmp_path: Path, edit: dict[str, object] | None, drop: str | None, field: str
) -> None:
    path = _bad(tmp_path, edit, drop)
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and f"'{field}'" in msg


def test_bad_profile_through_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _bad(tmp_path, {"device": "tpu"})
    assert main(["bench", "--target", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "'device'" in err[0]
    assert main(["bench", "--target", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_naive_decode_agrees_with_serving() -> None:
    rng = np.random.default_rng(0)
    c = ModelContract()
    logits = rng.normal(0, 3, (4, len(c.row_anchors), c.lane_cells + 1)).astype(np.float32)
    exist = np.array([0.9, 0.1, 0.8, 0.7], np.float32)
    ref = np.empty(logits.shape[:2], np.float32)
    rows = np.asarray(c.row_anchors, np.float32) * 720
    decode_lanes(logits, exist, c.lane_exist_threshold, 1280.0, rows, ref, 0.0)  # no fit
    got = numpy_decode_lanes(logits, exist, c, 1280)
    assert np.array_equal(got < 0, ref < 0)  # same absent points; serving also smooths
    assert np.abs(got[got >= 0] - ref[ref >= 0]).max() < 1280 / c.lane_cells
    xy = rng.uniform(0, 500, (300, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(20, 60, (300, 2)).astype(np.float32)], 1)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    classes = rng.integers(0, 3, 300).astype(np.int32)
    keep = numpy_nms_per_class(boxes, scores, classes, 0.5)
    assert sorted(keep.tolist()) == sorted(nms(boxes, scores, classes, 0.5, 300).tolist())


def test_fingerprint_fields() -> None:
    fp = fingerprint()
    assert fp["cores"]["logical"] >= 1 and fp["versions"]["numpy"] == np.__version__
    assert fp["numba_threading"]["layer"] in ("tbb", "omp", "workqueue")
    assert "CPUExecutionProvider" in fp["ort_providers"]
    assert (fp["gpu"]["name"] is None) == (shutil.which("nvidia-smi") is None) or HAS_CUDA


@pytest.fixture(scope="module")
def bench_assets(tmp_path_factory: pytest.TempPathFactory, onnx_model: Path) -> Path:
    """A tiny dataset, its split, and a models dir with model.pt, FP32 and INT8 ONNX."""
    from perception.dataset.schema import Dataset
    from perception.dataset.split import run_split
    from perception.export.quantize import calibration_frames, quantize_int8
    from perception.params import DataParams, SplitParams
    from perception.sim.generate import generate
    from serving.engine import read_contract
    from serving.preprocess import Preprocessor

    root = tmp_path_factory.mktemp("bench")
    params = DataParams(seed=3, clips=3, frames=4, width=640, height=360, workers=1)
    generate(root / "data", params, progress=False)
    run_split(root / "data", root / "splits.json", SplitParams(seed=1, val=0.34, test=0.34))
    models = root / "models"
    models.mkdir()
    shutil.copy(onnx_model, models / "perception.onnx")
    shutil.copy(onnx_model.parent / "model.pt", models / "model.pt")
    pre = Preprocessor(read_contract(onnx_model))
    ids = Dataset(root / "data").clip_ids()
    quantize_int8(
        onnx_model,
        models / "perception.int8.onnx",
        calibration_frames(str(root / "data"), ids, 2, pre),
    )
    return root


def _bench(root: Path, target: Path, *extra: str) -> int:
    args = ["bench", "--target", str(target), "--frames", "20", "--quick", "--paced-frames", "10"]
    args += ["--data", str(root / "data"), "--splits", str(root / "splits.json")]
    return main([*args, "--models-dir", str(root / "models"), *extra])


@pytest.mark.slow
def test_short_bench_run(bench_assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = bench_assets
    (root / "reports" / "eval").mkdir(parents=True, exist_ok=True)
    metrics = {"model": {"lanes": {"accuracy": 0.75}, "detection": {"ap50": {"mean": 0.4}}}}
    (root / "reports" / "eval" / "metrics.json").write_text(json.dumps(metrics))
    far = {"model": {"lanes": {"accuracy": 0.7}, "detection": {"ap50": {"mean": 0.5}}}}
    (root / "reports" / "eval-int8-far").mkdir(exist_ok=True)
    (root / "reports" / "eval-int8-far" / "metrics.json").write_text(json.dumps(far))
    out = tmp_path / "bench"
    extra = ["--out-dir", str(out), "--json", str(tmp_path / "copy.json")]
    assert _bench(root, HW / "cpu-2core.yaml", *extra, "--eval-dir", str(root / "reports")) == 0
    res = json.loads((out / "bench.json").read_text())
    assert res == json.loads((tmp_path / "copy.json").read_text())
    assert res["e2e"]["p50_ms"] > 0 and res["model"]["p50_ms"] > 0
    for s in ("pre", "infer", "post", "track"):
        assert res["stages"][s]["p50_ms"] > 0 and res["stages"][s]["n"] == 20
    assert res["stages"]["draw"]["p50_ms"] < 0.05  # headless: nothing drawn
    by = {v["name"]: v for v in res["variants"]}
    # e2e (capture -> result) is the critical stages plus the loop's own bookkeeping
    crit = by["fp32"]["critical_sum"]["mean_ms"]
    assert crit <= res["e2e"]["mean_ms"] <= crit + 2.0
    assert res["frames"] | {"timed": 20, "warmup": 5} == res["frames"]
    assert 1 <= res["frames"]["distinct"] <= 4
    assert set(res["cold_start"]) >= {"session_s", "numba_s", "first_inference_s"}
    assert by["fp32"]["status"] == "ok" and by["fp32"]["lane_accuracy"] == 0.75
    assert by["fp32"]["map50"] == 0.4 and by["int8"]["lane_accuracy"] == "n/a"
    for name in ("fp32+overlay", "fp32+overlay+throughput", "fp32+far", "int8", "int8+far",
                 "naive", "pytorch"):  # fmt: skip
        assert by[name]["status"] == "ok", by[name]["status"]
    # the far-field pass: a second inference a frame, no accuracy of its own in the table
    assert by["fp32+far"]["stages"]["infer"]["p50_ms"] > by["fp32"]["stages"]["infer"]["p50_ms"]
    assert by["fp32+far"]["map50"] == "n/a"
    assert by["int8+far"]["file"].endswith("perception.int8.onnx")
    assert (by["int8+far"]["lane_accuracy"], by["int8+far"]["map50"]) == (0.7, 0.5)  # evaluate-far
    for name in ("fp32+overlay", "fp32+overlay+throughput"):  # both schedules draw and write
        overlay = by[name]["stages"]
        assert overlay["draw"]["p50_ms"] > 0 and overlay["write"]["p50_ms"] > 0
        assert by[name]["output_latency"]["p50_ms"] >= by[name]["e2e"]["p50_ms"]
    # the FPS bar against the naive loop is judged on the throughput schedule's row
    vs_naive = next(v for v in res["verdicts"] if v["check"].startswith("loop FPS"))
    fps = by["fp32+overlay+throughput"]["fps"] / by["naive"]["fps"]
    assert vs_naive["value"] == pytest.approx(fps)
    assert res["micro"]["preprocess"]["blob_over_serving_p50"] > 0
    kept = res["micro"]["decode"]["kept"]
    assert kept["serving_nms"] == kept["torchvision_nms"] == kept["numpy_nms"] > 0
    assert res["micro"]["scene"]["tracks_mean"] >= 15
    assert res["paced"]["frames_offered"] == 10
    assert {v["status"] for v in res["verdicts"]} <= {"PASS", "FAIL", "SKIP"}
    assert len(res["verdicts"]) == 13  # cpu-2core.yaml has the optional model-only budget
    model_check = next(v for v in res["verdicts"] if v["check"].startswith("model-only p50"))
    assert model_check["limit"] == 12.0 and model_check["value"] == res["model"]["p50_ms"]
    md = (out / "bench.md").read_text()
    # the monitor: its image half in the loop's thread (a stage), its whole cost per frame
    assert res["stages"]["monitor"]["p50_ms"] > 0 and by["naive"]["stages"]["monitor"]["n"] == 20
    assert by["naive"]["stages"]["monitor"]["max_ms"] == 0  # a demo script has no monitor
    mon = res["micro"]["monitor"]
    assert mon["frame"]["n"] == 100 and mon["frame"]["p50_ms"] >= mon["measure"]["p50_ms"] > 0
    assert "monitor per frame" in md and "| **per frame** |" in md
    assert "| fp32 | ok |" in md and "| fp32+overlay | ok |" in md
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "FPS >= min_fps" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_writes_only_where_told(
    bench_assets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--json FILE writes that file and nothing else (no reports/bench/ of the pipeline)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports" / "bench").mkdir(parents=True)
    (tmp_path / "reports" / "bench" / "bench.json").write_text("{}")
    quick = ["--frames", "10", "--micro-reps", "5", "--paced-frames", "0"]
    assert _bench(bench_assets, HW / "cpu-2core.yaml", *quick, "--json", "mine.json") == 0
    assert json.loads(Path("mine.json").read_text())["schema"] == "perception-bench/2"
    assert (tmp_path / "reports" / "bench" / "bench.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.json", "reports"]


@pytest.mark.skipif(HAS_CUDA, reason="checks the error when CUDA is missing")
def test_cuda_target_without_cuda_is_one_line(
    bench_assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert _bench(bench_assets, HW / "cuda.yaml", "--out-dir", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda.yaml" in err[0] and "CUDAExecutionProvider" in err[0]


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="onnxruntime has no CUDAExecutionProvider")
def test_cuda_bench_run(bench_assets: Path, tmp_path: Path) -> None:
    from perception.export.quantize import convert_fp16

    convert_fp16(
        bench_assets / "models/perception.onnx", bench_assets / "models/perception.fp16.onnx"
    )
    assert _bench(bench_assets, HW / "cuda.yaml", "--out-dir", str(tmp_path)) == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert res["main_variant"] == "fp16" and res["providers_used"][0] != "CPUExecutionProvider"
    assert {v["name"]: v["status"] for v in res["variants"]}["fp16"] == "ok"


def test_far_rows_run_the_far_field_pass(bench_assets: Path) -> None:
    """Each variant's runtime: the +far rows with the crop half the frame wide, the others
    without it, each on its own model file."""
    profile = load_profile(HW / "cpu-2core.yaml")
    b = Builder(profile, bench_assets / "models", Calib.default(), Settings(), False, 20.0)
    try:
        for name, far, file in (
            ("int8+far", 640, "perception.int8.onnx"),
            ("fp32+far", 640, "perception.onnx"),
            ("int8", 0, "perception.int8.onnx"),
        ):
            v = b.build(name)
            assert v.status == "ok", v.status
            assert (v.runtime.far_field, Path(v.file).name) == (far, file)
            v.close()
    finally:
        b.close()
