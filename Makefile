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

.PHONY: test demo install lint typecheck layers unit lab-test lab-binaries lab-prereqs browser bench clean cold-test

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

## Headless Chromium for the report's browser test (tests/golden/test_report_browser.py):
## Debian's chromium package when no Chromium is on PATH.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "make browser: no chromium on PATH and no" \
	    "apt-get to install it: install Chromium by hand" >&2; exit 1; }; \
	  $(SUDO) apt-get install -y --no-install-recommends chromium \
	  || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }; }

## The lab network needs `ip` (iproute2) and `nft` (nftables, which kube-proxy runs);
## ai_inference's client pod runs `curl` (in the lab, on the host). On Debian as root
## what is missing is installed, else the lab says what it lacks.
## Each Go controller of a lab watches its serving certificate with one inotify instance:
## several labs side by side (make test runs up to nine) need more than the kernel's
## default 128 per user, so as root the limit is raised to LAB_INOTIFY_INSTANCES.
LAB_PACKAGES := nft:nftables curl:curl
LAB_INOTIFY_INSTANCES := 1024
lab-prereqs:
	@for pair in $(LAB_PACKAGES); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get install -y -q $$pkg || { apt-get update -q && \
	      apt-get install -y -q $$pkg; }; } >/dev/null; } || echo "kaic: the lab needs $$pkg ($$cmd)"; \
	done
	@f=/proc/sys/fs/inotify/max_user_instances; [ ! -r $$f ] || [ "$$(cat $$f)" -ge $(LAB_INOTIFY_INSTANCES) ] || \
	  { [ "$$(id -u)" = 0 ] && echo $(LAB_INOTIFY_INSTANCES) > $$f; } || \
	  echo "kaic: several labs at once need fs.inotify.max_user_instances >= $(LAB_INOTIFY_INSTANCES) (now $$(cat $$f))"

lab-test: install lab-binaries lab-prereqs
	KAIC_REQUIRE_LAB_PROGRAMS=1 $(BIN)/pytest -q -m lab tests/lab

## TEST_WORKERS=N runs the test files in N processes (pytest-xdist, a file stays in one
## process, the longest files first (tests/conftest.py LONGEST_FIRST), then in collection
## order; each keeps at most 2 extra labs up); 0: one process. The default, 2, keeps a
## 2-core machine at load 1-5 (the labs mostly wait); three processes starting labs at
## once overloaded 2 cores (lab start-ups timed out). More cores can take more.
TEST_WORKERS ?= 2
test: install lab-binaries lab-prereqs browser
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	KAIC_REQUIRE_LAB_PROGRAMS=1 KAIC_REQUIRE_BROWSER=1 \
	  $(if $(filter-out 0,$(TEST_WORKERS)),KAIC_TEST_MAX_LABS=2) \
	  $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

demo: install lab-binaries lab-prereqs
	bash scripts/demo.sh

## make test in a fresh clone of HEAD with every cache empty (Go, pip, kaic); phase times.
cold-test:
	bash scripts/cold-test.sh

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
