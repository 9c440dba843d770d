"""Which asset-check executions a sensor has not handled yet, without losing one that finishes late.

Why: an execution's record id is assigned when its run is *planned*, not when it completes. A ranged run
plans one row per (check, partition) at its start; a run planned later may finish first. A cursor that
is only "the highest id seen" then jumps past rows still planned or in progress, and their verdicts,
failures included, are never looked at: a lost page, a retrain never requested. So the cursor also keeps
the ids that were not complete when it moved past them (`pending`), and every tick looks at those again
until they complete. The alerting sensor and the retrain sensor both read check executions through here.

Reading: the history of one check, newest first, page by page until the page reaches the cursor and the
oldest pending id (bounded by `MAX_PAGES`, so a very long outage of the sensor cannot make one tick
unbounded; the figures are logged by the callers).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dagster import AssetCheckKey
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecord,
)
from dagster._core.storage.event_log.base import EventLogStorage

PAGE = 200
MAX_PAGES = 50
MAX_PENDING = 5_000  # planned rows older than this many are given up (a run deleted mid-flight)


@dataclass(frozen=True)
class CheckCursor:
    """Executions with id <= `after` were handled, except `pending`, which were not complete then."""

    after: int = 0
    pending: tuple[int, ...] = ()

    @classmethod
    def parse(cls, raw: Any) -> CheckCursor:
        """From the JSON a sensor stored: an int (the earlier cursor: the highest id) or a dict."""
        if isinstance(raw, int):
            return cls(raw)
        if isinstance(raw, dict):
            return cls(int(raw.get("after", 0)), tuple(int(i) for i in raw.get("pending", ())))
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {"after": self.after, "pending": list(self.pending)}


def _history(storage: EventLogStorage, key: AssetCheckKey, down_to: int) -> list[AssetCheckExecutionRecord]:
    """The check's executions newer than `down_to`, newest first, page by page."""
    out: list[AssetCheckExecutionRecord] = []
    cursor: int | None = None
    for _ in range(MAX_PAGES):
        page = storage.get_asset_check_execution_history(key, limit=PAGE, cursor=cursor)
        out += [r for r in page if r.id > down_to]
        if len(page) < PAGE or page[-1].id <= down_to:
            break
        cursor = page[-1].id
    return out


def newly_completed(
    storage: EventLogStorage, key: AssetCheckKey, cursor: CheckCursor
) -> tuple[list[AssetCheckExecutionRecord], CheckCursor]:
    """Executions of `key` completed since `cursor` (oldest first) and the cursor past them."""
    pending = set(cursor.pending)
    down_to = min([cursor.after, *(i - 1 for i in pending)])
    considered = [r for r in _history(storage, key, down_to) if r.id > cursor.after or r.id in pending]
    done = sorted((r for r in considered if r.status in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES),
                  key=lambda r: r.id)  # fmt: skip
    waiting = sorted(
        r.id for r in considered if r.status not in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
    )
    after = max([cursor.after, *(r.id for r in considered)])
    return done, CheckCursor(after, tuple(waiting[-MAX_PENDING:]))


def initial(storage: EventLogStorage, key: AssetCheckKey) -> CheckCursor:
    """A cursor past the existing history (deploying a sensor must not act on old verdicts), keeping the
    executions still in flight pending, so that their verdicts are acted on."""
    _, cursor = newly_completed(storage, key, CheckCursor())
    return cursor


def parse_all(raw: str | None, names: Sequence[str]) -> dict[str, CheckCursor] | None:
    """A sensor's cursor, {check: cursor}, or None on its first evaluation. Earlier releases stored
    {check: highest id}, and the retrain sensor's first one a bare id for its one check (`names[0]`)."""
    if not raw:
        return None
    data = json.loads(raw)
    if isinstance(data, int):
        data = {names[0]: data}
    return {name: CheckCursor.parse(value) for name, value in data.items()}


def dump_all(cursors: dict[str, CheckCursor]) -> str:
    return json.dumps({name: c.to_json() for name, c in sorted(cursors.items())})
