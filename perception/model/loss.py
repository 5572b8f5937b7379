"""Losses of the two heads. Each returns a scalar; `total` weights them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss

from perception.model.net import BOX_SCALE
from serving.contract import ModelOutputs


def focal_heatmap(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss. pred, gt: (B, C, h, w) probabilities."""
    p = pred.clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p**2 * (1 - gt) ** 4 * (1 - pos)
    n = pos.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def box_regression(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 on l t r b (in BOX_SCALE units) plus GIoU, at object centre cells.
    pred, gt: (B, 4, h, w) pixels; mask: (B, h, w)."""
    m = mask.bool()
    if not m.any():
        return pred.sum() * 0.0
    p = pred.permute(0, 2, 3, 1)[m]  # (N, 4)
    g = gt.permute(0, 2, 3, 1)[m]
    l1 = F.l1_loss(p / BOX_SCALE, g / BOX_SCALE)
    # boxes relative to the cell centre: (-l, -t, r, b)
    pb = torch.stack([-p[:, 0], -p[:, 1], p[:, 2], p[:, 3]], 1)
    gb = torch.stack([-g[:, 0], -g[:, 1], g[:, 2], g[:, 3]], 1)
    return l1 + generalized_box_iou_loss(pb, gb, reduction="mean")


def lanes(
    logits: torch.Tensor,
    exist: torch.Tensor,
    gt_cls: torch.Tensor,
    gt_exist: torch.Tensor,
    gt_pos: torch.Tensor,
) -> torch.Tensor:
    """Row-anchor cross entropy, plus an L1 on the softmax expectation of the column (UFLD's
    trick for sub-cell precision), plus a shape term, plus existence BCE.
    logits: (B, L, R, G+1); gt_cls: (B, L, R) cell index, G = no point; gt_pos: (B, L, R)
    the unquantised x in cells (targets.lane_positions), the expectation's target. UFLD
    regresses the expectation to the cell index instead: it then learns cell centres and
    keeps up to half a cell of quantisation error, which the exact position removes.

    The shape term is an L1 between the predicted and true second differences of the column
    along the rows, where three consecutive rows have a point: lanes are smooth curves, and
    without it the expectation wobbles from row to row (UFLD's structural loss, on positions)."""
    n_cls = logits.shape[-1]
    ce = F.cross_entropy(logits.reshape(-1, n_cls), gt_cls.reshape(-1))
    cells = n_cls - 1
    has = gt_cls < cells
    prob = logits[..., :cells].softmax(-1)
    pos = (prob * torch.arange(cells, device=logits.device)).sum(-1)  # (B, L, R) cells
    if not has.any():
        return ce + 0.5 * F.binary_cross_entropy(exist.clamp(1e-4, 1 - 1e-4), gt_exist)
    gt = gt_pos.float()
    loc = F.l1_loss(pos[has], gt[has]) / cells * 10
    run3 = has[..., :-2] & has[..., 1:-1] & has[..., 2:]
    d2 = pos[..., :-2] - 2 * pos[..., 1:-1] + pos[..., 2:]
    d2_gt = gt[..., :-2] - 2 * gt[..., 1:-1] + gt[..., 2:]
    shape = F.l1_loss(d2[run3], d2_gt[run3]) / cells * 10 if run3.any() else loc * 0
    bce = F.binary_cross_entropy(exist.clamp(1e-4, 1 - 1e-4), gt_exist)
    return ce + loc + shape + 0.5 * bce


def total(
    out: ModelOutputs[torch.Tensor], batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    parts = {
        "heatmap": focal_heatmap(out.heatmap.float(), batch["heat"]),
        "box": box_regression(out.box.float(), batch["box"], batch["box_mask"]),
        "lanes": lanes(
            out.lane_logits.float(),
            out.lane_exist.float(),
            batch["lane_cls"],
            batch["lane_exist"],
            batch["lane_pos"],
        ),
    }
    loss = parts["heatmap"] + 2.0 * parts["box"] + parts["lanes"]
    return loss, {k: float(v.detach()) for k, v in parts.items()}
