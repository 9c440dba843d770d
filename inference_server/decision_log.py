"""Durable decision log: every request/response goes through the edge collector's spool and uploader.

Why the collector's path: sensor data and decisions share one durability story (temp file, fsync,
rename, dir fsync; corrupt files quarantined; oldest first to the store, retried without end, the
local file deleted only after the store confirmed), so there is one mechanism to trust and operate.

On the request path ``append`` is a deque append. A writer thread, woken when ``batch_records`` are
queued or every ``flush_interval_s``, closes what is queued into segments - one per (line, UTC date),
at most ``batch_records`` decisions and ``segment_max_bytes`` of JSON lines each - and writes each
segment as ONE spool entry (kind "decisions"): a zstd-compressed JSON-lines object whose key,
decisions/line={line}/date={date}/{instance}-{HHMMSS}-{sha256[:16]}.jsonl.zst, is derived from its
content, so a re-upload after a crash rewrites the same object. A decision counts as logged
(``inference_decisions_spooled``) only once its spool entry is durable: a power loss can take at most
the decisions still queued in memory (<= ``batch_records`` or ``flush_interval_s`` worth).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from edge_collector.metrics import CollectorMetrics
from edge_collector.spool import Spool, SpoolEntry, SpoolHeader, fsync_dir
from edge_collector.store import ObjectStore
from edge_collector.uploader import Uploader
from inference_server.metrics import Metrics

log = logging.getLogger(__name__)

SPOOL_KIND = "decisions"
ZSTD_LEVEL = 3
UPLOAD_CONCURRENCY = 4
_LEGACY_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.-]+-\d{12}\.jsonl$")  # pre-spool layout: open/, closed/
_KEY_PART_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def decision_key(line: str, date: str, instance_id: str, first_ts: str, jsonl: bytes) -> str:
    """Deterministic object key of one segment: its line, date, first decision time and content hash."""
    clock = first_ts[11:19].replace(":", "") or "000000"
    digest = hashlib.sha256(jsonl).hexdigest()[:16]
    return f"decisions/line={line}/date={date}/{instance_id}-{clock}-{digest}.jsonl.zst"


def decode_segment(payload: bytes) -> list[dict[str, Any]]:
    """The decisions of one spool entry's payload / stored object (zstd JSON lines)."""
    data = zstandard.ZstdDecompressor().decompress(payload)
    return [json.loads(line) for line in data.splitlines()]


def _partition(record: dict[str, Any]) -> tuple[str, str]:
    """(line, UTC date) of a decision; values that cannot be key parts land in an explicit bucket."""
    line = str(record.get("line_id") or "")
    date = str(record.get("ts") or "")[:10]
    return (
        line if _KEY_PART_RE.match(line) else "invalid",
        date if _DATE_RE.match(date) else "unknown",
    )


@dataclass
class _Segment:
    """Decisions of one (line, UTC date) on their way into one spool entry."""

    line: str
    date: str
    first_ts: str
    lines: list[bytes] = field(default_factory=list)
    size: int = 0


