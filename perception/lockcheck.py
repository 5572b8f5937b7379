"""Does dvc.lock match the code? The stages whose committed inputs differ from the lock.

A commit claims its results through dvc.lock: the md5 of every dependency of every stage.
When code changes after the last `dvc repro`, a fresh clone's `dvc repro` reruns those stages
(hours of training) although the commit looks finished. This check needs no data: it looks
only at dependencies that git tracks (code, params.yaml, the real-footage source files) and
each stage's command, hashed by DVC itself (its folder hash: the md5 of the sorted JSON list
of relpath and md5 entries, .dvcignore applied). What other stages write into DVC's cache is
skipped; their small outputs that git tracks (metrics) are compared like code.

    python -m perception.lockcheck            # warns, exits 0 (run by `make test`)
    python -m perception.lockcheck --strict   # exits 1 when a stage is stale
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml


def _git_files(root: Path) -> list[str]:
    res = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True
    )
    return [f for f in res.stdout.split("\0") if f]


def _tracked(path: str, files: list[str]) -> bool:
    """path is a file git tracks, or a folder holding some."""
    prefix = path.rstrip("/") + "/"
    return any(f == path or f.startswith(prefix) for f in files)


def stale_stages(root: str | Path = ".") -> dict[str, list[str]]:
    """Stage name -> what differs from dvc.lock: 'not in dvc.lock', 'command', a dependency
    path with DVC's word for it (modified, deleted, new), or 'params.yaml:<key>'."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    root = Path(root)
    lock_path = root / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text()) if lock_path.exists() else None
    locked = set((lock or {}).get("stages", {}))
    files = _git_files(root)
    stale: dict[str, list[str]] = {}
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            name = stage.name
            if name not in locked:
                stale[name] = ["not in dvc.lock"]
                continue
            why = ["command"] if stage.cmd_changed else []
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    for file, keys in dep.workspace_status().items():
                        if isinstance(keys, dict):  # {section: modified}
                            why += [f"{file}:{k}" for k in keys]
                        else:  # the stage's params are new to the lock
                            why.append(f"{file} ({keys})")
                elif _tracked(str(dep.def_path), files):
                    why += [f"{p} ({s})" for p, s in dep.workspace_status().items()]
            if why:
                stale[name] = why
    return stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perception.lockcheck", description=__doc__)
    ap.add_argument("--root", default=".", help="the repository (default: here)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a stage is stale")
    args = ap.parse_args(argv)
    try:
        stale = stale_stages(args.root)
    except Exception as e:  # a pipeline DVC cannot read, no git: say so, never fail the tests
        print(f"warning: dvc.lock check skipped ({type(e).__name__}: {e})", file=sys.stderr)
        return 1 if args.strict else 0
    if not stale:
        print("dvc.lock matches the code of every stage")
        return 0
    print(
        f"warning: dvc.lock does not match the code of {len(stale)} stage(s); a fresh clone's "
        "`dvc repro` reruns them (commit the dvc.lock of a full `dvc repro`):",
        file=sys.stderr,
    )
    for name, why in stale.items():
        print(f"  {name}: {', '.join(why)}", file=sys.stderr)
    return 1 if args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
