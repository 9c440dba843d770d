"""Durable decision log: every request/response goes through the edge collector's spool and uploader.

Why the collector's path: sensor data and decisions share one durability story (temp file, fsync,
rename, dir fsync; corrupt files quarantined; oldest first to the store, retried without end, the
local file deleted only after the store confirmed), so there is one mechanism to trust and operate.

On the request path ``append`` turns the decision into its final JSON line (pydantic-core, ~1 us; an
epoch ``ts`` formatted as ISO 8601 UTC from a cached per-second prefix) and appends a small tuple to a
deque: no syscall, no thread wake-up. A writer thread, woken when ``batch_records`` are queued or every
``flush_interval_s``, groups the pre-encoded lines into segments - one per (line, UTC date), at most
``batch_records`` decisions and ``segment_max_bytes`` of JSON lines each - and writes each segment as
ONE spool entry (kind "decisions"): a zstd-compressed JSON-lines object whose key,
decisions/line={line}/date={date}/{instance}-{HHMMSS}-{sha256[:16]}.jsonl.zst, is derived from its
content, so a re-upload after a crash rewrites the same object. The writer does almost no Python work
per decision (join, sha256, zstd, write and fsync release the GIL), so it does not stall the event
loop. A decision counts as logged (``inference_decisions_spooled``) only once its spool entry is
durable: a power loss can take at most the decisions still queued in memory (<= ``batch_records`` or
``flush_interval_s`` worth).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import zstandard
from pydantic_core import PydanticSerializationError, to_json

from factory_core.decisionlog import decode_decisions
from factory_core.layout import decision_key
from factory_core.outbox.spool import Spool, SpoolEntry, SpoolHeader
from factory_core.outbox.uploader import Uploader, UploadObserver
from factory_core.store import ObjectStore
from inference_server.core.metrics import Metrics

log = logging.getLogger(__name__)

SPOOL_KIND = "decisions"
ZSTD_LEVEL = 3
UPLOAD_CONCURRENCY = 4
_KEY_PART_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # used with fullmatch (no "$" before a final newline)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII digits only (not any Unicode \d)
_STRICT_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_ORD_N, _ORD_I = ord("N"), ord("I")  # `int in bytes` is a memchr


def _json_line(record: dict[str, Any]) -> bytes:
    """One decision as a compact, ASCII-only JSON line (NaN/Infinity raise ValueError).

    pydantic-core's serializer writes it in ~1 us instead of ~6 us with the json module (the writer
    runs in the server process, so this is CPU per request). Its line parses to the same values (it
    writes 1e-6 where json writes 1e-06). A line it cannot write, one that is not pure ASCII (json
    escapes such text, so no line ever holds a raw U+2028 or similar) and one that might hold a
    non-finite float (pydantic-core writes those as NaN/Infinity) go through the json module instead.
    That last test is a memchr for "N" / "I" first (~20 ns each; a substring search costs ~0.4 us).
    """
    try:
        text = to_json(record)
    except (PydanticSerializationError, ValueError):
        text = None
    if (
        text is None
        or not text.isascii()
        or (_ORD_N in text and b"NaN" in text)
        or (_ORD_I in text and b"Infinity" in text)
    ):  # rare
        text = _STRICT_JSON.encode(record).encode()
    return text + b"\n"


def decode_segment(payload: bytes) -> list[dict[str, Any]]:
    """The decisions of one spool entry's payload / stored object (zstd JSON lines): the core's reader,
    the same one the data platform uses (factory_core.decisionlog)."""
    return decode_decisions(payload)


_BUCKET_CACHE_MAX = 4096  # distinct line ids / dates remembered (a full cache starts over)
_line_buckets: dict[str, str] = {}
_date_buckets: dict[str, str] = {}


def _bucket(value: str, pattern: re.Pattern[str], fallback: str, cache: dict[str, str]) -> str:
    """``value`` if it is a valid key part, else ``fallback``; memoized (one dict lookup per decision)."""
    bucket = cache.get(value)
    if bucket is None:
        bucket = value if pattern.fullmatch(value) else fallback
        if len(value) > 64:  # never a valid part: not worth remembering (bounds the cache's memory)
            return bucket
        if len(cache) >= _BUCKET_CACHE_MAX:
            cache.clear()
        cache[value] = bucket
    return bucket


_ts_second: tuple[int, str] = (0, "1970-01-01T00:00:00")  # last second formatted: (epoch, ISO prefix)


def iso_utc(ts: float) -> str:
    """``datetime.fromtimestamp(ts, UTC).isoformat()``, byte for byte, in a fraction of its cost.

    Microseconds are rounded exactly as ``datetime`` does it (fraction from ``modf``, times 1e6, round
    half to even, carry into the second); the "YYYY-MM-DDTHH:MM:SS" of the second is formatted once and
    cached (decisions of one second share it), and like ``isoformat`` no ".ffffff" is written when the
    microsecond is 0. Raises what ``datetime.fromtimestamp`` raises (NaN, out of range).
    """
    global _ts_second
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole += 1.0
        us -= 1_000_000
    elif us < 0:
        whole -= 1.0
        us += 1_000_000
    second = int(whole)
    cached, prefix = _ts_second  # one tuple: consistent even if another thread replaces it
    if second != cached:
        prefix = datetime.fromtimestamp(second, UTC).isoformat()[:19]
        _ts_second = (second, prefix)
    return f"{prefix}.{us:06d}+00:00" if us else prefix + "+00:00"


# A queued decision: ((line, date) of its segment, its ts as written, its JSON line).
_Encoded = tuple[tuple[str, str], str, bytes]
_SEGMENT_OF = itemgetter(0)
_LINE_OF = itemgetter(2)


def _encode(record: dict[str, Any]) -> _Encoded | None:
    """A decision as the writer needs it, or None (logged as an error) if it cannot be written.

    An epoch ``ts`` (float) is replaced in the record by its ISO 8601 UTC form; one that datetime cannot
    represent (NaN, out of range) is left as it is (the decision then lands in date "unknown", or is
    refused as not strict JSON). Never raises.
    """
    try:
        ts = record.get("ts")
        if isinstance(ts, float):
            try:
                formatted = iso_utc(ts)
            except (ValueError, OverflowError, OSError):
                formatted = ts  # datetime cannot represent it: kept as given
            ts = record["ts"] = formatted
        text = _json_line(record)
        ts_text = str(ts or "")
        line = str(record.get("line_id") or "")
        date = ts_text[:10]
        segment = (
            _line_buckets.get(line) or _bucket(line, _KEY_PART_RE, "invalid", _line_buckets),
            _date_buckets.get(date) or _bucket(date, _DATE_RE, "unknown", _date_buckets),
        )
    except Exception as exc:  # unserialisable (TypeError, ValueError, ...) or not a mapping at all
        try:
            request_id = record.get("request_id")
        except Exception:
            request_id = None
        log.error("decision not serialisable, not logged: %s (request_id=%s)", exc, request_id)
        return None
    return segment, ts_text, text


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
        self.metrics.spool_segments.set(self.spool.file_count)

    # -------------------------------------------------------------------------------------- writing
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any]) -> None:
        """Queue one decision as its final JSON line (never raises, never blocks the request).

        ``record["ts"]`` is the decision time: an ISO 8601 string, or epoch seconds (``time.time()``),
        which is replaced in the record by its ISO 8601 UTC form (``datetime.isoformat``). The record
        is serialized here, on the caller's thread (pydantic-core, ~1 us): later changes to it are not
        logged, and the writer thread has (almost) no Python work per decision, so it barely holds the
        GIL. A record that cannot be written (not strict JSON) is logged as an error with its
        ``request_id`` and dropped; nothing else is affected.

        A deque append is atomic under the GIL; the writer is woken only when a batch is full,
        otherwise it drains every ``flush_interval_s``: no per-request thread wake-up or syscall.
        """
        item = _encode(record)
        if item is None:
            return
        self._pending.append(item)
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
        pending = self._pending
        while pending:
            take = pending.popleft
            self._write([take() for _ in range(min(len(pending), self.batch_records))])

    def _segments(self, batch: list[_Encoded]) -> list[tuple[str, str, str, list[bytes]]]:
        """Split a batch into per-(line, date) segments of at most ``segment_max_bytes`` of JSON lines.

        Each segment is (line, date, ts of its first decision, its lines), its decisions in queue order.
        The grouping runs in C (stable sort, groupby, map); only a group over the size cap is split in
        Python, greedily (a line larger than the cap alone is a segment of its own).
        """
        batch.sort(key=_SEGMENT_OF)  # stable: queue order within each (line, date)
        cap = self.segment_max_bytes
        segments = []
        for (line, date), group in groupby(batch, _SEGMENT_OF):
            items = list(group)
            lines = list(map(_LINE_OF, items))
            if sum(map(len, lines)) <= cap:
                segments.append((line, date, items[0][1], lines))
                continue
            start = size = 0
            for i, text in enumerate(lines):
                if i > start and size + len(text) > cap:
                    segments.append((line, date, items[start][1], lines[start:i]))
                    start, size = i, 0
                size += len(text)
            segments.append((line, date, items[start][1], lines[start:]))
        return segments

    def _write(self, batch: list[_Encoded]) -> None:
        for line, date, first_ts, lines in self._segments(batch):
            jsonl = b"".join(lines)
            header = SpoolHeader(
                kind=SPOOL_KIND,
                key=decision_key(line, date, self.instance_id, first_ts, jsonl),
                line=line,
                samples=len(lines),
                created_ns=time.time_ns(),
            )
            try:
                entry = self.spool.write(header, self._zstd.compress(jsonl))
            except OSError:
                log.exception("decision spool write failed; %d decisions not durable", len(lines))
                continue
            self.metrics.decisions_spooled.inc(len(lines))
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
        (handed to the loop thread-safely). The inference metrics are kept through the observer.
        """
        up = Uploader(
            self.spool,
            store,
            _DecisionUploads(self),
            concurrency=concurrency,
            retry_initial_s=retry_initial_s,
            retry_max_s=retry_max_s,
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


class _DecisionUploads(UploadObserver):
    """The outbox's uploads as the inference server's decision-log series."""

    def __init__(self, log: DecisionLog) -> None:
        self.log = log

    def uploaded(self, header: SpoolHeader, nbytes: int) -> None:
        self.log._uploaded(header)

    def upload_failed(self, header: SpoolHeader, exc: Exception) -> None:
        self.log._upload_failed(header, exc)
