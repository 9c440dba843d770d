"""Backfill on demand, as the data team does it: through the webserver's GraphQL API, daemon running.

Real `dagster-webserver`, `dagster-daemon` and code server on loopback (tests/support/dagster_live.py). The raw
history comes from `factory-sim history`; the daemon's raw-objects sensor records its partitions; then the
`launchPartitionBackfill` mutation (what the UI's "Launch backfill" button sends) targets the production
table and the daily aggregates for two line-days, and the backfill is polled until it finishes. The
Parquet rows and the warehouse rows are compared with the simulator's own schedule for those days.
"""

from __future__ import annotations

import collections
import datetime as dt
import io
import sqlite3
import statistics
from collections.abc import Iterator

import polars as pl
import pytest

from factory_core.layout import processed_key
from factory_core.store import LocalDirStore
from factory_sim.config import SimConfig
from factory_sim.schedule import LineTimeline, Production
from tests.support.dagster_live import LiveDagster, live_dagster, write_history

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

LINE = "L1"
SEED = 42
FAST_HZ = 1.0
RAW_SENSOR = "raw_objects_sensor"
RAW_KEY = ["raw", "raw_sensor_data"]
PRODUCTIONS_KEY = ["production", "productions"]
AGGREGATES_KEY = ["aggregates", "daily_line_aggregates"]
# Dates relative to today: partitions must exist (the date dimension ends today) and the history must lie
# before the raw sensor's late window. Three days written; the last one only completes the second day's
# midnight-straddling production and is deliberately left out of the backfill.
TODAY = dt.datetime.now(dt.UTC).date()
HISTORY_DAYS = [TODAY - dt.timedelta(days=k) for k in (6, 5, 4)]
BACKFILL_DAYS = HISTORY_DAYS[:2]
BACKFILL_TIMEOUT_S = 240.0


def _partition(day: dt.date) -> str:
    return f"{day.isoformat()}|{LINE}"


def _truth(day: dt.date) -> list[Production]:
    """Productions the simulator scheduled to start on `day` (what the history generator wrote)."""
    t0 = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**9
    t1 = t0 + 86_400 * 10**9
    timeline = LineTimeline(SimConfig(seed=SEED, lines=(LINE,), fast_rate_hz=FAST_HZ), LINE)
    return [p for p in timeline.productions_between(t0 - 86_400 * 10**9, t1) if t0 <= p.start_ns < t1]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDagster]:
    """History written, webserver up, only the raw sensor running (automation off so that every
    production/aggregate materialization comes from the backfill), then the daemon."""
    root = tmp_path_factory.mktemp("dagster_backfill")
    start = (HISTORY_DAYS[0] - dt.timedelta(days=2)).isoformat()
    with live_dagster(root, {"FACTORY_START_DATE": start}) as live:
        write_history(live.store_dir, HISTORY_DAYS[0].isoformat(), len(HISTORY_DAYS), LINE, FAST_HZ, SEED)
        live.start_code_server()
        live.start_webserver()
        live.set_sensors({RAW_SENSOR})
        live.start_daemon()
        yield live


def _record_raw_partitions(live: LiveDagster) -> set[str]:
    expected = {_partition(d) for d in HISTORY_DAYS}
    return live.wait_materialized(RAW_KEY, expected, timeout_s=120)


def test_raw_sensor_records_the_history_partitions(deployment: LiveDagster) -> None:
    recorded = _record_raw_partitions(deployment)
    assert recorded == {_partition(d) for d in HISTORY_DAYS}
    ticks = deployment.sensor(RAW_SENSOR)["sensorState"]["ticks"]
    # Asset events without run requests: ticks end SUCCESS or SKIPPED, never FAILURE.
    assert ticks and all(t["status"] != "FAILURE" and t["error"] is None for t in ticks)


