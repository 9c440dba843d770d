"""Study: would answers near the edge of support warn of the refusals to come? (docs/model.md)

What: the backtest's first two quarters (the craftsmen, then the first model with the platform's refusal
retrains), every model decision logged with the answer's lot distance (x history's q99 nearest-lot
distance, as the server reports it in `support.lot_distance`). Printed: each refusal of the model's own
(day, reason, the lot's distance where the server names it, whether the crew on shift then faulted),
and how many answers, on how many days, lay beyond 2, 2.5 and 3 x.

Why: the refusal retrain (factory_assets/performance/refusals.py) acts after a refusal, whose lot the crew
on shift has already set. A retrain triggered by answers approaching the refusal limit would act before,
if refusals came at the front of a drift that such answers announce.

    .venv/bin/python -m benchmarks.study_edge_answers --seed 101 --line L7
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from typing import Any

from factory_sim import physics
from factory_sim.craftsmen import ProductionContext
from factory_sim.demo import backtest
from quality_model.search.recommender import NoFeasibleSetting

THRESHOLDS = (2.0, 2.5, 3.0)


class LoggingSchedule(backtest.ServingSchedule):
    """The backtest's serving schedule, also logging every model decision with its support."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[dict[str, Any]] = []

    def policy(self, lot: physics.Lot, ctx: ProductionContext) -> backtest.Decision:
        model = self.model_at(ctx.start_ns)
        if model is not None:
            day = dt.datetime.fromtimestamp(ctx.start_ns / 1e9, dt.UTC).date().isoformat()
            try:
                rec = model.recommender.recommend(backtest._lot_values(lot))
                self.log.append(
                    {"day": day, "lot": lot.lot_id, "answered": True, "distance": rec.lot_distance}
                )
            except NoFeasibleSetting as exc:
                named = re.search(r"nearest training lot ([0-9.]+)x", str(exc))
                self.log.append({"day": day, "lot": lot.lot_id, "answered": False, "reason": exc.reason,
                                 "distance": float(named.group(1)) if named else None})  # fmt: skip
        return super().policy(lot, ctx)


def study(seed: int, line: str) -> dict[str, Any]:
    schedule = LoggingSchedule()
    run = backtest.Backtest(seed=seed, line=line, quarters=2, lots=100, progress=False, schedule=schedule)
    run.run()
    faulted = {p.lot.lot_id for p in run.history if p.outcome.fault is not None}
    answers = [e for e in schedule.log if e["answered"]]
    return {
        "seed": seed,
        "line": line,
        "quarter": "2026-04-01",
        "answered": len(answers),
        "refusals": [
            {k: e[k] for k in ("day", "reason", "distance")} | {"crew_faulted": e["lot"] in faulted}
            for e in schedule.log
            if not e["answered"]
        ],
        "answered_beyond": {
            f"{t}x": {
                "lots": sum(e["distance"] > t for e in answers),
                "days": len({e["day"] for e in answers if e["distance"] > t}),
            }
            for t in THRESHOLDS
        },
        "days": len({e["day"] for e in schedule.log}),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=101)
    p.add_argument("--line", default="L7")
    args = p.parse_args(argv)
    print(json.dumps(study(args.seed, args.line), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
