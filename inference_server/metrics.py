"""Prometheus metrics of one server instance (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "inference_requests", "Recommendation requests by outcome", ["outcome"], registry=r
        )
        self.latency = Histogram(
            "inference_latency_seconds",
            "Server-side recommendation latency",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_version = Gauge(
            "inference_model_version_number", "Version number being served (0 = none)", registry=r
        )
        self.swaps = Counter("inference_model_swaps", "Successful model swaps", registry=r)
        self.swap_failures = Counter(
            "inference_model_swap_failures", "Models refused at load/verify", ["reason"], registry=r
        )
        self.poll_errors = Counter(
            "inference_pointer_poll_errors", "Failed polls of the serving pointer", registry=r
        )
        self.decisions_spooled = Counter(
            "inference_decisions_spooled", "Decisions fsync'd to the local spool", registry=r
        )
        self.decisions_shipped = Counter(
            "inference_decisions_shipped", "Decisions confirmed by the object store", registry=r
        )
        self.ship_errors = Counter(
            "inference_decision_ship_errors", "Failed shipments of spool segments", registry=r
        )
        self.spool_segments = Gauge(
            "inference_spool_segments_pending", "Closed spool segments not yet shipped", registry=r
        )
