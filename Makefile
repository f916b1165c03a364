# goldsmith: the two commands are `make image` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PROFILE ?= nanoclaw-debian13
OUT ?= out

# Debian packages goldsmith needs on the build host.
HOST_PACKAGES := python3 python3-venv mmdebstrap debian-archive-keyring arch-test \
	qemu-system-x86 qemu-utils zstd e2fsprogs dosfstools fdisk util-linux \
	openssh-client libcap2-bin ca-certificates openscap-scanner apt dpkg coreutils
# bench/ holds the performance harness once it exists
LINT_PATHS := src tests $(wildcard bench)
STAMP_APT := $(VENV)/.apt-stamp
STAMP_PY := $(VENV)/.py-stamp

.PHONY: image test deps lint typecheck unit integration clean

deps: $(STAMP_APT) $(STAMP_PY)

$(STAMP_APT): Makefile
	@if [ "$$(id -u)" != 0 ]; then echo "make: run as root (apt-get, mmdebstrap, loop devices)" >&2; exit 2; fi
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(HOST_PACKAGES)
	mkdir -p $(VENV) && touch $@

$(STAMP_PY): pyproject.toml $(STAMP_APT)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

image: deps
	$(VENV)/bin/goldsmith build --profile $(PROFILE) --out $(OUT) --scan --boot-test --gate

lint: deps
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

typecheck: deps
	$(VENV)/bin/mypy

unit: deps
	$(VENV)/bin/pytest -q tests/unit

test: deps lint typecheck
	$(VENV)/bin/pytest -q --timeout=1800 --durations=25 tests

clean:
	rm -rf $(OUT) .pytest_cache .mypy_cache
