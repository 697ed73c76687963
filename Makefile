# Autonomy Gate: `make run` (demo on the embedded default) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON_VERSION := $(shell cat .python-version)
PYTHON ?= $(shell (pyenv root >/dev/null 2>&1 && ls -d $$(pyenv root)/versions/$(PYTHON_VERSION)*/bin/python 2>/dev/null | sort -V | tail -n 1) || command -v python$(PYTHON_VERSION))
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export DJANGO_SETTINGS_MODULE := escalation_app.settings

.PHONY: install install-node run test lint typecheck pytest worker clean bench-policy bench-shadow bench-queue bench-sweep bench-metrics bench bench-compare soak

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python $(PYTHON_VERSION) not found (see .python-version)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# Only for the Compose Spec JSON Schema it ships (tests/ops/test_deploy.py); its code is never run.
	$(PY) -m pip install --quiet --no-deps docker-compose==1.29.2
	touch $@

# The TypeScript client's packages, exactly as its lockfile says (its tests run in pytest).
TS_CLIENT := clients/typescript
$(TS_CLIENT)/node_modules/.package-lock.json: $(TS_CLIENT)/package.json $(TS_CLIENT)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: the TypeScript client's tests need Node 20 and npm"; exit 1; }
	npm ci --prefix $(TS_CLIENT) --no-audit --no-fund --prefer-offline

install: $(VENV)/.installed

# Only the tests need them: `make run` stays Python-only.
install-node: $(TS_CLIENT)/node_modules/.package-lock.json

## The demo: SQLite, tasks in-process, in-memory channel layer; open http://127.0.0.1:8000/review/
run: install
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py migrate --noinput
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py seed_demo
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py runserver $(HOST):$(PORT)

## The whole suite: lint, types, and pytest against PostgreSQL, Redis and a real Celery worker.
test: install lint typecheck pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy .

pytest: install install-node
	$(PY) -m pytest

## Policy evaluation benchmark (report in bench/results/policy_eval.md)
bench-policy: install
	$(PY) bench/policy_eval.py

## Shadow mode's cost on the worker's path, with and without a shadow policy (own gate_bench_shadow
## database; report in bench/results/shadow_cost.md)
bench-shadow: install
	$(PY) bench/shadow_cost.py $(ARGS)

## Queue page benchmark at 100,000 waiting actions (report in bench/results/queue_page.md)
bench-queue: install
	$(PY) bench/queue_page.py

## Threshold sweep over 1,000,000 labelled actions (own gate_bench_sweep database, kept between runs;
## `make bench-sweep ARGS=--reload` refills it). Report in bench/results/eval_sweep.md
bench-sweep: install
	$(PY) bench/eval_sweep.py $(ARGS)

## Every benchmark, one report: bench/results/report.md (machine, configuration, each figure with its
## baseline, ratio and goal; about 15-20 min). `make bench ARGS=--quick` for a short run (~6 min).
## gate_bench.py's stack runs with DJANGO_SETTINGS_MODULE=bench.settings (the baseline endpoint).
bench: install
	@command -v wrk >/dev/null 2>&1 || apt-get install -y wrk || { echo "needs Debian's wrk: apt-get install wrk"; exit 1; }
	$(PY) bench/policy_eval.py $(if $(findstring --quick,$(ARGS)),--seconds 1,)
	$(PY) bench/queue_page.py $(if $(findstring --quick,$(ARGS)),--runs 10,)
	$(PY) bench/eval_sweep.py $(if $(findstring --quick,$(ARGS)),--runs 2,)
	$(PY) bench/write_path.py $(if $(findstring --quick,$(ARGS)),--rounds 2,)
	$(PY) bench/gate_bench.py $(ARGS)

## This checkout against another commit (default: the one before issue 14), both run as the README
## says: `make bench-compare ARGS="--base REV"`. Report in bench/results/compare_commits.md
bench-compare: install
	@command -v wrk >/dev/null 2>&1 || apt-get install -y wrk || { echo "needs Debian's wrk: apt-get install wrk"; exit 1; }
	$(PY) bench/compare_commits.py $(ARGS)

## The soak of issue 7: 10 minutes at 20 proposals/s with a worker and reviewers; report in
## bench/results/soak.md (`make soak ARGS="--seconds 60"` for a shorter one). tests/ops/test_soak.py runs 30 s.
soak: install
	$(PY) bench/soak.py $(ARGS)

## /metrics and /ops/data queries on 1,000,000 actions (own gate_bench_metrics database, kept between
## runs). Report in bench/results/metrics_scrape.md
bench-metrics: install
	$(PY) bench/metrics_scrape.py $(ARGS)

## A worker for the full stack (needs DATABASE_URL and REDIS_URL).
worker: install
	$(VENV)/bin/celery -A escalation_app worker -l INFO

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
