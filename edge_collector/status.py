"""Offline status of a collector's state directory: backlog, cursors and pending gap records; with
``--store`` the samples the store's gap ledger says are truly missing.

Why: works while the daemon is down (the interesting case); it only reads the spool directory (and
the store's gaps/, plus raw/ of the days with losses when asked to verify). Missing is counted per
sample identity (line, channel, seq), as a union of intervals: overlapping records of older collector
versions must not inflate it, and a re-issued range (sensor_seq_backwards) is not a loss.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge_collector.config import CollectorConfig
from edge_collector.cursors import CURSOR_FILE
from edge_collector.ledger import REASON_SEQ_BACKWARDS
from factory_core.layout import GAPS_PREFIX, date_prefix
from factory_core.outbox.spool import SUFFIX, SpoolCorruptError, decode_file, read_header
from factory_core.rawformat import RawFormatError, decode_batch, decode_gaps
from factory_core.store import ObjectStore

Interval = tuple[int, int]  # [from, to) seqs of one channel


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint union of half-open intervals (touching ones joined; empty ones dropped)."""
    out: list[list[int]] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def subtract_intervals(base: list[Interval], remove: list[Interval]) -> list[Interval]:
    """``base`` minus ``remove`` (both merged): what of base no interval of remove covers."""
    out: list[Interval] = []
    j = 0
    for a, b in base:
        while j < len(remove) and remove[j][1] <= a:
            j += 1
        k, lo = j, a
        while k < len(remove) and remove[k][0] < b:
            if remove[k][0] > lo:
                out.append((lo, remove[k][0]))
            lo = max(lo, remove[k][1])
            k += 1
        if lo < b:
            out.append((lo, b))
    return out


def _size(intervals: list[Interval]) -> int:
    return sum(b - a for a, b in intervals)


def _stored_intervals(store: ObjectStore, lines_days: dict[str, set[dt.date]]) -> tuple[dict, list[str]]:
    """Seq intervals of every raw object of the given line-days: {(line, channel): merged} + unreadable."""
    stored: dict[tuple[str, int], list[Interval]] = {}
    unreadable: list[str] = []
    for line, days in sorted(lines_days.items()):
        for day in sorted(days):
            for key in store.list(date_prefix("raw", line, day)):
                try:
                    batch = decode_batch(store.get(key))
                except RawFormatError as exc:
                    unreadable.append(f"{key}: {exc}")
                    continue
                for b in batch.blocks:
                    stored.setdefault((line, b.channel_id), []).append((b.first_seq, b.first_seq + b.count))
    return {k: merge_intervals(v) for k, v in stored.items()}, unreadable


def store_ledger(cfg: CollectorConfig, verify_raw: bool = False) -> dict[str, Any]:
    """Gap objects already in the store and the samples truly missing (lists gaps/).

    Records of older collector versions may overlap (a sensor_seq_backwards gap recorded again after
    every restart), so nothing is summed: per (line, channel) the records' seq intervals are merged.
    ``samples`` of a reason is the size of the union of its records; ``lost_samples`` the part of it
    that is truly missing. A ``sensor_seq_backwards`` record never is: it names seqs the sensor
    re-issued under identities the collector already held (at or behind its cursor, so each one is
    stored or inside a loss record of its own). Every other reason is a loss, and the total
    ``lost_samples`` is the union over those reasons (a seq named twice counts once). With
    ``verify_raw`` the raw objects of the days the loss records touch (one day either side) are
    decoded too, and any lost seq that is in fact stored is not counted (``lost_but_stored``).
    """
    from edge_collector.daemon import open_configured_store

    store = open_configured_store(cfg)
    objects = 0
    records: dict[str, int] = {}
    named: dict[tuple[str, str, int], list[Interval]] = {}  # (reason, line, channel) -> intervals
    names: dict[tuple[str, int], str] = {}
    lines_days: dict[str, set[dt.date]] = {}
    for key in store.list(GAPS_PREFIX):
        objects += 1
        for g in decode_gaps(store.get(key)):
            records[g.reason] = records.get(g.reason, 0) + 1
            named.setdefault((g.reason, g.line, g.channel_id), []).append((g.lost_from_seq, g.lost_to_seq))
            names.setdefault((g.line, g.channel_id), g.channel_name)
            if g.reason != REASON_SEQ_BACKWARDS:
                days = lines_days.setdefault(g.line, set())
                first, last = _day(g.lost_from_ns), _day(max(g.lost_from_ns, g.lost_to_ns - 1))
                days.update(first + dt.timedelta(days=d) for d in range(-1, (last - first).days + 2))
    lost: dict[tuple[str, int], list[Interval]] = {}
    for (reason, line, cid), intervals in named.items():
        if reason != REASON_SEQ_BACKWARDS:
            lost.setdefault((line, cid), []).extend(intervals)
    lost = {k: merge_intervals(v) for k, v in lost.items()}
    out: dict[str, Any] = {"gap_objects": objects}
    lost_but_stored = 0
    if verify_raw:
        stored, unreadable = _stored_intervals(store, lines_days)
        for k, intervals in lost.items():
            missing = subtract_intervals(intervals, stored.get(k, []))
            lost_but_stored += _size(intervals) - _size(missing)
            lost[k] = missing
        out["verified_raw"] = {"days": sum(len(d) for d in lines_days.values()), "lost_but_stored": lost_but_stored,
                               "unreadable_raw_objects": unreadable}  # fmt: skip
    by_reason: dict[str, dict[str, int]] = {}
    for (reason, line, cid), intervals in sorted(named.items()):
        union = merge_intervals(intervals)
        gone = _size(subtract_intervals(union, subtract_intervals(union, lost.get((line, cid), []))))
        row = by_reason.setdefault(reason, {"records": records[reason], "samples": 0, "lost_samples": 0})
        row["samples"] += _size(union)
        row["lost_samples"] += gone if reason != REASON_SEQ_BACKWARDS else 0
    out["by_reason"] = by_reason
    out["lost_samples"] = sum(_size(v) for v in lost.values())
    out["lost_by_channel"] = {
        f"{line}/{cid}/{names[(line, cid)]}": _size(v) for (line, cid), v in sorted(lost.items()) if v
    }
    return out


