"""The demo hands the raw-objects sensor over to the daemon of `make up`: its cursor, and RUNNING.

Real `dagster` CLI subprocesses on a throwaway DAGSTER_HOME (the demo's own dagster.yaml)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._core.scheduler.instigation import InstigatorStatus

from factory_sim.demo.pipeline import RAW_SENSOR, hand_cursor_to_daemon

REPO = Path(__file__).resolve().parents[2]


def _sensor_state(home: Path) -> tuple[InstigatorStatus, str | None]:
    with DagsterInstance.from_config(str(home)) as instance:
        states = [s for s in instance.all_instigator_state() if s.name == RAW_SENSOR]
    assert len(states) == 1
    return states[0].status, states[0].instigator_data.cursor  # type: ignore[union-attr]


def test_handing_the_cursor_over_leaves_the_raw_sensor_running_with_that_cursor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("FACTORY_STORE_URL", str(tmp_path / "objects"))
    monkeypatch.setenv("FACTORY_WAREHOUSE_URL", f"sqlite:///{tmp_path}/wh.db")
    hand_cursor_to_daemon('{"after": "raw/line=L1/date=2026-03-02/hour=07/x.fsr"}')
    status, cursor = _sensor_state(home)
    assert status == InstigatorStatus.RUNNING
    assert cursor == '{"after": "raw/line=L1/date=2026-03-02/hour=07/x.fsr"}'