class DecisionLog:
    """In-memory queue + writer thread into a collector ``Spool``; ``uploader`` ships it."""

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
        self.spool_dir = Path(spool_dir)
        self.spool = Spool(self.spool_dir)
        self.instance_id = instance_id
        self.metrics = metrics
        self.batch_records = batch_records
        self.flush_interval_s = flush_interval_s
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age_s = segment_max_age_s
        self.on_spooled: Callable[[SpoolEntry], None] | None = None
        self.upload_errors = 0
        self._upload_progress: asyncio.Event | None = None  # set by the uploader's hooks (loop thread)
        self._pending: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._recover_legacy()
        self.metrics.spool_segments.set(self.spool.file_count)

    # -------------------------------------------------------------------------------------- writing
    def _recover_legacy(self) -> None:
        """Move JSON-lines segments of the pre-spool layout (open/, closed/) into the spool.

        A torn last line (crash mid-write) is dropped and logged; the file is deleted only after its
        decisions are durable in the spool (a crash in between re-writes identical entries and keys).
        """
        for sub in ("open", "closed"):
            folder = self.spool_dir / sub
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if not _LEGACY_SEGMENT_RE.match(path.name):
                    continue
                records = []
                for raw in path.read_bytes().splitlines():
                    try:
                        records.append(json.loads(raw))
                    except ValueError:
                        log.warning(
                            "dropping unreadable decision line in %s (torn write at crash)", path.name
                        )
                for start in range(0, len(records), self.batch_records):
                    self._write(records[start : start + self.batch_records])
                path.unlink()
                fsync_dir(folder)
            with contextlib.suppress(OSError):
                folder.rmdir()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any]) -> None:
        """Queue one decision (never blocks the request; the writer spools it within a batch).

        A deque append is atomic under the GIL; the writer is woken only when a batch is full,
        otherwise it drains every ``flush_interval_s``: no per-request thread wake-up or syscall.
        """
        self._pending.append(record)
        if len(self._pending) >= self.batch_records:
            self._wake.set()

    def close(self) -> None:
        """Stop the writer and spool everything still queued (so it can be shipped)."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join()
            self._thread = None
        self._drain()

    def _run(self) -> None:
        interval = min(self.flush_interval_s, self.segment_max_age_s)
        while not self._stopping:
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # the writer must outlive any one bad batch; the batch is logged as lost
                log.exception("decision writer failed on a batch")

    def _drain(self) -> None:
        """Spool everything queued, at most ``batch_records`` decisions per round."""
        while self._pending:
            batch = []
            while self._pending and len(batch) < self.batch_records:
                batch.append(self._pending.popleft())
            self._write(batch)

    def _segments(self, batch: Iterable[dict[str, Any]]) -> list[_Segment]:
        """Split a batch into per-(line, date) segments of at most ``segment_max_bytes`` of JSON lines."""
        open_segments: dict[tuple[str, str], _Segment] = {}
        closed: list[_Segment] = []
        for record in batch:
            try:
                text = json.dumps(record, separators=(",", ":"), allow_nan=False).encode() + b"\n"
            except (TypeError, ValueError) as exc:
                log.error(
                    "decision not serialisable, not logged: %s (request_id=%s)", exc, record.get("request_id")
                )
                continue
            line, date = _partition(record)
            seg = open_segments.get((line, date))
            if seg is not None and seg.size + len(text) > self.segment_max_bytes:
                closed.append(seg)
                seg = None
            if seg is None:
                seg = open_segments[(line, date)] = _Segment(line, date, str(record.get("ts") or ""))
            seg.lines.append(text)
            seg.size += len(text)
        return closed + list(open_segments.values())

    def _write(self, batch: list[dict[str, Any]]) -> None:
        for seg in self._segments(batch):
            jsonl = b"".join(seg.lines)
            header = SpoolHeader(
                kind=SPOOL_KIND,
                key=decision_key(seg.line, seg.date, self.instance_id, seg.first_ts, jsonl),
                line=seg.line,
                samples=len(seg.lines),
                created_ns=time.time_ns(),
            )
            try:
                entry = self.spool.write(header, self._zstd.compress(jsonl))
            except OSError:
                log.exception("decision spool write failed; %d decisions not durable", len(seg.lines))
                continue
            self.metrics.decisions_spooled.inc(len(seg.lines))
            self.metrics.spool_segments.set(self.spool.file_count)
            if self.on_spooled is not None:
                self.on_spooled(entry)

    # ------------------------------------------------------------------------------------- shipping
    def pending(self) -> list[SpoolEntry]:
        """Spool entries not yet confirmed by the store, oldest first."""
        return self.spool.entries()

    def uploader(
        self,
        store: ObjectStore,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        concurrency: int = UPLOAD_CONCURRENCY,
    ) -> Uploader:
        """The collector's ``Uploader`` over this spool; call on the event loop that will run it.

        Entries already in the spool are released at once; new ones as the writer thread spools them
        (handed to the loop thread-safely). The uploader's own collector metrics stay private; the
        inference metrics are kept through its hooks.
        """
        up = Uploader(
            self.spool,
            store,
            CollectorMetrics(),
            concurrency=concurrency,
            retry_initial_s=retry_initial_s,
            retry_max_s=retry_max_s,
            on_uploaded=self._uploaded,
            on_error=self._upload_failed,
        )
        loop = asyncio.get_running_loop()

        def release(entry: SpoolEntry) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed: released again at the next start
                loop.call_soon_threadsafe(up.release, entry)

        self.on_spooled = release
        self._upload_progress = asyncio.Event()
        up.release_all_existing()
        return up

    async def drain_uploads(self, timeout_s: float) -> bool:
        """At shutdown: wait until the spool is empty, a PUT fails (store down) or ``timeout_s`` passed.

        Returns whether everything was confirmed; what is left is shipped at the next start.
        """
        progress = self._upload_progress
        if progress is None:
            return self.spool.file_count == 0
        deadline = time.monotonic() + timeout_s
        errors = self.upload_errors
        while True:
            progress.clear()  # before the check: an upload finishing in between still wakes us
            remaining = deadline - time.monotonic()
            if not self.spool.file_count or self.upload_errors != errors or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), remaining)
        return self.spool.file_count == 0

    def _uploaded(self, header: SpoolHeader) -> None:
        self.metrics.decisions_shipped.inc(header.samples)
        self.metrics.spool_segments.set(self.spool.file_count)
        if self._upload_progress is not None:
            self._upload_progress.set()

    def _upload_failed(self, header: SpoolHeader, exc: Exception) -> None:
        self.upload_errors += 1
        self.metrics.ship_errors.inc()
        if self._upload_progress is not None:
            self._upload_progress.set()
