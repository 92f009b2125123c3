# The README's two commands: `make demo` and `make test`. Both set up .venv from nothing: the demo
# installs only the runtime and the init's stack (requirements-run.txt), the tests the tool-chain too.
# The first Python 3.10-3.13 on PATH (3.11 preferred), unless PY is given.
PY ?= $(shell for p in python3.11 python3.12 python3.13 python3.10 python3; do \
  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' \
  2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
STAMP := $(VENV)/.installed

.PHONY: setup setup-run demo test lint typecheck pytest bench browser clean fuzz device-check

setup-run: $(RUN_STAMP)

# The package's folders: a file added or removed in one re-links the install (see below).
PKG_DIRS := $(shell find toolkit checks reports schemas -type d -not -name __pycache__ 2>/dev/null)
# Where the install's links are, and so where its bytecode goes.
PKG_HOME = $$($(BIN)/python -c 'import os, npu_preflight; print(os.path.dirname(npu_preflight.__file__))')

$(RUN_STAMP): pyproject.toml requirements-run.txt $(PKG_DIRS)
	@test -n "$(PY)" || { echo "no Python 3.10-3.13 found on PATH (set PY=/path/to/python3.X)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-run.txt
	@# Strict editable mode: the package is a tree of links under build/, put on sys.path by a .pth
	@# line. The default mode instead installs an import hook that every Python start in the venv
	@# imports (pathlib, re, fnmatch: 21 ms of a bare start, 11 ms of a static check; bench/RESULTS.md).
	@# Edits to a file are live; a file added or removed needs this step again, which the folders
	@# above, as prerequisites, trigger.
	$(BIN)/pip install -q -e . --no-deps --config-settings editable_mode=strict
	@# An editable install never gets bytecode where PYTHONDONTWRITEBYTECODE is set (CI images):
	@# every run would recompile the package (about 20 ms of a 0.17 s static check; bench/RESULTS.md).
	$(BIN)/python -m compileall -q "$(PKG_HOME)" >/dev/null
	touch $(RUN_STAMP)

setup: $(STAMP)

$(STAMP): $(RUN_STAMP) requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $(STAMP)

# Headless Chromium for the HTML report tests, from Debian's packages (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: the browser tests will be skipped (install Debian's chromium)"; fi; }

demo: setup-run
	rm -rf demo
	$(BIN)/python -m tests.factory demo/model --family llama --dtype bfloat16 --hidden 256 --layers 4 --heads 8 --kv-heads 4 --intermediate 512 --vocab 512 --max-position 4096
	$(BIN)/npu-preflight check demo/model --set backend_type=atb --set world_size=1 --set rank=0 \
	  --set local_rank=0 --set npu_device_id=0 --set trust_remote_code=false \
	  --set max_seq_len=1024 --set max_batch_size=2 \
	  --device cpu --memory-limit 8GiB --timeout 300 --out demo/report
	@echo "open demo/report/report.html"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy reads the install's tree of links, laid out as the namespace (see [tool.mypy] in pyproject.toml).
typecheck: setup
	cd "$$(dirname "$(PKG_HOME)")" && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml --cache-dir $(CURDIR)/.mypy_cache

pytest: setup browser
	$(BIN)/pytest -n 2 -q

test: lint typecheck pytest

# The property tests of every parser of untrusted bytes, long and random (make test runs them derandomized).
fuzz: setup
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -n 2 -q -m property -p no:cacheprovider

# Bytecode for the sources as they are now: the set-up compiled them once, and a module edited since
# would be recompiled on every run the bench times (found when a run measured the static check 25%
# slow after a review edited cli.py and policyfile.py).
bench: setup
	$(BIN)/python -m compileall -q "$(PKG_HOME)" >/dev/null
	$(BIN)/python -m bench.run_all

# On a machine with a GPU: probe, sandboxed init (nccl at world_size 2 with two devices), a real
# "CUDA out of memory" classified, measured peak against the plan; figures in $$OUT/device-check.json.
device-check: setup
	$(BIN)/python scripts/device_check.py --device cuda

clean:
	rm -rf $(VENV) demo preflight-report bench/out .mypy_cache .ruff_cache .pytest_cache
