# One entry point for newcomers and CI. `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make run` installs what the gateway needs at run time; `make test` adds the test tools
# (the [dev] extra) and the system packages the tests drive for real. One stamp each, so
# changing pyproject.toml (its dependencies or extras) reinstalls.
RUN_STAMP := $(VENV)/.run-stamp
STAMP := $(VENV)/.test-stamp
# Installing with the host's pip (>= 22.3 has --python) lets the venv skip ensurepip (~10 s of CPU).
# Without a usable host pip the venv gets its own.
HOST_PIP := $(shell $(PYTHON) -c 'import pip, sys; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (22, 3))' 2>/dev/null && echo yes)
ifeq ($(HOST_PIP),yes)
VENV_ARGS := --without-pip
PIP := $(PYTHON) -m pip --python $(BIN)/python install --quiet --disable-pip-version-check
else
VENV_ARGS :=
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
endif
# The demo needs only a venv; the tests drive Gammu against the simulator, the page in Chromium,
# Prometheus/Alertmanager for real, systemd-analyze on the units and openssl for TLS certificates.
RUN_APT_PACKAGES := python3-venv
APT_PACKAGES := $(RUN_APT_PACKAGES) gammu chromium prometheus-alertmanager prometheus systemd openssl postgresql

.PHONY: run test test-fast lint bench system-deps run-system-deps venv run-venv clean

venv: $(STAMP)
run-venv: $(RUN_STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "smsgw needs Python >= 3.11"; exit 1; }
	@$(PYTHON) -m venv $(VENV_ARGS) $(VENV) || { echo "python3 -m venv failed: run 'sudo apt-get install python3-venv' (or make as root)"; exit 1; }

# --no-compile: byte-compiling every installed file is half of pip's time (phonenumbers alone has
# thousands of data modules); then only the dependencies the gateway imports are compiled, quietly
# (python-gsmmodem-new compiles with SyntaxWarnings), even under PYTHONDONTWRITEBYTECODE.
COMPILE_IMPORTED := import sys, py_compile, appliance.cli, appliance.daemon, modem.simulator; \
  [py_compile.compile(f, quiet=2) for f in {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} \
   if f.endswith(".py") and "-packages" in f]

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) --no-compile -e .
	@$(BIN)/python -W ignore -c '$(COMPILE_IMPORTED)'
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --default-pip >/dev/null  # a dev venv has its pip
	$(PIP) -e '.[dev]'
	@# What `make run` left uncompiled: pytest's warnings-as-errors would turn a SyntaxWarning met
	@# while compiling on import into a SyntaxError.
	@$(BIN)/python -W ignore -m compileall -q -j0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null
	@touch $(STAMP) $(RUN_STAMP)

# apt-get only when root and something is missing; otherwise say what to install.
define apt_ensure
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing system packages:$$missing (run: sudo apt-get install$$missing)"; fi; \
	fi
endef

system-deps:
	$(call apt_ensure,$(APT_PACKAGES))

run-system-deps:
	$(call apt_ensure,$(RUN_APT_PACKAGES))

run: run-system-deps run-venv
	./scripts/run-demo

lint: venv
	$(BIN)/ruff format --check modem appliance watchdog tests
	$(BIN)/ruff check modem appliance watchdog tests
	$(BIN)/mypy

test: system-deps venv lint
	$(BIN)/pytest -q

# Everything but the tests marked slow (fault injection, kill loops, long drains): under a minute.
test-fast: system-deps venv
	$(BIN)/pytest -q -m "not slow" -n auto  # the slow fault tests run in make test (serially, as CI does)

bench: system-deps venv
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || echo "wrk missing: sudo apt-get install wrk"
	$(BIN)/python -m tests.benchmarks

# The Ansible role applied for real to a debootstrapped Debian chroot, twice (root; scripts/deploy-test).
.PHONY: deploy-test
deploy-test: venv
	./scripts/deploy-test

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
