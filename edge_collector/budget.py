"""Disk budget for the spool.

Policy (documented in docs/edge-collector.md): when the spool reaches ``spool_max_bytes`` the
collector stops polling new data; un-uploaded spool files are never deleted to make room. The
sensor keeps its 10-minute window meanwhile; if the budget stays full longer than that, the
samples that age out of the sensor are recorded in the gap ledger with exact bounds (reason
``spool_budget_full``) when polling resumes. ``edge_spool_budget_alert`` fires at
``spool_warn_ratio`` (default 80 %) so operators hear about it before polling stops.
"""

from __future__ import annotations

import logging
from typing import Any

from edge_collector.metrics import CollectorMetrics
from factory_core.outbox.spool import Spool

log = logging.getLogger("edge_collector.budget")


class DiskBudget:
    """Tracks spool usage against the budget and flips the alert / paused gauges."""

    def __init__(self, spool: Spool, max_bytes: int, warn_ratio: float, metrics: CollectorMetrics) -> None:
        self.spool = spool
        self.max_bytes = max_bytes
        self.warn_ratio = warn_ratio
        self.metrics = metrics
        self.pause_epoch = 0  # bumps each time polling pauses; pollers use it to label gaps
        self._paused = False
        self._alert = False
        metrics.spool_budget_bytes.set(max_bytes)

    @property
    def ratio(self) -> float:
        return self.spool.total_bytes / self.max_bytes

    def refresh(self) -> bool:
        """Update gauges; return True when polling must pause (budget reached)."""
        ratio = self.ratio
        self.metrics.spool_budget_used_ratio.set(ratio)
        alert = ratio >= self.warn_ratio
        if alert != self._alert:
            self._alert = alert
            self.metrics.spool_budget_alert.set(1 if alert else 0)
            level = logging.WARNING if alert else logging.INFO
            log.log(
                level,
                "spool budget alert " + ("raised" if alert else "cleared"),
                extra={"fields": {"event": "spool_budget_alert", "alert": alert, "ratio": round(ratio, 4)}},
            )
        full = ratio >= 1.0
        if full != self._paused:
            self._paused = full
            self.metrics.polling_paused.set(1 if full else 0)
            if full:
                self.pause_epoch += 1
            log.log(
                logging.ERROR if full else logging.INFO,
                "polling " + ("paused: spool budget reached" if full else "resumed: spool below budget"),
                extra={
                    "fields": {"event": "spool_budget_full" if full else "spool_budget_ok", "ratio": ratio}
                },
            )
        return full

    @property
    def paused(self) -> bool:
        return self._paused

    def alert_kwargs(self, line: str) -> dict[str, Any] | None:
        """``Notifier.notify`` arguments while usage is at/above ``warn_ratio`` (None below it).

        Warning at the warn ratio, critical once polling is paused: the escalation passes the
        notifier's rate limit, so the page that says "data is about to be lost" is never swallowed.
        """
        ratio = self.ratio
        if ratio < self.warn_ratio:
            return None
        full = ratio >= 1.0
        used, budget = self.spool.total_bytes, self.max_bytes
        state = "polling is PAUSED" if full else "polling continues"
        return {
            "subject": f"Spool disk budget on line {line} at {ratio:.0%}",
            "body": (
                f"The spool of line {line} holds {used} of {budget} bytes ({ratio:.1%}, warning at "
                f"{self.warn_ratio:.0%}); {state}. Un-uploaded files are never deleted: if polling stays "
                "paused longer than the sensor's retention, samples are lost (recorded as "
                "spool_budget_full gaps). Check the uplink / S3 (edge_upload_errors_total) or free disk."
            ),
            "severity": "critical" if full else "warning",
            "dedup_key": f"spool_budget:{line}",
            "details": {"line": line, "used_bytes": used, "budget_bytes": budget, "ratio": f"{ratio:.4f}"},
        }
