# foldaccel — developer entry points. Everything runs inside .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-full lint bench bench-peers doctor toolchain clean

install: $(STAMP)

# Re-install only when the package metadata changes; a second `make install` is a no-op.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so pip takes the local CPU wheel and never the CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The main job: the quantized encoder on the RTL at fold 1 and 2 (report in foldaccel-demo/).
demo: install
	$(VENV)/bin/foldaccel demo

test: install
	$(PY) -m pytest -q

test-full: install
	$(PY) -m pytest -q -m ""

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: install
	$(PY) -m sim.bench

# SCALE-Sim 3.0.0 in its own environment (it needs numpy < 2.4), for `make bench`'s comparison.
bench-peers: install
	$(PY) -m sim.bench.peers --setup

toolchain: install
	$(PY) -m sim.rtl.toolchain

doctor: install
	$(VENV)/bin/foldaccel doctor

clean:
	rm -rf build .pytest_cache
