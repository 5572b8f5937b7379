"""Shared fixtures: a small exported model (untrained weights, real contract)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scratch_repo import Scratch, tiny_pipeline

from perception.export.onnx_export import export_onnx
from perception.model.files import model_file, save_atomic
from perception.model.net import PerceptionNet
from perception.params import TrainParams
from serving.contract import ModelContract


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    net = PerceptionNet(ModelContract()).eval()
    save_atomic(model_file(net, TrainParams(), {}), root / "model.pt")
    return export_onnx(root / "model.pt", root / "perception.onnx", {})


@pytest.fixture(scope="session")
def tiny_pipeline_repo(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    """A scratch git repo of the project on profiles/tiny.yaml after one full `dvc repro`,
    committed (tests/scratch_repo.py); shared by the pipeline and remote tests."""
    return tiny_pipeline(tmp_path_factory.mktemp("pipeline"))