def test_graphql_backfill_materializes_productions_and_aggregates(deployment: LiveDagster) -> None:
    live = deployment
    _record_raw_partitions(live)
    partitions = [_partition(d) for d in BACKFILL_DAYS]
    backfill_id = live.launch_backfill([PRODUCTIONS_KEY, AGGREGATES_KEY], partitions, title="e2e backfill")

    state = live.wait_backfill_done(backfill_id, BACKFILL_TIMEOUT_S)
    assert state["status"] == "COMPLETED_SUCCESS", state
    assert state["error"] is None
    assert state["runs"], "the backfill launched no run"
    for run in state["runs"]:
        assert run["status"] == "SUCCESS", run
        assert {"key": "dagster/backfill", "value": backfill_id} in run["tags"]
    counts = {tuple(s["assetKey"]["path"]): s for s in state["assetBackfillData"]["assetBackfillStatuses"]}
    for key in (PRODUCTIONS_KEY, AGGREGATES_KEY):
        c = counts[tuple(key)]
        assert (c["numPartitionsTargeted"], c["numPartitionsMaterialized"], c["numPartitionsFailed"]) == (
            2,
            2,
            0,
        )
        # Exactly the requested range: the third history day stays unmaterialized.
        assert live.materialized_partitions(key) == set(partitions)

    store = LocalDirStore(live.store_dir)
    assert not store.exists(processed_key(LINE, HISTORY_DAYS[2]))
    with sqlite3.connect(live.warehouse_path) as con:
        con.row_factory = sqlite3.Row
        daily = {
            r["date"]: dict(r)
            for r in con.execute("SELECT * FROM daily_line_aggregates WHERE line = ?", (LINE,))
        }
        breakdown = [
            dict(r) for r in con.execute("SELECT * FROM daily_set_by_breakdown WHERE line = ?", (LINE,))
        ]
    assert sorted(daily) == [d.isoformat() for d in BACKFILL_DAYS]

    for day in BACKFILL_DAYS:
        truth = _truth(day)
        assert truth, f"the simulator scheduled no production on {day}"
        frame = pl.read_parquet(io.BytesIO(store.get(processed_key(LINE, day))))
        # Parquet: one row per production the generator wrote, in id order, with its setpoints' author,
        # QA score and fault.
        assert frame["production_id"].to_list() == [p.production_id for p in truth]
        assert frame["set_by_code"].to_list() == [p.set_by_code for p in truth]
        assert frame["qa_quality"].to_list() == pytest.approx([p.outcome.quality for p in truth])
        assert frame["fault_code"].to_list() == [p.fault_code for p in truth]
        # Warehouse: the day's aggregate row and the per-author breakdown agree with the same truth.
        row = daily[day.isoformat()]
        assert row["productions"] == len(truth)
        assert row["qa_count"] == len(truth)
        assert row["faults"] == sum(1 for p in truth if p.outcome.fault is not None)
        assert row["quality_mean"] == pytest.approx(statistics.fmean(p.outcome.quality for p in truth))
        parts = {b["set_by"]: b["productions"] for b in breakdown if b["date"] == day.isoformat()}
        assert parts == dict(collections.Counter(frame["set_by"].to_list()))
        assert sum(parts.values()) == len(truth)


def test_factory_onboard_backfills_productions_then_the_complete_days_aggregates_in_ranged_runs(
    deployment: LiveDagster,
) -> None:
    """The onboarding command launches the same backfills through the webserver and waits for them: the
    productions of the range, then the aggregates of its complete days, each as partition-range runs."""
    import re
    import subprocess
    import sys

    live = deployment
    _record_raw_partitions(live)
    first, last = BACKFILL_DAYS[0].isoformat(), BACKFILL_DAYS[-1].isoformat()
    proc = subprocess.run(
        [sys.executable, "-m", "factory_assets.onboard", "backfill", "--lines", LINE, "--from", first, "--to", last,
         "--webserver", live.url],
        env=live.env(), capture_output=True, text=True, timeout=BACKFILL_TIMEOUT_S * 2, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = re.findall(r"^(productions|aggregates) backfill (\S+): (\d+)", proc.stdout, re.M)
    assert [(kind, int(n)) for kind, _, n in ids] == [("productions", 2), ("aggregates", 2)]
    for _, backfill_id, _ in ids:
        state = live.backfill(backfill_id)
        assert state["status"] == "COMPLETED_SUCCESS" and state["runs"]
        for run in state["runs"]:
            tags = {t["key"]: t["value"] for t in run["tags"]}
            assert run["status"] == "SUCCESS"
            assert tags["dagster/asset_partition_range_start"] == _partition(BACKFILL_DAYS[0])
            assert tags["dagster/asset_partition_range_end"] == _partition(BACKFILL_DAYS[-1])


def test_a_backfill_shows_each_days_check_verdict_in_the_check_partitions_view(
    deployment: LiveDagster,
) -> None:
    """A productions backfill over a complete day and the last history day (no following hour: incomplete)
    runs as one partition-range run (BackfillPolicy.multi_run); GraphQL, as the check's Partitions tab reads
    it, shows the completeness check passed on the first day and failed on the second, the others passed."""
    live = deployment
    _record_raw_partitions(live)
    complete, incomplete = _partition(HISTORY_DAYS[1]), _partition(HISTORY_DAYS[2])
    backfill_id = live.launch_backfill([PRODUCTIONS_KEY], [complete, incomplete], title="check per partition")
    state = live.wait_backfill_done(backfill_id, BACKFILL_TIMEOUT_S)
    assert state["status"] == "COMPLETED_SUCCESS", state
    (run,) = state["runs"]  # both days in one ranged run
    assert run["status"] == "SUCCESS", run
    statuses = live.check_partition_statuses(PRODUCTIONS_KEY, "productions_completeness")
    assert complete in statuses["SUCCEEDED"] and incomplete not in statuses["SUCCEEDED"], statuses
    assert statuses["FAILED"] == {incomplete}, statuses
    for check in ("productions_schema", "productions_unique_ids", "raw_objects_valid"):
        statuses = live.check_partition_statuses(PRODUCTIONS_KEY, check)
        assert {complete, incomplete} <= statuses["SUCCEEDED"] and "FAILED" not in statuses, (check, statuses)
