# vsm-phoenix developer commands. Every target creates .venv when missing and installs
# what it needs, so each works from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Reinstall (and rebuild the Cython kernels) whenever the build inputs change.
BUILD_INPUTS := pyproject.toml setup.py $(wildcard vsm_phoenix/*/*.pyx)
STAMP  := $(VENV)/.installed-$(shell cat $(BUILD_INPUTS) | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
BENCH_ARGS ?=
FUZZ_ARGS ?=

.PHONY: mutate venv test test-pure demo lint bench proofs soak fuzz clean

$(STAMP): $(BUILD_INPUTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel Cython
	$(PIP) install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# The whole suite on the active backend (native when built), then the CRDT suite and
# the proofs' tie to the code again with the pure-Python kernels forced
# (ARCHITECTURE.md, principle 4).
test: $(STAMP)
	$(PY) -c 'import vsm_phoenix.crdt as c; print("vsm-phoenix kernel backend:", c.BACKEND)'
	$(PY) -m pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-pure

test-pure: $(STAMP)
	VSM_PHOENIX_PURE=1 $(PY) -m pytest -n 2 -p no:cacheprovider tests/crdt \
		proofs/test_lattice_models_match.py $(PYTEST_ARGS)

# Long randomized runs (sync seeds, SWIM, KV linearizability), excluded from make test.
soak: $(STAMP)
	$(PY) -m pytest -n 2 -p no:cacheprovider -m soak $(PYTEST_ARGS)

# Hand-written mutants (mutants/catalog.py) against each area's tests; kill rate per
# area. Outside make test: it edits files in place, one at a time, and restores them.
mutate: $(STAMP)
	$(PY) -m mutants.run $(MUTATE_ARGS)

# The mutation fuzzer over every decoder of outside bytes (tests/hostile/fuzz.py):
# 100,000 hostile inputs per decoder, with per-input CPU and memory against the input
# size; outside make test (about an hour). FUZZ_ARGS='--inputs 2000 --only envelope'.
fuzz: $(STAMP)
	$(PY) tests/hostile/fuzz.py $(FUZZ_ARGS)

demo: $(STAMP)
	$(PY) -m vsm_phoenix demo

lint: $(STAMP)
	$(VENV)/bin/ruff check vsm_phoenix tests proofs bench mutants
	$(VENV)/bin/mypy --strict vsm_phoenix

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

proofs: $(STAMP)
	$(PY) -m pytest proofs -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .hypothesis
