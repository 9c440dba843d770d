"""Durable decision log: every request/response is appended to a local spool and shipped to the store.

Why a spool: the line must keep running when the cloud is unreachable, and no decision may be lost.
A writer thread appends JSON lines to the open segment and fsyncs in small batches (at most
``batch_records`` or ``flush_interval_s`` of decisions are at risk on power loss); segments rotate by
size/age into closed/. The shipper groups a closed segment's records by (line, UTC date) and puts each
group at decisions/line={line}/date={date}/{instance}-{seq}.jsonl - a deterministic key, so a re-ship
after a crash rewrites identical bytes - and deletes the local file only after every put succeeded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from edge_collector.store import ObjectStore, StoreError
from inference_server.metrics import Metrics

log = logging.getLogger(__name__)
_SEGMENT_RE = re.compile(r"^(?P<instance>[A-Za-z0-9_.-]+)-(?P<seq>\d{12})\.jsonl$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def decision_key(line: str, date: str, segment: str) -> str:
    return f"decisions/line={line}/date={date}/{segment}"


class DecisionLog:
    """Append-only JSON-lines spool with a writer thread; ``ship`` moves closed segments to the store."""

    def __init__(
        self,
        spool_dir: Path,
        instance_id: str,
        metrics: Metrics,
        batch_records: int = 64,
        flush_interval_s: float = 0.05,
        segment_max_bytes: int = 4 * 1024 * 1024,
        segment_max_age_s: float = 60.0,
    ) -> None:
        self.open_dir = Path(spool_dir) / "open"
        self.closed_dir = Path(spool_dir) / "closed"
        self.open_dir.mkdir(parents=True, exist_ok=True)
        self.closed_dir.mkdir(parents=True, exist_ok=True)
        self.instance_id = instance_id
        self.metrics = metrics
        self.batch_records = batch_records
        self.flush_interval_s = flush_interval_s
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age_s = segment_max_age_s
        self._pending: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._fh: Any = None
        self._path: Path | None = None
        self._opened_at = 0.0
        self._ship_lock = threading.Lock()
        self._recover()
        self._seq = self._next_seq()

    # -------------------------------------------------------------------------------------- writing
    def _recover(self) -> None:
        """Segments left open by a crash are closed as they are (their fsync'd prefix is kept)."""
        for path in sorted(self.open_dir.iterdir()):
            if _SEGMENT_RE.match(path.name):
                os.replace(path, self.closed_dir / path.name)
        _fsync_dir(self.closed_dir)

    def _next_seq(self) -> int:
        seqs = [int(m["seq"]) for p in self.closed_dir.iterdir() if (m := _SEGMENT_RE.match(p.name))]
        return max(seqs, default=-1) + 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any]) -> None:
        """Queue one decision (never blocks the request; the writer fsyncs it within a batch).

        A deque append is atomic under the GIL; the writer is woken only when a batch is full,
        otherwise it drains every ``flush_interval_s``: no per-request thread wake-up or syscall.
        """
        self._pending.append(record)
        if len(self._pending) >= self.batch_records:
            self._wake.set()

    def close(self) -> None:
        """Drain the queue, fsync, and close the open segment (so it can be shipped)."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join()
            self._thread = None
        self._drain()
        self._rotate()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._drain()
            self._maybe_rotate()

    def _drain(self) -> None:
        """Write + fsync everything queued, in batches of at most ``batch_records``."""
        while self._pending:
            batch = []
            while self._pending and len(batch) < self.batch_records:
                batch.append(self._pending.popleft())
            try:
                self._write(batch)
            except OSError:
                log.exception("decision spool write failed; %d decisions not durable", len(batch))

    def _write(self, batch: list[dict[str, Any]]) -> None:
        if self._fh is None:
            self._path = self.open_dir / f"{self.instance_id}-{self._seq:012d}.jsonl"
            self._seq += 1
            self._fh = open(self._path, "ab")  # noqa: SIM115 - the segment stays open across batches
            self._opened_at = time.monotonic()
            _fsync_dir(self.open_dir)
        data = b"".join(json.dumps(r, separators=(",", ":"), allow_nan=False).encode() + b"\n" for r in batch)
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.metrics.decisions_spooled.inc(len(batch))

    def _maybe_rotate(self) -> None:
        if self._fh is None:
            return
        if (
            self._fh.tell() >= self.segment_max_bytes
            or time.monotonic() - self._opened_at >= self.segment_max_age_s
        ):
            self._rotate()

    def _rotate(self) -> None:
        if self._fh is None or self._path is None:
            return
        self._fh.close()
        os.replace(self._path, self.closed_dir / self._path.name)
        _fsync_dir(self.closed_dir)
        _fsync_dir(self.open_dir)
        self._fh = None
        self._path = None

    def rotate_now(self) -> None:
        """Close the open segment from outside the writer (only safe when the writer is stopped)."""
        if self._thread is None:
            self._rotate()

    # ------------------------------------------------------------------------------------- shipping
    def pending(self) -> list[Path]:
        return sorted(p for p in self.closed_dir.iterdir() if _SEGMENT_RE.match(p.name))

    def ship(self, store: ObjectStore) -> int:
        """Ship every closed segment; returns decisions confirmed. A failure leaves the file for later."""
        shipped = 0
        with self._ship_lock:
            pending = self.pending()
            for path in pending:
                try:
                    shipped += self._ship_one(store, path)
                except StoreError as exc:
                    self.metrics.ship_errors.inc()
                    log.warning("decision shipment failed, will retry: %s", exc)
                    break
            self.metrics.spool_segments.set(len(self.pending()))
        return shipped

    def _ship_one(self, store: ObjectStore, path: Path) -> int:
        groups: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        for raw in path.read_bytes().splitlines():
            try:
                record = json.loads(raw)
                line, date = record["line_id"], record["ts"][:10]
            except (ValueError, KeyError, TypeError):
                log.warning("dropping unreadable spool line in %s (torn write at crash)", path.name)
                continue
            groups[(line, date)].append(raw + b"\n")
        for (line, date), lines in sorted(groups.items()):
            store.put(decision_key(line, date, path.name), b"".join(lines))
        path.unlink()
        _fsync_dir(self.closed_dir)
        n = sum(len(v) for v in groups.values())
        self.metrics.decisions_shipped.inc(n)
        return n
