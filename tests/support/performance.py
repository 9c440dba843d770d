"""A line run by served models, for the AI's-record tests: raw objects, the decision log and the truth.

Why not the live server + control loop: the server stamps decisions with the wall clock, while the
simulator runs in virtual time (a day in seconds), so a decision could never sit just before the
production it set. Here the policy does what the server's route does per request - the model's
recommender (quality_model), the same record fields, a 503 with the route's error names when there is no
answer - and writes through the server's own DecisionLog (spool + uploader into the store), stamping the
record with the virtual request time. The line is the simulator's LineTimeline with that policy, and its
raw objects come from the history generator's batch builder, so the production table sees model-set runs.

Realistic imperfections, each recorded in the ledger so tests know the exact expected counts:
an outage window answered with 503 deadline_exceeded, lots the model refuses (NoFeasibleSetting -> 503
with its reason, as the route logs it), decisions lost before reaching the log, and retried requests
logged twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory_core.layout import batch_key
from factory_core.machine import MODEL_CODE_BASE
from factory_core.rawformat import encode_batch
from factory_core.store import ObjectStore
from factory_sim.channels import build_channels
from factory_sim.config import NS_PER_S
from factory_sim.craftsmen import Decision, ProductionContext
from factory_sim.history import build_batch
from factory_sim.physics import Lot, Params
from factory_sim.schedule import LineTimeline
from inference_server.core.metrics import Metrics
from inference_server.serving.decision_log import DecisionLog
from quality_model.search.recommender import NoFeasibleSetting, Recommender

LOT = ("moisture", "hardness", "density", "impurity")


def day_ns(date: str) -> int:
    return int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()) * NS_PER_S


@dataclass(frozen=True)
class Served:
    """A model version serving from `since_ns` on."""

    since_ns: int
    recommender: Recommender
    version: str
    number: int


@dataclass
class Logged:
    """What the policy logged for one production (the truth the join must recover)."""

    production_id: int
    start_ns: int
    ts: float  # request time, epoch seconds
    status: int
    outcome: str
    version_number: int | None
    predicted_quality: float | None
    lost: bool = False  # never reached the decision log
    retried_ts: float | None = None  # an earlier, duplicate request for the same lot


@dataclass
class ServedModelPolicy:
    """LineTimeline policy doing per production what the inference server's route does, logged."""

    line: str
    serving: list[Served]
    log: DecisionLog
    outage: tuple[int, int] | None = None  # [t0, t1) ns: every request answered 503 deadline_exceeded
    lose_every: int = 37  # production ids divisible by this: the decision never reaches the log
    retry_every: int = 41  # else, by this: the control system asked twice (the first answer got lost)
    ledger: dict[int, Logged] = field(default_factory=dict)

    def _model(self, t_ns: int) -> Served:
        return [s for s in self.serving if s.since_ns <= t_ns][-1]

    def __call__(self, lot: Lot, ctx: ProductionContext) -> Decision:
        served = self._model(ctx.start_ns)
        lead_s = 0.2 + (ctx.production_id * 7919 % 1000) / 100.0  # 0.2 .. 10.2 s before the start
        ts = ctx.start_ns / NS_PER_S - lead_s
        record: dict[str, Any] = {
            "ts": ts,
            "request_id": f"req-{ctx.production_id}",
            "line_id": self.line,
            "lot_id": lot.lot_id,
            "lot": {name: float(getattr(lot, name)) for name in LOT},
            "model_version": served.version,
            "model_version_number": served.number,
        }
        logged = Logged(ctx.production_id, ctx.start_ns, ts, 200, "ok", served.number, None)
        decision: Decision | None = None
        if self.outage and self.outage[0] <= ctx.start_ns < self.outage[1]:
            record.update(status=503, outcome="deadline_exceeded", detail="no recommendation within 1000 ms")
            logged.status, logged.outcome = 503, "deadline_exceeded"
        else:
            try:
                rec = served.recommender.recommend(tuple(float(getattr(lot, n)) for n in LOT))
            except NoFeasibleSetting as exc:  # the route logs the model's own reason
                record.update(status=503, outcome=exc.reason, detail=str(exc))
                logged.status, logged.outcome = 503, exc.reason
            else:
                record.update(status=200, outcome="ok", parameters=rec.parameters,
                              predicted_quality=rec.predicted_quality,
                              predicted_fault_risk=rec.predicted_fault_risk, latency_ms=0.1)  # fmt: skip
                logged.predicted_quality = rec.predicted_quality
                decision = Decision(
                    Params(**rec.parameters), f"model:{served.version}", MODEL_CODE_BASE + served.number
                )
        if ctx.production_id % self.lose_every == 0:
            logged.lost = True
        else:
            if ctx.production_id % self.retry_every == 0:
                logged.retried_ts = ts - 30.0
                self.log.append(
                    {**record, "ts": logged.retried_ts, "request_id": f"req-{ctx.production_id}-1"}
                )
            self.log.append(dict(record))
        self.ledger[ctx.production_id] = logged
        return decision if decision is not None else ctx.fallback(lot)


def write_raw(
    timeline: LineTimeline, store: ObjectStore, t0_ns: int, t1_ns: int, object_s: int = 3600
) -> int:
    """Raw objects of every channel over [t0, t1), one per `object_s`, as `factory-sim history` writes them."""
    channels = build_channels(timeline.cfg)
    n = 0
    for t in range(t0_ns, t1_ns, object_s * NS_PER_S):
        batch = build_batch(timeline, channels, "all", t, min(t + object_s * NS_PER_S, t1_ns))
        if batch is not None:
            store.put(batch_key(batch), encode_batch(batch))
            n += 1
    return n


def ship_decisions(log: DecisionLog, store: ObjectStore, timeout_s: float = 30.0) -> bool:
    """Close the log (spooling what is queued) and upload the spool with the server's own uploader."""
    log.close()

    async def run() -> bool:
        uploader = log.uploader(store, retry_initial_s=0.05, retry_max_s=0.5)
        stop = asyncio.Event()
        task = asyncio.create_task(uploader.run(stop))
        done = await log.drain_uploads(timeout_s)
        stop.set()
        await task
        return done

    return asyncio.run(run())


def decision_log(spool: Path, instance_id: str = "inf-a") -> DecisionLog:
    return DecisionLog(spool, instance_id, Metrics(), batch_records=64, flush_interval_s=0.05)
