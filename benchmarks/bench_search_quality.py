"""Search design vs recommendation quality (JSON lines on stdout): the recommender's candidate-set
settings against the expert craftsman, on held-out lots right after the training window and on lots a
season later, with paired outcome draws, plus the CPU per search.

Why a script and not a test: it trains a quarter of L1 per configuration and replays 800 lots; it is how
the candidate-set constants in inference_server/recommender.py were chosen (docs/inference.md,
Recommendation), and how a change to them should be judged. A fallback (nothing feasible) is scored at
the expert's setting, as the control system hands the lot back to the operator.

    .venv/bin/python -m benchmarks.bench_search_quality [--lots 400] [--config NEIGHBOURS,SUPPORT ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import time
from typing import Any

import numpy as np

QUARTER_DAYS = 91.0
DRIFT_DAYS = 91.3


def _evaluate(rec: Any, lots: int, drift_days: float) -> dict[str, float]:
    from factory_sim import physics
    from factory_sim.config import NS_PER_S, ORIGIN_NS
    from factory_sim.craftsmen import CRAFTSMEN, craftsman_decision, evaluation_context, evaluation_key
    from quality_model.search.recommender import NoFeasibleSetting

    expert = next(c for c in CRAFTSMEN if c.skill == "expert")
    ours, theirs, fallbacks = [], [], 0
    for i in range(lots):
        at = ORIGIN_NS + int(QUARTER_DAYS * 86400) * NS_PER_S + i * 3 * 3600 * NS_PER_S
        lot = physics.heldout_lot(42, i, at, drift_days=drift_days)
        key = evaluation_key(42, i)
        expert_params = craftsman_decision(expert, lot, evaluation_context(42, i, expert).decide_key).params
        try:
            figures = (lot.moisture, lot.hardness, lot.density, lot.impurity)
            params = physics.Params(**rec.recommend(figures).parameters)
        except NoFeasibleSetting:
            params, fallbacks = expert_params, fallbacks + 1
        ours.append(physics.outcome(lot, params, key).quality)
        theirs.append(physics.outcome(lot, expert_params, key).quality)
    return {"model": round(float(np.mean(ours)), 2), "expert": round(float(np.mean(theirs)), 2),
            "fallbacks": fallbacks}  # fmt: skip


def _search_us(rec: Any, n: int = 4000) -> float:
    from quality_model.search.recommender import NoFeasibleSetting

    rng = random.Random(7)
    lots = [(rng.uniform(4, 8), rng.uniform(55, 75), rng.uniform(1.25, 1.35), rng.uniform(0.2, 1.0))
            for _ in range(2000)]  # fmt: skip
    for lot in lots[:100]:
        with contextlib.suppress(NoFeasibleSetting):
            rec.recommend(lot)
    c0 = time.process_time()
    for i in range(n):
        with contextlib.suppress(NoFeasibleSetting):
            rec.recommend(lots[i % len(lots)])
    return round((time.process_time() - c0) / n * 1e6, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lots", type=int, default=400, help="held-out lots per set (default 400)")
    parser.add_argument(
        "--config",
        action="append",
        metavar="NEIGHBOURS,SUPPORT",
        help="neighbour settings and support rows to compare (repeatable; default: the shipped values)",
    )
    args = parser.parse_args(argv)
    from factory_sim.productions import productions_frame
    from quality_model import training as trainer
    from quality_model.search import recommender

    configs = [tuple(int(v) for v in c.split(",")) for c in args.config or []] or [
        (recommender.NEIGHBOURS, recommender.SUPPORT_NEIGHBOURS)
    ]
    frame = productions_frame(QUARTER_DAYS)
    for neighbours, support in configs:
        recommender.NEIGHBOURS = neighbours
        recommender.SUPPORT_NEIGHBOURS = trainer.SUPPORT_NEIGHBOURS = support  # threshold calibrated alike
        rec = trainer.train(frame).recommender()
        row = {"neighbours": neighbours, "support_rows": support, "search_us": _search_us(rec),
               "heldout": _evaluate(rec, args.lots, 0.0), "drifted": _evaluate(rec, args.lots, DRIFT_DAYS)}  # fmt: skip
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
