"""The code location: assets, checks, sensors, schedules and resources of the factory data platform.

Resources are chosen from the environment here (and only here): see resources/selection.py. ASSETS is the
data graph (raw -> productions -> aggregates, with the `lots` dimension; the `crew` dimension from the
factory's roster); ALL_ASSETS adds the quarterly model (factory_assets/model/),
downstream of both, and the AI's record: the inference server's decision log (external, factory_assets/decisions/)
joined with the production table in `model_performance` (factory_assets/performance/), whose failed check
pages through the alerting sensors and requests a retrain (performance/retrain.py). Alerting (factory_assets/alerting/) adds run-failure, failed-check and freshness
sensors that post through the alert notifier resource.

What a data team sees in the UI beyond the graph: freshness policies on the raw and production assets
(Dagster's current `FreshnessPolicy.time_window`, next to each asset; the daemon evaluates them, so stale
assets show in the UI as well as in the alert sensor), and code references (`with_source_code_references`: each asset links to
the file and line that defines it).
"""

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    with_source_code_references,
)

from factory_assets.aggregates.assets import AGGREGATES_KEY, daily_line_aggregates
from factory_assets.alerting import alerting_resources, alerting_sensors
from factory_assets.decisions import build_decision_log_sensor, decision_log
from factory_assets.dimensions.assets import crew
from factory_assets.dimensions.sensors import crew_roster_sensor
from factory_assets.model import MODEL_ASSETS, MODEL_CHECKS, MODEL_SCHEDULES
from factory_assets.performance import PERFORMANCE_ASSETS, build_retrain_sensor, model_performance_automation
from factory_assets.production.assets import PRODUCTIONS_KEY, productions
from factory_assets.raw.assets import raw_sensor_data, raw_sensor_gaps
from factory_assets.raw.sensors import build_raw_objects_sensor
from factory_assets.resources.selection import resources_from_env

# Beta/preview APIs are used knowingly: their warnings are silenced in factory_assets/__init__.py.

ASSETS = list(
    with_source_code_references(
        [
            raw_sensor_data,
            raw_sensor_gaps,
            productions,
            daily_line_aggregates,
            crew,
        ]
    )
)
ALL_ASSETS = [*ASSETS, *with_source_code_references([*MODEL_ASSETS, *PERFORMANCE_ASSETS]), decision_log]

# Custom conditions (productions' raw window, aggregates' complete day) run on the user-code server.
productions_automation = AutomationConditionSensorDefinition(
    "productions_automation",
    target=AssetSelection.assets(PRODUCTIONS_KEY),
    minimum_interval_seconds=30,
    use_user_code_server=True,  # RawWindowTouched (production/automation.py) is a custom condition
    default_status=DefaultSensorStatus.RUNNING,
    description="Refreshes production tables whose raw objects landed (intraday and late objects).",
)
aggregates_automation = AutomationConditionSensorDefinition(
    "aggregates_automation",
    target=AssetSelection.assets(AGGREGATES_KEY),
    minimum_interval_seconds=60,
    use_user_code_server=True,
    default_status=DefaultSensorStatus.RUNNING,
    description="Materializes daily aggregates once a day is complete (never on a half day).",
)


def build_definitions() -> Definitions:
    """Definitions with resources selected from the environment."""
    return Definitions(
        assets=ALL_ASSETS,
        asset_checks=MODEL_CHECKS,
        schedules=MODEL_SCHEDULES,
        sensors=[
            build_raw_objects_sensor(),
            productions_automation,
            aggregates_automation,
            build_decision_log_sensor(),
            model_performance_automation,
            build_retrain_sensor(),
            crew_roster_sensor,
            *alerting_sensors,
        ],
        resources={**resources_from_env(), **alerting_resources()},
    )


defs = build_definitions()
