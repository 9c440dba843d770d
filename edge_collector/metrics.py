"""Prometheus metrics of the collector (own registry, so several collectors can share a process).

Why: operators must see backlog, upload errors, gaps and the disk-budget alert before data is at
risk; the budget alert gauge fires at ``spool_warn_ratio`` — before polling stops.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from factory_core.outbox.spool import SpoolHeader
from factory_core.outbox.uploader import UploadObserver


class CollectorMetrics:
    """All collector series; names are documented in docs/edge-collector.md."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.samples_collected = Counter(
            "edge_samples_collected", "Samples read from the sensor and made durable in the spool", registry=r
        )
        self.bytes_spooled = Counter("edge_bytes_spooled", "Bytes written durably to the spool", registry=r)
        self.batches_spooled = Counter("edge_batches_spooled", "Spool files written", ["kind"], registry=r)
        self.backlog_files = Gauge("edge_backlog_files", "Spool files not yet confirmed by S3", registry=r)
        self.backlog_bytes = Gauge("edge_backlog_bytes", "Bytes in the spool not yet confirmed", registry=r)
        self.backlog_oldest_age = Gauge(
            "edge_backlog_oldest_age_seconds", "Age of the oldest un-uploaded spool file", registry=r
        )
        self.uploads = Counter("edge_uploads", "Objects confirmed by the store", ["kind"], registry=r)
        self.upload_bytes = Counter("edge_upload_bytes", "Bytes confirmed by the store", registry=r)
        self.upload_errors = Counter("edge_upload_errors", "Failed upload attempts (retried)", registry=r)
        self.gaps = Counter("edge_gaps", "Gap records written to the ledger", ["reason"], registry=r)
        self.gap_samples = Counter("edge_gap_samples", "Samples recorded as lost", ["reason"], registry=r)
        self.poll_lag = Gauge(
            "edge_poll_lag_seconds",
            "Seconds since a channel group last caught up with the sensor",
            ["group"],
            registry=r,
        )
        self.poll_errors = Counter("edge_poll_errors", "Failed polls / connections", ["group"], registry=r)
        self.reconnects = Counter("edge_reconnects", "Sensor reconnect attempts", ["group"], registry=r)
        self.sensor_anomalies = Counter(
            "edge_sensor_anomalies", "Sequence anomalies (restart, seq backwards/ahead)", ["kind"], registry=r
        )
        self.spool_budget_bytes = Gauge("edge_spool_budget_bytes", "Configured spool_max_bytes", registry=r)
        self.spool_budget_used_ratio = Gauge(
            "edge_spool_budget_used_ratio", "Spool bytes / spool_max_bytes", registry=r
        )
        self.spool_budget_alert = Gauge(
            "edge_spool_budget_alert",
            "1 when used ratio >= spool_warn_ratio (fires before polling stops)",
            registry=r,
        )
        self.polling_paused = Gauge(
            "edge_polling_paused", "1 while polling is paused because the spool budget is full", registry=r
        )
        self.spool_corrupt = Counter("edge_spool_corrupt_files", "Spool files quarantined", registry=r)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint; returns the bound port (port 0 = ephemeral)."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class CollectorUploadObserver(UploadObserver):
    """The outbox's uploads as the collector's series (edge_backlog_*, edge_uploads, edge_upload_*)."""

    def __init__(self, metrics: CollectorMetrics) -> None:
        self.metrics = metrics

    def backlog(self, files: int, nbytes: int, oldest_age_s: float) -> None:
        self.metrics.backlog_files.set(files)
        self.metrics.backlog_bytes.set(nbytes)
        self.metrics.backlog_oldest_age.set(oldest_age_s)

    def uploaded(self, header: SpoolHeader, nbytes: int) -> None:
        self.metrics.uploads.labels(header.kind).inc()
        self.metrics.upload_bytes.inc(nbytes)

    def upload_failed(self, header: SpoolHeader, exc: Exception) -> None:
        self.metrics.upload_errors.inc()

    def corrupt(self) -> None:
        self.metrics.spool_corrupt.inc()
