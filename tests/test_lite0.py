"""The pretrained backbone: the packaged ImageNet weights load strictly and still classify
(scikit-image's photos: Chelsea the cat, a cup of coffee), and the perception network built
on it runs and exports its contract's normalisation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from skimage import data as skimage_data

from perception.model import lite0
from perception.model.net import NetConfig, PerceptionNet, contract_for


def _imagenet_input(rgb: np.ndarray) -> torch.Tensor:
    x = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
    return torch.from_numpy((x - lite0.MEAN) / lite0.STD).permute(2, 0, 1)[None]


def test_weights_load_strictly_and_classify_two_photos() -> None:
    net = lite0.pretrained(head=True).eval()
    with torch.no_grad():
        cat = net.classify(_imagenet_input(skimage_data.chelsea())).softmax(-1)[0]
        cup = net.classify(_imagenet_input(skimage_data.coffee())).softmax(-1)[0]
    assert int(cat.argmax()) == 285 and float(cat.max()) > 0.6  # Egyptian cat
    assert int(cup.argmax()) == 967 and float(cup.max()) > 0.6  # espresso


def test_a_missing_or_extra_key_is_an_error() -> None:
    sd = lite0.pretrained().state_dict()
    sd.pop("_blocks.3._project_conv.weight")
    with pytest.raises(RuntimeError, match="Missing key"):
        lite0.Lite0().load_state_dict(sd, strict=True)


def test_same_padding_matches_tensorflow_on_stride_two() -> None:
    """TF "same" pads an even input on a stride-2 3x3 conv by (0, 1): the first output
    pixel sees rows/columns 0..2, not -1..1."""
    conv = lite0.SameConv(1, 1, 3, 2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left tap
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = conv(x)
    assert y.shape[-2:] == (2, 2)
    assert y[0, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]


def test_same_padding_on_stride_one_pads_two_each_side_for_five() -> None:
    """A stride-1 5x5 pads 2 on every side (the convolution's own padding, no copy): the
    top-left tap of output (0, 0) sees the zero at (-2, -2), of output (2, 2) the input at
    (0, 0); the output keeps the input's size."""
    conv = lite0.SameConv(1, 1, 5, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0
        y = conv(torch.arange(1.0, 37.0).view(1, 1, 6, 6))
    assert y.shape[-2:] == (6, 6)
    assert y[0, 0, 0, 0] == 0.0 and y[0, 0, 2, 2] == 1.0 and y[0, 0, 5, 5] == 22.0


def test_depthwise_in_float32_under_bfloat16_autocast_keeps_the_gradient() -> None:
    """Training on a CPU runs the blocks' depthwise convolutions in float32 inside bfloat16
    autocast (oneDNN's bfloat16 depthwise backward is 2-3x slower), in bfloat16 without
    gradients; the weight gradient stays that of a float32 step within bfloat16 precision."""
    torch.manual_seed(0)
    blk = lite0.MBConv(6, 5, 1, 8, 8).train()
    x = torch.randn(2, 8, 12, 12)
    dtypes: list[torch.dtype] = []
    blk._depthwise_conv.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))

    def grad(amp: bool) -> torch.Tensor:
        blk.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            y = blk(x)
        y.float().square().mean().backward()
        g = blk._depthwise_conv.weight.grad
        assert g is not None
        return g.clone()

    ref, amp = grad(False), grad(True)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        blk(x)
    assert dtypes == [torch.float32, torch.float32, torch.bfloat16]
    assert float((amp - ref).norm() / ref.norm()) < 0.1  # bfloat16 elsewhere: 5 % measured


@pytest.mark.parametrize("det_stride", [8, 4])
def test_perception_net_on_lite0_freezes_and_runs(det_stride: int) -> None:
    cfg = NetConfig(backbone="lite0", freeze_blocks=4, det_stride=det_stride)
    c = contract_for(cfg)
    assert c.stride == det_stride
    assert c.mean == (lite0.MEAN,) * 3 and c.std == (lite0.STD,) * 3
    net = PerceptionNet(c, cfg)
    frozen = [p for p in net.lite._blocks[:4].parameters()] + list(net.lite._conv_stem.parameters())
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in net.lite._blocks[4:].parameters())
    net.train()
    assert not net.lite._blocks[0]._bn1.training and net.lite._blocks[5]._bn1.training
    out = net(torch.zeros(1, 3, c.input_height, c.input_width))
    assert out.heatmap.shape[-2:] == c.grid
    assert c.grid == (c.input_height // det_stride, c.input_width // det_stride)
    assert out.box.shape[-2:] == c.grid
    out.lane_logits.sum().backward()
    assert net.lite._blocks[0]._depthwise_conv.weight.grad is None
    assert net.lite._blocks[12]._depthwise_conv.weight.grad is not None


def test_lite0_model_exports_with_parity_and_quantises(tmp_path: Path) -> None:
    """The default model's path past training: model.pt -> ONNX (TF "same" padding as explicit
    pads, fixed by the input size) -> ONNX Runtime agrees with PyTorch on photos; the INT8
    model keeps the same contract and a heatmap that follows the FP32 one."""
    from dataclasses import replace

    from perception.export.onnx_export import export_onnx
    from perception.export.parity import check_parity
    from perception.export.quantize import quantize_int8
    from perception.model.files import model_file, save_atomic
    from perception.params import TrainParams
    from serving.engine import Engine, read_contract
    from serving.preprocess import Preprocessor

    cfg = NetConfig(backbone="lite0", freeze_blocks=4)
    torch.manual_seed(0)
    net = PerceptionNet(contract_for(cfg), cfg).eval()
    params = replace(TrainParams(), backbone="lite0", freeze_blocks=4)
    save_atomic(model_file(net, params, {}), tmp_path / "model.pt")
    onnx_path = export_onnx(tmp_path / "model.pt", tmp_path / "lite0.onnx", {})
    assert read_contract(onnx_path).mean == (lite0.MEAN,) * 3
    ops = [n.op_type for n in onnx.load(str(onnx_path)).graph.node]
    assert "Pad" not in ops and "Shape" not in ops, "same padding folded into the Convs"
    photos = [skimage_data.chelsea(), skimage_data.coffee(), skimage_data.astronaut()]
    frames = [cv2.resize(p[..., ::-1], (640, 360)) for p in photos]  # BGR, as a video gives
    report = check_parity(tmp_path / "model.pt", onnx_path, frames)
    assert report["ok"], report
    assert max(report["raw_max_abs_diff"].values()) < 1e-3
    pre = Preprocessor(read_contract(onnx_path))
    int8 = quantize_int8(onnx_path, tmp_path / "lite0.int8.onnx", (pre(f).copy() for f in frames))
    fp32, q = Engine(onnx_path, "cpu", threads=2), Engine(int8, "cpu", threads=2)
    assert q.contract == fp32.contract
    x = pre(frames[0]).copy()
    a, b = fp32.run(x).heatmap, q.run(x).heatmap
    assert np.isfinite(b).all() and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
