"""Per-channel cursors (next sequence number to read), durable and re-derivable from the spool.

Why: a cursor may only move past samples that are already durable. The cursor file is written
after the spool write; if we crash in between, ``max(cursor file, spool headers)`` still covers
everything that reached disk, so nothing is read twice into different objects and nothing is skipped.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from factory_core.outbox.spool import Spool, SpoolHeader, fsync_dir

CURSOR_FILE = "cursors.json"


class CursorStore:
    """In-memory cursors plus their atomic on-disk image (``cursors.json`` beside the spool)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.state_dir / CURSOR_FILE
        self._lock = threading.Lock()
        self._persist_lock = threading.Lock()  # snapshot + replace in order: a newer image never loses
        self._cursors: dict[int, int] = {}
        # channel -> cursor at which a sensor_seq_backwards gap was recorded: persisted with the cursors
        # so a restart while the sensor is still behind does not record the same gap again
        self._backwards: dict[int, int] = {}
        self.line: str | None = None

    def load(self, headers: Iterable[SpoolHeader] = ()) -> dict[int, int]:
        """Cursor file merged with the max over spool headers (spool wins when ahead)."""
        cursors: dict[int, int] = {}
        if self.path.exists():
            body = json.loads(self.path.read_text(encoding="utf-8"))
            self.line = body.get("line")
            cursors = {int(c): int(s) for c, s in body.get("cursors", {}).items()}
            self._backwards = {int(c): int(s) for c, s in body.get("backwards", {}).items()}
        for header in headers:
            if self.line is None:
                self.line = header.line
            for cid, (_, nxt) in header.ranges.items():
                if nxt > cursors.get(cid, -1):
                    cursors[cid] = nxt
        with self._lock:
            self._cursors = cursors
        return dict(cursors)

    def load_with_spool(self, spool: Spool) -> dict[int, int]:
        return self.load(h for _, h in spool.headers())

    def get(self, channel_id: int) -> int | None:
        with self._lock:
            return self._cursors.get(channel_id)

    def snapshot(self) -> dict[int, int]:
        with self._lock:
            return dict(self._cursors)

    def backwards_recorded_at(self, channel_id: int) -> int | None:
        """The cursor at which a backwards gap of ``channel_id`` is already recorded (durably), if any."""
        with self._lock:
            return self._backwards.get(channel_id)

    def mark_backwards(self, recorded: Mapping[int, int]) -> None:
        """Remember recorded backwards gaps (call after the gap record is in the spool, before persist)."""
        with self._lock:
            self._backwards.update(recorded)

    def advance(self, updates: Mapping[int, int]) -> None:
        """Move cursors forward in memory (never backwards); call only after the spool write."""
        with self._lock:
            for cid, nxt in updates.items():
                if nxt > self._cursors.get(cid, -1):
                    self._cursors[cid] = nxt

    def persist(self) -> None:
        """Atomic durable image of the cursors: temp file, fsync, rename, dir fsync."""
        with self._persist_lock:
            self._persist()

    def _persist(self) -> None:
        with self._lock:
            body: dict[str, object] = {
                "line": self.line,
                "cursors": {str(c): s for c, s in sorted(self._cursors.items())},
            }
            if self._backwards:
                body["backwards"] = {str(c): s for c, s in sorted(self._backwards.items())}
        data = json.dumps(body, separators=(",", ":")).encode()
        tmp = self.state_dir / f".tmp-cursors-{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.state_dir)
