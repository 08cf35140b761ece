# Set-up is part of every target: a fresh machine needs only Python 3.11 and a C++ compiler
# (and Python 3.12 for test-py312 and lock).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.stg-installed
NATIVE_SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')
# Every install is pinned: constraints.txt holds the tested versions (make lock refreshes it),
# with its torch line replaced by TORCH_SPEC, so nothing can pull another torch.
PINS := $(VENV)/constraints.txt

# The layers that need no torch (video decoding, captions), tested on Python 3.12 with the PyAV
# that pip installs there (19 and later), in a small venv of their own (constraints-py312.txt).
FIND_PYTHON312 := import sys; print(sys.executable)
PYTHON312 ?= $(shell python3.12 -c '$(FIND_PYTHON312)' 2>/dev/null || "$$(pyenv prefix 3.12 2>/dev/null)/bin/python3.12" -c '$(FIND_PYTHON312)' 2>/dev/null)
VENV312 ?= .venv-py312
STAMP312 := $(VENV312)/.stg-installed
PACKAGES312 := av numpy pytest

LOCK_DIR := build/lock

.PHONY: demo test test-fast test-py312 lint install lock cuda-check gpu-check bench clean

demo: install
	$(BIN)/stg demo

test: install
	$(BIN)/python -m pytest -q

# ruff (lint rules and format, pyproject.toml) and the layer rule (tools/check_layers.py)
lint: install
	$(BIN)/ruff check stg_cli tests benchmarks tools
	$(BIN)/ruff format --check stg_cli tests benchmarks tools
	$(BIN)/python tools/check_layers.py

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# stg runs from the source tree there: installing it would install torch.
test-py312: $(STAMP312)
	$(VENV312)/bin/python -m pytest -q tests/video tests/text

bench: install
	$(BIN)/stg bench all

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned, then the build tools, then stg compiled against that torch.
$(STAMP): $(BIN)/python pyproject.toml setup.py constraints.txt $(NATIVE_SOURCES)
	grep -v '^torch==' constraints.txt > $(PINS)
	echo '$(TORCH_SPEC)' >> $(PINS)
	$(BIN)/python -m pip install -q -c $(PINS) --upgrade pip setuptools wheel ninja
	$(BIN)/python -m pip install -q -c $(PINS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c $(PINS) --no-build-isolation -e ".[dev]"
	$(BIN)/python -m pip check
	$(BIN)/python -c "import stg_cli.ops as o, sys; s = o.status(); print('stg: native extension', 'loaded' if s.loaded else 'NOT loaded: ' + str(s.reason)); sys.exit(0 if s.loaded else 1)"
	touch $(STAMP)

$(STAMP312): constraints-py312.txt
	@test -x "$(PYTHON312)" || { echo "test-py312: no Python 3.12 found; set PYTHON312=/path/to/python3.12"; exit 1; }
	rm -rf $(VENV312)
	$(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install -q -c constraints-py312.txt --upgrade pip
	$(VENV312)/bin/python -m pip install -q -c constraints-py312.txt $(PACKAGES312)
	$(VENV312)/bin/python -m pip check
	touch $(STAMP312)

# Refresh both constraints files from fresh venvs: the newest versions the indexes offer within
# pyproject.toml's bounds (torch stays TORCH_SPEC), as pip freeze lists them, stg itself left out.
# stg is built from a copy of the tracked files, so the work tree and its build are left alone.
lock:
	@test -x "$(PYTHON312)" || { echo "lock: no Python 3.12 found; set PYTHON312=/path/to/python3.12"; exit 1; }
	rm -rf $(LOCK_DIR) && mkdir -p $(LOCK_DIR)/src
	git ls-files | tar -cf - -T - | tar -xf - -C $(LOCK_DIR)/src
	$(PYTHON) -m venv $(LOCK_DIR)/py311
	$(LOCK_DIR)/py311/bin/python -m pip install -q --upgrade pip setuptools wheel ninja
	$(LOCK_DIR)/py311/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(LOCK_DIR)/py311/bin/python -m pip install -q "$(TORCH_SPEC)" --no-build-isolation "$(LOCK_DIR)/src[dev]"
	$(LOCK_DIR)/py311/bin/python -m pip check
	{ echo "# Tested versions for $$($(LOCK_DIR)/py311/bin/python -V): make install and CI install with"; \
	  echo "# -c constraints.txt (the torch line becomes TORCH_SPEC). Written by make lock: do not edit."; \
	  echo '$(TORCH_SPEC)'; \
	  $(LOCK_DIR)/py311/bin/python -m pip freeze --all --exclude stg | grep -v '^torch=='; \
	} > $(LOCK_DIR)/constraints.txt
	$(PYTHON312) -m venv $(LOCK_DIR)/py312
	$(LOCK_DIR)/py312/bin/python -m pip install -q --upgrade pip
	$(LOCK_DIR)/py312/bin/python -m pip install -q $(PACKAGES312)
	$(LOCK_DIR)/py312/bin/python -m pip check
	{ echo "# Tested versions for $$($(LOCK_DIR)/py312/bin/python -V), for make test-py312 (the video and"; \
	  echo "# caption layers, which need no torch). Written by make lock: do not edit."; \
	  $(LOCK_DIR)/py312/bin/python -m pip freeze --all; \
	} > $(LOCK_DIR)/constraints-py312.txt
	mv $(LOCK_DIR)/constraints.txt $(LOCK_DIR)/constraints-py312.txt .
	rm -rf $(LOCK_DIR)

# Compile-only check of the CUDA kernels with nvcc (no GPU, no CUDA torch needed);
# STG_CUDA_CHECK_TORCH=1 also compiles the torch-facing launchers against the venv's torch.
cuda-check:
	PYTHON="$(BIN)/python" bash csrc/cuda_check.sh

# On a machine with an NVIDIA GPU and a CUDA torch: build, CUDA tests, harness, benchmarks and a
# short nccl/bf16 training run in one go (tools/gpu_check.sh; PYTHON defaults to python3).
gpu-check:
	bash tools/gpu_check.sh

clean:
	rm -rf build stg_cli/_C*.so $(STAMP) $(STAMP312)
