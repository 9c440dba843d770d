"""Study: where should the forward trees judge the prior's setting? (the `TREE_SUPPORT_FACTOR` figures)

What: the line's first quarter (craftsmen) is simulated, the platform's retraining trains the first model
at the quarter's end, and that model is replayed on every lot of the next quarter with the trees allowed
to judge (fault veto, `low_predicted_quality`) within each factor x history's q99 nearest-lot distance.
Per factor: refusals by reason, and answers that faulted or scored below 50. For the refused lots of the
first factor, what the prior would have realized and what the crew on shift did.

Why: refusals hand the lot to whoever is on shift; a refusal is only worth it where the model's setting
would be worse. docs/model.md ("Where the trees judge") quotes this study.

    .venv/bin/python -m benchmarks.study_tree_support --seed 101 --line L7 --factors 2,1
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections import Counter

import numpy as np

from factory_sim import physics
from factory_sim.config import SimConfig
from factory_sim.demo.backtest import Backtest, _craftsman_params, _lot_values, _ns
from factory_sim.productions import productions_table
from quality_model import retraining
from quality_model.search.recommender import NoFeasibleSetting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--line", default="L7")
    parser.add_argument(
        "--factors", default="2,1", help="comma-separated factors x history's q99 (default 2,1)"
    )
    args = parser.parse_args()
    boundary = dt.date(2026, 4, 1)
    bt = Backtest(args.seed, args.line, quarters=2, lots=100, progress=False)
    bt.run()
    first = [p for p in bt.history if p.start_ns < _ns(boundary)]
    second = [p for p in bt.history if p.start_ns >= _ns(boundary)]
    model = retraining.retrain(
        productions_table(first), None, as_of=boundary, seed=args.seed, version_number=1
    ).candidate
    rec = model.recommender
    cfg = SimConfig(seed=args.seed, lines=(args.line,))
    rec._kernel_args = None  # the reference search, so the threshold below takes effect (same answers)
    q99 = rec.lot_q99
    for n, factor in enumerate(float(f) for f in args.factors.split(",")):
        rec.tree_lot_threshold = factor * q99
        refused: Counter[str] = Counter()
        bad, prior_q, prior_faults, crew_q, crew_faults = 0, [], 0, [], 0
        for p in second:
            key = physics.outcome_key(args.seed, p.line, p.production_id)
            try:
                got = rec.recommend(_lot_values(p.lot))
            except NoFeasibleSetting as exc:
                refused[exc.reason] += 1
                if n == 0:
                    prior = np.clip(rec.prior(np.array(_lot_values(p.lot))), rec.safe_lo, rec.safe_hi)
                    out = physics.outcome(p.lot, physics.Params(*prior), key)
                    prior_q.append(out.quality)
                    prior_faults += out.fault is not None
                    crew = physics.outcome(p.lot, _craftsman_params(p, args.seed, cfg), key)
                    crew_q.append(crew.quality)
                    crew_faults += crew.fault is not None
                continue
            params = physics.Params(*(got.parameters[k] for k in ("temperature", "feed_rate", "pressure")))
            out = physics.outcome(p.lot, params, key)
            bad += out.fault is not None or out.quality < 50.0
        print(f"seed {args.seed} line {args.line} trees judge within {factor:g} x q99: refused {dict(refused)}, "
              f"answers faulted or below 50: {bad} of {len(second) - sum(refused.values())}")  # fmt: skip
        if n == 0 and prior_q:
            print(f"  on those refused lots: the prior {np.mean(prior_q):.1f} with {prior_faults} faults, "
                  f"the craftsman on shift {np.mean(crew_q):.1f} with {crew_faults} faults")  # fmt: skip


if __name__ == "__main__":
    main()
