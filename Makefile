# vsm-phoenix developer commands. Every target creates .venv when missing and installs
# what it needs, so each works from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: venv test test-pure test-native demo lint bench proofs clean

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel Cython
	$(PIP) install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# The whole suite: on the active (native when built) backend, then forced pure.
test: $(STAMP)
	$(PY) -m pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m vsm_phoenix demo

lint: $(STAMP)
	$(VENV)/bin/ruff check vsm_phoenix tests proofs bench
	$(VENV)/bin/mypy --strict vsm_phoenix

bench: $(STAMP)
	$(PY) -m bench

proofs: $(STAMP)
	$(PY) -m pytest proofs -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .hypothesis
