# kaic — two set-up commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# KUBE_VERSION=v1.34.3 picks the lab's Kubernetes version (default: src/kaic/lab/programs.toml).
ifdef KUBE_VERSION
export KAIC_KUBE_VERSION := $(KUBE_VERSION)
endif
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: test demo install lint typecheck layers unit lab-test lab-binaries bench clean cold-test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

layers: install
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest -q tests/unit tests/golden

## Build the lab's upstream programs when missing (src/kaic/lab/programs.toml; cached
## outside the repository in ~/.cache/kaic/build/<version>, or $KAIC_CACHE).
lab-binaries: install
	$(BIN)/kaic lab build

lab-test: install lab-binaries
	KAIC_REQUIRE_LAB_PROGRAMS=1 $(BIN)/pytest -q -m lab tests/lab

test: install lab-binaries
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	KAIC_REQUIRE_LAB_PROGRAMS=1 $(BIN)/pytest -q tests

demo: install lab-binaries
	bash scripts/demo.sh

## make test in a fresh clone of HEAD with every cache empty (Go, pip, kaic); phase times.
cold-test:
	bash scripts/cold-test.sh

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
