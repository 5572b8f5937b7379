"""DVC remotes: push the tiny pipeline's outputs, clone the repository afresh, pull, and the
clone is complete: `dvc status` clean, `dvc repro` runs nothing. Once against an S3 protocol
server on localhost (moto, started and stopped here; credentials only in the environment),
once against a local folder."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from scratch_repo import Scratch

UP_TO_DATE = "Data and pipelines are up to date."
# moto accepts any key; they travel in the environment, never in .dvc/config
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test-key-id",
    "AWS_SECRET_ACCESS_KEY": "test-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free localhost port with an empty bucket `dvc`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )
        s3.create_bucket(Bucket="dvc")
        yield url
    finally:
        server.stop()


def _round_trip(
    p: Scratch, clone: Path, name: str, url: str, options: dict[str, str], env: dict[str, str]
) -> dict[str, float]:
    """Add remote `name` to the repo (committed, as a team shares it), push, clone, pull;
    returns seconds of push and pull."""
    p.run("dvc", "remote", "add", name, url)
    for key, value in options.items():
        p.run("dvc", "remote", "modify", name, key, value)
    p.run("git", "commit", "-qm", f"remote {name}", ".dvc/config")
    assert not any(v in (p.repo / ".dvc" / "config").read_text() for v in CREDENTIALS.values())
    t0 = time.perf_counter()
    p.run("dvc", "push", "-r", name, env=env)
    push_s = time.perf_counter() - t0
    p.run("git", "clone", "-q", str(p.repo), str(clone), cwd=clone.parent)
    assert not (clone / "models" / "model.pt").exists()
    t0 = time.perf_counter()
    p.run("dvc", "pull", "-r", name, cwd=clone, env=env)
    pull_s = time.perf_counter() - t0
    assert (clone / "models" / "model.pt").read_bytes() == (
        p.repo / "models" / "model.pt"
    ).read_bytes()
    assert UP_TO_DATE in p.run("dvc", "status", cwd=clone)
    again = p.run("dvc", "repro", cwd=clone, env=env)
    assert "Running stage" not in again and UP_TO_DATE in again, again[-2000:]
    return {"push_s": push_s, "pull_s": pull_s}


@pytest.mark.slow
def test_s3_remote_round_trip(
    tiny_pipeline_repo: Scratch, s3_endpoint: str, tmp_path: Path
) -> None:
    times = _round_trip(
        tiny_pipeline_repo,
        tmp_path / "clone",
        "s3store",
        "s3://dvc/tiny",
        {"endpointurl": s3_endpoint},
        CREDENTIALS,
    )
    print(f"s3 (moto): push {times['push_s']:.1f} s, pull {times['pull_s']:.1f} s")


@pytest.mark.slow
def test_local_folder_remote_round_trip(tiny_pipeline_repo: Scratch, tmp_path: Path) -> None:
    store = tmp_path / "store"
    times = _round_trip(tiny_pipeline_repo, tmp_path / "clone", "folder", str(store), {}, {})
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    assert size > 1_000_000  # the dataset and the models, not just the small files
    mib = size / 2**20
    print(f"folder: push {times['push_s']:.1f} s, pull {times['pull_s']:.1f} s, {mib:.0f} MiB")
