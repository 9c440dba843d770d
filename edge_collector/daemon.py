"""The collector daemon: wires spool, cursors, ledger, budget, pollers, uploader and metrics.

Why one place: start-up order matters (cursors derived from the spool before any read; backlog
upload starts before the sensor is reachable) and so does shutdown (SIGTERM: in-flight spool writes
finish, cursors persisted, exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import random
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from edge_collector.alerts import notify_backlog, notify_gap
from edge_collector.budget import DiskBudget
from edge_collector.config import CollectorConfig, ConfigError
from edge_collector.cursors import CursorStore
from edge_collector.ledger import REASON_SPOOL_CORRUPT, GapLedger
from edge_collector.metrics import CollectorMetrics, CollectorUploadObserver
from edge_collector.poller import RETRYABLE, GroupPoller, PollContext
from edge_collector.sensor_client import SensorClient
from factory_core.alerting import Notifier, notifier_from_env
from factory_core.outbox.spool import Spool, SpoolEntry, SpoolHeader
from factory_core.outbox.uploader import Uploader
from factory_core.protocol import ChannelInfo
from factory_core.rawformat import GapRecord
from factory_core.store import ObjectStore, open_store

log = logging.getLogger("edge_collector.daemon")
_LINE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")  # rawformat's key-safe name rule


class StartupError(RuntimeError):
    """The collector cannot start safely (e.g. the spool belongs to another line)."""


def open_configured_store(cfg: CollectorConfig) -> ObjectStore:
    """The object store named by ``store_url`` with the S3 settings of the config."""
    if cfg.store_url.startswith("s3://"):
        return open_store(
            cfg.store_url,
            endpoint_url=cfg.s3_endpoint_url or None,
            region=cfg.s3_region,
            checksum=cfg.s3_checksum,
            max_attempts=cfg.s3_max_attempts,
        )
    return open_store(cfg.store_url)


def make_groups(channels: list[ChannelInfo], size: int) -> list[tuple[str, list[ChannelInfo]]]:
    """Stable channel groups (sorted by id, ``size`` per group): group names go into object keys."""
    ordered = sorted(channels, key=lambda c: c.id)
    return [(f"g{i // size:02d}", ordered[i : i + size]) for i in range(0, len(ordered), size)]


class AlertDispatcher:
    """Runs notifier calls on one daemon thread of its own.

    Why not ``asyncio.to_thread``: spool commits share the default executor, and a blackholed SNS
    endpoint (timeout x retries per alert, one alert per gapped channel) would starve them. Here a
    slow alert path only delays other alerts; the queue is bounded and overflow is logged, and the
    thread is a daemon so it can never hold up process exit.
    """

    def __init__(self, max_pending: int = 1000) -> None:
        self._queue: queue.Queue[tuple[str | None, Callable[..., Any], dict[str, Any]] | None]
        self._queue = queue.Queue(maxsize=max_pending)
        self._pending: set[str] = set()  # keys queued and not yet run (periodic checks coalesce)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="edge-alerts", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *, key: str | None = None, **kwargs: Any) -> bool:
        """Queue ``fn(**kwargs)``; thread-safe, never blocks. A ``key`` still queued is not queued twice."""
        with self._lock:
            if self._closed or (key is not None and key in self._pending):
                return False
            try:
                self._queue.put_nowait((key, fn, kwargs))
            except queue.Full:
                log.warning(
                    "alert dropped: queue full", extra={"fields": {"event": "alert_dropped", "key": key}}
                )
                return False
            if key is not None:
                self._pending.add(key)
        return True

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            key, fn, kwargs = item
            with self._lock:
                self._pending.discard(key or "")
            try:
                fn(**kwargs)  # Notifier methods never raise; this guards the thread anyway
            except Exception:
                log.exception("alert call failed", extra={"fields": {"event": "alert_error"}})

    def close(self, timeout_s: float) -> None:
        """Stop taking alerts; give queued ones up to ``timeout_s`` to go out (blocking: use a thread)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)


