"""Feature schema shared by the trainer, the artefact and the recommender (one definition, no drift).

Why one module: the column order of the forward models' inputs is part of the artefact contract; the
metadata records it and loading refuses a model whose schema differs from this one.
"""

from __future__ import annotations

from factory_core.machine import (
    LOT_COLUMN,
    LOT_LIMITS,
    PARAMETERS,
    QUALITY_FIGURES,
    SAFETY_RANGES,
    SETPOINT_COLUMN,
)

SCHEMA_VERSION = 2  # 2: prior-first search with support, leverage and uncertainty (search section)
LOT_FEATURES: tuple[str, ...] = tuple(QUALITY_FIGURES)  # moisture, hardness, density, impurity
PARAM_FEATURES: tuple[str, ...] = tuple(PARAMETERS)  # temperature, feed_rate, pressure
FEATURES: tuple[str, ...] = LOT_FEATURES + PARAM_FEATURES

# Per-production table column of each feature (Dagster asset `productions`).
COLUMN_OF: dict[str, str] = {**LOT_COLUMN, **SETPOINT_COLUMN}

# Physically plausible bounds of the lot figures accepted by the API: the ranges a supplier can deliver.
LOT_BOUNDS: dict[str, tuple[float, float]] = {k: (float(lo), float(hi)) for k, (lo, hi) in LOT_LIMITS.items()}
# Hard machine limits: no recommendation ever leaves them.
PARAM_BOUNDS: dict[str, tuple[float, float]] = dict(SAFETY_RANGES)
