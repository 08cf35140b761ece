# Set-up is part of every target: a fresh machine needs only Python 3.11+ and a C++ compiler.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.stg-installed
NATIVE_SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')

.PHONY: demo test test-fast install cuda-check bench clean

demo: install
	$(BIN)/stg demo

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/stg bench all

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned, then the build tools, then stg compiled against that torch.
$(STAMP): $(BIN)/python pyproject.toml setup.py $(NATIVE_SOURCES)
	$(BIN)/python -m pip install -q --upgrade "pip>=23" "setuptools>=77" wheel ninja
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[dev]"
	$(BIN)/python -c "import stg_cli.ops as o, sys; s = o.status(); print('stg: native extension', 'loaded' if s.loaded else 'NOT loaded: ' + str(s.reason)); sys.exit(0 if s.loaded else 1)"
	touch $(STAMP)

# Compile-only check of the CUDA kernels with nvcc (no GPU, no CUDA torch needed);
# STG_CUDA_CHECK_TORCH=1 also compiles the torch-facing launchers against the venv's torch.
cuda-check:
	PYTHON="$(BIN)/python" bash csrc/cuda_check.sh

clean:
	rm -rf build stg_cli/_C*.so $(STAMP)
