"""Gap ledger: every loss becomes a GapRecord with exact sequence bounds, spooled like data.

Why: "every loss recorded" — a gap object travels the same durable spool -> S3 path as samples, so a
crash cannot lose the record of a loss either; a metric and one JSON log line per gap say so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge_collector.metrics import CollectorMetrics
from factory_core.layout import gap_key
from factory_core.outbox.spool import Spool, SpoolEntry, SpoolHeader
from factory_core.rawformat import GapRecord, encode_gaps

log = logging.getLogger("edge_collector.ledger")

# Reasons written into GapRecord.reason (documented in docs/edge-collector.md).
REASON_RETENTION = "retention_expired"  # collector down / lagging / sensor unreachable > retention
REASON_BUDGET = "spool_budget_full"  # polling paused by the disk budget longer than retention
REASON_SEQ_JUMP = "sensor_seq_jump"  # sensor answered ahead of the cursor without a GAP flag
REASON_SEQ_BACKWARDS = "sensor_seq_backwards"  # sensor restarted behind our cursor: seqs re-issued, skipped
REASON_SPOOL_CORRUPT = "spool_corrupt"  # a spool file failed its CRC and was quarantined before upload


def estimate_ns(seq: int, anchor_seq: int, anchor_ns: int, rate_hz: float) -> int:
    """Timestamp of ``seq`` from an anchor sample of the same channel (fixed-rate channels)."""
    period_ns = round(1e9 / rate_hz)
    return anchor_ns + (seq - anchor_seq) * period_ns


class GapLedger:
    """Writes gap objects into the spool (caller holds the cursor discipline)."""

    def __init__(
        self,
        spool: Spool,
        metrics: CollectorMetrics,
        on_recorded: Callable[[list[GapRecord]], None] | None = None,
    ) -> None:
        self.spool = spool
        self.metrics = metrics
        # Called (in the committing thread) once the gap object is durable, e.g. to queue alerts;
        # it must return quickly and any error it raises is logged, never propagated.
        self.on_recorded = on_recorded

    def record(self, line: str, gaps: list[GapRecord]) -> SpoolEntry:
        """Durably spool one gap object; log and count each gap."""
        payload = encode_gaps(line, gaps)
        header = SpoolHeader(
            kind="gaps",
            key=gap_key(line, gaps),
            line=line,
            ranges={g.channel_id: (g.lost_from_seq, g.lost_to_seq) for g in gaps},
            samples=0,
            created_ns=time.time_ns(),
        )
        entry = self.spool.write(header, payload)
        for g in gaps:
            lost = g.lost_to_seq - g.lost_from_seq
            self.metrics.gaps.labels(g.reason).inc()
            self.metrics.gap_samples.labels(g.reason).inc(lost)
            log.warning(
                "gap recorded",
                extra={
                    "fields": {
                        "event": "gap",
                        "line": g.line,
                        "channel_id": g.channel_id,
                        "channel": g.channel_name,
                        "lost_from_seq": g.lost_from_seq,
                        "lost_to_seq": g.lost_to_seq,
                        "lost_samples": lost,
                        "lost_from_ns": g.lost_from_ns,
                        "lost_to_ns": g.lost_to_ns,
                        "reason": g.reason,
                        "key": header.key,
                    }
                },
            )
        if self.on_recorded is not None:
            try:
                self.on_recorded(gaps)
            except Exception:  # an alert path must never fail a durable spool commit
                log.exception("gap listener failed", extra={"fields": {"event": "gap_listener_error"}})
        return entry
