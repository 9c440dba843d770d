"""Study: what the refused lots would have got from the model, from anna and from the crew on shift.

What: the backtest of one line (the craftsmen's quarter, then the model's with the platform's refusal
retrains); for every lot the serving model refused of its own accord: the day, the reason, the lot's
distance to history (x history's q99 nearest-lot distance, and in units of the lot figures' own spread),
the prior's leverage (x history's q99.9), and the realized outcome, on the lot's own outcome draws, of
the setting the model would have answered with its refusal limits lifted, of anna (the best craftsman)
and of the crew on shift (who set it). For the prior's setting also what the trees predicted (quality,
fault risk), its support distance (x the support threshold), the local error and how many of the 8 past
productions nearest to it faulted: the evidence a tree objection is now held to.

Why: every refusal hands a lot to whoever is on shift, and the refusals' fallbacks are the only faults
by which the line as run exceeds the best craftsman (docs/model.md, "Acceptance"). This shows whether a
limit set elsewhere would have answered those lots well, and how far out they lie by each measure.

    .venv/bin/python -m benchmarks.study_refused_lots --seed 42 --line L1
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
from typing import Any

import numpy as np

from factory_core.machine import MODEL_CODE_BASE
from factory_sim import physics
from factory_sim.craftsmen import BY_NAME, ProductionContext, craftsman_decision
from factory_sim.demo import backtest
from quality_model.features import PARAM_FEATURES


def unlimited(recommender: Any) -> Any:
    """The same recommender with every refusal limit lifted (what it would have answered)."""
    rec = copy.copy(recommender)
    rec.lot_limit = rec.lev_limit = math.inf
    rec.low_quality = -math.inf
    rec._kernel_args = None  # the numpy search: it reports the prior when nothing is feasible
    return rec


def _outcome(lot: physics.Lot, params: physics.Params, key: int) -> dict[str, Any]:
    out = physics.outcome(lot, params, key)
    return {"quality": round(out.quality, 1), "fault": out.fault}


class RefusalSchedule(backtest.ServingSchedule):
    """The backtest's serving schedule, also recording every refusal of the model's own."""

    def __init__(self, seed: int, line: str) -> None:
        super().__init__()
        self.seed, self.line = seed, line
        self.refused: list[dict[str, Any]] = []

    def policy(self, lot: physics.Lot, ctx: ProductionContext) -> backtest.Decision:
        decision = super().policy(lot, ctx)
        model = self.model_at(ctx.start_ns)
        if model is None or decision.set_by_code >= MODEL_CODE_BASE:
            return decision
        rec = unlimited(model.recommender)
        values = np.asarray(backtest._lot_values(lot), dtype=np.float64)
        res = rec.search_reference(values)
        near = rec.candidates(values)[1]
        best = res.best if res.best >= 0 else 0  # nothing feasible: the prior
        model_params = physics.Params(*(float(res.candidates[best, k]) for k in range(len(PARAM_FEATURES))))
        key = physics.outcome_key(self.seed, self.line, ctx.production_id)
        anna = craftsman_decision(BY_NAME["anna"], lot, ctx.decide_key).params
        self.refused.append(
            {
                "day": dt.datetime.fromtimestamp(ctx.start_ns / 1e9, dt.UTC).date().isoformat(),
                "reason": self.decided[-1][3],
                "lot_distance": round(res.lot_distance / rec.lot_q99, 2),
                "lot_distance_spread": round(res.lot_distance, 3),
                "leverage": round(res.leverage / rec.lev_q999, 2),
                "model": _outcome(lot, model_params, key),
                "prior": _outcome(lot, physics.Params(*map(float, res.candidates[0])), key)
                | {
                    "fault_risk": round(float(res.fault_risk[0]), 3),
                    "predicted": round(float(res.quality[0]), 1),
                    "support": round(
                        float(rec.support_distance(values, res.candidates[:1], near)[0])
                        / rec.support_threshold,
                        2,
                    ),
                    "local_error": round(rec.local_error(values, res.candidates[0], near), 1),
                    "near_faults": int(
                        rec.support_faulted[rec.nearest_past(values, res.candidates[0])].sum()
                    ),
                },
                "anna": _outcome(lot, anna, key),
                "crew": _outcome(lot, decision.params, key) | {"who": decision.set_by},
            }
        )
        return decision


def study(seed: int, line: str, quarters: int) -> dict[str, Any]:
    schedule = RefusalSchedule(seed, line)
    run = backtest.Backtest(
        seed=seed, line=line, quarters=quarters, lots=100, progress=False, schedule=schedule
    )
    run.run()
    return {"seed": seed, "line": line, "refused": schedule.refused}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--line", default="L1")
    p.add_argument("--quarters", type=int, default=5)
    args = p.parse_args(argv)
    print(json.dumps(study(args.seed, args.line, args.quarters), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
