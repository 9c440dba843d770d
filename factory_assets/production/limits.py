"""Upper limits of fast channels, for the `*_s_above_limit` features.

Why here: they are the machine's hard limits (the same numbers as the simulator's safety ranges for the
heater, feed and pressure), owned by the data platform so the feature schema does not depend on test code.
"""

from __future__ import annotations

UPPER_LIMITS: dict[str, float] = {
    "temp_zone1": 260.0,
    "temp_zone2": 260.0,
    "temp_zone3": 260.0,
    "temp_die": 260.0,
    "material_temp": 260.0,
    "pressure_actual": 160.0,
    "feed_rate_actual": 60.0,
}

SLOW_CHANNELS = (
    "sp_temperature",
    "sp_feed_rate",
    "sp_pressure",
    "lot_moisture",
    "lot_hardness",
    "lot_density",
    "lot_impurity",
    "production_id",
    "set_by",
    "qa_production_id",
    "qa_quality",
    "fault_code",
)
"""Channels read as production attributes, not summarised as features."""

FAULT_NAMES = {0: "none", 1: "over_current", 2: "over_temperature"}
