"""Per-production table from the simulated line, in the Dagster `productions` column layout.

Why: tests, the benchmark, the demo and the backtest need realistic training data without a Dagster
run; rows come from factory_sim's deterministic timeline (craftsmen on shift decide, or a policy under
test), so a run is reproducible. The columns are the ones `factory_assets`' production table writes for
the same productions (tests/factory_sim/test_backtest.py holds the two to each other on a sample).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd

from factory_sim.config import NS_PER_S, ORIGIN_NS, SimConfig
from factory_sim.schedule import LineTimeline, Production

DAY_NS = 86_400 * NS_PER_S


def _iso(t_ns: int) -> datetime:
    return datetime.fromtimestamp(t_ns / NS_PER_S, tz=UTC)


def productions_table(productions: Iterable[Production]) -> pd.DataFrame:
    """One row per production, oldest first, in the production table's column names."""
    rows = [
        {
            "line": p.line,
            "production_id": p.production_id,
            "start": _iso(p.start_ns),
            "end": _iso(p.end_ns),
            "lot_moisture": p.lot.moisture,
            "lot_hardness": p.lot.hardness,
            "lot_density": p.lot.density,
            "lot_impurity": p.lot.impurity,
            "sp_temperature": p.params.temperature,
            "sp_feed_rate": p.params.feed_rate,
            "sp_pressure": p.params.pressure,
            "set_by": p.set_by,
            "set_by_code": p.set_by_code,
            "qa_quality": p.outcome.quality,
            "cycle_time_s": p.outcome.cycle_time_s,
            "energy_kwh": p.outcome.energy_kwh,
            "fault": p.outcome.fault,
            "fault_code": p.fault_code,
        }
        for p in productions
    ]
    return pd.DataFrame(rows)


def productions_frame(days: float, line: str = "L1", seed: int = 42, start_day: float = 0.0) -> pd.DataFrame:
    """Every production of ``line`` in [start_day, start_day + days) after the simulation origin."""
    t0 = ORIGIN_NS + round(start_day * DAY_NS)
    t1 = t0 + round(days * DAY_NS)
    timeline = LineTimeline(SimConfig(seed=seed, lines=(line,)), line)
    return productions_table(p for p in timeline.productions_between(t0, t1) if p.start_ns >= t0)
