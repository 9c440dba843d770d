"""Request and response bodies of the inference API (the binding contract factory_sim/control.py uses).

Strict on input: finite numbers inside physically plausible bounds, no extra fields, no coercion
(a string "5" is not a number); every rejection names the field and the rule.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from quality_model.features import LOT_BOUNDS

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _figure(name: str, unit: str) -> object:
    lo, hi = LOT_BOUNDS[name]
    return Annotated[
        float, Field(ge=lo, le=hi, allow_inf_nan=False, description=f"{name} [{unit}], {lo}..{hi}")
    ]


class LotFigures(BaseModel):
    """Incoming-inspection quality figures of the lot about to be processed."""

    model_config = _STRICT
    moisture: _figure("moisture", "%")  # type: ignore[valid-type]
    hardness: _figure("hardness", "HB")  # type: ignore[valid-type]
    density: _figure("density", "g/cm3")  # type: ignore[valid-type]
    impurity: _figure("impurity", "%")  # type: ignore[valid-type]


class RecommendationRequest(BaseModel):
    model_config = _STRICT
    line_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="production line, e.g. L1")
    lot: LotFigures
    lot_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")


class MachineParameters(BaseModel):
    temperature: float
    feed_rate: float
    pressure: float


class Support(BaseModel):
    """How far the lot lies from the history the model learned from (1.0 = history's own 99th / 99.9th
    percentile; the model refuses as out_of_support beyond its leverage limit)."""

    lot_distance: float | None
    leverage: float | None


class RecommendationResponse(BaseModel):
    request_id: str
    line_id: str
    model_version: str
    model_version_number: int
    parameters: MachineParameters
    predicted_quality: float
    predicted_fault_risk: float
    predicted_quality_uncertainty: float | None = Field(
        description="RMS error of the quality model on the past productions nearest to this lot and setting "
        "(quality points; null when none is known)"
    )
    support: Support
    latency_ms: float


class FallbackError(BaseModel):
    """503: no recommendation; the operator sets the machine. ``error`` says why: the model refused
    (``out_of_support``: the lot lies outside the history it learned from; ``low_predicted_quality``: the
    best setting it found is expected to be poor; ``no_feasible_setting``: no setting passed its fault-risk
    and support checks), no model is loaded, or the deadline passed."""

    error: Literal[
        "model_unavailable",
        "deadline_exceeded",
        "out_of_support",
        "low_predicted_quality",
        "no_feasible_setting",
    ]
    fallback: Literal["operator"] = "operator"
    detail: str
    request_id: str


class FieldError(BaseModel):
    field: str
    rule: str
    message: str


class ValidationErrorBody(BaseModel):
    error: Literal["validation_error"] = "validation_error"
    fallback: Literal["operator"] = "operator"
    errors: list[FieldError]
    request_id: str


class ErrorBody(BaseModel):
    """Any other error (401, 404, 413, ...)."""

    error: str
    fallback: Literal["operator"] = "operator"
    detail: str
    request_id: str | None = None


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    version: str = Field(pattern=r"^v\d{5}-[0-9a-f]{12}$")


class AdminResult(BaseModel):
    status: str
    model_version: str | None
    detail: str
