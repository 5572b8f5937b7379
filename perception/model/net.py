"""The multi-task network: a backbone (EfficientNet-Lite0 or a small ResNet-style one), an
FPN-lite neck down to stride 8 (or 4: NetConfig.det_stride), a CenterNet-style obstacle head
and a row-anchor lane head (Ultra-Fast-Lane-Detection).

Why these heads: row-anchor classification turns lanes into L x R small classifications
whose decode is a softmax expectation per row (microseconds in Numba) and gives lane
instances in slot order directly, unlike segmentation masks. The anchor-free centre heatmap
needs no anchor boxes and decodes with a 3x3 peak test plus a small NMS.

Output layout and names: serving/contract.py. Sizes: ~7 M parameters, ~0.75 GMAC at
448x256; ONNX Runtime runs it in ~6 ms on 2 CPU cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops import Conv2dNormActivation

from serving.contract import ModelContract, ModelOutputs

BOX_SCALE = 16.0  # box distances are predicted in units of 16 input pixels


@dataclass(frozen=True)
class NetConfig:
    widths: tuple[int, int, int, int, int] = (24, 48, 64, 96, 128)  # stride 2, 4, 8, 16, 32
    depths: tuple[int, int, int] = (1, 2, 2)  # blocks at 8, 16, 32
    neck: int = 64
    lane_hidden: int = 512
    backbone: str = "resnet"  # resnet: the blocks above, from scratch | lite0: ImageNet
    freeze_blocks: int = 0  # lite0: the stem and this many blocks are not trained
    # obstacle heads at stride 8, or 4: the neck goes one level further up, onto the
    # backbone's stride-4 features, at half its width (the heads' convolution costs what
    # the stride-8 one does), for the small far objects a stride-8 cell is wider than
    det_stride: int = 8
    # column cells of the row-anchor lane classifier (G): its last layer is hidden x L*R*(G+1),
    # the largest single weight matrix of the network, streamed from memory every frame. 100,
    # the design before train.lane_cells (default 32), so that model files written before it,
    # which do not store the field, load as what they are
    lane_cells: int = 100


def contract_for(cfg: NetConfig) -> ModelContract:
    """The contract a network needs: Lite0 was trained on (x - 127) / 128 inputs; the
    heatmap's cell is the obstacle heads' stride."""
    if cfg.det_stride not in (4, 8):
        raise ValueError(f"det_stride {cfg.det_stride}: 4 or 8")
    if cfg.backbone == "lite0":
        from perception.model.lite0 import MEAN, STD

        return ModelContract(
            mean=(MEAN,) * 3, std=(STD,) * 3, stride=cfg.det_stride, lane_cells=cfg.lane_cells
        )
    return ModelContract(stride=cfg.det_stride, lane_cells=cfg.lane_cells)


def _stage(cin: int, cout: int, blocks: int) -> nn.Sequential:
    down = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))
    return nn.Sequential(
        BasicBlock(cin, cout, 2, down), *[BasicBlock(cout, cout) for _ in range(blocks - 1)]
    )


class PerceptionNet(nn.Module):
    """image float32[B, 3, H, W] normalised RGB -> ModelOutputs (heatmap, box, lane_logits,
    lane_exist), shapes as in serving/contract.py."""

    def __init__(
        self, contract: ModelContract, cfg: NetConfig | None = None, pretrained: bool = True
    ):
        """pretrained: load the lite0 backbone's ImageNet weights (False when the weights
        come from a model file anyway)."""
        super().__init__()
        cfg = cfg or NetConfig()
        self.contract, self.cfg = contract, cfg
        w = cfg.widths
        if cfg.backbone == "lite0":
            from perception.model import lite0

            self.lite = lite0.pretrained() if pretrained else lite0.Lite0()
            self.lite.freeze(cfg.freeze_blocks)
            taps: tuple[int, ...] = lite0.TAP_CHANNELS
            c4 = lite0.STRIDE4_CHANNELS
        else:
            self.stem = nn.Sequential(
                Conv2dNormActivation(3, w[0], 3, 2), Conv2dNormActivation(w[0], w[1], 3, 2)
            )
            self.s8 = _stage(w[1], w[2], cfg.depths[0])
            self.s16 = _stage(w[2], w[3], cfg.depths[1])
            self.s32 = _stage(w[3], w[4], cfg.depths[2])
            taps, c4 = w[2:], w[1]
        self.lat8, self.lat16, self.lat32 = (nn.Conv2d(c, cfg.neck, 1) for c in taps)
        head = cfg.neck
        if cfg.det_stride == 4:
            head = cfg.neck // 2
            self.top4 = nn.Conv2d(cfg.neck, head, 1)
            self.lat4 = nn.Conv2d(c4, head, 1)
        self.det = Conv2dNormActivation(head, head, 3)
        n_cls = len(contract.class_names)
        self.heat = nn.Conv2d(head, n_cls, 1)
        self.box = nn.Conv2d(head, 4, 1)
        assert self.heat.bias is not None
        nn.init.constant_(self.heat.bias, -math.log((1 - 0.05) / 0.05))  # prior 5 %
        n_lanes, n_rows = len(contract.lane_slots), len(contract.row_anchors)
        self.lane_shape = (n_lanes, n_rows, contract.lane_cells + 1)
        h32, w32 = contract.input_height // 32, contract.input_width // 32
        self.lane_reduce = Conv2dNormActivation(taps[2], 8, 1)
        self.lane_fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8 * h32 * w32, cfg.lane_hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
        )
        self.lane_cls = nn.Linear(cfg.lane_hidden, math.prod(self.lane_shape))
        self.lane_exist = nn.Linear(cfg.lane_hidden, n_lanes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features at strides 4, 8, 16 and 32."""
        if self.cfg.backbone == "lite0":
            return self.lite.taps(x, stride4=True)
        f4 = self.stem(x)
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        return [f4, f8, f16, self.s32(f16)]

    def forward(self, x: torch.Tensor) -> ModelOutputs[torch.Tensor]:
        f4, f8, f16, f32 = self.features(x)
        p = self.lat32(f32)
        p = F.interpolate(p, scale_factor=2.0, mode="nearest") + self.lat16(f16)
        p = F.interpolate(p, scale_factor=2.0, mode="nearest") + self.lat8(f8)
        if self.cfg.det_stride == 4:
            p = F.interpolate(self.top4(p), scale_factor=2.0, mode="nearest") + self.lat4(f4)
        d = self.det(p)
        heat = torch.sigmoid(self.heat(d))  # (B, C, H/s, W/s), s = det_stride
        box = F.softplus(self.box(d)) * BOX_SCALE  # (B, 4, H/s, W/s) pixels
        h = self.lane_fc(self.lane_reduce(f32))
        lanes = self.lane_cls(h).view(-1, *self.lane_shape)  # (B, L, R, G+1)
        exist = torch.sigmoid(self.lane_exist(h))  # (B, L)
        return ModelOutputs(heat, box, lanes, exist)
