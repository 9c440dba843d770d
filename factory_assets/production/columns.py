"""What each column of the per-production table means: the one definition of its descriptions.

Why here: the asset's Dagster TableSchema (`dagster/column_schema`, the UI's column list) is built from
this; sensor feature columns (`{channel}_{stat}`) are described from their channel and statistic, so a new
channel is described without touching this file.
"""

from __future__ import annotations

from factory_core.machine import OVER_TEMPERATURE_ALARM_BAND

BASE_COLUMNS: dict[str, str] = {
    "line": "production line",
    "production_id": "production id on the line (machine counter)",
    "start": "start of the run (first machine_state sample RUNNING), UTC",
    "end": "end of the run (first sample after it not RUNNING: idle or the fault instant), UTC",
    "lot_moisture": "lot figure: moisture, % (measured before the lot enters the machine)",
    "lot_hardness": "lot figure: hardness",
    "lot_density": "lot figure: density, g/cm3",
    "lot_impurity": "lot figure: impurity, %",
    "sp_temperature": "heater setpoint in effect at the start, degC",
    "sp_feed_rate": "feed rate setpoint in effect at the start, strokes/min",
    "sp_pressure": "forming pressure setpoint in effect at the start, bar",
    "set_by_code": "who set the dial, as the machine records it (1..99 craftsman, 1000+N model vN)",
    "set_by": "who set the dial: craftsman:NN or model:vN",
    "qa_quality": "QA quality score 0..100 (null until QA publishes it, 30-90 s after the end)",
    "qa_at": "when QA published the score, UTC",
    "cycle_time_s": "run time, seconds (end - start)",
    "energy_kwh": "energy of the run, kWh (integral of power_kw)",
    "fault_code": "0 none, 1 over_current, 2 over_temperature",
    "fault": "fault name (none, over_current, over_temperature)",
}

STAT_DESCRIPTIONS: dict[str, str] = {
    "mean": "mean over the run",
    "min": "minimum over the run",
    "max": "maximum over the run",
    "std": "standard deviation over the run",
    "slope": "least-squares slope over the run, per second",
    "s_above_limit": (
        f"seconds of the run above the over-temperature alarm (setpoint + running offset + "
        f"{OVER_TEMPERATURE_ALARM_BAND:g} degC, factory_core.machine)"
    ),
}


def describe(column: str) -> str:
    """The description of a production-table column (base column or `{channel}_{stat}` feature)."""
    if column in BASE_COLUMNS:
        return BASE_COLUMNS[column]
    for stat in sorted(STAT_DESCRIPTIONS, key=len, reverse=True):
        if column.endswith(f"_{stat}"):
            return f"{column[: -len(stat) - 1]}: {STAT_DESCRIPTIONS[stat]}"
    return ""
