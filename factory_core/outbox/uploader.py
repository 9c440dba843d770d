"""Uploader: moves spool files to the object store, oldest first, bounded parallelism, forever.

Why: S3 outages are normal; the loop outside boto3 retries without end (exponential backoff +
jitter) and a spool file is deleted only after the store confirmed the checksum-verified PUT, so an
outage costs disk, never data. Keys come from content, so a retried PUT rewrites the same object.
Every spool producer (the edge collector, the inference server's decision log) uses it and observes it
through an `UploadObserver`, which keeps that service's own metrics: the outbox knows no service.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections.abc import Callable

from factory_core.outbox.spool import Spool, SpoolCorruptError, SpoolEntry, SpoolHeader, read_header
from factory_core.outbox.threads import DaemonThreadPool
from factory_core.store import ObjectStore

log = logging.getLogger("factory_core.outbox.uploader")


class UploadObserver:
    """What the uploader reports, as a hook a service overrides to keep its own metrics (no-ops here).

    Called on the event loop, so an override must be cheap and must not block."""

    def backlog(self, files: int, nbytes: int, oldest_age_s: float) -> None:
        """The spool's backlog, at most twice a second and once more when the uploader stops."""

    def uploaded(self, header: SpoolHeader, nbytes: int) -> None:
        """The store confirmed ``header.key`` and its spool file is deleted."""

    def upload_failed(self, header: SpoolHeader, exc: Exception) -> None:
        """One PUT attempt failed; the file is retried."""

    def corrupt(self) -> None:
        """A spool file could not be read back and was quarantined."""


class Uploader:
    """Drains the spool into ``store`` with at most ``concurrency`` PUTs in flight."""

    def __init__(
        self,
        spool: Spool,
        store: ObjectStore,
        observer: UploadObserver | None = None,
        concurrency: int = 4,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        on_corrupt: Callable[[SpoolHeader], SpoolEntry | None] | None = None,
    ) -> None:
        self.spool = spool
        self.store = store
        self.observer = observer or UploadObserver()
        self.concurrency = concurrency
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        # Called (in a worker thread) with the header of a quarantined file when its header is still
        # readable, so the loss of its ranges can be recorded; a spool entry it returns is released.
        self.on_corrupt = on_corrupt
        # PUTs run on their own daemon threads, never in the default executor (see threads.py).
        self._put_pool = DaemonThreadPool(concurrency, "upload")
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
        self.observer.backlog(self.spool.file_count, self.spool.total_bytes, self.spool.oldest_age_s())

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
            for task in tasks:  # a cancelled PUT returns at once; its thread finishes or hangs alone
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
                self.observer.corrupt()
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
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._put_pool, self.store.put, header.key, payload)
                break
            except Exception as exc:  # StoreError, botocore/network errors: all retried forever
                self.observer.upload_failed(header, exc)
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
        self.observer.uploaded(header, len(payload))
        log.debug(
            "uploaded", extra={"fields": {"event": "uploaded", "key": header.key, "bytes": len(payload)}}
        )
