"""The Dagster UI in a real browser: the asset graph and a partitions page show what landed.

Real `dagster-webserver` + daemon on loopback (tests/support/dagster_live.py) with two days of `factory-sim history`
recorded by the daemon's raw-objects sensor; headless Debian Chromium driven by Playwright (the `browser` and
`page` fixtures of tests/e2e/conftest.py, helpers in tests/support/browser.py). Screenshots go to
test-artifacts/ (git-ignored) so a reviewer can see what the assertions saw.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest

from factory_assets.raw.manifest import read_manifest
from factory_core.layout import date_prefix, manifest_prefix
from factory_core.store import LocalDirStore
from tests.support.browser import require_chromium, screenshot, visible_text
from tests.support.dagster_live import LiveDagster, live_dagster, write_history

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

LINE = "L1"
RAW_SENSOR = "raw_objects_sensor"
RAW_KEY = ["raw", "raw_sensor_data"]
# The graph the issue asks for: raw (sensed), production (Parquet), aggregates (warehouse).
REQUIRED_ASSETS = {
    ("raw", "raw_sensor_data"),
    ("raw", "raw_sensor_gaps"),
    ("production", "productions"),
    ("aggregates", "daily_line_aggregates"),
}
TODAY = dt.datetime.now(dt.UTC).date()
DAYS = [TODAY - dt.timedelta(days=k) for k in (5, 4)]  # before the sensor's late window, inside partitions
START = DAYS[0] - dt.timedelta(days=2)  # FACTORY_START_DATE: 8 partitions, 2 of them recorded (25 %)
ASSET_KEYS_QUERY = "query { assetNodes { assetKey { path } } }"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDagster]:
    """Webserver and daemon with the history's raw partitions recorded (automation sensors off)."""
    require_chromium()
    root = tmp_path_factory.mktemp("dagster_ui")
    with live_dagster(root, {"FACTORY_START_DATE": START.isoformat()}) as live:
        write_history(live.store_dir, DAYS[0].isoformat(), len(DAYS), LINE)
        live.start_code_server()
        live.start_webserver()
        live.set_sensors({RAW_SENSOR})
        live.start_daemon()
        live.wait_materialized(RAW_KEY, {f"{d.isoformat()}|{LINE}" for d in DAYS}, timeout_s=120)
        yield live


def test_asset_graph_shows_every_asset(deployment: LiveDagster, page: Any) -> None:
    from playwright.sync_api import expect

    served = {tuple(n["assetKey"]["path"]) for n in deployment.graphql(ASSET_KEYS_QUERY)["assetNodes"]}
    assert served >= REQUIRED_ASSETS
    page.goto(f"{deployment.url}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for group in sorted({key[0] for key in served}):
        expect(visible_text(page, group).first).to_be_visible()
    # Groups start collapsed; the graph's own shortcut (⌥E, "Expand all groups") opens them.
    page.locator("body").press("Alt+e")
    for key in sorted(served):
        expect(visible_text(page, key[-1]).first).to_be_visible()
    # Partition counts and fill on the nodes: raw has the history's days out of the configured range.
    n_partitions = (TODAY - START).days + 1  # the date dimension ends today (end_offset=1)
    expect(visible_text(page, f"{n_partitions} partitions").first).to_be_visible()
    expect(visible_text(page, f"{round(100 * len(DAYS) / n_partitions)}% filled")).to_have_count(1)
    screenshot(page, "asset-graph.png")


def test_partitions_page_shows_the_recorded_partitions(deployment: LiveDagster, page: Any) -> None:
    from playwright.sync_api import expect

    store = LocalDirStore(deployment.store_dir)
    day = DAYS[0].isoformat()
    day_keys = list(store.list(date_prefix("raw", LINE, day)))
    assert day_keys, "the history wrote no raw object"
    page.goto(f"{deployment.url}/assets/{'/'.join(RAW_KEY)}?view=partitions")
    expect(page.get_by_text(f"Materialized ({len(DAYS)})")).to_be_visible()
    # Hide the missing partitions: exactly the history's days remain, each with line L1.
    page.get_by_text("Missing (").click()
    expect(page.get_by_role("checkbox", name="Missing")).not_to_be_checked()
    expect(page.get_by_text(f"{len(DAYS)} Partitions Selected")).to_be_visible()
    for d in DAYS:
        expect(visible_text(page, d.isoformat())).to_have_count(1)
    absent = (DAYS[-1] + dt.timedelta(days=1)).isoformat()
    expect(visible_text(page, absent)).to_have_count(0)
    # One line-day: its status and its latest event, which names the manifest of the objects it recorded
    # (one event per partition and tick, not per object); the partition's manifests list every object.
    visible_text(page, day).click()
    visible_text(page, LINE).click()
    expect(visible_text(page, f"{day}|{LINE}")).to_be_visible()
    expect(visible_text(page, "Materialized")).to_be_visible()
    shown = visible_text(page, re.compile(rf"^manifests/raw/line={LINE}/date={day}/[0-9a-f]{{16}}\.json$"))
    expect(shown).to_have_count(1)
    assert store.exists(shown.inner_text().strip())
    listed = [
        o["key"]
        for m in store.list(manifest_prefix("raw", LINE, day))
        for o in read_manifest(store, m)["objects"]
    ]
    assert sorted(listed) == sorted(day_keys)
    screenshot(page, "raw-partitions.png")
