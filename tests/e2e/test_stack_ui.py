"""The data team's path on a real stack, in a browser: `make up` on the demo's data, live data reaching the
production table, a backfill clicked in the UI, per-partition row counts against the Parquet files, the
model page with its checks, and `make down` leaving nothing behind.

The stack is exactly what a new user gets: `make up` with free ports (UI_PORT, API_PORT, SENSOR_PORT,
METRICS_PORT) in the clone on which the session's `make demo` ran (tests/e2e/conftest.py; shared with
test_demo.py, so the demo runs once per session): the simulated sensor system in real time, the edge
collector, the inference server, Dagster's webserver and daemon on the demo's instance. Headless Chromium
drives the UI the way a person does; GraphQL is only read to learn what the UI did (backfill state, event
metadata), never to act. The tests run in file order: each step is the data team's next one. (This module
sorts after test_demo.py, so the demo's own checks see its output before `make up` adds live data.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from factory_assets.raw.manifest import read_manifest
from factory_core.layout import RAW_PREFIX, parse_key, processed_key
from factory_core.store import LocalDirStore
from factory_sim.demo.services import free_port
from tests.support.browser import require_chromium, screenshot, visible_text
from tests.support.dagster_live import LiveDagster, LiveDagsterError, wait_for
from tests.support.demo import DemoRun

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

LINE = "L1"
RAW_KEY = ["raw", "raw_sensor_data"]
PRODUCTIONS_KEY = ["production", "productions"]
MODEL_KEY = ["model", "quality_model"]
RAW_SENSOR = "raw_objects_sensor"
LIVE_BUDGET_S = 120.0  # object written by the live collector -> its production partition refreshed
BACKFILL_TIMEOUT_S = 600.0


@dataclass
class Stack:
    """`make up` in the demo's clone: where it runs, its ports, what it printed, what it started."""

    clone: Path
    env: dict[str, str]
    ports: dict[str, int]
    up: subprocess.CompletedProcess[str]
    dagster: LiveDagster
    pids: dict[str, int] = field(default_factory=dict)
    found: dict[str, Any] = field(default_factory=dict)  # what one step hands to the next

    @property
    def var(self) -> Path:
        return self.clone / "var"

    @property
    def store(self) -> LocalDirStore:
        return LocalDirStore(self.var / "objects")

    def make(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", *args], cwd=self.clone, env=self.env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)  # fmt: skip


class StackDagster(LiveDagster):
    """GraphQL helpers of tests/support/dagster_live.py pointed at the stack's webserver (not started by
    them): liveness is the stack's pid files, logs are its var/logs/dagster-*.log."""

    def _check_alive(self, name: str) -> None:
        pidfile = self.root / "run" / f"dagster-{'daemon' if name == 'daemon' else 'webserver'}.pid"
        if not pidfile.exists() or not _alive(int(pidfile.read_text())):
            raise LiveDagsterError(f"{pidfile.stem} is not running:\n{self.logs(name)}")

    def logs(self, name: str, tail: int = 4000) -> str:
        path = self.root / "logs" / f"dagster-{'daemon' if name == 'daemon' else 'webserver'}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _processes_under(path: Path) -> dict[int, str]:
    """Live processes whose command line names `path` (every service of the stack runs the clone's .venv)."""
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline and _alive(int(proc.name)):
            found[int(proc.name)] = cmdline[:200]
    return found


def _raw_keys(store: LocalDirStore) -> set[str]:
    return set(store.list(f"{RAW_PREFIX}line={LINE}/"))


@pytest.fixture(scope="module")
def stack(demo_run: DemoRun) -> Iterator[Stack]:
    """`make up` with free ports on the demo's data; `make down` (and a sweep of anything left) after."""
    require_chromium()
    clone = demo_run.clone
    ports = {"UI_PORT": free_port(), "API_PORT": free_port(), "SENSOR_PORT": free_port(),
             "METRICS_PORT": free_port()}  # fmt: skip
    dagster = StackDagster(root=clone / "var", port=ports["UI_PORT"])
    stack = Stack(clone, demo_run.env, ports, None, dagster)  # type: ignore[arg-type]
    try:
        stack.up = stack.make("up", *(f"{k}={v}" for k, v in ports.items()))
        stack.pids = {p.stem: int(p.read_text()) for p in (clone / "var" / "run").glob("*.pid")}
        yield stack
    finally:
        stack.make("down", timeout_s=120)
        for pid in _processes_under(clone):  # only processes of this test's clone: ours
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------- GraphQL reads

MATERIALIZATIONS_QUERY = """
query Materializations($key: AssetKeyInput!, $partitions: [String!], $limit: Int) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(partitions: $partitions, limit: $limit) {
        partition runId timestamp
        metadataEntries {
          label
          ... on PathMetadataEntry { path }
          ... on IntMetadataEntry { intValue }
        }
      }
    }
  }
}
"""

RUN_QUERY = """
query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status creationTime startTime } } }
"""

BACKFILLS_QUERY = """
query { partitionBackfillsOrError(limit: 20) { ... on PartitionBackfills { results { id } } } }
"""

CHECKS_QUERY = """
query Checks($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks { name executionForLatestMaterialization { status evaluation { success severity } } }
        }
      }
    }
  }
}
"""


def materializations(stack: Stack, key: list[str], partition: str, limit: int = 50) -> list[dict[str, Any]]:
    """Events of one partition, newest first, each with its metadata as {label: value}."""
    variables = {"key": {"path": key}, "partitions": [partition], "limit": limit}
    data = stack.dagster.graphql(MATERIALIZATIONS_QUERY, variables)["assetOrError"]
    assert data["__typename"] == "Asset", data
    out = []
    for m in data["assetMaterializations"]:
        meta = {e["label"]: e.get("path", e.get("intValue")) for e in m["metadataEntries"]}
        out.append({"run_id": m["runId"], "timestamp": int(m["timestamp"]) / 1000, "metadata": meta})
    return out


def run_start(stack: Stack, run_id: str) -> float | None:
    run = stack.dagster.graphql(RUN_QUERY, {"id": run_id})["runOrError"]
    return run.get("startTime")


def parquet_rows(stack: Stack, partition: str) -> int:
    date, line = partition.split("|")
    return pl.read_parquet(io.BytesIO(stack.store.get(processed_key(line, date)))).height


# ------------------------------------------------------------------------------------------------- the path


def test_make_up_starts_the_stack_and_prints_every_address(stack: Stack) -> None:
    out = stack.up.stdout + stack.up.stderr
    assert stack.up.returncode == 0, out[-4000:]
    p = stack.ports
    for address in (f"http://127.0.0.1:{p['UI_PORT']}", f"http://127.0.0.1:{p['API_PORT']}/docs",
                    f"127.0.0.1:{p['SENSOR_PORT']}", f"http://127.0.0.1:{p['METRICS_PORT']}/metrics"):  # fmt: skip
        assert address in out, address
    assert set(stack.pids) == {"sensor", "collector", "inference", "dagster-webserver", "dagster-daemon"}
    assert all(_alive(pid) for pid in stack.pids.values()), stack.pids


def test_the_raw_sensor_is_running_after_make_up(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    assert stack.dagster.sensor(RAW_SENSOR)["sensorState"]["status"] == "RUNNING"
    # The daemon ticks it (every 30 s) from the start: no "Sensor has never run" once the daemon is up.
    wait_for(
        "the raw sensor's first tick", lambda: stack.dagster.sensor(RAW_SENSOR)["sensorState"]["ticks"], 90
    )
    page.goto(f"{stack.dagster.url}/locations/factory_assets/sensors/{RAW_SENSOR}")
    expect(visible_text(page, "Running").first).to_be_visible()
    expect(page.get_by_role("checkbox").first).to_be_checked()  # the sensor's on/off toggle
    expect(page.get_by_text("Sensor has never run")).to_have_count(0)
    screenshot(page, "stack-raw-sensor.png")


def test_a_live_object_is_recorded_and_its_production_partition_refreshed_within_two_minutes(
    stack: Stack,
) -> None:
    # An object the live collector of `make up` writes from now on (it uploads one per group per poll,
    # every 60 s); it landed when its file was written.
    before = _raw_keys(stack.store)

    def new_object() -> tuple[str, float] | None:
        fresh = sorted(_raw_keys(stack.store) - before)
        return (fresh[0], (stack.store.root / fresh[0]).stat().st_mtime) if fresh else None

    key, landed = wait_for("an object from the live collector", new_object, timeout_s=180, interval_s=1.0)
    info = parse_key(key)
    partition = f"{info.date.isoformat()}|{LINE}"

    def recorded() -> float | None:
        # one event per partition and tick; its manifest lists the objects that tick recorded
        for event in materializations(stack, RAW_KEY, partition):
            manifest = event["metadata"].get("manifest")
            if manifest and any(o["key"] == key for o in read_manifest(stack.store, manifest)["objects"]):
                return event["timestamp"]
        return None

    recorded_at = wait_for(f"{key} recorded by {RAW_SENSOR}", recorded, timeout_s=LIVE_BUDGET_S)

    def refreshed() -> dict[str, Any] | None:
        for event in materializations(stack, PRODUCTIONS_KEY, partition, limit=5):
            started = run_start(stack, event["run_id"])
            if started is not None and started >= landed:  # the run read the store after the object landed
                return event
        return None

    # Waited for past the budget, so a slow refresh reports how slow it was instead of a bare timeout.
    event = wait_for(f"{partition} of productions refreshed", refreshed, timeout_s=2 * LIVE_BUDGET_S)
    elapsed = event["timestamp"] - landed
    stack.found["live"] = {"key": key, "recorded_s": recorded_at - landed, "refreshed_s": elapsed}
    print(
        f"live object {key}: recorded after {recorded_at - landed:.0f} s, production refreshed after {elapsed:.0f} s"
    )
    assert elapsed <= LIVE_BUDGET_S, f"{partition} refreshed {elapsed:.0f} s after {key} landed"


def test_a_backfill_launched_by_clicking_in_the_ui_completes(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    before = {b["id"] for b in stack.dagster.graphql(BACKFILLS_QUERY)["partitionBackfillsOrError"]["results"]}
    page.goto(f"{stack.dagster.url}/assets/{'/'.join(PRODUCTIONS_KEY)}?view=partitions")
    page.locator("button", has_text="Materialize…").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Launch runs to materialize")).to_be_visible()
    # Every day of the demo (its history, and today with the live data) on the line: the two "All"
    # buttons of the partition selection, date then line.
    everything = dialog.get_by_role("button", name="All", exact=True)
    expect(everything).to_have_count(2)
    everything.nth(0).click()
    everything.nth(1).click()
    days = _demo_days(stack)
    expect(dialog.get_by_text(f"{len(days)} partitions")).to_be_visible()
    screenshot(page, "stack-backfill-dialog.png")
    dialog.get_by_role("button", name="Launch backfill").click()
    created = page.get_by_text(re.compile(r"^Created backfill \w+$"))
    expect(created).to_be_visible()
    backfill_id = created.inner_text().split()[-1]
    assert backfill_id not in before
    state = stack.dagster.wait_backfill_done(backfill_id, timeout_s=BACKFILL_TIMEOUT_S)
    assert state["status"] == "COMPLETED_SUCCESS", state
    assert state["numPartitions"] == len(days)
    page.goto(f"{stack.dagster.url}/runs/b/{backfill_id}")
    expect(visible_text(page, "Succeeded").first).to_be_visible()
    expect(page.get_by_text("100% completed")).to_be_visible()
    screenshot(page, "stack-backfill-completed.png")
    stack.found["backfill"] = {"id": backfill_id, "runs": {r["id"] for r in state["runs"]},
                               "partitions": [f"{d}|{LINE}" for d in days]}  # fmt: skip


def _demo_days(stack: Stack) -> list[str]:
    """The demo's partitions: FACTORY_START_DATE (in its factory.env.json) through today."""
    import json

    start = dt.date.fromisoformat(
        json.loads((stack.var / "factory.env.json").read_text())["FACTORY_START_DATE"]
    )
    today = dt.datetime.now(dt.UTC).date()
    return [(start + dt.timedelta(days=k)).isoformat() for k in range((today - start).days + 1)]


def test_each_partition_records_its_own_row_count_equal_to_its_parquet_rows(stack: Stack) -> None:
    backfill = stack.found.get("backfill")
    assert backfill, "the backfill step did not complete"
    counts = {}
    for partition in backfill["partitions"]:
        events = materializations(stack, PRODUCTIONS_KEY, partition)
        ours = [e for e in events if e["run_id"] in backfill["runs"]]
        assert len(ours) == 1, (partition, ours)  # one event per partition, even in a ranged run
        counts[partition] = ours[0]["metadata"]["dagster/row_count"]

        # The latest event against the file as it is now (the live automation may rewrite today's
        # partition meanwhile: read event, file, event until both events are the same).
        recorded, rows = wait_for(
            f"a stable read of {partition}",
            lambda p=partition: _latest_count_and_rows(stack, p),
            timeout_s=120,
        )
        assert recorded == rows, f"{partition}: dagster/row_count {recorded}, Parquet {rows} rows"
    # The backfill's own figure equals the file for the days nothing rewrote since: the history's first
    # day (the intraday automation touches only yesterday and today).
    first = backfill["partitions"][0]
    assert counts[first] == parquet_rows(stack, first)
    assert counts[first] != sum(counts.values())  # not the range's total (defect 2)
    stack.found["row_counts"] = counts
    print(f"per-partition row counts of backfill {backfill['id']}: {counts}")


def _latest_count_and_rows(stack: Stack, partition: str) -> tuple[int, int] | None:
    """(row_count of the latest event, rows of the file) when no event landed while the file was read."""
    first = materializations(stack, PRODUCTIONS_KEY, partition, limit=1)[0]
    rows = parquet_rows(stack, partition)
    again = materializations(stack, PRODUCTIONS_KEY, partition, limit=1)[0]
    same = first["run_id"] == again["run_id"] and first["timestamp"] == again["timestamp"]
    return (first["metadata"]["dagster/row_count"], rows) if same else None


def test_the_production_overview_plots_each_partition_s_figures_and_shows_freshness_and_code(
    stack: Stack, page: Any
) -> None:
    """Numeric per-partition metadata is plotted by the UI itself (Metadata > Plots, one point per
    partition), not only behind "Show Markdown"; the freshness policy and the source link sit beside it."""
    from playwright.sync_api import expect

    page.goto(f"{stack.dagster.url}/assets/{'/'.join(PRODUCTIONS_KEY)}?view=overview")
    expect(visible_text(page, "Freshness policy").first).to_be_visible()
    expect(page.get_by_role("link", name=re.compile(r"^Open assets\.py"))).to_be_visible()
    plots = visible_text(page, "Plots").first
    plots.scroll_into_view_if_needed()
    plots.click()
    for figure in ("dagster/row_count", "quality_mean"):
        expect(visible_text(page, figure).first).to_be_visible()
    expect(page.locator("canvas").first).to_be_visible()  # the charts themselves (drawn, not text)
    visible_text(page, "dagster/row_count").first.scroll_into_view_if_needed()
    screenshot(page, "stack-production-plots.png")


def test_the_model_page_shows_its_checks_with_their_verdicts(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    node = stack.dagster.graphql(CHECKS_QUERY, {"key": {"path": MODEL_KEY}})["assetNodeOrError"]
    checks = {c["name"]: c["executionForLatestMaterialization"] for c in node["assetChecksOrError"]["checks"]}
    assert set(checks) == {"model_artefact_verifies", "model_beats_best_craftsman"}
    assert checks["model_artefact_verifies"]["status"] == "SUCCEEDED", checks
    assert all(c is not None for c in checks.values()), checks  # every check judged the latest version
    page.goto(f"{stack.dagster.url}/assets/{'/'.join(MODEL_KEY)}?view=checks")
    expect(page.get_by_text("Checks (2)")).to_be_visible()
    for name in checks:
        expect(visible_text(page, name).first).to_be_visible()
    expect(visible_text(page, "Passed").first).to_be_visible()
    expect(visible_text(page, "Not Evaluated")).to_have_count(0)
    screenshot(page, "stack-model-checks.png")


def test_make_down_stops_every_process_of_the_stack(stack: Stack) -> None:
    down = stack.make("down", timeout_s=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not list((stack.var / "run").glob("*.pid"))
    # Code servers and run workers are children of the daemon and webserver: none may outlive `make down`.
    assert _processes_under(stack.clone) == {}
    assert not any(_alive(pid) for pid in stack.pids.values())
