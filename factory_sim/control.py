"""The line's control system: ask the recommendation endpoint per production, fall back to the craftsman.

The model is advisory: whatever goes wrong on the way to it (no answer within the deadline, connection
refused, 503 fallback, wrong key, garbage, parameters outside the machine's safety ranges) the craftsman
on shift sets the dial instead, and the reason is counted so the operators can see why.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from factory_core.machine import MODEL_CODE_BASE
from factory_sim import physics
from factory_sim.config import NS_PER_S, ORIGIN_NS, SimConfig
from factory_sim.craftsmen import Decision, ProductionContext, shift_index_at
from factory_sim.schedule import LineTimeline, Production

# Why a production fell back to the craftsman (one counter per reason).
FALLBACK_REASONS: tuple[str, ...] = (
    "deadline",  # no complete answer within the client-side deadline
    "connection",  # refused / reset / DNS / protocol error before an answer
    "unauthorized",  # 401/403: missing or wrong API key
    "rejected",  # other 4xx, e.g. 422 validation_error
    "model_unavailable",  # 503 {"error": "model_unavailable"}
    "out_of_support",  # 503: the model refused, the lot lies outside the history it learned from
    "low_predicted_quality",  # 503: the model refused, the best setting it found is expected to be poor
    "no_feasible_setting",  # 503: the model refused, no setting passed its fault-risk and support checks
    "server_deadline_exceeded",  # 503 {"error": "deadline_exceeded"}
    "server_error",  # any other 5xx (or a 503 without the contract's body)
    "unexpected_status",  # 1xx/3xx/other 2xx
    "malformed_response",  # 200 whose body is not the contract's JSON
    "unsafe_parameters",  # 200 whose parameters are outside physics.SAFETY_RANGES (or not finite)
)
RECOMMEND_PATH = "/v1/recommendations"
MAX_MODEL_VERSION_NUMBER = 65535 - MODEL_CODE_BASE  # set_by_code is a u16 on the wire


class EndpointFailure(Exception):
    """The endpoint gave no usable recommendation; `reason` is one of FALLBACK_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in FALLBACK_REASONS:
            raise ValueError(f"reason: {reason!r} is not one of {FALLBACK_REASONS}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _ParamsBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    temperature: float
    feed_rate: float
    pressure: float


class _RecommendationBody(BaseModel):
    """The 200 body of the inference API contract (extra fields tolerated for forward compatibility)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    request_id: str
    line_id: str
    model_version: str
    model_version_number: int
    parameters: _ParamsBody
    predicted_quality: float
    predicted_fault_risk: float
    latency_ms: float


@dataclass(frozen=True)
class Recommendation:
    params: physics.Params
    model_version: str
    model_version_number: int
    request_id: str
    predicted_quality: float
    predicted_fault_risk: float
    client_latency_ms: float


def check_safety(params: physics.Params) -> None:
    """Refuse non-finite parameters or any outside the machine's hard limits (never clip: refuse)."""
    for name in physics.PARAMETERS:
        value = getattr(params, name)
        lo, hi = physics.SAFETY_RANGES[name]
        if not math.isfinite(value) or not lo <= value <= hi:
            raise EndpointFailure("unsafe_parameters", f"{name}={value!r} outside safety range [{lo}, {hi}]")


def parse_response(status: int, content: bytes, line: str) -> Recommendation:
    """Map an HTTP answer to a Recommendation or an EndpointFailure with its reason."""
    if status == 200:
        try:
            body = _RecommendationBody.model_validate_json(content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise EndpointFailure("malformed_response", f"{where}: {first['msg']}") from None
        if body.line_id != line:
            raise EndpointFailure("malformed_response", f"line_id {body.line_id!r} != requested {line!r}")
        if not body.model_version:
            raise EndpointFailure("malformed_response", "model_version is empty")
        if not 0 <= body.model_version_number <= MAX_MODEL_VERSION_NUMBER:
            raise EndpointFailure(
                "malformed_response",
                f"model_version_number {body.model_version_number} outside [0, {MAX_MODEL_VERSION_NUMBER}]",
            )
        params = physics.Params(**body.parameters.model_dump())
        check_safety(params)
        return Recommendation(
            params=params,
            model_version=body.model_version,
            model_version_number=body.model_version_number,
            request_id=body.request_id,
            predicted_quality=body.predicted_quality,
            predicted_fault_risk=body.predicted_fault_risk,
            client_latency_ms=math.nan,
        )
    detail = content[:200].decode("utf-8", "replace")
    if status in (401, 403):
        raise EndpointFailure("unauthorized", f"HTTP {status}: {detail}")
    if 400 <= status < 500:
        raise EndpointFailure("rejected", f"HTTP {status}: {detail}")
    if status == 503:
        error = _json_field(content, "error")
        if error in ("model_unavailable", "out_of_support", "low_predicted_quality", "no_feasible_setting"):
            raise EndpointFailure(error, detail)
        if error == "deadline_exceeded":
            raise EndpointFailure("server_deadline_exceeded", detail)
    if status >= 500:
        raise EndpointFailure("server_error", f"HTTP {status}: {detail}")
    raise EndpointFailure("unexpected_status", f"HTTP {status}: {detail}")


def _json_field(content: bytes, name: str) -> Any:
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return body.get(name) if isinstance(body, dict) else None


class RecommendationClient:
    """HTTP client with a HARD wall-clock deadline per request, keep-alive between requests.

    httpx's own timeouts bound each socket operation, not the whole request, so a server that trickles
    bytes could hold the line far beyond the deadline. The request therefore runs on a private asyncio
    loop under `asyncio.timeout`, which cancels it (and drops its connection) when the deadline passes.
    """

    def __init__(self, endpoint: str, api_key: str, deadline_s: float) -> None:
        if deadline_s <= 0:
            raise ValueError(f"deadline_s: must be > 0, got {deadline_s}")
        if not api_key:
            raise ValueError("api_key: must be a non-empty string")
        try:
            base = httpx.URL(endpoint)
        except httpx.InvalidURL as exc:
            raise ValueError(f"endpoint: not a valid URL ({exc}): {endpoint!r}") from None
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"endpoint: must be an http(s) URL with a host, got {endpoint!r}")
        self.url = endpoint.rstrip("/") + RECOMMEND_PATH
        self.deadline_s = deadline_s
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="recommend-client", daemon=True)
        self._thread.start()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(deadline_s), follow_redirects=False)

    def recommend(self, line: str, lot: physics.Lot) -> Recommendation:
        """One recommendation or EndpointFailure; returns within the deadline (plus scheduling noise)."""
        started = time.perf_counter()
        future = asyncio.run_coroutine_threadsafe(self._ask(line, lot), self._loop)
        try:
            rec = future.result(timeout=self.deadline_s + 5.0)  # backstop only; _ask enforces the deadline
        except TimeoutError:
            future.cancel()
            raise EndpointFailure("deadline", f"no answer within {self.deadline_s * 1000:.0f} ms") from None
        return replace(rec, client_latency_ms=(time.perf_counter() - started) * 1e3)

    async def _ask(self, line: str, lot: physics.Lot) -> Recommendation:
        body: dict[str, Any] = {
            "line_id": line,
            "lot": {name: float(getattr(lot, name)) for name in physics.QUALITY_FIGURES},
        }
        if lot.lot_id:
            body["lot_id"] = lot.lot_id
        try:
            async with asyncio.timeout(self.deadline_s):
                response = await self._client.post(self.url, json=body, headers=self._headers)
        except (TimeoutError, httpx.TimeoutException):
            raise EndpointFailure("deadline", f"no answer within {self.deadline_s * 1000:.0f} ms") from None
        except httpx.HTTPError as exc:
            raise EndpointFailure("connection", f"{type(exc).__name__}: {exc}") from None
        return parse_response(response.status_code, response.content, line)

    def close(self) -> None:
        """Close the connection pool and stop the private loop (idempotent)."""
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> RecommendationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FallbackLedger:
    """Counts why productions fell back, and remembers the reason per lot for the per-production log."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.by_lot: dict[str, str | None] = {}
        self.asked = 0
        self.answered = 0

    def record(self, lot_id: str, reason: str | None) -> None:
        self.asked += 1
        if reason is None:
            self.answered += 1
        else:
            self.counts[reason] += 1
        self.by_lot[lot_id] = reason

    @property
    def fallbacks(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict[str, Any]:
        return {
            "asked": self.asked,
            "answered": self.answered,
            "fallbacks": self.fallbacks,
            "fallback_reasons": dict(sorted(self.counts.items())),
        }


class HttpPolicy:
    """LineTimeline policy: the endpoint's recommendation, else the craftsman on shift (reason counted)."""

    def __init__(self, endpoint: str, api_key: str, deadline_s: float, line: str) -> None:
        self.line = line
        self.client = RecommendationClient(endpoint, api_key, deadline_s)
        self.ledger = FallbackLedger()
        self.latencies_ms: list[float] = []
        self.model_versions: Counter[str] = Counter()

    def recommend(self, lot: physics.Lot) -> Recommendation | str:
        """The endpoint's recommendation for ``lot``, or the fallback reason (recorded either way)."""
        try:
            rec = self.client.recommend(self.line, lot)
        except EndpointFailure as failure:
            self.ledger.record(lot.lot_id, failure.reason)
            return failure.reason
        self.ledger.record(lot.lot_id, None)
        self.latencies_ms.append(rec.client_latency_ms)
        self.model_versions[rec.model_version] += 1
        return rec

    def __call__(self, lot: physics.Lot, ctx: ProductionContext) -> Decision:
        rec = self.recommend(lot)
        if isinstance(rec, str):
            return ctx.fallback(lot)
        return Decision(rec.params, f"model:{rec.model_version}", MODEL_CODE_BASE + rec.model_version_number)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        pct = (
            {f"p{q}": round(lat[min(len(lat) - 1, int(q / 100 * len(lat)))], 3) for q in (50, 95, 99)}
            if lat
            else {}
        )
        return {**self.ledger.summary(), "model_versions": dict(self.model_versions), "latency_ms": pct}

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> HttpPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_start(text: str) -> int:
    """ISO-8601 instant -> ns since epoch (naive means UTC)."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--start: not an ISO-8601 instant: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    t_ns = int(dt.timestamp()) * NS_PER_S + dt.microsecond * 1000
    if t_ns < ORIGIN_NS:
        raise ValueError(
            f"--start: must be at or after 2026-01-01T00:00:00Z (the simulation origin), got {text!r}"
        )
    return t_ns


def iso(t_ns: int) -> str:
    """ns since epoch -> ISO-8601 UTC with microseconds (integer arithmetic, no float rounding)."""
    secs, ns = divmod(t_ns, NS_PER_S)
    return (
        datetime.fromtimestamp(secs, tz=UTC)
        .replace(microsecond=ns // 1000)
        .isoformat()
        .replace("+00:00", "Z")
    )


def productions_from(timeline: LineTimeline, start_ns: int, n: int) -> Iterator[Production]:
    """The first ``n`` productions starting at or after ``start_ns``, planned (and decided) one by one,
    so the policy is asked exactly once per yielded production and output streams as the line runs."""
    shift = shift_index_at(start_ns)
    emitted = 0
    while emitted < n:
        plan = timeline.shift_plan(shift, start_ns)  # productions before start: history, craftsman-decided
        seen = len(plan.productions)
        while emitted < n and not plan.complete:
            plan = timeline.shift_plan(shift, plan.next_start_ns + 1)  # plans exactly one more production
            for prod in plan.productions[seen:]:
                seen += 1
                if prod.start_ns >= start_ns and emitted < n:
                    emitted += 1
                    yield prod
        shift += 1


def production_record(prod: Production, reason: str | None) -> dict[str, Any]:
    out = prod.outcome
    return {
        "production_id": prod.production_id,
        "line": prod.line,
        "shift_index": prod.shift_index,
        "start": iso(prod.start_ns),
        "lot": {"lot_id": prod.lot.lot_id, **{n: getattr(prod.lot, n) for n in physics.QUALITY_FIGURES}},
        "params": {n: round(getattr(prod.params, n), 4) for n in physics.PARAMETERS},
        "set_by": prod.set_by,
        "set_by_code": prod.set_by_code,
        "quality": round(out.quality, 4),
        "fault": out.fault,
        "cycle_time_s": round(out.cycle_time_s, 3),
        "energy_kwh": round(out.energy_kwh, 5),
        "fallback_reason": reason,
    }


def run_summary(prods: list[Production], policy: HttpPolicy | None, timeline: LineTimeline) -> dict[str, Any]:
    n = len(prods)
    set_by: Counter[str] = Counter(p.set_by for p in prods)
    summary: dict[str, Any] = {
        "summary": True,
        "line": timeline.line,
        "seed": timeline.cfg.seed,
        "productions": n,
        "first_start": iso(prods[0].start_ns) if prods else None,
        "last_end": iso(prods[-1].end_ns) if prods else None,
        "set_by": dict(sorted(set_by.items())),
        "model_decisions": sum(1 for p in prods if p.set_by_code >= MODEL_CODE_BASE),
        "mean_quality": round(sum(p.outcome.quality for p in prods) / n, 4) if n else None,
        "fault_rate": round(sum(1 for p in prods if p.outcome.fault) / n, 4) if n else None,
        "mean_cycle_time_s": round(sum(p.outcome.cycle_time_s for p in prods) / n, 3) if n else None,
        "total_energy_kwh": round(sum(p.outcome.energy_kwh for p in prods), 4),
        "refused_by_timeline": timeline.refused,
    }
    if policy is not None:
        summary["endpoint"] = policy.summary()
    return summary


def api_key_from_env(name: str) -> str:
    """The API key from env var ``name``; a clear error naming the setting when it is missing."""
    key = os.environ.get(name, "").strip()
    if not key:
        raise ValueError(f"{name}: environment variable is empty or unset (the inference API key)")
    return key


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factory-sim run",
        description="Run the line's control loop for N productions at virtual speed. With --endpoint, each "
        "production asks the recommendation endpoint (hard deadline) and falls back to the craftsman on "
        "shift on any failure; without it the craftsmen run the line. Prints one JSON line per production "
        "and a JSON summary.",
    )
    parser.add_argument("--endpoint", help="base URL of the inference API, e.g. http://127.0.0.1:8000")
    parser.add_argument("--api-key-env", default="FACTORY_API_KEY", help="env var holding the API key")
    parser.add_argument(
        "--deadline-ms", type=float, default=5000.0, help="hard client-side deadline per request"
    )
    parser.add_argument("--productions", type=int, default=20, help="number of productions to run")
    parser.add_argument("--line", default="L1")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--start", default="2026-01-01T00:00:00Z", help="virtual start instant (ISO-8601, UTC)"
    )
    return parser


def cli(argv: list[str]) -> int:
    """`factory-sim run`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.productions < 1:
            raise ValueError(f"--productions: must be >= 1, got {args.productions}")
        if not args.deadline_ms > 0:
            raise ValueError(f"--deadline-ms: must be > 0, got {args.deadline_ms}")
        start_ns = parse_start(args.start)
        cfg = SimConfig(seed=args.seed, lines=(args.line,))
        policy = None
        if args.endpoint:
            policy = HttpPolicy(
                args.endpoint, api_key_from_env(args.api_key_env), args.deadline_ms / 1000, args.line
            )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        timeline = LineTimeline(cfg, args.line, policy, policy_since_ns=start_ns)
        prods: list[Production] = []
        for prod in productions_from(timeline, start_ns, args.productions):
            prods.append(prod)
            reason = policy.ledger.by_lot.get(prod.lot.lot_id) if policy else None
            print(json.dumps(production_record(prod, reason)), flush=True)
        print(json.dumps(run_summary(prods, policy, timeline)), flush=True)
    finally:
        if policy is not None:
            policy.close()
    return 0
