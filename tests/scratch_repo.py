"""A scratch git repository of the project on the tiny profile, for tests that run DVC.

The working tree is copied (not cloned) so that uncommitted changes are what gets tested;
data/, models/ and reports/ stay behind except the real-footage source files that git
tracks. The first `dvc repro` is the expensive part (minutes on 2 cores): the session-scoped
fixture in conftest.py runs it once for the pipeline test and the remote round trips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Scratch:
    repo: Path
    env: dict[str, str]
    first_repro: str = ""  # what the first `dvc repro` printed

    def run(self, *cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
        """Run cmd (dvc and git from the venv's PATH) in the repo; fail the test on an error."""
        res = subprocess.run(
            list(cmd),
            cwd=cwd or self.repo,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=900,
        )
        out = res.stdout + res.stderr
        assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
        return out


def dvc_env(tmp: Path) -> dict[str, str]:
    """No analytics, a git identity, DVC's site cache inside the test's folder, the venv first
    on PATH (dvc.yaml commands call `perception` and `torchrun`)."""
    return dict(
        os.environ,
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(tmp / "dvc-site"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
    )


def tiny_repo(tmp: Path) -> Scratch:
    """The project copied into tmp/repo with profiles/tiny.yaml as params.yaml and no
    dvc.lock, committed (before any output exists, so git tracks none of them)."""
    repo = tmp / "repo"
    ignore = shutil.ignore_patterns(
        ".venv",
        ".git",
        "data",
        "models",
        "reports",
        "dvclive",
        "__pycache__",
        ".*_cache",
        "*.egg-info",
    )

    def skip(folder: str, names: list[str]) -> set[str]:
        # a working tree's DVC cache and state stay behind: its run-cache would restore
        # stages instead of running them (and the cache can be gigabytes)
        local = {"cache", "tmp", "config.local"} if Path(folder) == ROOT / ".dvc" else set()
        return set(ignore(folder, names)) | (local & set(names))

    shutil.copytree(ROOT, repo, ignore=skip)
    # the real-footage test set is the one part of data/ that git tracks
    shutil.copytree(ROOT / "data" / "real" / "source", repo / "data" / "real" / "source")
    shutil.copy(ROOT / "profiles" / "tiny.yaml", repo / "params.yaml")
    (repo / "dvc.lock").unlink(missing_ok=True)
    s = Scratch(repo, dvc_env(tmp))
    s.run("git", "init", "-q")
    s.run("git", "add", "-A")
    s.run("git", "commit", "-qm", "tiny")
    return s


def tiny_pipeline(tmp: Path) -> Scratch:
    """tiny_repo after a full `dvc repro`, with dvc.lock and the small outputs git tracks
    (metrics, model card, bench table) committed, as a user would before pushing."""
    s = tiny_repo(tmp)
    s.first_repro = s.run("dvc", "repro")
    s.run("git", "add", "-A")
    s.run("git", "commit", "-qm", "tiny: dvc repro")
    return s
