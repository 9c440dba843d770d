#!/usr/bin/env bash
# Re-pin the per-image locks after requirements.lock changes (run from the repo root).
# Every image lock is constrained by requirements.lock, so images run exactly the versions CI tested;
# tests/test_deploy_files.py fails when they drift apart.
set -euo pipefail
cd "$(dirname "$0")/../.."
common=(--python-version 3.11 --generate-hashes --constraint requirements.lock --no-header --quiet)
# Collector: core dependencies only (no dagster, xgboost, pandas, polars).
uv pip compile pyproject.toml "${common[@]}" -o deploy/docker/requirements-collector.lock
# Inference server: core + [inference] (FastAPI, uvicorn, and [model]: xgboost, numba, scipy, pandas).
uv pip compile pyproject.toml "${common[@]}" --extra inference -o deploy/docker/requirements-inference.lock
# Dagster code location / webserver / daemon: core + [assets] (which includes [model]).
uv pip compile pyproject.toml "${common[@]}" --extra assets -o deploy/docker/requirements-dagster.lock
