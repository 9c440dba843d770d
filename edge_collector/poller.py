"""Channel-group pollers: read each group's channels from its cursors, spool, then advance cursors.

Why: the sensor keeps only ``retention_s``; each group polls every ``poll_interval_s`` (and keeps
reading while behind), with per-request timeouts, reconnect with exponential backoff + jitter, and a
semaphore bounding how many groups read at once. A batch is durable before its cursor moves, and
every discontinuity (GAP flag, seq jump, seq going backwards after a sensor restart) is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_collector.budget import DiskBudget
from edge_collector.cursors import CursorStore
from edge_collector.ledger import (
    REASON_BUDGET,
    REASON_RETENTION,
    REASON_SEQ_BACKWARDS,
    REASON_SEQ_JUMP,
    GapLedger,
    estimate_ns,
)
from edge_collector.metrics import CollectorMetrics
from edge_collector.sensor_client import SensorClient, SensorError
from factory_core.layout import batch_key
from factory_core.outbox.spool import Spool, SpoolEntry, SpoolHeader, SpoolWriteError
from factory_core.protocol import ChannelInfo, ChannelRead, ProtocolError
from factory_core.rawformat import ChannelBlock, GapRecord, RawBatch, encode_batch

log = logging.getLogger("edge_collector.poller")

RETRYABLE = (OSError, ConnectionError, TimeoutError, ProtocolError, SensorError, EOFError)


@dataclass
class PollContext:
    """What every group poller shares."""

    host: str
    port: int
    line: str
    spool: Spool
    cursors: CursorStore
    ledger: GapLedger
    budget: DiskBudget
    metrics: CollectorMetrics
    semaphore: asyncio.Semaphore
    release: Callable[[SpoolEntry], None]
    poll_interval_s: float
    request_timeout_s: float
    max_samples: int
    reconnect_initial_s: float
    reconnect_max_s: float


@dataclass
class _Plan:
    """Result of interpreting one READ: what to write and how far cursors move."""

    blocks: list[ChannelBlock]
    gaps: list[GapRecord]
    updates: dict[int, int]
    caught_up: bool
    samples: int
    backwards: dict[int, int] = field(default_factory=dict)  # channel -> cursor of a recorded gap


class GroupPoller:
    """Polls one channel group over its own connection."""

    def __init__(self, name: str, channels: list[ChannelInfo], ctx: PollContext) -> None:
        self.name = name
        self.channels = {c.id: c for c in channels}
        self.ctx = ctx
        self._client: SensorClient | None = None
        self._anchor: dict[int, tuple[int, int]] = {}  # channel -> (seq, t_ns) of a known sample
        self._pause_epoch = ctx.budget.pause_epoch
        self._backwards_recorded: dict[int, int] = {}  # channel -> cursor at which recorded
        self._last_caught_up = time.monotonic()
        self.reads = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``; connection problems are retried forever with backoff + jitter."""
        backoff = self.ctx.reconnect_initial_s
        try:
            while not stop.is_set():
                self.ctx.metrics.poll_lag.labels(self.name).set(time.monotonic() - self._last_caught_up)
                if self.ctx.budget.refresh():
                    await _sleep_or_stop(stop, min(1.0, self.ctx.poll_interval_s))
                    continue
                try:
                    if self._client is None:
                        self.ctx.metrics.reconnects.labels(self.name).inc()
                        client = SensorClient(
                            self.ctx.host,
                            self.ctx.port,
                            timeout=self.ctx.request_timeout_s,
                            connect_timeout=self.ctx.request_timeout_s,
                        )
                        await client.connect()
                        self._client = client
                    caught_up = await self.poll_cycle(self._client, stop)
                    backoff = self.ctx.reconnect_initial_s
                except SpoolWriteError:
                    raise  # an OSError, but not a connection problem: the daemon must stop (exit 1)
                except RETRYABLE as exc:
                    self.ctx.metrics.poll_errors.labels(self.name).inc()
                    log.warning(
                        "poll failed; reconnecting",
                        extra={
                            "fields": {
                                "event": "poll_error",
                                "group": self.name,
                                "error": f"{type(exc).__name__}: {exc}"[:300],
                                "retry_in_s": round(backoff, 3),
                            }
                        },
                    )
                    await self._drop_client()
                    await _sleep_or_stop(stop, backoff * random.uniform(0.5, 1.0))
                    backoff = min(backoff * 2, self.ctx.reconnect_max_s)
                    continue
                if caught_up:
                    self._last_caught_up = time.monotonic()
                    self.ctx.metrics.poll_lag.labels(self.name).set(0.0)
                    await _sleep_or_stop(stop, self.ctx.poll_interval_s)
        finally:
            await self._drop_client()

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def poll_once(self, client: SensorClient) -> bool:
        """One READ of the whole group, made durable; returns True when the group is caught up."""
        return await self.poll_cycle(client, max_reads=1)

    async def poll_cycle(
        self, client: SensorClient, stop: asyncio.Event | None = None, max_reads: int | None = None
    ) -> bool:
        """READ until caught up (or stopped / budget full), pipelined: the next READ is in flight
        while the previous batch is being made durable. Cursors still only move after each commit
        (reads ahead use planned cursors); commits stay in order. Returns True when caught up."""
        ahead: dict[int, int] = {}
        commit: asyncio.Task[list[SpoolEntry]] | None = None
        reads_done = 0
        caught_up = False
        try:
            while True:
                requests = [(cid, ahead.get(cid, self.ctx.cursors.get(cid) or 0)) for cid in self.channels]
                async with self.ctx.semaphore:
                    reads = await client.read(requests, self.ctx.max_samples)
                self.reads += 1
                reads_done += 1
                plan = await self._interpret(client, reads, ahead)
                if commit is not None:
                    await self._finish(commit)
                    commit = None
                if plan.blocks or plan.gaps:
                    commit = asyncio.create_task(self._commit_async(plan))
                    ahead.update(plan.updates)
                caught_up = plan.caught_up
                self._pause_epoch = self.ctx.budget.pause_epoch
                if caught_up or (max_reads is not None and reads_done >= max_reads):
                    break
                if (stop is not None and stop.is_set()) or self.ctx.budget.refresh():
                    break
        finally:
            if commit is not None:
                await self._finish(commit)
        return caught_up

    async def _commit_async(self, plan: _Plan) -> list[SpoolEntry]:
        entries = await asyncio.to_thread(self._commit, plan)
        self.ctx.metrics.samples_collected.inc(plan.samples)
        return entries

    async def _finish(self, commit: asyncio.Task[list[SpoolEntry]]) -> None:
        for entry in await asyncio.shield(commit):
            self.ctx.release(entry)

    async def _interpret(
        self, client: SensorClient, reads: list[ChannelRead], ahead: dict[int, int] | None = None
    ) -> _Plan:
        blocks: list[ChannelBlock] = []
        gaps: list[GapRecord] = []
        updates: dict[int, int] = {}
        caught_up = True
        samples = 0
        initialised: list[int] = []
        backwards: dict[int, int] = {}
        now_ns = time.time_ns()
        for r in reads:
            info = self.channels[r.channel_id]
            cur = (ahead or {}).get(r.channel_id, self.ctx.cursors.get(r.channel_id))
            n = r.count
            first = r.first_seq
            t_ns, values = r.t_ns, r.values
            if n:
                self._anchor[r.channel_id] = (first, int(t_ns[0]))
            if cur is None:
                # First contact ever with this channel: start at the oldest retained sample.
                if n or r.gap:
                    updates[r.channel_id] = first
                    cur = first
                    initialised.append(r.channel_id)
                else:
                    cur = first
            if r.next_seq < cur:
                # Sensor head behind our cursor: record once per cursor position, read nothing.
                already = (
                    self._backwards_recorded.get(r.channel_id),
                    self.ctx.cursors.backwards_recorded_at(r.channel_id),
                )
                if cur not in already:
                    gap = await self._backwards(client, info, cur, r, now_ns)
                    if gap is not None:
                        gaps.append(gap)
                        backwards[r.channel_id] = cur
                continue
            if first > cur:
                reason = self._gap_reason(r.gap)
                if not r.gap:
                    self.ctx.metrics.sensor_anomalies.labels("seq_jump").inc()
                gaps.append(self._gap(info, cur, first, reason, now_ns))
                updates[r.channel_id] = first
                cur = first
            if n and first < cur:
                # Server returned samples we already hold: keep only the new tail (never duplicate).
                skip = cur - first
                t_ns, values, first, n = t_ns[skip:], values[skip:], cur, max(0, n - skip)
            if n:
                blocks.append(
                    ChannelBlock(
                        info.id,
                        info.name,
                        info.unit,
                        info.rate_hz,
                        first,
                        np.asarray(t_ns, np.int64),
                        np.asarray(values, np.float64),
                    )
                )
                updates[r.channel_id] = first + n
                samples += n
            if max(updates.get(r.channel_id, cur), cur) < r.next_seq:
                caught_up = False
        if initialised:
            log.info(
                "channel cursors initialised at the oldest retained samples",
                extra={"fields": {"event": "cursor_init", "group": self.name, "channels": initialised}},
            )
        return _Plan(blocks, gaps, updates, caught_up, samples, backwards)

    async def _backwards(
        self, client: SensorClient, info: ChannelInfo, cur: int, r: ChannelRead, now_ns: int
    ) -> GapRecord | None:
        """Sensor head behind our cursor (restart): its seqs [oldest, cur) re-issue identities we hold.

        They are skipped (first-collected wins) and the skipped range is recorded once, exactly when
        the restart happened within the sensor's retention (its oldest retained seq is the restart seq).
        """
        self._backwards_recorded[info.id] = cur
        self.ctx.metrics.sensor_anomalies.labels("seq_backwards").inc()
        probe = (await client.read([(info.id, 0)], 1))[0]
        oldest = min(probe.first_seq, r.next_seq)
        log.error(
            "sensor sequence went backwards (restart?)",
            extra={
                "fields": {
                    "event": "sensor_seq_backwards",
                    "group": self.name,
                    "channel_id": info.id,
                    "cursor": cur,
                    "sensor_head": r.next_seq,
                    "sensor_oldest": oldest,
                }
            },
        )
        if oldest >= cur:
            return None
        if probe.count:
            self._anchor[info.id] = (probe.first_seq, int(probe.t_ns[0]))
        return self._gap(info, oldest, cur, REASON_SEQ_BACKWARDS, now_ns)

    def _gap_reason(self, flagged: bool) -> str:
        if not flagged:
            return REASON_SEQ_JUMP
        return REASON_BUDGET if self.ctx.budget.pause_epoch != self._pause_epoch else REASON_RETENTION

    def _gap(self, info: ChannelInfo, lost_from: int, lost_to: int, reason: str, now_ns: int) -> GapRecord:
        anchor = self._anchor.get(info.id)
        if anchor is None:
            from_ns, to_ns = now_ns, now_ns
        else:
            from_ns = estimate_ns(lost_from, anchor[0], anchor[1], info.rate_hz)
            to_ns = estimate_ns(lost_to, anchor[0], anchor[1], info.rate_hz)
        return GapRecord(
            line=self.ctx.line,
            channel_id=info.id,
            channel_name=info.name,
            lost_from_seq=lost_from,
            lost_to_seq=lost_to,
            lost_from_ns=from_ns,
            lost_to_ns=to_ns,
            detected_at_ns=now_ns,
            reason=reason,
        )

    def _commit(self, plan: _Plan) -> list[SpoolEntry]:
        """(worker thread) gaps + batch durable in the spool, then cursors advanced and persisted."""
        entries: list[SpoolEntry] = []
        if plan.gaps:
            entries.append(self.ctx.ledger.record(self.ctx.line, plan.gaps))
        if plan.blocks:
            batch = RawBatch(self.ctx.line, self.name, tuple(plan.blocks))
            payload = encode_batch(batch)
            header = SpoolHeader(
                kind="batch",
                key=batch_key(batch),
                line=self.ctx.line,
                ranges={b.channel_id: (b.first_seq, b.first_seq + b.count) for b in plan.blocks},
                samples=plan.samples,
                created_ns=time.time_ns(),
            )
            entries.append(self.ctx.spool.write(header, payload))
            self.ctx.metrics.bytes_spooled.inc(entries[-1].size)
            self.ctx.metrics.batches_spooled.labels("batch").inc()
        if plan.gaps:
            self.ctx.metrics.batches_spooled.labels("gaps").inc()
        self.ctx.cursors.mark_backwards(plan.backwards)  # the gap record is durable: never again
        self.ctx.cursors.advance(plan.updates)
        self.ctx.cursors.persist()
        return entries


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
