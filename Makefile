# School Sync developer commands. `make run` and `make test` are all a fresh machine needs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANAGE := $(BIN)/python manage.py

# Tests use PostgreSQL when it answers on localhost (as in CI) and SQLite otherwise,
# unless DATABASE_URL says which database to use.
LOCAL_POSTGRES_URL := postgres://postgres@127.0.0.1:5432/school_sync
TEST_DATABASE_URL = $(or $(DATABASE_URL),$(shell pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && echo $(LOCAL_POSTGRES_URL)))

.DEFAULT_GOAL := help
.PHONY: help install run test lint format requirements clean

help:
	@echo "make run           install, migrate, load demo data and start the web server"
	@echo "make test          install and run the whole test suite"
	@echo "make lint          ruff lint and format check"
	@echo "make format        apply ruff fixes and formatting"
	@echo "make requirements  re-pin requirements/*.txt from requirements/*.in"

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $@

install: $(STAMP)

run: install
	mkdir -p var
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(MANAGE) migrate --no-input
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(MANAGE) load_demo_data
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(MANAGE) runserver 127.0.0.1:8000

test: install
	DATABASE_URL="$(TEST_DATABASE_URL)" $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

requirements:
	uv pip compile --quiet --upgrade --python-version 3.11 requirements/base.in -o requirements/base.txt
	cd requirements && uv pip compile --quiet --upgrade --python-version 3.11 dev.in -o dev.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
