"""The demo's Dagster part, in-process on the persistent instance under $DAGSTER_HOME.

It does what the daemon and a backfill do, with the same definitions: evaluate the raw-objects sensor
until it has recorded every object (events reported to the instance exactly as the daemon would), hand
its cursor to the daemon (`dagster sensor cursor --set`, then `dagster sensor start`: setting a cursor on
a sensor without stored state creates that state STOPPED, overriding the sensor's default RUNNING, and
live objects would never be recorded) so `make up` continues from there, then
load the crew roster (master/crew), materialize partition ranges (one run per chunk, as BackfillPolicy
does) of the per-production table, the daily aggregates (with the day's lots) and the current quarter's
model. The UI then shows all of it.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from dagster import (
    AssetSelection,
    BetaWarning,
    DagsterInstance,
    PreviewWarning,
    materialize,
)
from tqdm import tqdm

# The definitions use beta/preview partition mappings knowingly; the demo's terminal shows progress only.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

from factory_assets.aggregates.assets import AGGREGATES_KEY  # noqa: E402
from factory_assets.definitions import ALL_ASSETS  # noqa: E402
from factory_assets.dimensions.assets import CREW_ASSET_KEY  # noqa: E402
from factory_assets.model import MODEL_CHECKS, QUALITY_MODEL_KEY  # noqa: E402
from factory_assets.model.partitions import quarter_start  # noqa: E402
from factory_assets.onboard import RecordStats, record_history  # noqa: E402
from factory_assets.production.assets import PRODUCTIONS_KEY  # noqa: E402
from factory_assets.production.completeness import reported_day  # noqa: E402
from factory_assets.raw.partitions import configured_lines, consecutive, line_day_key  # noqa: E402
from factory_assets.resources.selection import resources_from_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file: factory_sim/demo/)
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
CHUNK_DAYS = 15
RAW_SENSOR = "raw_objects_sensor"
# Runs log to the instance (the UI shows every event); the terminal shows progress bars, not debug lines.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def step(msg: str) -> None:
    """One progress line per sub-step (the stage takes minutes; silence looked like a hang)."""
    print(f"   {time.strftime('%H:%M:%S')} {msg}", flush=True)


def record_raw_objects(instance: DagsterInstance, resources: dict[str, Any]) -> tuple[int, str | None]:
    """Tick the raw-objects sensor until it finds nothing new, reporting its events like the daemon
    (`factory-onboard record`'s code); returns the objects recorded and the final cursor."""
    with tqdm(desc="recording raw objects", unit="obj") as bar:

        def progress(stats: RecordStats) -> None:
            bar.update(stats.objects - bar.n)

        stats = record_history(instance, resources["object_store"], configured_lines(), progress=progress)
    return stats.objects, stats.cursor


def _dagster(*args: str) -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), *args, "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"demo: dagster {' '.join(args[:2])} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")


def hand_cursor_to_daemon(cursor: str | None) -> None:
    """Store the sensor cursor in the instance so the daemon does not re-record what is recorded, and
    leave the sensor RUNNING so the daemon of `make up` records live objects from there."""
    if cursor is not None:
        _dagster("sensor", "cursor", RAW_SENSOR, "--set", cursor)
    _dagster("sensor", "start", RAW_SENSOR)


def materialize_days(
    instance: DagsterInstance,
    resources: dict[str, Any],
    key: Any,
    line: str,
    days: list[dt.date],
    desc: str,
) -> int:
    """Materialize `key` for the line-days in chunks of CHUNK_DAYS, one run per chunk."""
    runs = 0
    chunks = [days[i : i + CHUNK_DAYS] for i in range(0, len(days), CHUNK_DAYS)]
    bar = tqdm(total=len(days), desc=desc, unit="day")
    for chunk in chunks:
        bar.set_postfix_str(f"run {runs + 1}/{len(chunks)}: {chunk[0]}..{chunk[-1]}")
        bar.refresh()
        result = materialize(
            ALL_ASSETS,
            selection=AssetSelection.assets(key),
            resources=resources,
            instance=instance,
            run_config=QUIET,
            tags={
                RANGE_START: str(line_day_key(line, chunk[0].isoformat())),
                RANGE_END: str(line_day_key(line, chunk[-1].isoformat())),
            },
        )
        if not result.success:
            raise SystemExit(f"demo: materializing {desc} for {chunk[0]}..{chunk[-1]} failed")
        runs += 1
        bar.update(len(chunk))
    bar.close()
    return runs


def load_crew(instance: DagsterInstance, resources: dict[str, Any]) -> None:
    """Materialize master/crew: the roster the history stage wrote, as the warehouse's crew table."""
    result = materialize(
        ALL_ASSETS,
        selection=AssetSelection.assets(CREW_ASSET_KEY),
        resources=resources,
        instance=instance,
        run_config=QUIET,
    )
    if not result.success:
        raise SystemExit("demo: loading the crew roster (master/crew) failed")


def train_model(instance: DagsterInstance, resources: dict[str, Any], today: dt.date) -> dict[str, Any]:
    """Materialize the current quarter's model (quarter to date) and return what it decided."""
    partition = quarter_start(today.isoformat())
    # The model's checks run with it (as the quarterly job does): the model page shows their verdicts,
    # not "Not evaluated".
    result = materialize(
        [*ALL_ASSETS, *MODEL_CHECKS],
        selection=AssetSelection.assets(QUALITY_MODEL_KEY)
        | AssetSelection.checks_for_assets(QUALITY_MODEL_KEY),
        resources=resources,
        instance=instance,
        run_config=QUIET,
        partition_key=partition,
    )
    if not result.success:
        raise SystemExit(f"demo: training the model for quarter {partition} failed")
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    out: dict[str, Any] = {"quarter": partition}
    for name in ("version", "promoted", "reason"):
        if name in meta:
            out[name] = meta[name].value
    out["checks"] = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    return out


def run_pipeline(today: dt.date, days: int, line: str) -> dict[str, Any]:
    """Sensor → productions → aggregates → model on the persistent instance; returns a summary."""
    instance = DagsterInstance.get()
    resources = resources_from_env()
    step("recording every raw object on the instance (the raw sensor's events)")
    recorded, cursor = record_raw_objects(instance, resources)
    step("handing the raw sensor over to the daemon of `make up` (cursor, RUNNING)")
    hand_cursor_to_daemon(cursor)
    step("the crew roster into the warehouse (master/crew: names of the set_by codes)")
    load_crew(instance, resources)
    step(
        f"per-production tables, then daily aggregates, in runs of {CHUNK_DAYS} days (one line-day takes a few s)"
    )
    history_days = [today - dt.timedelta(days=d) for d in range(days, 0, -1)]
    prod_runs = materialize_days(
        instance, resources, PRODUCTIONS_KEY, line, [*history_days, today], "productions"
    )
    # aggregates only for days their production table reports complete (the asset refuses the others,
    # as the automation condition would never request them); a day left out is named with what is missing
    reports = {d: reported_day(instance, str(line_day_key(line, d.isoformat()))) for d in history_days}
    for day, report in reports.items():
        if not report.complete:
            step(f"daily aggregates wait for {day}: {report.what_is_missing()}")
    agg_runs = 0
    for segment in consecutive([d for d in history_days if reports[d].complete]):
        agg_runs += materialize_days(instance, resources, AGGREGATES_KEY, line, segment, "daily aggregates")
    step("training the quality model of the current quarter")
    model = train_model(instance, resources, today)
    return {
        "raw_objects_recorded": recorded,
        "production_runs": prod_runs,
        "aggregate_runs": agg_runs,
        "model_version": model.get("version"),
        "model": model,
    }
