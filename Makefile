# kalshibook — operator targets. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KB := $(VENV)/bin/kalshibook
DATA := .data
DB_URL_FILE := $(DATA)/database_url
# The database URL: KALSHIBOOK_DATABASE_URL if set, else the local cluster from `make db`.
DB_URL = $${KALSHIBOOK_DATABASE_URL:-$$(cat $(DB_URL_FILE) 2>/dev/null)}
PYTEST_ARGS ?=
# `make test` runs the suite in this many pytest-xdist workers, one test file per worker at a time.
TEST_WORKERS ?= 2

.PHONY: help install db db-stop migrate collect backfill serve sim demo demo-stop test test-unit bench lint typecheck sql-user api-key psql status rebuild-extents dedupe-trades export clean

help: ## list every target
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install kalshibook with dev tools

db: ## install PostgreSQL 15 + TimescaleDB if needed, start the local cluster, print its URL
	@scripts/db.sh start

db-stop: ## stop the local cluster
	@scripts/db.sh stop

migrate: install ## upgrade the database schema to head
	@KALSHIBOOK_DATABASE_URL="$(DB_URL)" $(KB) migrate

collect: install ## run the collector daemon (needs Kalshi credentials, see .env.example)
	@KALSHIBOOK_DATABASE_URL="$(DB_URL)" $(KB) collect

backfill: install ## load history from Kalshi's REST: make backfill ARGS="--series KXHIGHNY --start 2026-01-01"
	@KALSHIBOOK_DATABASE_URL="$(DB_URL)" $(KB) backfill $(or $(ARGS),--all)

serve: install ## run the REST API
	@KALSHIBOOK_DATABASE_URL="$(DB_URL)" $(KB) serve

sim: install ## run the local Kalshi simulator in the foreground
	@$(KB) sim --port 8765 --no-auth

demo: install ## everything on this machine: DB, simulator, collector, API, a key and curl examples
	@scripts/demo.sh start

demo-stop: ## stop everything `make demo` started
	@scripts/demo.sh stop

test: install db ## run the whole test suite against a real TimescaleDB
	@$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: install ## the database-free tests only (seconds: the inner loop)
	@$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

bench: install db ## run the benchmarks and rewrite BENCHMARKS.md
	@KALSHIBOOK_DATABASE_URL="$(DB_URL)" scripts/bench.sh

lint: install ## ruff
	@$(VENV)/bin/ruff check kalshibook migrations tests bench
	@$(VENV)/bin/ruff format --check kalshibook migrations tests bench

typecheck: install ## mypy --strict
	@$(VENV)/bin/mypy

sql-user: install ## create a read-only SQL login: make sql-user NAME=alice
	@test -n "$(NAME)" || { echo "usage: make sql-user NAME=<role name>"; exit 2; }
	@KALSHIBOOK_DATABASE_URL="$(DB_URL)" $(KB) sql-user create "$(NAME)"

api-key: install ## create an API key: make api-key NAME=me CREDITS=100000
	@KALSHIBOOK_DATABASE_URL="$(DB_URL)" $(KB) keys create --name "$${NAME:-default}" --credits "$${CREDITS:-100000}"

psql: ## open psql on the database
	@psql "$(DB_URL)"

status: install ## data freshness, gaps, sizes (non-zero exit when stale)
	@KALSHIBOOK_DATABASE_URL="$(DB_URL)" $(KB) status

rebuild-extents: install ## recompute delta extents and days (and count ended days) after deltas were loaded outside the collector, and book days after snapshots were updated or deleted
	@KALSHIBOOK_DATABASE_URL="$(DB_URL)" $(KB) rebuild-extents

dedupe-trades: install ## merge trades stored twice by versions before the writer merged them
	@KALSHIBOOK_DATABASE_URL="$(DB_URL)" $(KB) dedupe-trades $(ARGS)

export: install ## bulk files: make export OUT=exports START=2026-01-15 [END=…] [ARGS='--market T --format csv']
	@$(if $(START),,$(error set START=YYYY-MM-DD))KALSHIBOOK_DATABASE_URL="$(DB_URL)" $(KB) export --out "$(or $(OUT),exports)" --start "$(START)" $(if $(END),--end $(END)) $(ARGS)

clean: db-stop ## stop the cluster and delete .data and .venv
	rm -rf $(DATA) $(VENV)
