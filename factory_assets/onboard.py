"""Onboarding a factory's existing history: record it on the instance, then backfill what depends on it.

Why a command (not only the daemon's sensor): a year of ten lines is ~1 M raw objects. The sensor records
them too (one event per partition and tick, headers only), but at its 30 s interval and 5000 keys per
tick that takes a few hundred ticks; `record` runs the very same sensor code back to back in one process
with a larger per-tick budget and a progress bar, reports its events to the instance exactly as the
daemon does, and hands the cursor to the daemon (`dagster sensor cursor --set`, then `sensor start`) so
the running sensor continues from there without re-recording anything.

`backfill` then asks the webserver for the same backfill the UI's "Launch backfill" button sends
(GraphQL `launchPartitionBackfill`): the productions of every recorded day, then, once those are done,
the daily aggregates of the days their production table reports complete (the aggregates asset refuses
the others). The daemon splits each backfill into partition-range runs by the assets' BackfillPolicy
(at most 31 partitions per run) and its run queue runs `max_concurrent_runs` of them at once: locally
both cores, on ECS or Kubernetes one task per run.

    factory-onboard record --lines L1,L2 --today 2026-07-01 [--workspace workspace.yaml]
    factory-onboard backfill --lines L1,L2 --from 2025-07-01 --to 2026-06-30 --webserver http://127.0.0.1:3000

Both read DAGSTER_HOME and the FACTORY_* settings of the code location (factory_assets/resources).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RAW_SENSOR = "raw_objects_sensor"
PRODUCTIONS_PATH = ["production", "productions"]
AGGREGATES_PATH = ["aggregates", "daily_line_aggregates"]
RECORD_KEYS_PER_TICK = 20_000


@dataclass
class RecordStats:
    """What `record_history` did: ticks evaluated, objects found, events written, the final cursor."""

    ticks: int = 0
    objects: int = 0
    events: int = 0
    quarantined: int = 0
    cursor: str | None = None


def record_history(
    instance: Any,
    object_store: Any,
    lines: list[str],
    today: dt.date | None = None,
    max_keys_per_tick: int = RECORD_KEYS_PER_TICK,
    workers: int = 8,
    cursor: str | None = None,
    progress: Callable[[RecordStats], None] | None = None,
) -> RecordStats:
    """Tick the raw-objects sensor until a tick finds nothing new, reporting its events to `instance`."""
    from dagster import AssetObservation, build_sensor_context

    from factory_assets.raw.sensors import build_raw_objects_sensor

    sensor = build_raw_objects_sensor(
        lines=lines,
        max_keys_per_tick=max_keys_per_tick,
        workers=workers,
        today=(lambda: today) if today else None,
    )
    stats = RecordStats(cursor=cursor)
    while True:
        ctx = build_sensor_context(
            instance=instance, cursor=stats.cursor, resources={"object_store": object_store}
        )
        result = sensor(ctx)
        stats.ticks += 1
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
            if isinstance(event, AssetObservation):
                stats.quarantined += 1
            else:
                stats.objects += int(event.metadata["objects"].value)
        stats.events += len(result.asset_events)
        stats.cursor = result.cursor
        if progress:
            progress(stats)
        if not result.asset_events:
            return stats


def _dagster_cli(workspace: str, *args: str) -> None:
    exe = Path(sys.executable).parent / "dagster"
    proc = subprocess.run([str(exe), *args, "-w", workspace], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(
            f"factory-onboard: dagster {' '.join(args[:2])} failed:\n{(proc.stdout + proc.stderr)[-2000:]}"
        )


def hand_over(cursor: str | None, workspace: str) -> None:
    """Store the cursor on the instance's sensor state and leave the sensor RUNNING (setting a cursor on a
    sensor without stored state creates it STOPPED, overriding the sensor's default)."""
    if cursor is not None:
        _dagster_cli(workspace, "sensor", "cursor", RAW_SENSOR, "--set", cursor)
    _dagster_cli(workspace, "sensor", "start", RAW_SENSOR)


# ------------------------------------------------------------------------------------------ backfills

LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions runs { id status } error { message } }
  }
}
"""


def _graphql(webserver: str, query: str, variables: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        webserver.rstrip("/") + "/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        doc = json.loads(resp.read())
    if doc.get("errors"):
        raise SystemExit(f"factory-onboard: GraphQL error from {webserver}: {doc['errors']}")
    return doc["data"]


def partition_names(lines: list[str], first: dt.date, last: dt.date) -> list[str]:
    """'date|line' keys of every line-day in [first, last] (the MultiPartitionsDefinition's key form)."""
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    return [f"{d.isoformat()}|{line}" for line in lines for d in days]


def launch_backfill(webserver: str, asset_path: list[str], partitions: list[str], title: str) -> str:
    params = {"partitionNames": partitions, "assetSelection": [{"path": asset_path}], "fromFailure": False,
              "title": title, "tags": []}  # fmt: skip
    out = _graphql(webserver, LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    if out["__typename"] != "LaunchBackfillSuccess":
        raise SystemExit(f"factory-onboard: launchPartitionBackfill failed: {out}")
    return str(out["backfillId"])


def wait_backfill(webserver: str, backfill_id: str, poll_s: float = 5.0) -> dict[str, Any]:
    """Poll a backfill until it is no longer running; prints one progress line per change."""
    last = ""
    while True:
        state = _graphql(webserver, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        runs = state.get("runs") or []
        done = sum(1 for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED"))
        line = f"backfill {backfill_id}: {state.get('status')}, runs {done}/{len(runs)} finished"
        if line != last:
            print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
            last = line
        if state.get("status") not in ("REQUESTED", "CANCELING", "FAILING"):
            return state
        time.sleep(poll_s)


def complete_partitions(instance: Any, partitions: list[str]) -> tuple[list[str], dict[str, str]]:
    """Partitions whose production table reports the day complete, and what the others wait for."""
    from factory_assets.production.completeness import reported_days

    reports = reported_days(instance, partitions)
    done = [pk for pk in partitions if reports[pk].complete]
    waiting = {pk: reports[pk].what_is_missing() for pk in partitions if not reports[pk].complete}
    return done, waiting


# ------------------------------------------------------------------------------------------------ CLI


def _lines(text: str | None) -> list[str]:
    from factory_assets.raw.partitions import configured_lines

    return [s.strip() for s in text.split(",") if s.strip()] if text else configured_lines()


def _cmd_record(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from factory_assets.resources.selection import resources_from_env

    instance = DagsterInstance.get()
    store = resources_from_env()["object_store"]
    started = time.perf_counter()

    def progress(s: RecordStats) -> None:
        if not args.quiet:
            rate = s.objects / max(time.perf_counter() - started, 1e-9)
            print(f"{time.strftime('%H:%M:%S')} tick {s.ticks}: {s.objects} objects in {s.events} events "
                  f"({rate:.0f} objects/s), {s.quarantined} quarantined", file=sys.stderr, flush=True)  # fmt: skip

    stats = record_history(
        instance, store, _lines(args.lines), args.today, args.keys_per_tick, progress=progress
    )
    if args.workspace:
        hand_over(stats.cursor, args.workspace)
    print(json.dumps({"ticks": stats.ticks, "objects": stats.objects, "events": stats.events,
                      "quarantined": stats.quarantined, "seconds": round(time.perf_counter() - started, 1),
                      "handed_over": bool(args.workspace)}))  # fmt: skip
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    partitions = partition_names(_lines(args.lines), args.first, args.last)
    bid = launch_backfill(
        args.webserver, PRODUCTIONS_PATH, partitions, f"onboarding productions {args.first}..{args.last}"
    )
    print(f"productions backfill {bid}: {len(partitions)} partitions", flush=True)
    if args.no_wait:
        return 0
    state = wait_backfill(args.webserver, bid)
    if state.get("status") != "COMPLETED_SUCCESS":
        print(f"productions backfill ended {state.get('status')}: {state.get('error')}", file=sys.stderr)
    done, waiting = complete_partitions(DagsterInstance.get(), partitions)
    for pk, why in sorted(waiting.items()):
        print(f"daily aggregates wait for {pk}: {why}", file=sys.stderr)
    if not done:
        return 1
    agg = launch_backfill(
        args.webserver, AGGREGATES_PATH, done, f"onboarding aggregates {args.first}..{args.last}"
    )
    print(f"aggregates backfill {agg}: {len(done)} complete partitions", flush=True)
    state = wait_backfill(args.webserver, agg)
    return 0 if state.get("status") == "COMPLETED_SUCCESS" else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="factory-onboard", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="record every raw and gap object in the store on the instance")
    rec.add_argument("--lines", help="comma-separated lines (default FACTORY_LINES)")
    rec.add_argument(
        "--today", type=dt.date.fromisoformat, help="UTC date of the late window (default today)"
    )
    rec.add_argument("--keys-per-tick", type=int, default=RECORD_KEYS_PER_TICK)
    rec.add_argument("--workspace", help="workspace.yaml: hand the cursor to the daemon's sensor afterwards")
    rec.add_argument("--quiet", action="store_true", help="no per-tick progress on stderr")
    rec.set_defaults(fn=_cmd_record)
    bf = sub.add_parser("backfill", help="backfill productions, then the aggregates of complete days")
    bf.add_argument("--lines", help="comma-separated lines (default FACTORY_LINES)")
    bf.add_argument("--from", dest="first", type=dt.date.fromisoformat, required=True, help="first day")
    bf.add_argument(
        "--to", dest="last", type=dt.date.fromisoformat, required=True, help="last day (inclusive)"
    )
    bf.add_argument("--webserver", default="http://127.0.0.1:3000", help="dagster-webserver URL")
    bf.add_argument("--no-wait", action="store_true", help="launch the productions backfill and return")
    bf.set_defaults(fn=_cmd_backfill)
    args = p.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
