# School Sync developer commands. `make run` and `make test` are all a fresh machine needs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANAGE := $(BIN)/python manage.py

# Tests use the local PostgreSQL, RabbitMQ and Redis when they answer (as in CI), and
# SQLite and the filesystem broker otherwise, unless DATABASE_URL / CELERY_BROKER_URL say.
# The suite runs on RabbitMQ (or the filesystem broker); the engine tests run again on Redis.
port_open = $(shell timeout 1 bash -c '</dev/tcp/127.0.0.1/$(1)' 2>/dev/null && echo yes)
LOCAL_POSTGRES_URL := postgres://postgres@127.0.0.1:5432/school_sync
LOCAL_RABBITMQ_URL := amqp://guest:guest@127.0.0.1:5672//
LOCAL_REDIS_URL := redis://127.0.0.1:6379/15
TEST_DATABASE_URL = $(or $(DATABASE_URL),$(if $(call port_open,5432),$(LOCAL_POSTGRES_URL)))
TEST_BROKER_URL = $(or $(CELERY_BROKER_URL),$(if $(call port_open,5672),$(LOCAL_RABBITMQ_URL)))
TEST_REDIS_URL = $(if $(CELERY_BROKER_URL),,$(if $(call port_open,6379),$(LOCAL_REDIS_URL)))

.DEFAULT_GOAL := help
.PHONY: help install run test bench lint format requirements screenshots clean

help:
	@echo "make run           install, migrate, load demo data, start web, workers, beat and the simulator"
	@echo "make test          install and run the whole test suite"
	@echo "make bench         benchmarks on PostgreSQL and RabbitMQ (docs/bench/); BENCH=push|write|scheduled|lanes|imports for one"
	@echo "make lint          ruff lint and format check, mypy"
	@echo "make format        apply ruff fixes and formatting"
	@echo "make screenshots   refresh docs/screenshots from the browser test"
	@echo "make requirements  re-pin requirements/*.txt from requirements/*.in"

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $@

install: $(STAMP)

# The zero-install stack: SQLite and the filesystem broker under var/, unless the
# environment names others. honcho runs web, both workers, beat and the simulator.
run: export DJANGO_DEBUG ?= true
# With SYNC_LANES=school, four schools are delivered at once unless SYNC_WORKER_CONCURRENCY says otherwise.
run: export SYNC_WORKER_CONCURRENCY ?= $(if $(filter school,$(SYNC_LANES)),4,1)
run: install
	$(MANAGE) migrate --no-input
	$(MANAGE) load_demo_data
	@echo "Admin: http://127.0.0.1:8000/admin/  API: http://127.0.0.1:8000/api/  Docs: http://127.0.0.1:8000/api/docs/"
	@echo "Simulator (the external system): http://127.0.0.1:8001/_simulator/applied"
	$(BIN)/honcho start -f Procfile

test: install
	DATABASE_URL="$(TEST_DATABASE_URL)" CELERY_BROKER_URL="$(TEST_BROKER_URL)" $(BIN)/pytest $(PYTEST_ARGS)
ifneq ($(TEST_REDIS_URL),)
	DATABASE_URL="$(TEST_DATABASE_URL)" CELERY_BROKER_URL="$(TEST_REDIS_URL)" $(BIN)/pytest -m integration $(PYTEST_ARGS)
endif

# Benchmarks need the local PostgreSQL, RabbitMQ and Redis; they use a database of their own.
bench: install
	$(BIN)/python tests/benchmarks/run_all.py $(BENCH)

# mypy imports the settings (django-stubs), which need a secret key unless DJANGO_DEBUG is on.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=true $(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

screenshots: install
	DATABASE_URL="$(TEST_DATABASE_URL)" SCREENSHOT_DIR=docs/screenshots REQUIRE_BROWSER=1 $(BIN)/pytest -q tests/browser

requirements:
	uv pip compile --quiet --upgrade --python-version 3.11 requirements/base.in -o requirements/base.txt
	cd requirements && uv pip compile --quiet --upgrade --python-version 3.11 dev.in -o dev.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
