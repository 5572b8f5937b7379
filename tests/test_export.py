"""ONNX export: parity with PyTorch, contract refusal, metadata round trip, INT8 and FP16."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from perception.dataset.schema import Dataset
from perception.export.onnx_export import export_onnx, metadata, provenance, set_metadata
from perception.export.parity import check_parity, parity_frames
from perception.export.quantize import calibration_frames, convert_fp16, quantize_int8
from perception.model.files import model_file, save_atomic
from perception.model.net import PerceptionNet
from perception.params import DataParams, TrainParams
from perception.sim.generate import generate
from serving.config import Settings
from serving.contract import CONTRACT_VERSION, ContractError, ModelContract
from serving.engine import Engine, read_contract
from serving.geometry import Calib
from serving.postprocess import Postprocessor
from serving.preprocess import Preprocessor
from serving.runtime import Runtime


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    data = root / "data"
    generate(
        data,
        DataParams(seed=5, clips=2, frames=4, width=640, height=360, workers=1),
        progress=False,
    )
    torch.manual_seed(0)
    net = PerceptionNet(ModelContract()).eval()
    save_atomic(model_file(net, TrainParams(), {}), root / "model.pt")
    (root / "params.yaml").write_text("data: {seed: 5}\n")
    onnx_path = export_onnx(
        root / "model.pt",
        root / "perception.onnx",
        provenance(str(data), str(root / "params.yaml"), None, str(root / "model.pt")),
    )
    return {"root": root, "data": data, "pt": root / "model.pt", "onnx": onnx_path}


def test_parity_on_real_frames(exported: dict[str, Path]) -> None:
    frames = parity_frames(str(exported["data"]), Dataset(exported["data"]).clip_ids(), 8)
    report = check_parity(exported["pt"], exported["onnx"], frames)
    assert report["frames"] == 8
    assert report["ok"], report
    assert max(report["raw_max_abs_diff"].values()) < 1e-3


def test_a_stride_4_model_exports_its_stride_with_parity(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    """det_stride 4 (the obstacle heads one level further up the neck) and 30 lane cells: the
    contract in the ONNX file says stride 4 and 30 cells, the engine's heatmap and lane
    logits have those shapes, the decode agrees with PyTorch's."""
    from perception.model.net import NetConfig, contract_for

    cfg = NetConfig(det_stride=4, lane_cells=30)
    torch.manual_seed(1)
    net = PerceptionNet(contract_for(cfg), cfg).eval()
    params = TrainParams(det_stride=4, lane_cells=30)
    save_atomic(model_file(net, params, {}), tmp_path / "model.pt")
    onnx_path = export_onnx(tmp_path / "model.pt", tmp_path / "s4.onnx", {})
    c = read_contract(onnx_path)
    assert c.stride == 4 and c.grid == (c.input_height // 4, c.input_width // 4)
    assert c.lane_cells == 30
    frames = parity_frames(str(exported["data"]), Dataset(exported["data"]).clip_ids(), 4)
    out = Engine(onnx_path, "cpu", threads=1).run(Preprocessor(c)(frames[0]))
    assert out.heatmap.shape[-2:] == c.grid and out.lane_logits.shape[-1] == 31
    report = check_parity(tmp_path / "model.pt", onnx_path, frames)
    assert report["ok"], report


def test_metadata_round_trip(exported: dict[str, Path]) -> None:
    model = onnx.load(str(exported["onnx"]))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    assert read_contract(exported["onnx"]) == ModelContract()
    meta = metadata(model)
    manifest = (exported["data"] / "manifest.json").read_bytes()
    import hashlib

    assert (
        json.loads(meta["provenance.data_manifest_sha256"]) == hashlib.sha256(manifest).hexdigest()
    )
    model_sha = hashlib.sha256(exported["pt"].read_bytes()).hexdigest()
    assert json.loads(meta["provenance.model_sha256"]) == model_sha
    assert not [k for k in meta if "git" in k or "time" in k], "only what the inputs fix"
    # the same inputs export the same bytes (a DVC remote filled anywhere serves everyone)
    again = export_onnx(
        exported["pt"],
        exported["root"] / "again.onnx",
        provenance(str(exported["data"]), str(exported["root"] / "params.yaml"), None,
                   str(exported["pt"])),
    )  # fmt: skip
    assert again.read_bytes() == exported["onnx"].read_bytes()
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch", "dynamic batch axis"


def _rewrite(src: Path, dst: Path, edit) -> Path:
    model = onnx.load(str(src))
    meta = metadata(model)
    edit(meta)
    set_metadata(model, meta)
    onnx.save(model, str(dst))
    return dst


def test_refuses_a_model_without_contract(exported: dict[str, Path], tmp_path: Path) -> None:
    bare = _rewrite(
        exported["onnx"],
        tmp_path / "bare.onnx",
        lambda m: [m.pop(k) for k in list(m) if k.startswith("contract.")],
    )
    with pytest.raises(ContractError, match=r"bare\.onnx: no model contract"):
        Engine(bare)


def test_refuses_another_contract_version(exported: dict[str, Path], tmp_path: Path) -> None:
    other = _rewrite(
        exported["onnx"], tmp_path / "v99.onnx", lambda m: m.__setitem__("contract.version", "99")
    )
    with pytest.raises(
        ContractError, match=f"contract version 99, this code speaks {CONTRACT_VERSION}"
    ):
        Engine(other)


def test_cli_refusal_is_one_line(
    exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from perception.cli import main

    bare = _rewrite(
        exported["onnx"],
        tmp_path / "bare.onnx",
        lambda m: [m.pop(k) for k in list(m) if k.startswith("contract.")],
    )
    (tmp_path / "metrics.json").write_text("{}")
    code = main(
        [
            "model-card",
            "--onnx",
            str(bare),
            "--variant",
            f"fp32={bare}:{tmp_path / 'metrics.json'}",
            "--data-report",
            "x",
            "--out",
            str(tmp_path / "card.md"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "bare.onnx" in err


@pytest.mark.parametrize("variant", ["int8", "fp16"])
def test_variants_load_and_decode(exported: dict[str, Path], variant: str) -> None:
    src, out = exported["onnx"], exported["root"] / f"perception.{variant}.onnx"
    contract = read_contract(src)
    if variant == "int8":
        frames = calibration_frames(
            str(exported["data"]), Dataset(exported["data"]).clip_ids(), 4, Preprocessor(contract)
        )
        quantize_int8(src, out, frames)
        assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)
    else:
        convert_fp16(src, out)
    engine = Engine(out)
    assert engine.contract == contract
    frame = np.full((360, 640, 3), 90, np.uint8)
    x = Preprocessor(contract)(frame)
    out = engine.run(x)
    ref = Engine(src).run(x)
    assert out.heatmap.shape == ref.heatmap.shape and out.lane_logits.shape == ref.lane_logits.shape
    assert np.abs(out.heatmap.astype(np.float32) - ref.heatmap).max() < 0.1
    pred = Postprocessor(contract, 640, 360)(out.image(0))
    assert pred.lanes.xs.shape == (4, len(contract.row_anchors))


def test_engine_threads_spin_only_inside_a_run(exported: dict[str, Path]) -> None:
    """The session's intra-op workers spin between operators (waking a parked worker for each
    of ~100 operators cost 1.4 ms a frame on the CI class) and park as Run returns, so the
    Numba pre/post-processing that follows has the other core."""
    entry = Engine(exported["onnx"]).session.get_session_options().get_session_config_entry
    assert entry("session.intra_op.allow_spinning") == "1"
    assert entry("session.force_spinning_stop") == "1"
    parked = Engine(exported["onnx"], spinning=False).session.get_session_options()
    assert parked.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    # the throughput schedule (a file rendered to video) parks them: the encoder needs a core
    rt = Runtime.onnx(str(exported["onnx"]), Calib.default(), Settings(), throughput=True)
    assert rt.throughput and rt.engine is not None
    opts = rt.engine.session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_fold_pads_moves_asymmetric_zero_pads_into_the_conv(tmp_path: Path) -> None:
    """TF "same" padding (bottom/right heavier) exported as Pad + Conv: after fold_pads the
    graph has no Pad and ONNX Runtime gives the same numbers; a Pad that fills with a value
    other than zero is not a Conv's padding and stays."""
    import onnxruntime as ort
    import torch.nn.functional as F

    from perception.export.fold_pads import fold_pads

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv2d(3, 4, 3, 2, groups=1)
            self.b = torch.nn.Conv2d(4, 4, 5, 2, padding=1, groups=4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(F.pad(x, [0, 1, 0, 1]))
            y = self.b(F.pad(y, [1, 2, 0, 1]))
            return F.pad(y, [1, 1, 1, 1], value=0.5)

    torch.manual_seed(0)
    x = torch.rand(2, 3, 20, 24)
    path = tmp_path / "pads.onnx"
    torch.onnx.export(Net().eval(), (x,), str(path), opset_version=17, dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})  # fmt: skip
    model = onnx.load(str(path))
    assert fold_pads(model) == 2
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node].count("Pad") == 1  # the 0.5 fill stays
    conv_pads = [list(a.ints) for n in model.graph.node if n.op_type == "Conv"
                 for a in n.attribute if a.name == "pads"]  # fmt: skip
    assert conv_pads == [[0, 0, 1, 1], [1, 2, 2, 3]]  # begin h, w; end h, w (b had 1 of its own)
    run = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got, exp = run.run(None, {"x": x.numpy()})[0], ref.run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, exp, atol=1e-6)


def test_export_takes_the_validation_operating_points(exported: dict[str, Path]) -> None:
    """--operating-points: each class's best-F1 score on the validation split becomes its
    threshold in the file's contract; a file without them is a one-line UserError."""
    from perception.errors import UserError
    from perception.export.onnx_export import operating_thresholds

    root = exported["root"]
    ops = {"car": 0.45, "truck": 0.4, "pedestrian": 0.6, "cyclist": 0.35}
    doc = {"model": {"detection": {"operating": {k: {"score": v} for k, v in ops.items()}}}}
    (root / "val.json").write_text(json.dumps(doc))
    out = export_onnx(exported["pt"], root / "op.onnx", {}, root / "val.json")
    c = read_contract(out)
    assert c.class_thresholds == tuple(ops.values()) and c.thresholds() == c.class_thresholds
    assert c.score_threshold == ModelContract().score_threshold
    # a model exported without them keeps one threshold, and the bytes of before
    assert "contract.class_thresholds" not in metadata(onnx.load(str(exported["onnx"])))
    # a class with no box in the validation split has no operating point: it keeps the
    # contract's one threshold
    del doc["model"]["detection"]["operating"]["cyclist"]
    (root / "some.json").write_text(json.dumps(doc))
    names = ModelContract().class_names
    assert operating_thresholds(root / "some.json", names, 0.3) == (0.45, 0.4, 0.6, 0.3)
    del doc["model"]["detection"]["operating"]
    (root / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"bad\.json: no operating points"):
        operating_thresholds(root / "bad.json", names, 0.3)
