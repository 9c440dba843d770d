"""Performance domain: the AI's record (`model_performance`), its check, its automation and the retrain sensor."""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

from factory_assets.performance.assets import (
    CHECK_NAME,
    MODEL_PERFORMANCE_KEY,
    REFUSALS_CHECK_NAME,
    model_performance,
)
from factory_assets.performance.retrain import build_retrain_sensor

PERFORMANCE_ASSETS = [model_performance]

# The custom day-complete condition (shared with the daily aggregates) needs the user-code server.
model_performance_automation = AutomationConditionSensorDefinition(
    "model_performance_automation",
    target=AssetSelection.assets(MODEL_PERFORMANCE_KEY),
    minimum_interval_seconds=300,
    use_user_code_server=True,
    default_status=DefaultSensorStatus.RUNNING,
    description="Materializes the AI's record of a line-day once its production table is complete, and again "
    "when late decisions or a refreshed table arrive.",
)

__all__ = [
    "CHECK_NAME",
    "MODEL_PERFORMANCE_KEY",
    "PERFORMANCE_ASSETS",
    "REFUSALS_CHECK_NAME",
    "build_retrain_sensor",
    "model_performance",
    "model_performance_automation",
]
