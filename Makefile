# One entry point for newcomers and CI. `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# System packages the tests drive for real (Gammu talks to the simulator; openssl makes TLS test certificates).
APT_PACKAGES := gammu python3-venv chromium prometheus-alertmanager prometheus systemd openssl

.PHONY: run test test-fast lint bench system-deps venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "smsgw needs Python >= 3.11"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: run 'sudo apt-get install python3-venv' (or make as root)"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# apt-get only when root and something is missing; otherwise say what to install.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing system packages:$$missing (run: sudo apt-get install$$missing)"; fi; \
	fi

run: system-deps venv
	./scripts/run-demo

lint: venv
	$(BIN)/ruff format --check modem appliance watchdog tests
	$(BIN)/ruff check modem appliance watchdog tests
	$(BIN)/mypy

test: system-deps venv lint
	$(BIN)/pytest -q

# Everything but the tests marked slow (fault injection, kill loops, long drains): under a minute.
test-fast: system-deps venv
	$(BIN)/pytest -q -m "not slow"

bench: system-deps venv
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || echo "wrk missing: sudo apt-get install wrk"
	$(BIN)/python -m tests.benchmarks

# The Ansible role applied for real to a debootstrapped Debian chroot, twice (root; scripts/deploy-test).
.PHONY: deploy-test
deploy-test: venv
	./scripts/deploy-test

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
