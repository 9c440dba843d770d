"""Is a line-day complete? The answer the production table recorded on its partition's materialization.

What: `reported_days` reads, per partition, the latest `production/productions` materialization and
returns its completeness verdict (`day_complete`) with what is missing (channels and seconds not covered,
a production running at midnight, QA pending). Why one place: the aggregates asset refuses incomplete
days, the aggregates automation waits for complete ones and the model's training window counts only
complete ones; all three must judge by the same record, written by the asset that read the raw data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

PRODUCTIONS_KEY = AssetKey(["production", "productions"])


@dataclass(frozen=True)
class DayReport:
    """The completeness verdict of one partition as its latest production table recorded it."""

    partition: str
    materialized: bool
    complete: bool
    missing_seconds: dict[str, float] = field(default_factory=dict)
    running_at_midnight: bool = False
    qa_pending: int = 0

    def what_is_missing(self) -> str:
        """A sentence naming what keeps the day from being complete (empty when complete)."""
        if not self.materialized:
            return "the production table of the day has never been materialized"
        if self.complete:
            return ""
        parts = []
        if self.missing_seconds:
            worst = sorted(self.missing_seconds.items(), key=lambda kv: -kv[1])
            shown = ", ".join(f"{ch} {s:.0f} s" for ch, s in worst[:5])
            more = f" and {len(worst) - 5} more channels" if len(worst) > 5 else ""
            parts.append(f"data not covered to midnight ({shown}{more})")
        if self.running_at_midnight:
            parts.append("a production still running at the end of the data")
        if self.qa_pending:
            parts.append(f"QA pending for {self.qa_pending} productions")
        return "; ".join(parts) or "the production table reports the day incomplete"


def _value(metadata: Any, name: str, default: Any) -> Any:
    entry = metadata.get(name)
    return default if entry is None else entry.value


def reported_day(
    instance: DagsterInstance, partition: str, asset_key: AssetKey = PRODUCTIONS_KEY
) -> DayReport:
    """The latest materialization's verdict for one partition (not materialized: incomplete)."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    mat = records[0].asset_materialization if records else None
    if mat is None:
        return DayReport(partition, materialized=False, complete=False)
    md = mat.metadata
    return DayReport(
        partition,
        materialized=True,
        complete=bool(_value(md, "day_complete", False)),
        missing_seconds=dict(_value(md, "missing_seconds", {}) or {}),
        running_at_midnight=bool(_value(md, "running_at_midnight", False)),
        qa_pending=int(_value(md, "qa_pending", 0) or 0),
    )


def reported_days(instance: DagsterInstance, partitions: Iterable[str]) -> dict[str, DayReport]:
    """`reported_day` for each partition (one indexed query per partition)."""
    return {str(pk): reported_day(instance, str(pk)) for pk in partitions}
