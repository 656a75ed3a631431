# Two commands on a fresh machine: `make run` (the whole system, embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Bytecode is cached, whatever the shell says: with PYTHONDONTWRITEBYTECODE set (as on this
# project's CI machines), every Python process the tests start compiled Django from source, and
# every pytest-xdist worker rewrote the assertions of ~350 modules again (a pytest worker's
# start and collection: 19 s of CPU, 10 s with the cache). The cache lives in the venv, not
# beside the sources, so the tree stays clean.
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX ?= $(abspath $(VENV))/pycache
# The test suite runs against PostgreSQL and Redis; override either to use other servers.
# The tests empty their Redis database between tests (FLUSHDB): a database number of its own
# (15) keeps whatever else uses Redis database 0 on this machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/appserver
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) APP_ENV=local
# pytest-xdist workers: each gets its own test database and cache key prefix (tests/settings.py).
# Many tests wait on real HTTP, timeouts and a browser, so more workers than cores pays.
TEST_WORKERS ?= 4

.PHONY: install test lint format migrate check-services run demo fleet collectstatic webclient-assets bench

# Re-installs only when a requirements file changes. uv installs the same pins as pip in a
# fraction of the time (a fresh clone's install: 55 s with pip, 11 s this way, both from a warm
# cache); the venv is made without pip and uv puts pip in with the rest. Where uv cannot reach
# an index that pip's own configuration can, pip does it all. --no-compile: bytecode is written
# for the modules imported, not up front for every package.
UV_VERSION := 0.13.9
PIP_QUIET := --quiet --disable-pip-version-check --no-compile
$(VENV)/.installed: requirements/base.txt requirements/dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	@echo "Installing requirements/dev.txt into $(VENV) ..."
	@test -x $(BIN)/uv || $(PYTHON) -m pip --python $(BIN)/python install $(PIP_QUIET) \
		uv==$(UV_VERSION) 2>/dev/null || true
	@{ test -x $(BIN)/uv && $(BIN)/uv pip install --quiet --python $(BIN)/python \
		pip -r requirements/dev.txt; } || \
		{ $(BIN)/python -m ensurepip --upgrade >/dev/null && \
		$(BIN)/python -m pip install $(PIP_QUIET) -r requirements/dev.txt; }
	@touch $@

install: $(VENV)/.installed

check-services: install
	@$(TEST_ENV) $(BIN)/python scripts/check_services.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install check-services lint
	$(TEST_ENV) $(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

migrate: install
	$(BIN)/python manage.py migrate

# The whole system on the embedded default (SQLite, local-memory cache, the emulator): migrates,
# creates the demo user and an admin, starts the emulator and the app server. Ctrl-C stops both.
run: install
	@$(BIN)/python scripts/run_local.py

# The production layout on this machine: two instances behind HAProxy, PostgreSQL and its
# replica, Redis and the emulator, all its own on free ports (scripts/fleet.py). Ctrl-C stops all.
fleet: install
	@$(BIN)/python scripts/fleet.py

# The mobile app's flow with oss2 against `make run` (start it in another terminal first).
demo: install
	@$(BIN)/python scripts/demo_client.py $(DEMO_ARGS)

collectstatic: install
	$(BIN)/python manage.py collectstatic --noinput

# Re-bundle ali-oss from the npm registry into webclient/static (the bundle is committed).
webclient-assets:
	cd webclient && npm ci --no-audit --no-fund && npm run build

# Benchmarks, on PostgreSQL and Redis (each bench makes its own databases from BENCH_DATABASE_URL
# and its own Redis key prefix). First bench/framework_bench.py: the hot endpoints beside a
# minimal DRF + simplejwt service (bench/anchor/) in the same wrk run; then the others.
# `make bench BENCHES=framework` runs one; BENCH_ARGS goes to each bench run, so with several
# only options they all take (`make bench BENCHES=framework BENCH_ARGS="--rounds 1"`).
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/appserver_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/14
BENCHES ?= framework credentials uploads imaging sweep emulator reports fleet
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

bench: install
	@command -v wrk >/dev/null || { echo "Installing wrk (Debian's package) ..."; \
		$(SUDO) apt-get install -y wrk >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y wrk >/dev/null; }; }
	@for name in $(BENCHES); do \
		echo "== bench/$${name}_bench.py (load: $$(cut -d' ' -f1-3 /proc/loadavg))"; \
		DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) \
		BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) APP_ENV=local \
		$(BIN)/python bench/$${name}_bench.py $(BENCH_ARGS) || exit 1; \
	done
