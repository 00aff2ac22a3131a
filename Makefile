# citypack — the two set-up commands are `make demo` and `make test`; both bootstrap .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all demo test check firmware bench soak codegen clean venv chromium

all: check test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/citypack demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not soak" $(PYTEST_ARGS)

# Debian's chromium for the dashboard's browser tests (tests/web skip, saying so, without it)
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
		&& apt-get install -y -qq chromium >/dev/null; } || echo "no chromium: tests/web will skip"

# the long fault tests (marked soak), then the fuzzers with thousands of examples each
soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak $(PYTEST_ARGS)
	CITYPACK_FUZZ_EXAMPLES=3000 $(BIN)/python -m pytest -q tests/fuzz $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/citypack codegen --check

codegen: $(STAMP)
	$(BIN)/citypack codegen

firmware: $(STAMP)
	$(BIN)/citypack firmware build

bench: $(STAMP)
	$(BIN)/citypack bench all

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
