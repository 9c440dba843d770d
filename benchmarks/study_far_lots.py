"""Study: how the model answers lots far from its history, against the crew a refusal hands them to.

What: the model a line first serves (trained on its first quarter, run by the craftsmen: one winter) is
asked for 3,000 lots drawn uniformly over every lot the API admits (factory_core.machine.LOT_LIMITS),
far wider than any season, with the lot-distance refusal lifted. Per band of the answer's
`lot_distance` (nearest training lot, in units of history's own q99): answers, the noise-free expected
quality and fault risk of the model's setting, answers whose expected quality is below 50 (severe), and
what the lot would get if refused: the crew on shift's expected quality and fault risk (the mean over
the five craftsmen, each at their rule and bias) and anna's (the best craftsman). Lots the leverage limit
refuses are counted apart.

Why: "never a confident bad setting" (docs/model.md, "How far out to answer") against the price of
refusing: every refused lot goes to whoever is on shift. This sets `LOT_DISTANCE_REFUSE_RATIO`.

    .venv/bin/python -m benchmarks.study_far_lots --seed 42
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from factory_core.machine import LOT_LIMITS, PARAMETERS, QUALITY_FIGURES
from factory_sim import physics
from factory_sim.craftsmen import BY_NAME, CRAFTSMEN
from factory_sim.productions import productions_frame
from quality_model import training
from quality_model.search.recommender import NoFeasibleSetting

LOW = np.array([LOT_LIMITS[f][0] for f in QUALITY_FIGURES])
HIGH = np.array([LOT_LIMITS[f][1] for f in QUALITY_FIGURES])
BANDS = ((0, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 8), (8, math.inf))


def expected(lot: physics.Lot, params: physics.Params) -> tuple[float, float]:
    """Noise-free expected quality (a fault scraps the part) and fault probability of a setting."""
    params = physics.clip_to_safety(params)
    risk = min(1.0, sum(physics.fault_probabilities(lot, params)))
    quality = physics.max_quality(lot) * math.exp(-0.5 * physics.penalty(lot, params))
    return quality * (1.0 - risk), risk


def craftsman_expected(name: str, lot: physics.Lot) -> tuple[float, float]:
    c = BY_NAME[name]
    return expected(lot, physics.Params(*(a + b for a, b in zip(c.aim(lot).as_tuple(), c.bias, strict=True))))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--days", type=float, default=90.0, help="history the model is trained on")
    parser.add_argument("--lots", type=int, default=3000)
    args = parser.parse_args(argv)
    model = training.train(productions_frame(args.days, seed=args.seed), seed=args.seed, holdout_fraction=0)
    rec = model.recommender()
    rec.lot_limit = math.inf
    rows, refused = [], {}
    for values in np.random.default_rng(5).uniform(LOW, HIGH, size=(args.lots, 4)):
        lot = physics.Lot("far", *values)
        try:
            got = rec.recommend(tuple(float(v) for v in values))
        except NoFeasibleSetting as exc:
            refused[exc.reason] = refused.get(exc.reason, 0) + 1
            continue
        q, risk = expected(lot, physics.Params(*(got.parameters[k] for k in PARAMETERS)))
        crew = np.array([craftsman_expected(c.name, lot) for c in CRAFTSMEN])
        rows.append(
            (got.lot_distance, q, risk, q < 50.0, *crew.mean(axis=0), craftsman_expected("anna", lot)[0])
        )
    print(
        f"seed {args.seed}, {args.days:g} days of history; {args.lots} lots: answered {len(rows)}, refused {refused}"
    )
    print(
        "| lot distance | answered | model: quality | fault risk | severe | crew on shift: quality | fault risk | anna |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for lo, hi in BANDS:
        band = np.array([r for r in rows if lo <= r[0] < hi], dtype=float)
        if len(band):
            m = band.mean(axis=0)
            print(f"| {lo} to {hi} | {len(band)} | {m[1]:.1f} | {m[2]:.2%} | {int(band[:, 3].sum())} "
                  f"| {m[4]:.1f} | {m[5]:.0%} | {m[6]:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
