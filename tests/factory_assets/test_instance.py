"""The code location on real instances: `dagster definitions validate` as a subprocess, and Dagster
instances on the machine's Postgres: one configured by dagster.yaml's documented storage block, one
loaded from deploy/dagster/dagster.yaml itself (the cloud file, TLS overridden by PGSSLMODE only)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from dagster import (
    AssetSelection,
    Definitions,
    evaluate_automation_conditions,
    instance_for_test,
    materialize,
)

from factory_assets.definitions import ASSETS
from factory_assets.production.assets import PRODUCTIONS_KEY
from factory_assets.raw.partitions import line_day_key
from factory_assets.resources import LocalObjectStoreResource, WarehouseResource
from factory_core.store import LocalDirStore
from tests.support.assets import DAY, LINE

REPO = Path(__file__).resolve().parents[2]
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"

# Shared fixtures (pytest finds fixtures by module attribute).


def test_definitions_validate_subprocess(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    exe = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(exe), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def _documented_postgres_storage() -> dict[str, Any]:
    """The commented `storage:` block of dagster.yaml, uncommented and parsed."""
    lines = (REPO / "dagster.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "# storage:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#") or not line[1:].strip():
            break
        block.append(line[2:])
    return yaml.safe_load("\n".join(block))


@pytest.fixture
def pg_schema() -> Iterator[str]:
    schema = f"dagster_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine(PG_URL)
    with eng.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield schema
    with eng.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    eng.dispose()


def test_postgres_instance_from_documented_config(
    local_store: LocalDirStore, tmp_path: Path, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = _documented_postgres_storage()
    assert set(storage["storage"]["postgres"]["postgres_db"]) >= {
        "hostname",
        "username",
        "password",
        "db_name",
    }
    for var, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USERNAME": "postgres",
                       "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": "test"}.items():  # fmt: skip
        monkeypatch.setenv(var, value)
    # Same block, isolated in a throwaway schema so parallel test runs never share tables.
    storage["storage"]["postgres"]["postgres_db"]["params"] = {"options": f"-csearch_path={pg_schema}"}
    resources = {
        "object_store": LocalObjectStoreResource(root=str(local_store.root)),
        "warehouse": WarehouseResource(url=PG_URL, db_schema=f"{pg_schema}_wh"),
    }
    try:
        with instance_for_test(overrides=storage) as instance:
            assert "Postgres" in type(instance.run_storage).__name__
            result = materialize(
                ASSETS, selection="production/productions*", partition_key=line_day_key(LINE, DAY),
                resources=resources, instance=instance,
            )  # fmt: skip
            assert result.success
            records = instance.fetch_materializations(PRODUCTIONS_KEY, limit=5).records
            assert len(records) == 1
            defs = Definitions(assets=ASSETS, resources=resources)
            res = evaluate_automation_conditions(
                defs, instance, asset_selection=AssetSelection.assets(PRODUCTIONS_KEY)
            )
            assert res.total_requested == 0
        eng = sa.create_engine(PG_URL)
        with eng.begin() as conn:
            tables = conn.execute(
                sa.text("select count(*) from information_schema.tables where table_schema = :s"),
                {"s": pg_schema},
            ).scalar()
        eng.dispose()
        assert tables and tables > 5  # Dagster's run/event/schedule tables live in the throwaway schema
    finally:
        eng = sa.create_engine(PG_URL)
        with eng.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{pg_schema}_wh" CASCADE'))
        eng.dispose()


DEPLOY_YAML = REPO / "deploy" / "dagster" / "dagster.yaml"


def test_the_two_instance_files_read_one_set_of_postgres_env_names() -> None:
    cloud = yaml.safe_load(DEPLOY_YAML.read_text())["storage"]["postgres"]["postgres_db"]
    local = _documented_postgres_storage()["storage"]["postgres"]["postgres_db"]
    env_names = {k: v["env"] for k, v in cloud.items() if isinstance(v, dict)}
    assert env_names == {k: v["env"] for k, v in local.items() if isinstance(v, dict)}
    assert set(env_names.values()) == {
        f"DAGSTER_PG_{n}" for n in ("HOST", "PORT", "DB", "USERNAME", "PASSWORD")
    }
    assert cloud["scheme"] == local["scheme"] == "postgresql+psycopg2"
    doc = (REPO / "docs" / "configuration.md").read_text()
    assert all(f"`{name}`" in doc for name in env_names.values())
    assert "PGSSLMODE=require" in (REPO / "deploy" / "docker" / "Dockerfile.dagster").read_text()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh database on the machine's Postgres, dropped afterwards."""
    name = f"dagster_{uuid.uuid4().hex[:10]}"
    eng = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield name
    with eng.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


def test_the_cloud_instance_file_itself_runs_on_postgres(
    local_store: LocalDirStore, tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/dagster/dagster.yaml, not a copy: DAGSTER_HOME holds a symlink to it; only env differs."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(DEPLOY_YAML)
    env = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USERNAME": "postgres",
           "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": pg_database, "PGSSLMODE": "disable",
           "DAGSTER_ECS_CLUSTER": "test", "DAGSTER_ECS_RUN_TASK_DEFINITION": "test-run",
           "DAGSTER_COMPUTE_LOG_BUCKET": "test-logs", "AWS_REGION": "us-east-1"}  # fmt: skip
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    resources = {
        "object_store": LocalObjectStoreResource(root=str(local_store.root)),
        "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path}/wh.db"),
    }
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = materialize(
            ASSETS, selection="production/productions", partition_key=line_day_key(LINE, DAY),
            resources=resources, instance=instance,
        )  # fmt: skip
        assert result.success
        records = instance.fetch_materializations(PRODUCTIONS_KEY, limit=5).records
        assert len(records) == 1 and records[0].asset_materialization is not None
        assert records[0].asset_materialization.metadata["day_complete"].value is True
    eng = sa.create_engine(PG_URL.rsplit("/", 1)[0] + f"/{pg_database}")
    with eng.connect() as conn:
        runs = conn.execute(sa.text("select count(*) from runs")).scalar()
    eng.dispose()
    assert runs == 1
