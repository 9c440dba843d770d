# Two commands on a fresh machine: `make demo` and `make test`.
# Everything installs from requirements.lock into .venv (uv for speed, pinned).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: install demo test lint fmt lock bench system-deps clean up down dev

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip sync --python $(PY) requirements.lock
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

## Debian packages the tests drive for real: Chromium for the Dagster UI test (Playwright's own browser
## download cannot work here) and docker-compose, which validates compose files client-side (no engine);
## faketime for benchmarks.bench_fleet's year (its partitions lie after today).
SYSTEM_DEPS := /usr/bin/chromium:chromium /usr/bin/chromedriver:chromium-driver /usr/bin/docker-compose:docker-compose /usr/bin/faketime:faketime
system-deps:
	@missing=""; for pair in $(SYSTEM_DEPS); do [ -x "$${pair%%:*}" ] || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml --extra assets --extra inference --extra analysis --extra dev \
	  --python-version 3.11 --generate-hashes -o requirements.lock

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(PY) -m factory_sim.demo $(DEMO_ARGS)

## Ports of `make up` (each checked before anything starts): make up UI_PORT=3001 API_PORT=8001 ...
UI_PORT ?= 3000
API_PORT ?= 8000
SENSOR_PORT ?= 5020
METRICS_PORT ?= 9108
up: $(STAMP)
	@$(PY) -m factory_sim.demo.stack up --ui-port $(UI_PORT) --inference-port $(API_PORT) \
	  --sensor-port $(SENSOR_PORT) --collector-metrics-port $(METRICS_PORT)

## `dagster dev` on the demo's instance (var/dagster_home) and settings, never a throwaway one.
dev: $(STAMP)
	@$(PY) -m factory_sim.demo.stack dev --ui-port $(UI_PORT)

down:
	@test -x $(PY) && $(PY) -m factory_sim.demo.stack down || true

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache var test-artifacts
