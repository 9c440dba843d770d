"""Uploader: moves spool files to the object store, oldest first, bounded parallelism, forever.

Why: S3 outages are normal; the loop outside boto3 retries without end (exponential backoff +
jitter) and a spool file is deleted only after the store confirmed the checksum-verified PUT, so an
outage costs disk, never data. Keys come from content, so a retried PUT rewrites the same object.
Other spool producers (the inference server's decision log) reuse it and observe it through the
optional ``on_uploaded`` / ``on_error`` hooks to keep their own metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections.abc import Callable

from edge_collector.metrics import CollectorMetrics
from edge_collector.spool import Spool, SpoolCorruptError, SpoolEntry, SpoolHeader, read_header
from edge_collector.store import ObjectStore

log = logging.getLogger("edge_collector.uploader")


class Uploader:
    """Drains the spool into ``store`` with at most ``concurrency`` PUTs in flight."""

    def __init__(
        self,
        spool: Spool,
        store: ObjectStore,
        metrics: CollectorMetrics,
        concurrency: int = 4,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        on_uploaded: Callable[[SpoolHeader], None] | None = None,
        on_error: Callable[[SpoolHeader, Exception], None] | None = None,
        on_corrupt: Callable[[SpoolHeader], SpoolEntry | None] | None = None,
    ) -> None:
        self.spool = spool
        self.store = store
        self.metrics = metrics
        self.concurrency = concurrency
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.on_uploaded = on_uploaded  # called after the store confirmed and the file is deleted
        self.on_error = on_error  # called on every failed PUT attempt (it is retried)
        # Called (in a worker thread) with the header of a quarantined file when its header is still
        # readable, so the loss of its ranges can be recorded; a spool entry it returns is released.
        self.on_corrupt = on_corrupt
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._queue: list[tuple[int, SpoolEntry]] = []  # min-heap by seqno: oldest first, O(log n)
        self.uploaded = 0
        self._metrics_at = 0.0

    def release(self, entry: SpoolEntry) -> None:
        """Make a file eligible (called once its cursor advance is persisted)."""
        heapq.heappush(self._queue, (entry.seqno, entry))
        self._wake.set()

    def release_all_existing(self) -> None:
        """At start: everything already in the spool is covered by the (re-derived) cursors."""
        for entry in self.spool.entries():
            heapq.heappush(self._queue, (entry.seqno, entry))
        self._wake.set()

    def refresh_metrics(self) -> None:
        self.metrics.backlog_files.set(self.spool.file_count)
        self.metrics.backlog_bytes.set(self.spool.total_bytes)
        self.metrics.backlog_oldest_age.set(self.spool.oldest_age_s())

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the oldest released files in flight until ``stop``; in-flight PUTs then finish or stop."""
        try:
            while not stop.is_set():
                self._wake.clear()
                self._fill()
                now = time.monotonic()
                if now - self._metrics_at >= 0.5:  # O(backlog) scan: rate-limited
                    self._metrics_at = now
                    self.refresh_metrics()
                wake = asyncio.ensure_future(self._wake.wait())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({wake, stopping}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                stopping.cancel()
        finally:
            tasks = list(self._inflight.values())
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.refresh_metrics()

    def _fill(self) -> None:
        while self._queue and len(self._inflight) < self.concurrency:
            _, entry = heapq.heappop(self._queue)
            if entry.seqno in self._inflight or not self.spool.contains(entry):
                continue
            task = asyncio.create_task(self._upload(entry), name=f"upload-{entry.seqno}")
            self._inflight[entry.seqno] = task
            task.add_done_callback(lambda _t, s=entry.seqno: self._done(s))

    def _done(self, seqno: int) -> None:
        self._inflight.pop(seqno, None)
        self._wake.set()

    async def _upload(self, entry: SpoolEntry) -> None:
        try:
            header, payload = await asyncio.to_thread(self.spool.read, entry)
        except (SpoolCorruptError, OSError) as exc:
            if entry.path.exists():
                self.metrics.spool_corrupt.inc()
                damaged: SpoolHeader | None = None
                with contextlib.suppress(SpoolCorruptError, OSError):
                    damaged = read_header(entry.path)  # a CRC failure often leaves the header intact
                self.spool.quarantine(entry, str(exc))
                if damaged is not None and self.on_corrupt is not None:
                    try:
                        recorded = await asyncio.to_thread(self.on_corrupt, damaged)
                    except Exception:  # e.g. SpoolWriteError: logged, the file stays in corrupt/
                        log.exception(
                            "recording a quarantined file failed",
                            extra={"fields": {"event": "spool_corrupt_record_error", "key": damaged.key}},
                        )
                    else:
                        if recorded is not None:
                            self.release(recorded)
            return
        delay = self.retry_initial_s
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                await asyncio.to_thread(self.store.put, header.key, payload)
                break
            except Exception as exc:  # StoreError, botocore/network errors: all retried forever
                self.metrics.upload_errors.inc()
                if self.on_error is not None:
                    self.on_error(header, exc)
                log.warning(
                    "upload failed; will retry",
                    extra={
                        "fields": {
                            "event": "upload_error",
                            "key": header.key,
                            "attempt": attempt,
                            "error": f"{type(exc).__name__}: {exc}"[:500],
                            "retry_in_s": round(delay, 3),
                            "elapsed_s": round(time.monotonic() - started, 3),
                        }
                    },
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.retry_max_s)
        await asyncio.to_thread(self.spool.remove, entry)
        self.uploaded += 1
        self.metrics.uploads.labels(header.kind).inc()
        self.metrics.upload_bytes.inc(len(payload))
        if self.on_uploaded is not None:
            self.on_uploaded(header)
        log.debug(
            "uploaded", extra={"fields": {"event": "uploaded", "key": header.key, "bytes": len(payload)}}
        )
