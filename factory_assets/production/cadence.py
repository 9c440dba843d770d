"""Expected production cadence of a line, for the productions-per-day check.

Why these numbers: the line runs three 8 h shifts, each opening with a 30 min handover idle; between runs
the operator changes over in 40..80 s (mean 60 s) and a fault holds the machine 120 s before reset
(the factory's operating spec, which the simulator implements). The expected count of a complete day
follows from the day's own mean cycle time and fault share.
"""

from __future__ import annotations

import polars as pl

SHIFTS_PER_DAY = 3
HANDOVER_S = 1800.0
CHANGEOVER_MEAN_S = 60.0
FAULT_CLEAR_S = 120.0
TOLERANCE = 0.15  # relative


def expected_productions(frame: pl.DataFrame) -> float | None:
    """Productions a complete day should hold given its mean cycle time and fault share (None if empty)."""
    if frame.height == 0:
        return None
    mean_cycle = float(frame["cycle_time_s"].mean())  # type: ignore[arg-type]
    fault_share = float((frame["fault_code"] > 0).mean())  # type: ignore[arg-type]
    per_run = mean_cycle + CHANGEOVER_MEAN_S + fault_share * FAULT_CLEAR_S
    return (86_400.0 - SHIFTS_PER_DAY * HANDOVER_S) / per_run


def cadence_ok(frame: pl.DataFrame) -> tuple[bool, float | None]:
    """(within tolerance, expected count)."""
    expected = expected_productions(frame)
    if expected is None:
        return False, None
    return abs(frame.height - expected) <= TOLERANCE * expected, expected
