"""The dvc.lock check: clean right after a real `dvc repro`, then names each stage whose code,
params or command changed, as `dvc status` does, without any of the stages' data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from perception.lockcheck import main, stale_stages

DVC_YAML = """\
stages:
  make:
    cmd: python -c "open('data/out.txt', 'w').write('x')"
    deps: [code, tool.py]
    params: [make]
    outs: [data/out.txt]
  use:
    cmd: python -c "open('data/used.txt', 'w').write(open('data/out.txt').read())"
    deps: [data/out.txt, tool.py]
    outs: [data/used.txt]
"""


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(
        os.environ,
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(cwd.parent / "site"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_lock_check_agrees_with_dvc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    (repo / "code" / "sub").mkdir(parents=True)
    (repo / "code" / "a.py").write_text("A = 1\n")
    (repo / "code" / "sub" / "b.py").write_text("B = 2\n")
    (repo / "tool.py").write_text("T = 3\n")
    (repo / "data").mkdir()
    (repo / "params.yaml").write_text("make: {n: 1}\nother: {m: 2}\n")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / ".gitignore").write_text("/data/\n__pycache__/\n")
    _run(["git", "init", "-q"], repo)
    _run(["dvc", "init", "-q"], repo)
    (repo / ".dvcignore").write_text("__pycache__/\n")
    _run(["dvc", "repro", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "x"], repo)
    assert stale_stages(repo) == {}
    # what the lock ignores: an unrelated params key, a byte-code cache (.dvcignore)
    (repo / "params.yaml").write_text("make: {n: 1}\nother: {m: 5}\n")
    (repo / "code" / "__pycache__").mkdir()
    (repo / "code" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0\1")
    assert stale_stages(repo) == {}
    # a file inside a folder dependency, then the params key of a stage
    (repo / "code" / "sub" / "b.py").write_text("B = 3\n")
    (repo / "params.yaml").write_text("make: {n: 2}\nother: {m: 5}\n")
    assert stale_stages(repo) == {"make": ["code (modified)", "params.yaml:make"]}
    assert "make:" in _run(["dvc", "status"], repo)
    # a file two stages read; the data dependency of `use` (data/out.txt) is not looked at
    (repo / "tool.py").write_text("T = 4\n")
    (repo / "dvc.yaml").write_text(DVC_YAML.replace("'x'", "'y'"))
    stale = stale_stages(repo)
    assert stale["use"] == ["tool.py (modified)"]
    assert stale["make"][0] == "command" and "tool.py (modified)" in stale["make"]
    capsys.readouterr()
    assert main(["--root", str(repo)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: dvc.lock does not match the code of 2 stage(s)")
    assert main(["--root", str(repo), "--strict"]) == 1
    (repo / "dvc.lock").unlink()
    assert stale_stages(repo) == {"make": ["not in dvc.lock"], "use": ["not in dvc.lock"]}
