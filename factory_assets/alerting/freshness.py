"""Raw-data freshness: page when a line has uploaded no raw object for N minutes.

Why from the object keys: raw objects are written by the edge collector, not materialized by Dagster,
so the only authoritative signal is what reached the bucket. A raw key embeds its batch's earliest
sample (`rawformat.parse_key(...).start_ns`); listing the newest hour prefixes of a line gives the
newest data in S3 with one or two LIST calls per line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass

from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from factory_assets.alerting.resource import AlertNotifierResource
from factory_assets.raw.partitions import configured_lines
from factory_assets.resources.object_store import ObjectStoreResource
from factory_core.alerting import Severity
from factory_core.layout import hour_prefix, parse_key
from factory_core.rawformat import RawFormatError
from factory_core.store import ObjectStore

MAX_AGE_ENV = "FACTORY_ALERT_RAW_MAX_AGE_MINUTES"
DEFAULT_MAX_AGE_MINUTES = 15.0
LOOKBACK_HOURS = 24


@dataclass(frozen=True)
class LineFreshness:
    line: str
    newest_start_ns: int | None  # earliest sample of the newest raw object found (None: none in lookback)
    age_s: float | None
    max_age_s: float

    @property
    def stale(self) -> bool:
        return self.age_s is None or self.age_s > self.max_age_s


def configured_max_age_minutes() -> float:
    raw = os.environ.get(MAX_AGE_ENV, "")
    if not raw:
        return DEFAULT_MAX_AGE_MINUTES
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{MAX_AGE_ENV} {raw!r}: must be a number of minutes") from None
    if value <= 0:
        raise ValueError(f"{MAX_AGE_ENV} {raw!r}: must be > 0")
    return value


def line_freshness(
    store: ObjectStore, line: str, now_ns: int, max_age_s: float, lookback_hours: int = LOOKBACK_HOURS
) -> LineFreshness:
    """Newest raw object of `line`, scanning hour prefixes backwards from now's hour."""
    now = dt.datetime.fromtimestamp(now_ns / 1e9, tz=dt.UTC)
    for back in range(lookback_hours + 1):
        t = now - dt.timedelta(hours=back)
        newest: int | None = None
        for key in store.list(hour_prefix(line, t.date(), t.hour)):
            try:
                start = parse_key(key).start_ns
            except RawFormatError:
                continue  # foreign object under raw/: not evidence of data arriving
            if start is not None and start <= now_ns and (newest is None or start > newest):
                newest = start
        if newest is not None:
            return LineFreshness(line, newest, (now_ns - newest) / 1e9, max_age_s)
    return LineFreshness(line, None, None, max_age_s)


def _fmt_ns(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@sensor(
    name="alert_on_raw_freshness",
    description="Pages when a line has uploaded no raw data for FACTORY_ALERT_RAW_MAX_AGE_MINUTES (default 15).",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=300,
)
def raw_freshness_alert_sensor(
    context: SensorEvaluationContext,
    object_store: ObjectStoreResource,
    alert_notifier: AlertNotifierResource,
) -> SkipReason:
    """Alert on stale lines (repeats are rate-limited by the notifier); say so when a line recovers.

    The cursor keeps the set of lines that were stale at the last evaluation, so recovery is announced
    once and a daemon restart does not forget which lines are down.
    """
    max_age_s = configured_max_age_minutes() * 60
    was_stale = set(json.loads(context.cursor)) if context.cursor else set()
    now_ns = time.time_ns()
    store = object_store.get_store()
    stale_now: list[str] = []
    for line in configured_lines():
        f = line_freshness(store, line, now_ns, max_age_s)
        key = f"raw-freshness:{line}"
        if f.stale:
            stale_now.append(line)
            last = (
                f"newest raw data starts {_fmt_ns(f.newest_start_ns)}"
                if f.newest_start_ns
                else (f"no raw object in the last {LOOKBACK_HOURS} h")
            )
            alert_notifier.notify(
                f"No raw data from line {line} for {max_age_s / 60:.0f} min",
                f"Line {line}: {last} (store {object_store.describe()}). Check the edge collector "
                "on the factory server (edge_backlog_oldest_age_seconds, edge_upload_errors_total) "
                "and the uplink.",
                severity=Severity.CRITICAL,
                dedup_key=key,
                details={
                    "line": line,
                    "age_s": f"{f.age_s:.0f}" if f.age_s is not None else "unknown",
                    "max_age_s": f"{max_age_s:.0f}",
                },
            )
        elif line in was_stale:
            alert_notifier.notify(
                f"Raw data from line {line} is arriving again",
                f"Line {line}: newest raw data starts {_fmt_ns(f.newest_start_ns or 0)}.",
                severity=Severity.INFO,
                dedup_key=f"{key}:recovered",
                details={"line": line, "age_s": f"{f.age_s:.0f}"},
            )
    context.update_cursor(json.dumps(sorted(stale_now)))
    return SkipReason(f"stale lines: {', '.join(stale_now) or 'none'}")
