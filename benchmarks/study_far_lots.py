"""Study: how the model answers lots far from its history (the `LOT_DISTANCE_REFUSE_RATIO` figures).

What: a model trained on the first week of the simulated line (a narrow history, as a new line has) is
asked for 3,000 lots drawn uniformly over a box far wider than any season (moisture 0.5-16 %, hardness
30-100, density 1.10-1.55, impurity 0-4 %). Per band of the answer's `lot_distance` (nearest training lot,
in units of history's own q99) and per band of leverage: answers, and answers whose noise-free outcome
is poor (quality below 80 % of the lot's best, or fault risk above 1 %), and severe (expected quality
below 50). With `--no-limit` the lot-distance refusal is switched off, to see what it refuses.

Why: "never a confident bad setting" (docs/model.md, "Refusals"), against the price of refusing: every
refused lot goes to the craftsman on shift.

    .venv/bin/python -m benchmarks.study_far_lots [--no-limit]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from factory_sim import physics
from factory_sim.productions import productions_frame
from quality_model import training
from quality_model.search.recommender import NoFeasibleSetting

LOW = np.array([0.5, 30.0, 1.10, 0.0])
HIGH = np.array([16.0, 100.0, 1.55, 4.0])
BANDS = ((0, 1), (1, 2), (2, 2.5), (2.5, 3), (3, 4), (4, math.inf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lots", type=int, default=3000)
    parser.add_argument("--no-limit", action="store_true", help="switch the lot-distance refusal off")
    args = parser.parse_args()
    model = training.train(productions_frame(7.0, seed=42), seed=42)
    rec = model.recommender()
    if args.no_limit:
        rec.lot_limit = math.inf
    rows, refused = [], {}
    for lot in np.random.default_rng(5).uniform(LOW, HIGH, size=(args.lots, 4)):
        sim_lot = physics.Lot("far", *lot)
        try:
            got = rec.recommend(tuple(float(v) for v in lot))
        except NoFeasibleSetting as exc:
            refused[exc.reason] = refused.get(exc.reason, 0) + 1
            continue
        params = physics.Params(*(got.parameters[k] for k in ("temperature", "feed_rate", "pressure")))
        best = physics.max_quality(sim_lot)
        quality = best * math.exp(-0.5 * physics.penalty(sim_lot, params))
        risk = sum(physics.fault_probabilities(sim_lot, params))
        poor = quality < 0.8 * best or risk > 0.01
        rows.append((got.lot_distance, got.leverage, poor, quality * (1 - risk) < 50.0))
    print(f"{args.lots} lots: answered {len(rows)}, refused {refused}")
    print(f"{'lot_distance':>14} {'answered':>9} {'poor':>6} {'severe':>7}")
    for lo, hi in BANDS:
        band = [r for r in rows if lo <= r[0] < hi]
        if band:
            print(
                f"{f'[{lo}, {hi})':>14} {len(band):>9} {sum(r[2] for r in band):>6} {sum(r[3] for r in band):>7}"
            )


if __name__ == "__main__":
    main()
