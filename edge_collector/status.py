"""Offline status of a collector's state directory: backlog, cursors and pending gap records.

Why: works while the daemon is down (the interesting case); it only reads the spool directory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge_collector.config import CollectorConfig
from edge_collector.cursors import CURSOR_FILE
from factory_core.layout import GAPS_PREFIX
from factory_core.outbox.spool import SUFFIX, SpoolCorruptError, decode_file, read_header
from factory_core.rawformat import decode_gaps


def store_ledger(cfg: CollectorConfig) -> dict[str, Any]:
    """Gap objects already in the store: count, records and lost samples per reason (lists gaps/)."""
    from edge_collector.daemon import open_configured_store

    store = open_configured_store(cfg)
    objects = 0
    by_reason: dict[str, dict[str, int]] = {}
    for key in store.list(GAPS_PREFIX):
        objects += 1
        for g in decode_gaps(store.get(key)):
            row = by_reason.setdefault(g.reason, {"records": 0, "lost_samples": 0})
            row["records"] += 1
            row["lost_samples"] += g.lost_to_seq - g.lost_from_seq
    return {"gap_objects": objects, "by_reason": by_reason}


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
