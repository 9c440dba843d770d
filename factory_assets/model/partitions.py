"""Quarterly partitions of the quality model: one training run per calendar quarter (UTC).

Why a TimeWindowPartitionsDefinition with a cron: Dagster has no quarterly class, and a time window makes
the dependency on the daily production table a time mapping (a quarter depends on exactly its days).
The schedule trains a quarter once it has ended: the model of "2026-01-01" is trained at 2026-04-01 00:00 on
the data of January to March. end_offset=1 also exposes the quarter in progress, so the data team (and the
demo) can train on the quarter to date on demand; its days without data yet are simply not used.
"""

from __future__ import annotations

import datetime as dt

from dagster import TimeWindowPartitionsDefinition

from factory_assets.raw.partitions import configured_start_date

QUARTERLY_CRON = "0 0 1 1,4,7,10 *"
QUARTER_FMT = "%Y-%m-%d"


def quarter_start(date: str) -> str:
    """First day of the quarter holding `date` (YYYY-MM-DD): partitions must start on a cron tick."""
    d = dt.date.fromisoformat(date)
    return dt.date(d.year, 3 * ((d.month - 1) // 3) + 1, 1).isoformat()


def quarterly_partitions(start_date: str | None = None) -> TimeWindowPartitionsDefinition:
    """Quarters from the quarter holding `start_date` (default: the line-day partitions' start date)."""
    return TimeWindowPartitionsDefinition(
        cron_schedule=QUARTERLY_CRON,
        start=quarter_start(start_date or configured_start_date()),
        fmt=QUARTER_FMT,
        timezone="UTC",
        end_offset=1,
    )


QUARTERLY_PARTITIONS = quarterly_partitions()
