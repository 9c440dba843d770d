"""Incremental listing of new object keys under `{kind}/line={line}/date={day}/` with a durable, bounded cursor.

Used for raw/ and gaps/ (raw_objects_sensor) and for the inference server's decisions/ (decision_log_sensor):
all three share the key layout's line and date directories.

Why this shape: a sensor tick must finish well inside 60 s with years of objects in the bucket, so it
never lists the whole bucket. Per line and kind:

* catch-up: dates older than the late window are listed once, in key order, with StartAfter=`after`
  (line-scoped prefix, paginated lazily; the scan stops at the first key inside the late window or when
  the per-tick budget is spent), so years of history are walked across ticks without re-listing;
* late window (today and the previous `late_days` days): each date prefix is listed in full and diffed
  against the hashes of keys already recorded, because inside a day keys are not written in key order
  (several channel groups per hour; objects uploaded late after an outage). When a date leaves the window
  `after` jumps past it, so it is never listed again.

Objects that land for a date older than the window are not seen (documented; raise `late_days`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from factory_core.store import ObjectStore

KINDS = ("raw", "gaps")


def key_hash(key: str) -> str:
    """64-bit digest of a key: a compact cursor entry with negligible collision odds per day."""
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def _date_of(key: str) -> str | None:
    """YYYY-MM-DD of a `kind/line=../date=YYYY-MM-DD/...` key, or None for foreign keys."""
    parts = key.split("/")
    if len(parts) < 3 or not parts[2].startswith("date="):
        return None
    return parts[2][len("date=") :]


@dataclass
class LineCursor:
    """Scan state of one (kind, line): catch-up position plus hashes seen per late-window date."""

    after: str | None = None
    seen: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"after": self.after, "seen": self.seen}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LineCursor:
        return cls(after=data.get("after"), seen={k: list(v) for k, v in data.get("seen", {}).items()})


@dataclass
class ScanResult:
    """New keys found by one scan, in the order they were found."""

    keys: list[str]
    exhausted: bool  # False when the budget stopped the scan (more keys are waiting)


def scan_line(
    store: ObjectStore,
    kind: str,
    line: str,
    cursor: LineCursor,
    today: dt.date,
    late_days: int,
    max_keys: int,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> ScanResult:
    """Find keys of (kind, line) not reported before, updating `cursor` in place."""
    base = f"{kind}/line={line}/"
    window_start = (today - dt.timedelta(days=late_days)).isoformat()
    found: list[str] = []
    # Dates that left the late window: skip them in the catch-up listing from now on.
    for date in sorted(cursor.seen):
        if date < window_start:
            skip_to = f"{base}date={date}/~"  # '~' sorts after every key character used in a date dir
            if cursor.after is None or cursor.after < skip_to:
                cursor.after = skip_to
            del cursor.seen[date]
    # Catch-up: everything before the window, in key order, resumable.
    for key in store.list(base, start_after=cursor.after):
        date = _date_of(key)
        if date is not None and date >= window_start:
            break
        if len(found) >= max_keys or clock() > deadline:
            return ScanResult(found, exhausted=False)
        cursor.after = key
        found.append(key)
    # Late window: full listing of each date, diffed against what was already reported.
    day = dt.date.fromisoformat(window_start)
    while day <= today:
        date = day.isoformat()
        seen = set(cursor.seen.get(date, ()))
        added: list[str] = []
        for key in store.list(f"{base}date={date}/"):
            h = key_hash(key)
            if h in seen:
                continue
            if len(found) >= max_keys or clock() > deadline:
                cursor.seen[date] = sorted(seen.union(added))
                return ScanResult(found, exhausted=False)
            added.append(h)
            found.append(key)
        if added or date in cursor.seen:
            cursor.seen[date] = sorted(seen.union(added))
        day += dt.timedelta(days=1)
    return ScanResult(found, exhausted=True)


def scan_new_keys(
    store: ObjectStore,
    state: dict[str, dict[str, LineCursor]],
    lines: list[str],
    today: dt.date,
    late_days: int,
    max_keys: int,
    deadline: float,
    first_date: str,
    clock: Callable[[], float] = time.monotonic,
) -> list[tuple[str, str]]:
    """(kind, key) of new objects for every kind of `state` and every line, within one tick's budget.

    `state` ({kind: {line: LineCursor}}) is updated in place. Keys dated before `first_date` (the first
    partition) are consumed but not returned: they have no partition to be recorded on.
    """
    budget = max_keys
    found: list[tuple[str, str]] = []
    for kind in state:
        for line in lines:
            cursor = state[kind].setdefault(line, LineCursor())
            result = scan_line(store, kind, line, cursor, today, late_days, budget, deadline, clock)
            found.extend((kind, key) for key in result.keys if (_date_of(key) or "") >= first_date)
            budget -= len(result.keys)
            if budget <= 0 or clock() > deadline:
                return found
    return found