def _day(t_ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(t_ns // 10**9, tz=dt.UTC).date()


def collect_status(cfg: CollectorConfig, with_gaps: bool = True) -> dict[str, Any]:
    """Backlog files/bytes/oldest age, cursor file, spool-derived cursors and pending gaps."""
    root = Path(cfg.spool_dir)
    files = sorted(root.glob(f"*{SUFFIX}")) if root.exists() else []
    now = time.time()
    total = 0
    oldest = None
    derived: dict[int, int] = {}
    pending_gaps: list[dict[str, Any]] = []
    corrupt: list[str] = []
    kinds = {"batch": 0, "gaps": 0}
    for path in files:
        try:
            st = path.stat()
            header = read_header(path)
        except (OSError, SpoolCorruptError) as exc:
            corrupt.append(f"{path.name}: {exc}")
            continue
        total += st.st_size
        oldest = st.st_mtime if oldest is None else min(oldest, st.st_mtime)
        kinds[header.kind] = kinds.get(header.kind, 0) + 1
        for cid, (_, nxt) in header.ranges.items():
            derived[cid] = max(derived.get(cid, 0), nxt)
        if with_gaps and header.kind == "gaps":
            try:
                _, payload = decode_file(path.read_bytes())
                for g in decode_gaps(payload):
                    pending_gaps.append(
                        {"channel_id": g.channel_id, "channel": g.channel_name, "lost_from_seq": g.lost_from_seq,
                         "lost_to_seq": g.lost_to_seq, "reason": g.reason, "key": header.key}
                    )  # fmt: skip
            except (OSError, ValueError, SpoolCorruptError) as exc:
                corrupt.append(f"{path.name}: {exc}")
    cursor_file = root / CURSOR_FILE
    persisted: dict[str, Any] = {}
    if cursor_file.exists():
        persisted = json.loads(cursor_file.read_text(encoding="utf-8"))
    cursors = {int(c): int(s) for c, s in persisted.get("cursors", {}).items()}
    for cid, nxt in derived.items():
        cursors[cid] = max(cursors.get(cid, 0), nxt)
    quarantined = sorted(p.name for p in (root / "corrupt").glob("*")) if (root / "corrupt").exists() else []
    return {
        "spool_dir": str(root),
        "line": persisted.get("line"),
        "backlog": {
            "files": len(files) - len(corrupt),
            "batch_files": kinds.get("batch", 0),
            "gap_files": kinds.get("gaps", 0),
            "bytes": total,
            "oldest_age_s": round(now - oldest, 3) if oldest is not None else 0.0,
        },
        "budget": {
            "spool_max_bytes": cfg.spool_max_bytes,
            "used_ratio": round(total / cfg.spool_max_bytes, 6),
            "alert": total / cfg.spool_max_bytes >= cfg.spool_warn_ratio,
        },
        "cursors": {str(c): s for c, s in sorted(cursors.items())},
        "ledger": {"pending_gap_records": pending_gaps},
        "corrupt": corrupt,
        "quarantined": quarantined,
    }
