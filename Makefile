# kaic — two set-up commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KUBE_VERSION ?= v1.36.2
export KAIC_KUBE_VERSION := $(KUBE_VERSION)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: test demo install lint typecheck layers unit lab-test lab-binaries lab-extras bench clean

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

## Build the lab's upstream binaries when missing (cached outside the repo by version).
lab-binaries:
	bash lab/build-k8s.sh $(KUBE_VERSION)
	bash lab/build-extras.sh $(KUBE_VERSION)

lab-test: install lab-binaries
	$(BIN)/pytest -q -m lab tests/lab

test: install lab-binaries
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q tests

demo: install lab-binaries
	bash scripts/demo.sh

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
