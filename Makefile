# cxrlens — the README names `make demo` and `make test`; the rest are for developers.
# `make install` creates .venv with the system python3 and installs the package editable with [dev].
# It is idempotent: the stamp file is newer than pyproject.toml once installed, so a second call returns at once.
#
# TORCH picks the PyTorch build of a new venv:
#   (unset)        pip's default from PyPI; on Linux that is the CUDA build (~5.2 GiB of torch, nvidia-*, triton)
#   TORCH=cpu      torch + torchvision from the CPU-only wheel index first (torch ~0.75 GiB), then the project
#   TORCH=<URL>    the same from any PyTorch wheel index, e.g. https://download.pytorch.org/whl/cu126
# The stamp records the build. Unset TORCH keeps whatever the venv has; a TORCH that differs from the record stops
# with what to do, since pip cannot swap the build in place (the CUDA libraries would stay): `make clean` first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cxrlens-installed
TORCH  ?=
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
ifneq ($(TORCH),)
  ifeq ($(filter cpu http://% https://%,$(TORCH)),)
    $(error TORCH must be unset, 'cpu' or a wheel index URL (https://download.pytorch.org/whl/...), got '$(TORCH)')
  endif
endif
# The torch build to install: "pypi" (pip's default) or an index URL. Unset TORCH means the one the stamp records
# (an empty stamp, from before TORCH existed, means pypi), unless `clean` is among the goals.
TORCH_WANTED   := $(if $(filter cpu,$(TORCH)),$(TORCH_CPU_INDEX),$(TORCH))
TORCH_RECORDED := $(if $(filter clean,$(MAKECMDGOALS)),,$(if $(wildcard $(STAMP)),$(shell cat $(STAMP)),))
TORCH_BUILD    := $(or $(TORCH_WANTED),$(TORCH_RECORDED),pypi)
ifneq ($(and $(TORCH_WANTED),$(wildcard $(STAMP))),)
  ifneq ($(TORCH_BUILD),$(or $(TORCH_RECORDED),pypi))
    ifeq ($(filter clean,$(MAKECMDGOALS)),)
      $(error $(VENV) has torch from $(or $(TORCH_RECORDED),pypi), TORCH=$(TORCH) asks for $(TORCH_BUILD); pip \
        cannot swap the build in place: run `make clean` and then `make install TORCH=$(TORCH)`)
    endif
  endif
endif
# Debian packages some tests need: chromium for the viewer's browser tests (tests/viewer, driven by Playwright; no
# browser is downloaded). Installed only when running as root with apt-get present; elsewhere those tests skip.
APT_PACKAGES ?= chromium

.PHONY: install demo test bench lint format clean

# With a TORCH index, torch/torchvision come from it first and are then pinned (constraints file) for the project
# install: otherwise a dependency asking for another torchvision would pull PyPI's CUDA torch back in.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
ifeq ($(TORCH_BUILD),pypi)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
else
	$(BIN)/python -m pip install --quiet torch torchvision --index-url $(TORCH_BUILD)
	$(BIN)/python -m pip list --format=freeze | grep -iE '^(torch|torchvision)==' > $(VENV)/torch-constraints.txt
	$(BIN)/python -m pip install --quiet -e '.[dev]' --constraint $(VENV)/torch-constraints.txt
endif
	@if [ -n "$(APT_PACKAGES)" ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); fi
	@echo '$(TORCH_BUILD)' > $(STAMP)

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
