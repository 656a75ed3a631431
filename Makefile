# Two commands on a fresh machine: `make run` (the whole system, embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The test suite runs against PostgreSQL and Redis; override either to use other servers.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/appserver
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) APP_ENV=local

.PHONY: install test lint format migrate check-services

# Re-installs only when a requirements file changes.
$(VENV)/.installed: requirements/base.txt requirements/dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing requirements/dev.txt into $(VENV) ..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
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
	$(TEST_ENV) $(BIN)/python manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

migrate: install
	$(BIN)/python manage.py migrate
