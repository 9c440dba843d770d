"""Line x day partitions shared by every asset of the graph.

Why MultiPartitions(line static, date daily): 10 lines x 10 years is 36,500 keys (limit 100,000) and a
partition is exactly one `raw/line={line}/date={day}/` prefix. `end_offset=1` makes today's partition exist
so the intraday refresh can materialize it before the day is over.
"""

from __future__ import annotations

import datetime as dt
import os

from dagster import (
    DailyPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

DEFAULT_LINES = "L1"
DEFAULT_START_DATE = "2026-01-01"  # factory_sim ORIGIN_NS: seq 0 of every channel


def configured_lines() -> list[str]:
    """Lines from FACTORY_LINES (comma separated), fixed when the code location loads."""
    raw = os.environ.get("FACTORY_LINES", DEFAULT_LINES)
    lines = [s.strip() for s in raw.split(",") if s.strip()]
    if not lines:
        raise ValueError(f"FACTORY_LINES {raw!r}: needs at least one line name")
    return lines


def configured_start_date() -> str:
    """First partition date from FACTORY_START_DATE (YYYY-MM-DD)."""
    raw = os.environ.get("FACTORY_START_DATE", DEFAULT_START_DATE)
    try:
        return dt.date.fromisoformat(raw).isoformat()
    except ValueError as exc:
        raise ValueError(f"FACTORY_START_DATE {raw!r}: must be YYYY-MM-DD") from exc


def line_day_partitions(
    lines: list[str] | None = None, start_date: str | None = None
) -> MultiPartitionsDefinition:
    """The (line, date) partitions definition."""
    return MultiPartitionsDefinition(
        {
            "date": DailyPartitionsDefinition(
                start_date=start_date or configured_start_date(), end_offset=1, timezone="UTC"
            ),
            "line": StaticPartitionsDefinition(lines or configured_lines()),
        }
    )


LINE_DAY_PARTITIONS = line_day_partitions()


def line_day_key(line: str, date: str) -> MultiPartitionKey:
    """The partition key of one line-day."""
    return MultiPartitionKey({"line": line, "date": date})


def split_key(key: str | MultiPartitionKey) -> tuple[str, str]:
    """(line, date) of a partition key (MultiPartitionKey or its 'date|line' string form)."""
    if isinstance(key, MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims["line"], dims["date"]
    date, line = str(key).split("|")
    return line, date


def consecutive(days: list[dt.date]) -> list[list[dt.date]]:
    """Runs of consecutive days, in order (a partition-range run covers every day between its ends)."""
    runs: list[list[dt.date]] = []
    for day in days:
        if runs and day - runs[-1][-1] == dt.timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs
