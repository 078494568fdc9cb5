# cxrlens — the README names `make demo` and `make test`; the rest are for developers.
# `make install` creates .venv with the system python3 and installs the package editable with [dev].
# It is idempotent: a stamp file records the hash of pyproject.toml, so a second call returns at once.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cxrlens-installed
# Debian packages some tests need (none yet); installed only when running as root with apt-get present.
APT_PACKAGES ?=

.PHONY: install demo test bench lint format clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@if [ -n "$(APT_PACKAGES)" ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq $(APT_PACKAGES); fi
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cxrlens demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