class CollectorAlerts:
    """What pages a person: each gap record, an old upload backlog, the spool disk-budget warning."""

    def __init__(self, notifier: Notifier, spool: Spool, budget: DiskBudget, backlog_age_s: float) -> None:
        self.notifier = notifier
        self.spool = spool
        self.budget = budget
        self.backlog_age_s = backlog_age_s
        self.dispatcher = AlertDispatcher()

    def gaps_recorded(self, gaps: list[GapRecord]) -> None:
        """GapLedger listener (runs in the spool-commit thread): queue one alert per gap record."""
        for gap in gaps:
            self.dispatcher.submit(notify_gap, notifier=self.notifier, gap=gap)

    def check(self, line: str) -> None:
        """Periodic check; repeats are rate-limited by the notifier's dedup keys (backlog:, spool_budget:)."""
        age = self.spool.oldest_age_s()
        if age > self.backlog_age_s:
            self.dispatcher.submit(
                notify_backlog,
                key="backlog",
                notifier=self.notifier,
                line=line,
                oldest_age_s=age,
                threshold_s=self.backlog_age_s,
                backlog_files=self.spool.file_count,
                backlog_bytes=self.spool.total_bytes,
            )
        budget = self.budget.alert_kwargs(line)
        if budget is not None:
            self.dispatcher.submit(self.notifier.notify, key="budget", **budget)

    async def watch(self, stop: asyncio.Event, interval_s: float, line: Callable[[], str | None]) -> None:
        """Run ``check`` every ``interval_s`` until ``stop``; a failing check is logged, never fatal."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            if stop.is_set():
                return
            try:
                self.check(line() or "unknown")
            except Exception:
                log.exception("alert check failed", extra={"fields": {"event": "alert_check_error"}})


def _notifier_from_env(metrics: CollectorMetrics) -> Notifier:
    """``EDGE_ALERT_*`` -> Notifier (counters in the collector's registry); bad settings stop start-up."""
    try:
        return notifier_from_env(registry=metrics.registry)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class Collector:
    """One collector instance; ``run`` returns the process exit code."""

    def __init__(
        self,
        cfg: CollectorConfig,
        store: ObjectStore | None = None,
        fsync: Callable[[int], None] = os.fsync,
        metrics: CollectorMetrics | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or CollectorMetrics()
        self.notifier = notifier if notifier is not None else _notifier_from_env(self.metrics)
        self.spool = Spool(cfg.spool_path, fsync=fsync)
        self.cursors = CursorStore(cfg.spool_path)
        self.cursors.load_with_spool(self.spool)  # quarantines files whose header is unreadable
        if self.spool.quarantined:  # their ranges are unknown: counted and logged (spool_corrupt)
            self.metrics.spool_corrupt.inc(self.spool.quarantined)
        self.cursors.persist()
        self.store = store if store is not None else open_configured_store(cfg)
        self.ledger = GapLedger(self.spool, self.metrics)
        self.budget = DiskBudget(self.spool, cfg.spool_max_bytes, cfg.spool_warn_ratio, self.metrics)
        self.uploader = Uploader(
            self.spool,
            self.store,
            CollectorUploadObserver(self.metrics),
            concurrency=cfg.upload_concurrency,
            retry_initial_s=cfg.upload_retry_initial_s,
            retry_max_s=cfg.upload_retry_max_s,
            on_corrupt=self._record_corrupt,
        )
        # No alert destination configured: no thread, no listener, no checks (behaviour as before).
        self.alerts: CollectorAlerts | None = None
        if self.notifier.enabled:
            self.alerts = CollectorAlerts(self.notifier, self.spool, self.budget, cfg.alert_backlog_age_s)
            self.ledger.on_recorded = self.alerts.gaps_recorded
        self.pollers: list[GroupPoller] = []
        self.metrics_port: int | None = None
        self.line: str | None = self.cursors.line

    def _record_corrupt(self, header: SpoolHeader) -> SpoolEntry | None:
        """(uploader thread) A batch / gap file quarantined before upload: its header still names the
        exact seq ranges, which are recorded lost (reason ``spool_corrupt``) so nothing goes silent.
        Times come from a poller's anchor when one is known, else the file's creation time."""
        if header.kind not in ("batch", "gaps") or not header.ranges:
            return None
        now_ns = time.time_ns()
        pollers = {cid: p for p in self.pollers for cid in p.channels}
        gaps = []
        for cid, (first, nxt) in sorted(header.ranges.items()):
            if nxt <= first:
                continue
            poller = pollers.get(cid)
            if poller is not None:
                gaps.append(poller._gap(poller.channels[cid], first, nxt, REASON_SPOOL_CORRUPT, now_ns))
            else:  # found before the sensor answered: no channel name / rate known yet
                t_ns = header.created_ns
                gaps.append(
                    GapRecord(header.line, cid, "", first, nxt, t_ns, t_ns, now_ns, REASON_SPOOL_CORRUPT)
                )
        return self.ledger.record(header.line, gaps) if gaps else None

    async def _discover(self, stop: asyncio.Event) -> tuple[str, list[ChannelInfo]] | None:
        """Sensor line name and channel list, retried with backoff + jitter until reachable."""
        delay = self.cfg.reconnect_initial_s
        while not stop.is_set():
            client = SensorClient(
                self.cfg.sensor_host,
                self.cfg.sensor_port,
                timeout=self.cfg.request_timeout_s,
                connect_timeout=self.cfg.request_timeout_s,
            )
            try:
                await client.connect()
                status = await client.status()
                channels = await client.list_channels()
                return status.line, channels
            except RETRYABLE as exc:
                log.warning(
                    "sensor unreachable; retrying",
                    extra={
                        "fields": {
                            "event": "sensor_unreachable",
                            "error": str(exc)[:300],
                            "retry_in_s": delay,
                        }
                    },
                )
            finally:
                await client.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.cfg.reconnect_max_s)
        return None

    async def run(self, stop: asyncio.Event | None = None, install_signals: bool = True) -> int:
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        if self.cfg.metrics_port >= 0:
            self.metrics_port = self.metrics.serve(self.cfg.metrics_host, self.cfg.metrics_port)
        log.info(
            "collector starting",
            extra={
                "fields": {
                    "event": "start",
                    "spool_dir": self.cfg.spool_dir,
                    "backlog_files": self.spool.file_count,
                    "backlog_bytes": self.spool.total_bytes,
                    "cursors": len(self.cursors.snapshot()),
                    "metrics_port": self.metrics_port,
                }
            },
        )
        self.uploader.release_all_existing()
        upload_task = asyncio.create_task(self.uploader.run(stop), name="uploader")
        alert_task: asyncio.Task[None] | None = None
        if self.alerts is not None:
            alert_task = asyncio.create_task(
                self.alerts.watch(stop, self.cfg.alert_check_interval_s, lambda: self.line), name="alerts"
            )
        poll_tasks: list[asyncio.Task[None]] = []
        try:
            found = await self._discover(stop)
            if found is not None:
                line, channels = found
                if self.line is not None and self.line != line:
                    raise StartupError(
                        f"spool_dir {self.cfg.spool_dir} holds cursors of line {self.line!r} but the "
                        f"sensor reports line {line!r}; use a separate spool_dir per line"
                    )
                if not _LINE_RE.fullmatch(line):
                    raise StartupError(
                        f"sensor reports line {line!r}, which cannot be used in object keys "
                        "(1-64 chars of [A-Za-z0-9-], starting alphanumeric)"
                    )
                self.line = self.cursors.line = line
                ctx = PollContext(
                    host=self.cfg.sensor_host,
                    port=self.cfg.sensor_port,
                    line=line,
                    spool=self.spool,
                    cursors=self.cursors,
                    ledger=self.ledger,
                    budget=self.budget,
                    metrics=self.metrics,
                    semaphore=asyncio.Semaphore(self.cfg.max_concurrent_polls),
                    release=self.uploader.release,
                    poll_interval_s=self.cfg.poll_interval_s,
                    request_timeout_s=self.cfg.request_timeout_s,
                    max_samples=self.cfg.max_samples,
                    reconnect_initial_s=self.cfg.reconnect_initial_s,
                    reconnect_max_s=self.cfg.reconnect_max_s,
                )
                self.pollers = [
                    GroupPoller(n, chs, ctx) for n, chs in make_groups(channels, self.cfg.group_size)
                ]
                log.info(
                    "polling",
                    extra={"fields": {"event": "polling", "line": line, "channels": len(channels),
                                      "groups": len(self.pollers)}},
                )  # fmt: skip
                poll_tasks = [asyncio.create_task(p.run(stop), name=f"poll-{p.name}") for p in self.pollers]
                # A poller only ends early on a fatal error (e.g. SpoolWriteError): stop everything.
                stopper = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait([*poll_tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                for task in done:
                    if task is not stopper and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            return 0
        finally:
            stop.set()
            await self._stop_pollers(poll_tasks)
            await asyncio.to_thread(self.cursors.persist)
            with contextlib.suppress(asyncio.CancelledError):
                await upload_task
            if self.alerts is not None and alert_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await alert_task
                # Gap alerts of the last commits still go out, bounded by the shutdown grace period.
                await asyncio.to_thread(self.alerts.dispatcher.close, min(5.0, self.cfg.shutdown_timeout_s))
            self.metrics.close()
            log.info(
                "collector stopped",
                extra={"fields": {"event": "stop", "backlog_files": self.spool.file_count,
                                  "backlog_bytes": self.spool.total_bytes}},
            )  # fmt: skip

    async def _stop_pollers(self, tasks: list[asyncio.Task[None]]) -> None:
        """Let pollers leave at a safe point; interrupt reads, never a spool commit (runs in a thread)."""
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=min(1.0, self.cfg.shutdown_timeout_s))
        for task in pending:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException) and not isinstance(res, asyncio.CancelledError):
                log.error("poller ended with error", extra={"fields": {"error": repr(res)}})
