# Two commands work on a fresh machine: `make run` (the pipeline) and `make test` (the checks).
# Both create .venv when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export OMP_WAIT_POLICY := PASSIVE
# dvc.yaml commands call `perception`: the venv comes first on PATH
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test lint typecheck lockcheck pytest venv clean-venv constraints

venv: $(STAMP)

# torch 2.14.1 / torchvision 0.29.1 are pinned in pyproject.toml (pip finds them on this disk);
# constraints.txt pins every other package to the versions dvc.lock was made with.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[cpu,dev]'
	touch $(STAMP)

# Rewrite constraints.txt after a dependency change in pyproject.toml: install without the
# old pins (they may conflict with the new requirement; what still fits stays as installed),
# then freeze the venv (local labels such as +cu130 dropped so the pins resolve on PyPI too).
constraints:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[cpu,dev]'
	{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable \
	  | grep -v '^#' | sed 's/+[a-z0-9.]*$$//'; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	touch $(STAMP)

# The pipeline: every stage of dvc.yaml on params.yaml (DVC needs a git repo with a commit),
# then its headline results in a few lines (`dvc metrics show` has them all).
run: $(STAMP)
	@git rev-parse --verify HEAD >/dev/null 2>&1 || { echo "make run needs a git repository with at least one commit"; exit 1; }
	$(BIN)/dvc repro
	@$(BIN)/perception summary --sim reports/eval/metrics.json \
	  --real reports/eval-real/metrics.json --bench reports/bench/bench.json \
	  --monitor reports/monitor/test/summary.json reports/monitor/real/summary.json \
	  --pictures reports/demo/demo.mp4 reports/eval/slices.png reports/eval-real/overlays \
	  reports/bench/latency.png reports/data/samples.png reports/monitor/real/report.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# a warning (not a failure) naming each stage whose code or params differ from dvc.lock
lockcheck: $(STAMP)
	$(BIN)/python -m perception.lockcheck

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck lockcheck pytest

clean-venv:
	rm -rf $(VENV)
