"""Model files: what `perception train` writes and how everything else reads it back.

models/model.pt is a plain dict saved with torch.save and read with weights_only=True (no
pickled code runs on load): the weights, the contract, the network's configuration and the
training params, nothing that depends on the clock, so the same inputs give the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from perception.errors import UserError, first_line
from perception.model.net import NetConfig, PerceptionNet
from perception.params import TrainParams
from serving.contract import ModelContract
from serving.files import atomic_write_bytes


def save_atomic(obj: Any, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def model_file(net: PerceptionNet, params: TrainParams, extra: dict[str, Any]) -> dict:
    """What models/model.pt holds: weights plus everything needed to rebuild and decode."""
    return {
        "format": "perception-model/1",
        "state_dict": net.state_dict(),
        "contract": net.contract.to_dict(),
        "net": asdict(net.cfg),
        "train_params": asdict(params),
        **extra,
    }


def load_torch_file(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load with weights_only (never unpickles code); a corrupt, truncated or pickled
    file is one UserError naming it, not a torch traceback."""
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: missing file") from None
    except Exception as e:  # zip, pickle and unpickler errors all mean "not our file"
        msg = first_line(e)[:120]
        raise UserError(f"{path}: not a readable weights-only torch file ({msg})") from None
    if not isinstance(blob, dict):
        raise UserError(f"{path}: not a file written by perception train")
    return blob


def load_model(path: str | Path, device: str | torch.device = "cpu") -> PerceptionNet:
    """Rebuild the network saved by `perception train` (weights only: no pickled code)."""
    blob = load_torch_file(path, device)
    if blob.get("format") != "perception-model/1":
        raise UserError(f"{path}: not a model file written by perception train")
    try:
        contract = ModelContract(**_tuples(blob["contract"]))
        cfg = NetConfig(**_tuples(blob["net"]))
        net = PerceptionNet(contract, cfg, pretrained=False)
        net.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        msg = first_line(e)[:120]
        raise UserError(f"{path}: model file does not match this network ({msg})") from None
    return net.eval()


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    """Lists back to the tuples of the frozen dataclasses they came from."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
