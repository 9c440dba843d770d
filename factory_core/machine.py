"""The machine specification: lot figures, parameters, hard safety ranges, fault and model codes.

Why one module: the simulator's physics, the production table, the model's feature schema and the
inference API's validation all speak about the same machine. Each reads these numbers from here, so a
limit changed once is changed everywhere (before, the server imported them from the simulator and the
asset code kept its own copy).
"""

from __future__ import annotations

QUALITY_FIGURES: tuple[str, ...] = ("moisture", "hardness", "density", "impurity")
"""Lot figures measured on the raw material before it enters the machine."""
PARAMETERS: tuple[str, ...] = ("temperature", "feed_rate", "pressure")
"""The machine's setpoints: what a craftsman (or the model) dials in."""

SAFETY_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (140.0, 260.0),  # degC, heater setpoint
    "feed_rate": (10.0, 60.0),  # strokes/min of the forming mechanism
    "pressure": (40.0, 160.0),  # bar, forming pressure
}
"""Hard limits of each setpoint: the machine's stops. No recommendation ever leaves them."""

LOT_LIMITS: dict[str, tuple[float, float]] = {
    "moisture": (1.0, 14.0),
    "hardness": (35.0, 95.0),
    "density": (1.05, 1.60),
    "impurity": (0.0, 4.0),
}
"""Physical ranges of the lot figures: a supplier never delivers outside these."""

FAULT_CODES: dict[str, int] = {"over_current": 1, "over_temperature": 2}
FAULT_NAMES: dict[int, str] = {0: "none", **{code: name for name, code in FAULT_CODES.items()}}
"""fault_code channel value -> name (0: the run ended without a fault)."""

CYCLE_MAX_S = 1200.0
"""Cycle watchdog: the machine aborts a run that takes longer."""

MODEL_CODE_BASE = 1000
"""set_by codes at or above this mean "set by model version (code - MODEL_CODE_BASE)"; below, a person."""

HEATER_RUN_OFFSETS: dict[str, float] = {
    "temp_zone1": -20.0,
    "temp_zone2": -8.0,
    "temp_zone3": 0.0,
    "temp_die": 5.0,
}
"""Where each heated channel settles while running, in degC relative to the heater setpoint (the zones
before the die run cooler, the die a little above it from forming friction)."""

OVER_TEMPERATURE_ALARM_BAND = 12.0
"""degC above its running level at which a heated channel raises the over-temperature alarm: the machine
trips with `over_temperature` after its temperatures run away past this band (faults happen at die
temperatures far below the 260 degC safety stop, so that stop says nothing about them)."""


def over_temperature_alarm(channel: str, setpoint_temperature: float) -> float | None:
    """The alarm limit of a heated channel at a heater setpoint (None: the channel has no such alarm).

    The production table's `{channel}_s_above_limit` features count seconds of a run above this limit."""
    offset = HEATER_RUN_OFFSETS.get(channel)
    if offset is None:
        return None
    return setpoint_temperature + offset + OVER_TEMPERATURE_ALARM_BAND


LOT_COLUMN: dict[str, str] = {f: f"lot_{f}" for f in QUALITY_FIGURES}
SETPOINT_COLUMN: dict[str, str] = {p: f"sp_{p}" for p in PARAMETERS}
"""Column of each lot figure and setpoint in the per-production table (and slow channel names)."""


def lot_id(line: str, production_id: int) -> str:
    """The id of the raw-material lot a production consumed: '{line}-{production_id}'.

    One lot per production: the line's lot number is its production counter (the simulator draws lot
    `production_id` for each production; the control loop sends this id to the inference server, whose
    decision log records it). The warehouse's `lots` table keys the lot figures by it."""
    return f"{line}-{int(production_id)}"


def set_by_label(code: int) -> str:
    """'craftsman:NN' for codes 1..99, 'model:vN' for 1000+N (0 = unknown)."""
    if code >= MODEL_CODE_BASE:
        return f"model:v{code - MODEL_CODE_BASE}"
    if code > 0:
        return f"craftsman:{code:02d}"
    return "unknown"
