"""Prometheus metrics of one server instance (own registry, so several apps can live in one process)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
OUTCOMES = (
    "ok", "model_unavailable", "deadline_exceeded", "out_of_support", "low_predicted_quality", "no_feasible_setting",
)  # fmt: skip


class RequestStats(Collector):
    """Outcome counter and latency histogram of POST /v1/recommendations, exported at scrape time.

    Why not prometheus_client's Counter/Histogram: each of their updates takes a mutex (two or three per
    request, ~0.5 us each, a few percent of the request). These two are only ever updated on the event
    loop's thread (the request handler) and read there too (the /metrics handler), so plain int/float
    updates are exact. The exposition is the one Counter/Histogram would produce
    (``inference_requests_total{outcome=...}``, ``inference_latency_seconds_bucket{le=...}``, ``_sum``,
    ``_count``).
    """

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(sorted(buckets))
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.bucket_counts = [0] * (len(self.bounds) + 1)  # last: above every bound (+Inf only)
        self.latency_sum = 0.0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] += 1

    def observe(self, seconds: float) -> None:
        self.bucket_counts[bisect_left(self.bounds, seconds)] += 1  # le: a value equal to a bound counts
        self.latency_sum += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "inference_requests", "Recommendation requests by outcome", labels=["outcome"]
        )
        for outcome, n in self.outcomes.items():
            requests.add_metric([outcome], n)
        yield requests
        cumulative, buckets = 0, []
        for bound, n in zip(self.bounds, self.bucket_counts, strict=False):
            cumulative += n
            buckets.append((floatToGoString(bound), cumulative))
        buckets.append(("+Inf", cumulative + self.bucket_counts[-1]))
        yield HistogramMetricFamily(
            "inference_latency_seconds",
            "Server-side recommendation latency",
            buckets=buckets,
            sum_value=self.latency_sum,
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_stats = RequestStats()
        r.register(self.request_stats)
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
